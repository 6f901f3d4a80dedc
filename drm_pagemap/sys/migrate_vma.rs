// SPDX-License-Identifier: GPL-2.0

//! A `migrate_vma` operation from setup to finalize, as a guard, and the pfn arrays it works
//! on.
//!
//! C header: [`include/linux/migrate.h`](srctree/include/linux/migrate.h)

use core::marker::PhantomData;

use kernel::error::to_result;
use kernel::prelude::*;

use crate::ffi;
use crate::owner::Owner;
use crate::sys::page::migrate_pfn_of;
use crate::sys::page::migrate_pfn_to_page;

/// The `src`/`dst` arrays of one `migrate_vma` or `migrate_device` operation.
///
/// # Invariants
///
/// Every non-zero `dst` entry is the migrate pfn of a destination page this operation
/// allocated (or initialised) and locked, referenced by nothing else yet.
pub(crate) struct PfnArrays {
    /// The source entries: the migration's callers read them, and may clear their
    /// `MIGRATE_PFN_MIGRATE` bit to keep a page where it is.
    pub(crate) src: KVVec<usize>,
    /// The destination entries (type invariant).
    pub(crate) dst: KVVec<usize>,
}

impl PfnArrays {
    pub(crate) fn new(npages: usize) -> Result<Self> {
        // INVARIANT: `dst` starts empty.
        Ok(Self {
            src: KVVec::from_elem(0, npages, GFP_KERNEL)?,
            dst: KVVec::from_elem(0, npages, GFP_KERNEL)?,
        })
    }

    /// Makes both arrays `npages` long and zero, for the next operation, without allocating
    /// if they were that long before.
    pub(crate) fn reset(&mut self, npages: usize) -> Result {
        self.src.clear();
        self.dst.clear();
        // INVARIANT: `dst` is all zeroes again.
        self.src.resize(npages, 0, GFP_KERNEL)?;
        self.dst.resize(npages, 0, GFP_KERNEL)?;
        Ok(())
    }

    /// Sets destination `i` to the locked page `page` that this operation set up.
    ///
    /// # Safety
    ///
    /// `page` is a destination page this operation allocated or initialised and locked, with
    /// the one reference it holds, not used anywhere else.
    pub(crate) unsafe fn set_dst(&mut self, i: usize, page: *mut ffi::page, compound: bool) {
        let mut mpfn = migrate_pfn_of(page);
        if compound {
            mpfn |= ffi::MIGRATE_PFN_COMPOUND as usize;
        }
        // INVARIANT: Per the contract.
        self.dst[i] = mpfn;
    }

    /// Unlocks and frees every destination page set so far, so that nothing moves.
    pub(crate) fn abandon_dst(&mut self) {
        for d in self.dst.iter_mut() {
            // By the type invariant a non-zero entry is a page we set up and hold alone.
            let page = migrate_pfn_to_page(*d);
            if !page.is_null() {
                // SAFETY: As above: we hold its only reference and its lock.
                unsafe { ffi::svm_unlock_put_page(page) };
            }
            *d = 0;
        }
    }
}

/// A `migrate_vma` operation between `migrate_vma_setup` and `migrate_vma_finalize`: the
/// collected source pages are locked and unmapped. [`MigrateVma::commit`] moves what the
/// destinations were set up for; dropping the guard instead abandons every destination, so
/// that nothing moves. Either way the operation ends with `migrate_vma_pages` and
/// `migrate_vma_finalize`, which unlock every page, as the core mm requires.
///
/// # Invariants
///
/// `args` was set up by `migrate_vma_setup` over `pfns`' arrays (valid while `'a` borrows
/// them) on a VMA locked for `'a`; the operation has not been finalized.
pub(crate) struct MigrateVma<'a> {
    args: ffi::migrate_vma,
    pfns: &'a mut PfnArrays,
    _vma: PhantomData<&'a ffi::vm_area_struct>,
}

impl<'a> MigrateVma<'a> {
    /// Collects and unmaps the pages of `[start, end)` of `vma` that `flags` select and that
    /// are not `owner`'s, into `pfns.src`.
    ///
    /// # Safety
    ///
    /// `vma` is valid under the mmap (or VMA) lock the caller holds for `'a`; `[start, end)`
    /// is inside it, page-aligned, and `pfns` is sized for it; `fault_page` is null or the
    /// locked faulting page, inside the range.
    #[expect(clippy::too_many_arguments)]
    pub(crate) unsafe fn setup(
        vma: *mut ffi::vm_area_struct,
        start: usize,
        end: usize,
        owner: Owner,
        flags: u32,
        fault_page: *mut ffi::page,
        pfns: &'a mut PfnArrays,
    ) -> Result<Self> {
        // SAFETY: `migrate_vma` is plain data; zero is its documented initial state.
        let mut args: ffi::migrate_vma = unsafe { core::mem::zeroed() };
        args.vma = vma;
        args.start = start;
        args.end = end;
        args.src = pfns.src.as_mut_ptr();
        args.dst = pfns.dst.as_mut_ptr();
        args.pgmap_owner = owner.as_ptr();
        args.flags = flags as usize;
        args.fault_page = fault_page;
        // SAFETY: Per this function's contract `args` describes a locked VMA's range and
        // arrays of its size.
        to_result(unsafe { ffi::migrate_vma_setup(&mut args) })?;
        // INVARIANT: Set up just above over `pfns`, which `'a` borrows.
        Ok(Self {
            args,
            pfns,
            _vma: PhantomData,
        })
    }

    /// The collected sources and the destinations being set up.
    pub(crate) fn pfns(&mut self) -> &mut PfnArrays {
        self.pfns
    }

    /// Moves the pages whose destinations were set up; `after_pages` sees the arrays between
    /// `migrate_vma_pages` and `migrate_vma_finalize` (the sources still locked). Returns
    /// what it returns.
    pub(crate) fn commit<R>(mut self, after_pages: impl FnOnce(&PfnArrays) -> R) -> R {
        // SAFETY: By the type invariant the operation is set up and not finalized; `dst`
        // holds zero or locked, filled destinations (`PfnArrays` invariant).
        unsafe { ffi::migrate_vma_pages(&mut self.args) };
        let ret = after_pages(self.pfns);
        self.finalize();
        core::mem::forget(self);
        ret
    }

    fn finalize(&mut self) {
        // SAFETY: By the type invariant the operation is set up and not finalized; this ends
        // it (the callers forget or drop `self` right after) and unlocks every page.
        unsafe { ffi::migrate_vma_finalize(&mut self.args) };
    }
}

impl Drop for MigrateVma<'_> {
    fn drop(&mut self) {
        self.pfns.abandon_dst();
        // SAFETY: By the type invariant the operation is set up and not finalized; with no
        // destination nothing moves.
        unsafe { ffi::migrate_vma_pages(&mut self.args) };
        self.finalize();
    }
}

/// A `migrate_device_pfns` operation (device pages found by frame number, no VMA) between
/// collection and `migrate_device_finalize`, as [`MigrateVma`] is for a VMA: [`commit`]
/// moves what the destinations were set up for, dropping the guard abandons them.
///
/// [`commit`]: MigrateDevice::commit
///
/// # Invariants
///
/// `migrate_device_pfns` collected `pfns.src`, and the operation has not been finalized.
pub(crate) struct MigrateDevice<'a> {
    pfns: &'a mut PfnArrays,
}

impl<'a> MigrateDevice<'a> {
    /// Locks and unmaps the device pages whose plain frame numbers `pfns.src` holds (those it
    /// can lock: the others are left, without `MIGRATE_PFN_MIGRATE`).
    ///
    /// # Safety
    ///
    /// Every entry of `pfns.src` is the frame number of a device-private page whose folios'
    /// zone-device data and ops stay valid while the operation runs.
    pub(crate) unsafe fn collect(pfns: &'a mut PfnArrays) -> Result<Self> {
        let npages = pfns.src.len();
        // SAFETY: Per this function's contract; `src` holds `npages` entries.
        to_result(unsafe { ffi::migrate_device_pfns(pfns.src.as_mut_ptr(), npages) })?;
        // INVARIANT: Collected just above.
        Ok(Self { pfns })
    }

    /// The collected sources and the destinations being set up.
    pub(crate) fn pfns(&mut self) -> &mut PfnArrays {
        self.pfns
    }

    /// Moves the pages whose destinations were set up; `after_pages` sees the arrays between
    /// `migrate_device_pages` and `migrate_device_finalize`. Returns what it returns.
    pub(crate) fn commit<R>(mut self, after_pages: impl FnOnce(&PfnArrays) -> R) -> R {
        self.pages();
        let ret = after_pages(self.pfns);
        self.finalize();
        core::mem::forget(self);
        ret
    }

    fn pages(&mut self) {
        let npages = self.pfns.src.len();
        // SAFETY: By the type invariant the sources were collected and not finalized; `dst`
        // holds zero or locked, filled destinations (`PfnArrays` invariant).
        unsafe {
            ffi::migrate_device_pages(
                self.pfns.src.as_mut_ptr(),
                self.pfns.dst.as_mut_ptr(),
                npages,
            )
        };
    }

    fn finalize(&mut self) {
        let npages = self.pfns.src.len();
        // SAFETY: As in `pages`; this ends the operation (the callers forget or drop `self`
        // right after) and unlocks every page.
        unsafe {
            ffi::migrate_device_finalize(
                self.pfns.src.as_mut_ptr(),
                self.pfns.dst.as_mut_ptr(),
                npages,
            )
        };
    }
}

impl Drop for MigrateDevice<'_> {
    fn drop(&mut self) {
        self.pfns.abandon_dst();
        self.pages();
        self.finalize();
    }
}
