// SPDX-License-Identifier: GPL-2.0

//! A CPU fault on one of this crate's device pages, as `dev_pagemap_ops::migrate_to_ram`
//! receives it.
//!
//! C header: [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h) (`struct vm_fault`)

use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::mm::virt::VmaRef;
use kernel::page::PAGE_SIZE;
use kernel::sync::ArcBorrow;

use crate::devmem::Zdd;
use crate::ffi;

/// A CPU fault in progress on a device page of a region with this crate's ops.
///
/// # Invariants
///
/// `ptr` is such a fault, for `'a`: its page is locked and referenced by the fault handler,
/// and, unless `lock_released`, the mmap or VMA lock it needs is held.
pub(crate) struct VmFault<'a> {
    ptr: NonNull<ffi::vm_fault>,
    lock_released: bool,
    _fault: PhantomData<&'a mut ffi::vm_fault>,
}

impl VmFault<'_> {
    /// Wraps the fault `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is a CPU fault on a locked, referenced device page of a region with this crate's
    /// ops, with the mmap or VMA lock held, valid for the returned object's lifetime.
    pub(crate) unsafe fn from_raw(ptr: *mut ffi::vm_fault) -> Option<Self> {
        // INVARIANT: Per the contract.
        Some(Self {
            ptr: NonNull::new(ptr)?,
            lock_released: false,
            _fault: PhantomData,
        })
    }

    fn raw(&self) -> &ffi::vm_fault {
        // SAFETY: By the type invariant the fault is valid for `'a`, and read only.
        unsafe { self.ptr.as_ref() }
    }

    /// The faulting page.
    pub(crate) fn page(&self) -> *mut ffi::page {
        self.raw().page
    }

    /// The faulting address, rounded down to its page.
    pub(crate) fn address(&self) -> usize {
        self.raw().__bindgen_anon_1.address & !(PAGE_SIZE - 1)
    }

    /// Whether the fault is on a PMD mapping (a whole huge device folio) rather than a PTE.
    pub(crate) fn is_pmd(&self) -> bool {
        self.raw().pte.is_null()
    }

    /// The zone-device data of the faulting page.
    pub(crate) fn zdd(&self) -> ArcBorrow<'_, Zdd> {
        // SAFETY: By the type invariant the page is ours, referenced for the fault.
        unsafe { Zdd::of_page(self.page()) }
    }

    /// Whether the faulting page belongs to a large folio (mapped here by a PTE or a PMD).
    pub(crate) fn in_large_folio(&self) -> bool {
        // SAFETY: By the type invariant the page is valid.
        unsafe { ffi::svm_page_in_large_folio(self.page()) }
    }

    /// The faulting VMA, while the fault's lock is held.
    pub(crate) fn vma(&self) -> Option<&VmaRef> {
        if self.lock_released {
            return None;
        }
        // SAFETY: The fault's VMA is valid while the lock is held (type invariant,
        // `lock_released` is clear), for as long as `self` is borrowed.
        Some(unsafe { VmaRef::from_raw(self.raw().__bindgen_anon_1.vma) })
    }

    /// Whether the fault's lock was dropped: the fault must then return `VM_FAULT_RETRY`,
    /// whatever else happened (the core mm would otherwise unlock it a second time).
    pub(crate) fn lock_released(&self) -> bool {
        self.lock_released
    }

    /// Waits, killably, `ms` milliseconds with the faulting page unlocked (so that no other
    /// fault spins on it), and with the fault's lock dropped too where the fault may be
    /// retried. Returns whether it was dropped: the fault must then return
    /// `VM_FAULT_RETRY`, and [`VmFault::vma`] is `None` from here on.
    pub(crate) fn wait_unlocked(&mut self, ms: u32) -> bool {
        // SAFETY: By the type invariant `ptr` is a fault in progress.
        let retry = !self.lock_released && unsafe { ffi::svm_fault_may_retry(self.ptr.as_ptr()) };
        if retry {
            // SAFETY: The fault's lock is held (type invariant); it is not used after this.
            unsafe { ffi::svm_release_fault_lock(self.ptr.as_ptr()) };
            self.lock_released = true;
        }
        let page = self.page();
        // SAFETY: The page is locked by the fault handler, which unlocks it after we return:
        // it is relocked below; the handler's reference keeps it alive meanwhile.
        unsafe {
            ffi::svm_unlock_page(page);
            ffi::svm_sleep_killable(ms);
            ffi::svm_lock_page(page);
        }
        self.lock_released
    }
}
