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
