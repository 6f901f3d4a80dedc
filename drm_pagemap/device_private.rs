// SPDX-License-Identifier: GPL-2.0

//! A region of device-private memory: struct pages for a device's memory, which the CPU cannot
//! access, so that the core mm can track process pages that live there. Its `dev_pagemap` ops
//! are this module's: freed pages release their zone-device data, CPU faults migrate the data
//! back to system memory.
//!
//! C header: [`include/linux/memremap.h`](srctree/include/linux/memremap.h)

use kernel::error::from_err_ptr;
use kernel::prelude::*;
use kernel::types::Opaque;

use crate::ffi;
use crate::owner::Owner;
use crate::owner::RegionOwner;
use crate::sys::fault::VmFault;

/// A device-private `dev_pagemap` over a free physical address range of `size` bytes.
///
/// # Invariants
///
/// Once initialised, `pgmap` is a `MEMORY_DEVICE_PRIVATE` pagemap registered with
/// `memremap_pages` over a range reserved with `request_free_mem_region`; both are undone on
/// drop.
#[pin_data(PinnedDrop)]
pub struct DevicePrivateRegion {
    #[pin]
    pgmap: Opaque<ffi::dev_pagemap>,
    // Keeps a group's owner allocated while the region's pages carry it.
    owner: RegionOwner,
}

impl DevicePrivateRegion {
    /// Reserves `size` bytes of free physical address space named `name` and creates struct
    /// pages for it. `owner` is the device-private owner cookie that `hmm_range_fault` and
    /// `migrate_vma` compare against.
    pub fn new(
        size: usize,
        name: &'static CStr,
        owner: impl Into<RegionOwner>,
    ) -> impl PinInit<Self, Error> {
        let owner = owner.into();
        let value = owner.owner();
        try_pin_init!(Self {
            owner,
            pgmap <- Opaque::try_ffi_init(move |slot: *mut ffi::dev_pagemap| {
                if size == 0 || size % (1 << ffi::PAGE_SHIFT) != 0 {
                    return Err(EINVAL);
                }
                // SAFETY: `name` is a static string, which the resource keeps pointing to.
                let res = unsafe { ffi::svm_request_free_mem_region(size, name.as_char_ptr()) };
                let res = from_err_ptr(res)?;
                if res.is_null() {
                    return Err(ENOMEM);
                }
                // SAFETY: `res` is a resource just reserved for us.
                let (start, end) = unsafe { ((*res).start, (*res).end) };
                // SAFETY: `slot` is valid for writes of a `dev_pagemap`, which is plain data
                // for which all zeroes is a valid (empty) value.
                unsafe {
                    slot.write(core::mem::zeroed());
                    (*slot).type_ = ffi::memory_type_MEMORY_DEVICE_PRIVATE;
                    let range = (*slot).__bindgen_anon_1.range.as_mut();
                    range.start = start;
                    range.end = end;
                    (*slot).nr_range = 1;
                    (*slot).ops = &PAGEMAP_OPS;
                    (*slot).owner = value.as_ptr();
                }
                // `NUMA_NO_NODE` lets the core pick the node of the calling CPU's memory.
                // SAFETY: `slot` is a fully set-up device-private pagemap that stays pinned
                // until `memunmap_pages` in `drop`.
                let ret = unsafe { ffi::memremap_pages(slot, ffi::NUMA_NO_NODE) };
                if let Err(e) = from_err_ptr(ret) {
                    // SAFETY: Gives back the range reserved above.
                    unsafe { ffi::svm_release_mem_region(start, size as u64) };
                    return Err(e);
                }
                Ok(())
            }),
        })
    }

    fn range(&self) -> (u64, u64) {
        // SAFETY: By the type invariant the pagemap is initialised; its range never changes.
        unsafe {
            let r = (*self.pgmap.get()).__bindgen_anon_1.range.as_ref();
            (r.start, r.end)
        }
    }

    /// Physical address of the first byte of the region.
    pub fn start(&self) -> u64 {
        self.range().0
    }

    /// Size of the region in bytes.
    pub fn size(&self) -> u64 {
        let (start, end) = self.range();
        end - start + 1
    }

    /// The `dev_pagemap` the region's pages point to.
    pub(crate) fn as_raw(&self) -> *mut ffi::dev_pagemap {
        self.pgmap.get()
    }

    /// The device-private owner cookie of the region's pages.
    pub fn owner(&self) -> Owner {
        self.owner.owner()
    }

    /// Whether `pfn` is a page of this region.
    pub fn contains_pfn(&self, pfn: usize) -> bool {
        pfn >= self.pfn_first() && pfn - self.pfn_first() < self.page_count()
    }

    /// First page frame number of the region.
    pub fn pfn_first(&self) -> usize {
        (self.start() >> ffi::PAGE_SHIFT) as usize
    }

    /// Number of pages in the region.
    pub fn page_count(&self) -> usize {
        (self.size() >> ffi::PAGE_SHIFT) as usize
    }
}

#[pinned_drop]
impl PinnedDrop for DevicePrivateRegion {
    fn drop(self: Pin<&mut Self>) {
        let (start, size) = (self.start(), self.size());
        // SAFETY: By the type invariant the pagemap is registered; `memunmap_pages` waits for
        // every page reference to go and tears the struct pages down.
        unsafe { ffi::memunmap_pages(self.pgmap.get()) };
        // SAFETY: The range was reserved in `new` and nothing maps it any more.
        unsafe { ffi::svm_release_mem_region(start, size) };
    }
}

// SAFETY: The pagemap is only mutated during init and drop; the core mm synchronises its users.
unsafe impl Send for DevicePrivateRegion {}
// SAFETY: Shared access only reads the immutable range.
unsafe impl Sync for DevicePrivateRegion {}

/// Whether `pgmap` is a region of ours (whatever its owner): only then is the zone-device data
/// of its pages a [`crate::devmem::Zdd`].
///
/// # Safety
///
/// `pgmap` is null or a live pagemap (that of a page held by the caller).
pub(crate) unsafe fn has_our_ops(pgmap: *const ffi::dev_pagemap) -> bool {
    // SAFETY: Per this function's contract; `ops` never changes.
    !pgmap.is_null() && core::ptr::eq(unsafe { (*pgmap).ops }, &PAGEMAP_OPS)
}

/// Called when the last reference to a device folio goes: gives back the folio's reference
/// on its zone-device data.
///
/// # Safety
///
/// Called by the core mm only, with a folio of a region using these ops.
unsafe extern "C" fn folio_free(folio: *mut ffi::folio) {
    // SAFETY: The folio of a region with these ops is being freed; its data came from
    // `Zdd::attach` when migration placed it.
    unsafe { crate::devmem::Zdd::detach_folio(folio) };
}

/// CPU fault on a device-private page: migrates the data back to system memory.
///
/// # Safety
///
/// Called by the core mm only, for a fault on a page of a region using these ops.
unsafe extern "C" fn migrate_to_ram(vmf: *mut ffi::vm_fault) -> ffi::vm_fault_t {
    // SAFETY: The core mm passes a fault on a referenced, locked page of ours, with the lock
    // the fault needs held, valid until we return.
    let Some(mut fault) = (unsafe { VmFault::from_raw(vmf) }) else {
        return ffi::vm_fault_reason_VM_FAULT_SIGBUS as ffi::vm_fault_t;
    };
    let served = crate::migrate::cpu_fault(&mut fault);
    if fault.lock_released() {
        // Whatever happened after, the core mm must not unlock the dropped lock again.
        return ffi::vm_fault_reason_VM_FAULT_RETRY as ffi::vm_fault_t;
    }
    match served {
        Ok(crate::migrate::FaultServed::Done) => 0,
        Ok(crate::migrate::FaultServed::Retry) => {
            ffi::vm_fault_reason_VM_FAULT_RETRY as ffi::vm_fault_t
        }
        Err(_) => ffi::vm_fault_reason_VM_FAULT_SIGBUS as ffi::vm_fault_t,
    }
}

/// A huge device folio is being split (partial unmap, or migration into base pages): each
/// folio split off inherits the pagemap and a reference to the zone-device data. Called once
/// per new folio, then once with `new` null for the remaining head, which keeps its own.
///
/// # Safety
///
/// Called by the core mm only, with a folio of a region using these ops.
unsafe extern "C" fn folio_split(orig: *mut ffi::folio, new: *mut ffi::folio) {
    if new.is_null() {
        return;
    }
    // SAFETY: `new` was just split off `orig`, a device folio of ours set up by migration.
    unsafe {
        ffi::svm_folio_split_inherit(orig, new);
        crate::devmem::Zdd::attach_split(orig, new);
    }
}

static PAGEMAP_OPS: ffi::dev_pagemap_ops = ffi::dev_pagemap_ops {
    folio_free: Some(folio_free),
    migrate_to_ram: Some(migrate_to_ram),
    memory_failure: None,
    folio_split: Some(folio_split),
};
