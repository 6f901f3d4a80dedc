// SPDX-License-Identifier: GPL-2.0

//! The backend on a real GPU: xe's backend API over one `xe.vram` auxiliary device. The only
//! file of the crate that calls C.
//!
//! C header: [`include/drm/intel/xe_svm_backend.h`](srctree/include/drm/intel/xe_svm_backend.h)
//! (added by `patches/apply/`)

use core::ffi::c_int;
use core::ffi::c_void;
use core::ptr::NonNull;

use kernel::auxiliary;
use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::error::from_err_ptr;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::Arc;
use kernel::sync::ArcBorrow;

use crate::backend::Backend;
use crate::backend::CopyAddr;
use crate::backend::CopyDir;
use crate::backend::RegionInfo;
use crate::backend::MAX_COPY;
use crate::ffi;
use crate::region::EvictSlot;

/// The C `struct device` of `dev`.
fn raw_dev(dev: &Device) -> *mut ffi::device {
    // CAST: `Device` is a transparent wrapper of `struct device`.
    core::ptr::from_ref(dev).cast::<ffi::device>().cast_mut()
}

/// One VRAM region of an xe GPU.
///
/// # Invariants
///
/// `region` is the `struct xe_svm_backend_region` that embeds `adev`, which xe registered; the
/// reference on `adev` keeps it allocated (xe frees it in the device's release), and xe keeps
/// its GPU's data alive as long as it is.
pub(crate) struct XeBackend {
    region: NonNull<ffi::xe_svm_backend_region>,
    dma_dev: ARef<Device>,
    _adev: ARef<auxiliary::Device>,
}

// SAFETY: xe's backend API may be called from any thread; the fields never change.
unsafe impl Send for XeBackend {}
// SAFETY: As above: its functions take their own locks.
unsafe impl Sync for XeBackend {}

impl XeBackend {
    /// The region of `adev`, an `xe.vram` auxiliary device (the only ones the driver's ID
    /// table matches: xe registers them, named after its module).
    pub(crate) fn new(adev: &auxiliary::Device<kernel::device::Core<'_>>) -> Result<Self> {
        // CAST: `auxiliary::Device` is a transparent wrapper of `struct auxiliary_device`.
        let raw = core::ptr::from_ref(adev)
            .cast::<ffi::auxiliary_device>()
            .cast_mut();
        // SAFETY: `raw` is an "xe.vram" auxiliary device, which xe embeds in a region.
        let region = unsafe { ffi::svm_xe_region_of(raw) };
        let region = NonNull::new(region).ok_or(EINVAL)?;
        // SAFETY: The region is alive while `adev` is (its release frees it); the field never
        // changes.
        let dev = unsafe { core::ptr::addr_of!((*region.as_ptr()).dma_dev).read() };
        if dev.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: `dev` is xe's GPU device, alive while its regions are (their parent).
        let dma_dev = unsafe { Device::get_device(dev) };
        // INVARIANT: `region` embeds `adev`, of which a reference is kept.
        Ok(Self {
            region,
            dma_dev,
            _adev: adev.into(),
        })
    }

    fn raw(&self) -> *mut ffi::xe_svm_backend_region {
        self.region.as_ptr()
    }
}

/// An allocation of xe VRAM.
///
/// # Invariants
///
/// `raw` is a live allocation of xe's backend, given back in `drop`; until then xe may call
/// back `_slot`, whose pointer it was given.
pub(crate) struct XeAlloc {
    raw: NonNull<ffi::xe_svm_backend_alloc>,
    // Dropped after `drop` gave the allocation back.
    _slot: Arc<EvictSlot>,
}

// SAFETY: xe's allocation functions may be called from any thread.
unsafe impl Send for XeAlloc {}
// SAFETY: As above.
unsafe impl Sync for XeAlloc {}

impl Drop for XeAlloc {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, a live allocation, given back once. No `evict` call
        // runs after this returns: `slot` may go after.
        unsafe { ffi::xe_svm_backend_free(self.raw.as_ptr()) };
    }
}

/// xe's callback: the VRAM of the allocation whose slot is `slot` is wanted back.
///
/// # Safety
///
/// `slot` is the pointer an [`XeAlloc`] gave xe, whose allocation is not freed yet.
#[no_mangle]
unsafe extern "C" fn svm_xe_evict(slot: *mut c_void) -> c_int {
    // Our own reference: the eviction may drop the allocation, and the `XeAlloc`'s with it.
    // SAFETY: `slot` came from `Arc::as_ptr` and the `XeAlloc` holding that `Arc` lives.
    let slot: Arc<EvictSlot> = unsafe { ArcBorrow::from_raw(slot.cast::<EvictSlot>()) }.into();
    match slot.evict() {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// The walk over an allocation's blocks: `each` and its first error.
struct BlockWalk<'a> {
    each: &'a mut dyn FnMut(u64, u64) -> Result,
    err: Option<Error>,
}

/// xe's callback for one block of an allocation.
///
/// # Safety
///
/// `arg` is the [`BlockWalk`] of the running `blocks` call.
#[no_mangle]
unsafe extern "C" fn svm_xe_block(arg: *mut c_void, dpa: u64, size: u64) -> c_int {
    // SAFETY: Per this function's contract, exclusive for the call.
    let walk = unsafe { &mut *arg.cast::<BlockWalk<'_>>() };
    match (walk.each)(dpa, size) {
        Ok(()) => 0,
        Err(e) => {
            walk.err = Some(e);
            e.to_errno()
        }
    }
}

/// A copy in flight: a `struct dma_fence` reference.
pub(crate) struct XeFence(NonNull<ffi::dma_fence>);

impl Drop for XeFence {
    fn drop(&mut self) {
        // SAFETY: The fence reference this owns.
        unsafe { ffi::svm_xe_fence_put(self.0.as_ptr()) };
    }
}

// SAFETY: xe's backend API keeps the contract: an allocation is a buffer object of this
// region's VRAM, held until it is freed, whose blocks TTM moves only through our `evict` (a
// CPU_ADDR_MIRROR object's move to system memory) and frees only once that returned 0 (or,
// once the device is unplugged, after it failed: nothing is allocated there any more, so the
// pages keep their data until the device is removed, after which copies fail with `ENODEV`);
// it is cleared before `xe_svm_backend_alloc` returns; a copy writes the pages at the DPA it
// is given (checked against the region) and the entries' memory; `map_peer` checks the BAR.
unsafe impl Backend for XeBackend {
    type Alloc = XeAlloc;
    type Fence = XeFence;

    fn info(&self) -> RegionInfo {
        let r = self.raw();
        // Field by field: the auxiliary device around them changes under us (no reference to
        // the whole structure is made).
        // SAFETY: By the type invariant, the region is alive; these fields never change.
        unsafe {
            RegionInfo {
                dpa_base: core::ptr::addr_of!((*r).dpa_base).read(),
                usable_size: core::ptr::addr_of!((*r).usable_size).read(),
                io_start: core::ptr::addr_of!((*r).io_start).read(),
                io_size: core::ptr::addr_of!((*r).io_size).read(),
                min_page_size: u64::from(core::ptr::addr_of!((*r).min_page_size).read()),
            }
        }
    }

    fn dma_device(&self) -> &Device {
        &self.dma_dev
    }

    fn alloc(&self, size: u64, evict: Arc<EvictSlot>) -> Result<XeAlloc> {
        let slot = Arc::as_ptr(&evict).cast_mut().cast::<c_void>();
        // `svm_xe_alloc_ops` calls `svm_xe_evict` with `slot`, which the allocation keeps.
        // SAFETY: The region is alive; `slot` lives until the allocation is freed.
        let raw =
            unsafe { ffi::xe_svm_backend_alloc(self.raw(), size, &ffi::svm_xe_alloc_ops, slot) };
        let raw = NonNull::new(from_err_ptr(raw)?).ok_or(ENOMEM)?;
        // INVARIANT: A live allocation, calling back `evict`.
        Ok(XeAlloc { raw, _slot: evict })
    }

    fn blocks(&self, alloc: &XeAlloc, each: &mut dyn FnMut(u64, u64) -> Result) -> Result {
        let mut walk = BlockWalk { each, err: None };
        // SAFETY: `alloc` is live; `svm_xe_block` gets `walk`, alive for the call.
        let ret = unsafe {
            ffi::xe_svm_backend_alloc_blocks(
                alloc.raw.as_ptr(),
                Some(svm_xe_block),
                core::ptr::from_mut(&mut walk).cast(),
            )
        };
        match walk.err {
            Some(e) => Err(e),
            None if ret < 0 => Err(Error::from_errno(ret)),
            None => Ok(()),
        }
    }

    unsafe fn copy(&self, dir: CopyDir, dpa: u64, addrs: &mut [CopyAddr]) -> Result<XeFence> {
        if addrs.is_empty() || addrs.len() * kernel::page::PAGE_SIZE > MAX_COPY {
            return Err(EINVAL);
        }
        let raw = addrs.as_mut_ptr().cast::<ffi::drm_pagemap_addr>();
        let n = addrs.len();
        // SAFETY: `raw` holds `n` entries (`CopyAddr` is transparent over the C type), valid
        // as the caller promises; xe checks that the pages at `dpa` are in the region.
        let fence = unsafe {
            match dir {
                CopyDir::ToVram => ffi::xe_svm_backend_copy_to_vram(self.raw(), n, raw, dpa),
                CopyDir::FromVram => ffi::xe_svm_backend_copy_from_vram(self.raw(), n, dpa, raw),
            }
        };
        Ok(XeFence(NonNull::new(from_err_ptr(fence)?).ok_or(EIO)?))
    }

    fn wait(&self, fence: XeFence) -> Result {
        let fence = core::mem::ManuallyDrop::new(fence);
        // SAFETY: Gives the fence's reference to the helper, which drops it.
        let ret = unsafe { ffi::svm_xe_fence_wait_put(fence.0.as_ptr()) };
        match ret {
            0 => Ok(()),
            e => Err(Error::from_errno(e)),
        }
    }

    fn pm_get(&self) -> Result {
        // SAFETY: The region is alive.
        let ret = unsafe { ffi::xe_svm_backend_pm_get(self.raw()) };
        match ret {
            0 => Ok(()),
            e => Err(Error::from_errno(e)),
        }
    }

    fn pm_put(&self) {
        // SAFETY: Undoes a `pm_get` (the trait's contract on callers).
        unsafe { ffi::xe_svm_backend_pm_put(self.raw()) };
    }

    fn p2p_reachable(&self, client: &Device) -> bool {
        // SAFETY: Both devices are alive for the call.
        unsafe { ffi::svm_xe_p2p_distance(raw_dev(&self.dma_dev), raw_dev(client)) >= 0 }
    }

    fn map_peer(&self, client: &Device, phys: u64, len: u64, dir: DataDirection) -> Result<u64> {
        let info = self.info();
        let end = phys.checked_add(len).ok_or(EINVAL)?;
        if phys < info.io_start || end > info.io_start + info.io_size {
            return Err(EINVAL);
        }
        let mut addr = 0u64;
        // SAFETY: Maps for `client`, alive for the call, a range of this GPU's BAR (checked
        // above).
        let ret = unsafe {
            ffi::svm_xe_map_resource(raw_dev(client), phys, len, dir as c_int, &mut addr)
        };
        match ret {
            0 => Ok(addr),
            e => Err(Error::from_errno(e)),
        }
    }

    unsafe fn unmap_peer(&self, client: &Device, addr: u64, len: u64, dir: DataDirection) {
        // SAFETY: Per this function's contract, a live mapping nothing uses any more.
        unsafe { ffi::svm_xe_unmap_resource(raw_dev(client), addr, len, dir as c_int) };
    }
}
