// SPDX-License-Identifier: GPL-2.0

//! Everything hardware-specific a region's provider logic ([`crate::region`]) uses, behind one
//! trait: xe's backend API on a real GPU ([`crate::xe::XeBackend`]), plain memory in the KUnit
//! tests ([`crate::mock`]).
//!
//! C header: [`include/drm/intel/xe_svm_backend.h`](srctree/include/drm/intel/xe_svm_backend.h)
//! (added by `patches/apply/`)

use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sizes::SZ_8M;
use kernel::sync::Arc;

use crate::ffi;
use crate::region::EvictSlot;

/// What a VRAM region is, as the backend describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RegionInfo {
    /// Device physical address (DPA) of the region's first byte.
    pub(crate) dpa_base: u64,
    /// Bytes that can be allocated, from `dpa_base`.
    pub(crate) usable_size: u64,
    /// CPU physical address of the BAR over the region's first byte.
    pub(crate) io_start: u64,
    /// Bytes of the region, from its start, that the BAR covers: may be less than
    /// `usable_size` (a small BAR, as DG1 has without resizable BAR).
    pub(crate) io_size: u64,
    /// The smallest unit pages migrate in: `PAGE_SIZE`, or 64 KiB on GPUs that need 64 KiB
    /// VRAM pages.
    pub(crate) min_page_size: u64,
}

impl RegionInfo {
    /// Checks that the region can back device-private pages: page-aligned, not empty, and its
    /// end addressable.
    pub(crate) fn check(&self) -> Result {
        let page = PAGE_SIZE as u64;
        let ok = self.usable_size > 0
            && self.usable_size % page == 0
            && self.dpa_base % page == 0
            && self.dpa_base.checked_add(self.usable_size).is_some()
            && self.io_start.checked_add(self.io_size).is_some()
            && self.min_page_size >= page
            && self.min_page_size.is_power_of_two()
            && usize::try_from(self.usable_size).is_ok();
        if ok {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }
}

/// Which way a copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CopyDir {
    /// From system memory (or a peer's BAR) into VRAM.
    ToVram,
    /// From VRAM into system memory.
    FromVram,
}

/// The most bytes one copy call of the engine takes (xe's copy engine: 8 MiB).
pub(crate) const MAX_COPY: usize = SZ_8M;

/// How a copy engine reaches the memory on the other side of a copy (the C
/// `enum drm_interconnect_protocol` with xe's own values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    /// System memory, a DMA address mapped for the engine's device.
    System,
    /// A peer GPU's VRAM through its PCIe BAR (xe's `XE_INTERCONNECT_P2P`).
    P2p,
}

impl Proto {
    /// xe's value (`XE_SVM_BACKEND_PROTO_*`, which xe asserts equal to its own).
    const fn raw(self) -> u64 {
        match self {
            Proto::System => ffi::XE_SVM_BACKEND_PROTO_SYSTEM as u64,
            Proto::P2p => ffi::XE_SVM_BACKEND_PROTO_P2P as u64,
        }
    }
}

/// One page's entry of a copy: the C `struct drm_pagemap_addr` that xe's copy engine reads.
#[repr(transparent)]
pub(crate) struct CopyAddr(ffi::drm_pagemap_addr);

impl CopyAddr {
    /// The entry of a page at `addr`, reached by `proto`; `order` is that of the run the page
    /// heads (0 for the other pages of a run), `dir` the direction the memory is mapped for.
    pub(crate) fn new(addr: u64, proto: Proto, order: u32, dir: DataDirection) -> Self {
        let mut raw = ffi::drm_pagemap_addr {
            addr,
            ..Default::default()
        };
        raw.set_proto(proto.raw());
        raw.set_order(u64::from(order));
        raw.set_dir(dir as u64);
        Self(raw)
    }

    /// The address.
    pub(crate) fn addr(&self) -> u64 {
        self.0.addr
    }

    /// How it is reached, if it is one of ours.
    pub(crate) fn proto(&self) -> Option<Proto> {
        match self.0.proto() {
            p if p == Proto::System.raw() => Some(Proto::System),
            p if p == Proto::P2p.raw() => Some(Proto::P2p),
            _ => None,
        }
    }

    /// The order recorded.
    pub(crate) fn order(&self) -> u32 {
        self.0.order() as u32
    }
}

/// The hardware under a VRAM region.
///
/// # Safety
///
/// The provider hands the core mm the pages [`Backend::blocks`] names and trusts what the
/// backend says of them ([`DevmemOps`]' contract rests on it):
/// - the blocks of an allocation lie in the region ([`Backend::info`], which never changes),
///   and no other live allocation has them, from [`Backend::alloc`] until the allocation is
///   dropped or its `evict` call returned `Ok`; `blocks` names the same ones each time;
/// - an allocation's memory reads zeroes until a copy writes it;
/// - a copy writes only the VRAM it is given and the entries' memory;
/// - [`Backend::map_peer`] maps only the region's own BAR.
///
/// [`DevmemOps`]: drm_pagemap::devmem::DevmemOps
pub(crate) unsafe trait Backend: Send + Sync + 'static {
    /// One allocation of VRAM, freed when dropped (after which `evict` is never called).
    type Alloc: Send + Sync;
    /// A copy in flight; dropping it does not wait for the copy.
    type Fence;

    /// The region.
    fn info(&self) -> RegionInfo;

    /// The device that maps system memory for the copy engine (the GPU).
    fn dma_device(&self) -> &Device;

    /// `size` bytes of VRAM (a multiple of `min_page_size`), cleared: a page no copy writes
    /// reads zeroes. While the allocation lives the backend may want its VRAM back: it calls
    /// `evict.evict()`, never concurrently for one allocation, and frees the VRAM at once if
    /// that returns `Ok`.
    fn alloc(&self, size: u64, evict: Arc<EvictSlot>) -> Result<Self::Alloc>;

    /// Calls `each(dpa, size)` for each block of `alloc`, in order; stops at its first error.
    /// `EBUSY` if the allocation was evicted. Not from inside `evict`.
    fn blocks(&self, alloc: &Self::Alloc, each: &mut dyn FnMut(u64, u64) -> Result) -> Result;

    /// Starts copying `addrs.len()` pages (at most [`MAX_COPY`] bytes) between the VRAM at
    /// `dpa` and the entries of `addrs`, one per page.
    ///
    /// # Safety
    ///
    /// Each entry's memory stays allocated and mapped as its entry says (system memory for
    /// [`Backend::dma_device`], a peer's BAR mapped for it) until the returned fence has been
    /// waited for; the VRAM at `dpa` is the caller's (an allocation it holds).
    unsafe fn copy(&self, dir: CopyDir, dpa: u64, addrs: &mut [CopyAddr]) -> Result<Self::Fence>;

    /// Waits for a copy to finish: its result.
    fn wait(&self, fence: Self::Fence) -> Result;

    /// Keeps the GPU awake until [`Backend::pm_put`].
    fn pm_get(&self) -> Result;

    /// Undoes one [`Backend::pm_get`].
    fn pm_put(&self);

    /// Whether `client` reaches this region's BAR over PCIe peer-to-peer.
    fn p2p_reachable(&self, client: &Device) -> bool;

    /// Maps `len` bytes of the BAR at CPU physical address `phys` for `client`: the bus
    /// address it uses. `EINVAL` for bytes outside the region's BAR.
    fn map_peer(&self, client: &Device, phys: u64, len: u64, dir: DataDirection) -> Result<u64>;

    /// Undoes [`Backend::map_peer`].
    ///
    /// # Safety
    ///
    /// `addr`, `len` and `dir` are those of a live mapping `map_peer` made for `client`, which
    /// nothing uses any more.
    unsafe fn unmap_peer(&self, client: &Device, addr: u64, len: u64, dir: DataDirection);
}
