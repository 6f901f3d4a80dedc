// SPDX-License-Identifier: GPL-2.0

//! Page frame numbers, migrate pfns and huge-page geometry: arithmetic on the memory map.
//!
//! With `SPARSEMEM_VMEMMAP` (x86-64, arm64, and every configuration device-private memory is
//! used with) a page's frame number and its `struct page` address convert by arithmetic alone,
//! never dereferencing anything, so the conversions here are safe functions: the pointers
//! they return are as unchecked as the numbers they are given, and dereferencing them is
//! where a contract comes in. A build without it is refused.
//!
//! C header: [`include/linux/migrate.h`](srctree/include/linux/migrate.h)

use core::ptr::NonNull;

use kernel::mm::virt::VmaRef;

use crate::ffi;

#[cfg(not(CONFIG_SPARSEMEM_VMEMMAP))]
compile_error!("drm_pagemap converts pfns and pages by arithmetic: it needs SPARSEMEM_VMEMMAP");

/// The `struct page` of frame `pfn` (not dereferenced: it may not be a valid page).
pub(crate) fn pfn_to_page(pfn: usize) -> *mut ffi::page {
    // SAFETY: With SPARSEMEM_VMEMMAP (checked above) `pfn_to_page` is `vmemmap + pfn`.
    unsafe { ffi::svm_pfn_to_page(pfn) }
}

/// The frame number of `page` (not dereferenced).
pub(crate) fn page_to_pfn(page: *mut ffi::page) -> usize {
    // SAFETY: With SPARSEMEM_VMEMMAP (checked above) `page_to_pfn` is `page - vmemmap`.
    unsafe { ffi::svm_page_to_pfn(page) }
}

/// The migrate pfn (`MIGRATE_PFN_VALID` set) naming `page`.
pub(crate) fn migrate_pfn_of(page: *mut ffi::page) -> usize {
    // SAFETY: `migrate_pfn` is bit arithmetic on the frame number.
    unsafe { ffi::svm_migrate_pfn(page_to_pfn(page)) }
}

/// The page a migrate pfn names, null if it names none (not dereferenced).
pub(crate) fn migrate_pfn_to_page(mpfn: usize) -> *mut ffi::page {
    // SAFETY: `migrate_pfn_to_page` tests the valid bit and converts as above.
    unsafe { ffi::svm_migrate_pfn_to_page(mpfn) }
}

/// Pages in a PMD-sized (huge) folio.
pub(crate) fn huge_nr() -> usize {
    // SAFETY: Returns a constant of the architecture.
    unsafe { ffi::svm_hpage_pmd_nr() as usize }
}

/// The order of a PMD-sized (huge) folio.
pub(crate) fn huge_order() -> u32 {
    // SAFETY: Returns a constant of the architecture.
    unsafe { ffi::svm_hpage_pmd_order() }
}

/// `MIGRATE_PFN_MIGRATE`: the entry was collected and may move.
pub(crate) const MIGRATE: usize = ffi::MIGRATE_PFN_MIGRATE as usize;
/// `MIGRATE_PFN_WRITE`: the page is mapped writable.
pub(crate) const WRITE: usize = ffi::MIGRATE_PFN_WRITE as usize;
/// `MIGRATE_PFN_COMPOUND`: the entry stands for a huge folio (or a huge hole).
pub(crate) const COMPOUND: usize = ffi::MIGRATE_PFN_COMPOUND as usize;

/// Whether the VMA maps anonymous memory (no file, or a private file mapping's copies).
pub(crate) fn vma_is_anonymous(vma: &VmaRef) -> bool {
    // SAFETY: `vma` is valid while borrowed (its lock is held).
    unsafe { ffi::svm_vma_is_anonymous(vma.as_ptr()) }
}

/// A system page (or transparent huge page) allocated for a migration to system memory,
/// locked, referenced only here and mapped nowhere; dropping it frees it.
///
/// # Invariants
///
/// `page` heads such a folio, of order `huge_order()` if `huge`, else 0.
pub(crate) struct NewPage {
    page: NonNull<ffi::page>,
    huge: bool,
}

impl NewPage {
    /// A base page for `addr` of `vma` (its memory policy), or for no VMA (eviction).
    /// `None` if the kernel has none to give, or `addr` is outside `vma`.
    pub(crate) fn alloc(vma: Option<&VmaRef>, addr: usize) -> Option<Self> {
        Self::alloc_order(vma, addr, false)
    }

    /// A transparent huge page for the huge page around `addr`, as [`NewPage::alloc`]. With
    /// a VMA it gives up rather than reclaim (the caller can fall back to base pages).
    pub(crate) fn alloc_huge(vma: Option<&VmaRef>, addr: usize) -> Option<Self> {
        Self::alloc_order(vma, addr, true)
    }

    fn alloc_order(vma: Option<&VmaRef>, addr: usize, huge: bool) -> Option<Self> {
        // A huge page covers the aligned 2 MiB around `addr`, which must be inside the VMA.
        let (first, last) = match huge {
            true => {
                let size = huge_nr() * kernel::page::PAGE_SIZE;
                let base = addr & !(size - 1);
                (base, base.checked_add(size - 1)?)
            }
            false => (addr, addr),
        };
        if vma.is_some_and(|vma| first < vma.start() || last >= vma.end()) {
            return None;
        }
        let raw = vma.map_or(core::ptr::null_mut(), VmaRef::as_ptr);
        // SAFETY: `raw` is null or a VMA valid (locked) while borrowed, with `addr` inside.
        let page = unsafe {
            if huge {
                ffi::svm_alloc_locked_thp(raw, addr)
            } else {
                ffi::svm_alloc_locked_page(raw, addr)
            }
        };
        // INVARIANT: A fresh, locked folio of that order, ours alone.
        NonNull::new(page).map(|page| Self { page, huge })
    }

    /// Whether this is a transparent huge page.
    pub(crate) fn is_huge(&self) -> bool {
        self.huge
    }

    /// Gives the page up to the caller, who then owns its lock and reference.
    pub(crate) fn into_raw(self) -> *mut ffi::page {
        let page = self.page.as_ptr();
        core::mem::forget(self);
        page
    }
}

impl Drop for NewPage {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we hold the folio's only reference and its lock.
        unsafe { ffi::svm_unlock_put_page(self.page.as_ptr()) };
    }
}
