// SPDX-License-Identifier: GPL-2.0

//! A `migrate_vma` operation from setup to finalize, as a guard, and the pfn arrays it works
//! on.
//!
//! C header: [`include/linux/migrate.h`](srctree/include/linux/migrate.h)

use core::marker::PhantomData;
use core::mem::ManuallyDrop;

use kernel::error::to_result;
use kernel::prelude::*;

use crate::device_private::DevicePrivateRegion;
use crate::ffi;
use crate::owner::Owner;
use crate::sys::page::migrate_pfn_of;
use crate::sys::page::migrate_pfn_to_page;

/// The `src`/`dst` arrays of `migrate_vma` or `migrate_device` operations, reused from one
/// operation to the next. While an operation runs, its guard holds them and hands out a
/// [`Pfns`] view that cannot move, resize or rewrite them.
///
/// # Invariants
///
/// Both arrays have the same length. Every non-zero `dst` entry is the migrate pfn of a
/// destination page the running operation allocated (or initialised) and locked, referenced
/// by nothing else yet; between operations `dst` is all zero.
pub(crate) struct PfnArrays {
    src: KVVec<usize>,
    dst: KVVec<usize>,
}

impl PfnArrays {
    pub(crate) fn new(npages: usize) -> Result<Self> {
        // INVARIANT: Same length, `dst` zero.
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
        // INVARIANT: Same length, `dst` zero again (on error both are empty).
        self.src.resize(npages, 0, GFP_KERNEL)?;
        if let Err(e) = self.dst.resize(npages, 0, GFP_KERNEL) {
            self.src.clear();
            return Err(e.into());
        }
        Ok(())
    }

    /// The source entries, to be filled with plain frame numbers before
    /// [`MigrateDevice::collect`].
    pub(crate) fn plain_pfns(&mut self) -> &mut [usize] {
        &mut self.src
    }

    /// Unlocks and frees every destination page set so far, so that nothing moves.
    fn abandon_dst(&mut self) {
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

    /// Zeroes both arrays once an operation has been finalized (its destinations now belong
    /// to the page tables or are freed).
    fn clear(&mut self) {
        self.src.iter_mut().for_each(|s| *s = 0);
        // INVARIANT: `dst` is zero between operations.
        self.dst.iter_mut().for_each(|d| *d = 0);
    }
}

/// What a page collected by a running operation is, as far as this crate is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No page (a hole), or a system page.
    System,
    /// A device page of the given region.
    Own,
    /// A device page of another region with this crate's ops: its zone-device data is ours.
    Ours,
    /// A device page of some other driver's pagemap.
    Foreign,
}

/// The arrays of a running operation, as its guard lends them: the sources to read (and to
/// leave in place), the destinations to set up.
pub(crate) struct Pfns<'a> {
    arrays: &'a mut PfnArrays,
}

impl Pfns<'_> {
    /// Number of entries (pages) of the operation.
    pub(crate) fn len(&self) -> usize {
        self.arrays.src.len()
    }

    /// The source entries, as the core collected them.
    pub(crate) fn src(&self) -> &[usize] {
        &self.arrays.src
    }

    /// The destination entries set up so far.
    pub(crate) fn dst(&self) -> &[usize] {
        &self.arrays.dst
    }

    /// What the page of source `i` is, relative to `region`.
    pub(crate) fn kind(&self, i: usize, region: Option<&DevicePrivateRegion>) -> Kind {
        let page = migrate_pfn_to_page(self.arrays.src[i]);
        // SAFETY: A page in `src` of a running operation is locked and referenced by it until
        // finalize (the C side unlocks and puts every one there), and a guard lends `self`
        // only while the operation runs.
        if page.is_null() || !unsafe { ffi::svm_is_device_private_page(page) } {
            return Kind::System;
        }
        // SAFETY: As above; a device-private page has a live pagemap.
        let pgmap = unsafe { ffi::svm_page_pgmap(page) };
        if region.is_some_and(|r| r.as_raw() == pgmap) {
            return Kind::Own;
        }
        // SAFETY: `pgmap` is the live pagemap of a held page.
        match unsafe { crate::device_private::has_our_ops(pgmap) } {
            true => Kind::Ours,
            false => Kind::Foreign,
        }
    }

    /// Leaves source `i` where it is: clears its `MIGRATE_PFN_MIGRATE` bit.
    pub(crate) fn keep(&mut self, i: usize) {
        self.arrays.src[i] &= !(ffi::MIGRATE_PFN_MIGRATE as usize);
    }

    /// Sets destination `i` to the locked page `page` that this operation set up, mapped
    /// writable if `write`.
    ///
    /// # Safety
    ///
    /// `page` is a destination page this operation allocated or initialised and locked, with
    /// the one reference it holds, not used anywhere else.
    pub(crate) unsafe fn set_dst(
        &mut self,
        i: usize,
        page: *mut ffi::page,
        compound: bool,
        write: bool,
    ) {
        let mut mpfn = migrate_pfn_of(page);
        if compound {
            mpfn |= ffi::MIGRATE_PFN_COMPOUND as usize;
        }
        if write {
            mpfn |= ffi::MIGRATE_PFN_WRITE as usize;
        }
        // INVARIANT: Per the contract.
        self.arrays.dst[i] = mpfn;
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
    pub(crate) fn pfns(&mut self) -> Pfns<'_> {
        Pfns { arrays: self.pfns }
    }

    /// Moves the pages whose destinations were set up; `after_pages` sees the arrays between
    /// `migrate_vma_pages` and `migrate_vma_finalize` (the sources still locked). Returns
    /// what it returns.
    pub(crate) fn commit<R>(self, after_pages: impl FnOnce(&Pfns<'_>) -> R) -> R {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: By the type invariant the operation is set up and not finalized; `dst`
        // holds zero or locked, filled destinations (`PfnArrays` invariant).
        unsafe { ffi::migrate_vma_pages(&mut this.args) };
        let ret = after_pages(&this.pfns());
        this.finalize();
        ret
    }

    fn finalize(&mut self) {
        // SAFETY: By the type invariant the operation is set up and not finalized; this ends
        // it (the callers forget or drop `self` right after) and unlocks every page.
        unsafe { ffi::migrate_vma_finalize(&mut self.args) };
        self.pfns.clear();
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
    pub(crate) fn pfns(&mut self) -> Pfns<'_> {
        Pfns { arrays: self.pfns }
    }

    /// Moves the pages whose destinations were set up; `after_pages` sees the arrays between
    /// `migrate_device_pages` and `migrate_device_finalize`. Returns what it returns.
    pub(crate) fn commit<R>(self, after_pages: impl FnOnce(&Pfns<'_>) -> R) -> R {
        let mut this = ManuallyDrop::new(self);
        this.pages();
        let ret = after_pages(&this.pfns());
        this.finalize();
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
        self.pfns.clear();
    }
}

impl Drop for MigrateDevice<'_> {
    fn drop(&mut self) {
        self.pfns.abandon_dst();
        self.pages();
        self.finalize();
    }
}
