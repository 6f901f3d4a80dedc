// SPDX-License-Identifier: GPL-2.0

//! Migration of a process's pages between system memory and device memory.
//!
//! Every path keeps the data: a page's contents move only once the provider's copy succeeded,
//! and on any error the pages stay (with their data) where they were. Locking follows
//! `Documentation/gpu/rfc/gpusvm.rst`: the mmap lock is taken by the callers around the core-mm
//! calls only, and the CPU-fault path takes no lock of ours.
//!
//! A device page is treated as ours only if its `dev_pagemap` has this module's ops: then its
//! zone-device data is a [`Zdd`] and its allocation's own ops copy it. A page of another
//! region that shares the owner (a peer) never becomes a "system page".
//!
//! Work per call is bounded by the device, never by the size a caller passes: a migration to
//! device memory covers at most the pagemap's region, the way back runs in chunks of
//! [`CHUNK_PAGES`].
//!
//! Lock order (outermost first):
//!
//! - migrations and CPU faults: the mmap (or VMA) lock, then page locks (taken by the core);
//!   no lock of ours.
//! - eviction: the owner's mmap read lock, then `Devmem::pfns_lock`, then page locks
//!   (trylock only, in `migrate_device_pfns`).
//! - an allocation's release work: `Devmem::pfns_lock` alone, taken and dropped before the
//!   provider's `release`, whose own locks therefore nest under nothing of ours.
//!
//! C header: [`include/linux/migrate.h`](srctree/include/linux/migrate.h)

use core::ptr::null_mut;
use core::ptr::NonNull;

use kernel::error::to_result;
use kernel::mm::virt::VmaRef;
use kernel::mm::MmWithUser;
use kernel::mm::MmapReadGuard;
use kernel::prelude::*;
use kernel::sync::Arc;

use crate::device_private::DevicePrivateRegion;
use crate::devmem::Devmem;
use crate::devmem::Direction;
use crate::devmem::PageCopy;
use crate::devmem::SystemPage;
use crate::devmem::Zdd;
use crate::ffi;
use crate::owner::Owner;
use crate::pagemap::Folios;
use crate::pagemap::MigrateDetails;
use crate::pagemap::Pagemap;
use crate::range::PageRange;
use kernel::page::PAGE_SIZE;

/// Pages one `migrate_vma` operation back to system memory covers at most (16 MiB, a
/// multiple of a huge page): bounds the memory a call allocates, whatever range it is given.
pub const CHUNK_PAGES: usize = 4096;

const MIGRATE: usize = ffi::MIGRATE_PFN_MIGRATE as usize;
const WRITE: usize = ffi::MIGRATE_PFN_WRITE as usize;
const COMPOUND: usize = ffi::MIGRATE_PFN_COMPOUND as usize;

/// Pages in a PMD-sized (huge) folio.
fn huge_nr() -> usize {
    // SAFETY: Reads a constant.
    unsafe { ffi::svm_hpage_pmd_nr() as usize }
}

/// Number of entries of a `src` array the entry `mpfn` stands for: a huge folio (or a huge
/// hole) is one entry followed by zeroes.
fn span(mpfn: usize) -> usize {
    if mpfn & COMPOUND != 0 {
        huge_nr()
    } else {
        1
    }
}

fn fatal_signal_pending() -> bool {
    // SAFETY: Reads the current task's signal state.
    unsafe { ffi::svm_fatal_signal_pending() }
}

/// Pages that moved, once `migrate_*_pages` ran: a huge source that moved whole into a huge
/// destination counts all its pages.
fn moved_pages(pfns: &PfnArrays) -> usize {
    let mut moved = 0;
    let mut i = 0;
    while i < pfns.src.len() {
        let (s, d) = (pfns.src[i], pfns.dst[i]);
        if s & MIGRATE != 0 && d != 0 {
            let n = if s & COMPOUND != 0 && d & COMPOUND != 0 {
                huge_nr()
            } else {
                1
            };
            moved += n;
            i += n;
        } else {
            i += 1;
        }
    }
    moved
}

/// The `src`/`dst` arrays of one `migrate_vma` or `migrate_device` operation.
///
/// # Invariants
///
/// Every non-zero `dst` entry is the migrate pfn of a destination page this operation
/// allocated (or initialised) and locked, referenced by nothing else yet.
struct PfnArrays {
    src: KVVec<usize>,
    dst: KVVec<usize>,
}

impl PfnArrays {
    fn new(npages: usize) -> Result<Self> {
        // INVARIANT: `dst` starts empty.
        Ok(Self {
            src: KVVec::from_elem(0, npages, GFP_KERNEL)?,
            dst: KVVec::from_elem(0, npages, GFP_KERNEL)?,
        })
    }

    /// Makes both arrays `npages` long and zero, for the next operation, without allocating
    /// if they were that long before.
    fn reset(&mut self, npages: usize) -> Result {
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
    unsafe fn set_dst(&mut self, i: usize, page: *mut ffi::page, compound: bool) {
        // SAFETY: Pure computation.
        let mut mpfn = unsafe { ffi::svm_migrate_pfn(ffi::svm_page_to_pfn(page)) };
        if compound {
            mpfn |= COMPOUND;
        }
        // INVARIANT: Per the contract.
        self.dst[i] = mpfn;
    }

    /// Unlocks and frees every destination page set so far, so that nothing moves.
    fn abandon_dst(&mut self) {
        for d in self.dst.iter_mut() {
            // By the type invariant a non-zero entry is a page we set up and hold alone.
            let page = page_of(*d);
            if !page.is_null() {
                // SAFETY: As above: we hold its only reference and its lock.
                unsafe { ffi::svm_unlock_put_page(page) };
            }
            *d = 0;
        }
    }
}

/// Runs one `migrate_vma` operation over `[start, end)` of `vma`: collects the pages, lets
/// `fill` set up and fill the destinations, and moves what it set up. If `fill` fails, every
/// destination is abandoned so that nothing moves. Returns `fill`'s result and the number of
/// pages that moved.
///
/// # Safety
///
/// `vma` is valid under the mmap (or VMA) lock the caller holds, `[start, end)` is inside it,
/// page-aligned and `pfns` sized for it; `fault_page` is null or the locked faulting page,
/// inside the range.
#[expect(clippy::too_many_arguments)]
unsafe fn run_migrate_vma<T>(
    vma: *mut ffi::vm_area_struct,
    start: usize,
    end: usize,
    owner: Owner,
    flags: u32,
    fault_page: *mut ffi::page,
    pfns: &mut PfnArrays,
    fill: impl FnOnce(&mut PfnArrays) -> Result<T>,
) -> Result<(Result<T>, usize)> {
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
    // SAFETY: Per the function's contract `args` describes a locked VMA's range.
    to_result(unsafe { ffi::migrate_vma_setup(&mut args) })?;

    // From here on, every path goes through `migrate_vma_pages` and `migrate_vma_finalize`.
    let filled = fill(pfns);
    if filled.is_err() {
        pfns.abandon_dst();
    }
    // SAFETY: `args` was set up above; `dst` holds zero or locked, filled destinations.
    unsafe { ffi::migrate_vma_pages(&mut args) };
    retire_moved(pfns);
    let moved = moved_pages(pfns);
    // SAFETY: As above; this ends the migration and unlocks every page.
    unsafe { ffi::migrate_vma_finalize(&mut args) };
    Ok((filled, moved))
}

/// Marks the device folios of ours whose data `migrate_*_pages` has just moved as retired,
/// before finalize unlocks them: an eviction must not take them up again.
fn retire_moved(pfns: &PfnArrays) {
    let mut i = 0;
    while i < pfns.src.len() {
        let s = pfns.src[i];
        let page = page_of(s);
        if s & MIGRATE != 0 && pfns.dst[i] != 0 && kind(page, None) == Kind::Ours {
            // SAFETY: A collected (locked) device page of ours whose data just moved.
            unsafe { Zdd::retire(page) };
        }
        i += span(s);
    }
}

fn page_of(mpfn: usize) -> *mut ffi::page {
    // SAFETY: Pure computation on a migrate pfn; null if it names no page.
    unsafe { ffi::svm_migrate_pfn_to_page(mpfn) }
}

/// What a page collected by a migration is, as far as this module is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No page (a hole), or a system page.
    System,
    /// A device page of the given region.
    Own,
    /// A device page of another region with this module's ops: its zone-device data is ours.
    Ours,
    /// A device page of some other driver's pagemap.
    Foreign,
}

/// What `page` (collected and referenced by a migration, or null) is, relative to `region`.
fn kind(page: *mut ffi::page, region: Option<&DevicePrivateRegion>) -> Kind {
    // SAFETY: `page` is null or valid while collected.
    if page.is_null() || !unsafe { ffi::svm_is_device_private_page(page) } {
        return Kind::System;
    }
    // SAFETY: As above: a device-private page has a pagemap.
    let pgmap = unsafe { ffi::svm_page_pgmap(page) };
    if region.is_some_and(|r| r.as_raw() == pgmap) {
        Kind::Own
    } else if crate::device_private::has_our_ops(pgmap) {
        Kind::Ours
    } else {
        Kind::Foreign
    }
}

/// Moves `range` of the address space locked by `mmap` into `pagemap`'s memory, all or
/// nothing, and returns the number of pages that moved.
///
/// Pages already in `pagemap`'s memory stay; for the others `alloc(n)` is asked for an
/// allocation of at least `n` pages of `pagemap` (a fully resident range allocates nothing).
/// The allocation `alloc` returns is accepted: its [`DevmemOps::release`] runs exactly once,
/// when no page refers to it any more, also when the migration then fails.
///
/// If any page cannot be collected (pinned, locked, in another device's memory, racing),
/// nothing moves and the result is `EBUSY`. Refuses unaligned or empty ranges (`EINVAL`),
/// ranges larger than the pagemap's memory (`ENOMEM`), addresses with no mapping (`ENOENT`),
/// ranges crossing the end of their mapping (`EINVAL`), shared mappings, and pages of private
/// file mappings that are still the file's own pages rather than the process's private copies
/// (`EOPNOTSUPP`): only anonymous memory can live in device-private memory. An allocation
/// backs one migration only (`EBUSY` on reuse).
///
/// [`DevmemOps::release`]: crate::devmem::DevmemOps::release
pub fn migrate_to_devmem(
    pagemap: &Pagemap,
    mmap: &MmapReadGuard<'_>,
    range: PageRange,
    details: &MigrateDetails,
    alloc: impl FnOnce(usize) -> Result<Arc<Devmem>>,
) -> Result<usize> {
    let (start, end) = (range.start(), range.end());
    let region = pagemap.region();
    let npages = (end - start) / PAGE_SIZE;
    if npages > region.page_count() {
        return Err(ENOMEM);
    }
    let vma = mmap.vma_lookup(start).ok_or(ENOENT)?;
    if end > vma.end() {
        return Err(EINVAL);
    }
    if vma.flags() & kernel::mm::virt::flags::SHARED != 0 {
        return Err(EOPNOTSUPP);
    }
    // A private file mapping holds the file's pages until written, then anonymous copies.
    // SAFETY: The VMA is valid while the mmap lock is held.
    let file_backed = !unsafe { ffi::svm_vma_is_anonymous(vma.as_ptr()) };
    // Everything is allocated before the pages are collected and locked.
    let mut pfns = PfnArrays::new(npages)?;
    let mut device_pfns = KVVec::from_elem(0usize, npages, GFP_KERNEL)?;
    let mut sorted = KVVec::from_elem(0usize, npages, GFP_KERNEL)?;
    let mut copies = KVVec::with_capacity(npages, GFP_KERNEL)?;
    let zdd = Zdd::reserve()?;
    // The allocation the migration claims, marked populated once it has finished.
    let mut claimed = None;

    let mut flags = ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM
        | ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_PRIVATE;
    if details.folios == Folios::Huge {
        flags |= ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND;
    }
    let placement = Placement {
        pagemap,
        device_pfns: &mut device_pfns,
        sorted: &mut sorted,
        copies: &mut copies,
        file_backed,
        details,
        claimed: &mut claimed,
    };
    // SAFETY: The VMA is valid under the mmap lock and the range lies inside it.
    let result = unsafe {
        run_migrate_vma(
            vma.as_ptr(),
            start,
            end,
            region.owner(),
            flags,
            null_mut(),
            &mut pfns,
            |pfns| placement.place(pfns, start, end, zdd, alloc),
        )
    };
    if let Some(devmem) = claimed {
        devmem.set_populated();
    }
    let (placed, moved) = result?;
    let (devmem, wanted) = match placed? {
        Some(placed) => placed,
        None => return Ok(0),
    };
    devmem.stats().count(Direction::ToDevice, moved);
    if moved < wanted {
        // Some page changed under us between setup and now; what moved has its data.
        return Err(EBUSY);
    }
    Ok(moved)
}

/// What placing a range in device memory needs besides the collected pages.
struct Placement<'a, 'p> {
    pagemap: &'a Pagemap,
    device_pfns: &'a mut KVVec<usize>,
    sorted: &'a mut KVVec<usize>,
    copies: &'a mut KVVec<PageCopy<'p>>,
    file_backed: bool,
    details: &'a MigrateDetails,
    claimed: &'a mut Option<Arc<Devmem>>,
}

impl Placement<'_, '_> {
    /// Sets up `pfns.dst` with device pages of an allocation from `alloc` and copies the data
    /// there. Returns the allocation and how many pages are to move, or `None` if every page
    /// already is in the pagemap's memory; on error no destination page is set up any more
    /// (the caller abandons them).
    ///
    /// A huge source (a transparent huge page, or a huge hole) moves into one huge device
    /// folio when the provider's pages for it are contiguous and aligned; otherwise into base
    /// pages, and the core splits the source.
    fn place(
        self,
        pfns: &mut PfnArrays,
        start: usize,
        end: usize,
        zdd: kernel::sync::UniqueArc<core::mem::MaybeUninit<Zdd>>,
        alloc: impl FnOnce(usize) -> Result<Arc<Devmem>>,
    ) -> Result<Option<(Arc<Devmem>, usize)>> {
        let region = self.pagemap.region();
        let npages = pfns.src.len();
        // Pages already in this pagemap stay; everything else moves, or nothing does.
        let mut moving = 0;
        let mut i = 0;
        while i < npages {
            let s = pfns.src[i];
            if s & MIGRATE == 0 {
                // Some page could not be collected; in a file mapping, a hole.
                return Err(if self.file_backed { EOPNOTSUPP } else { EBUSY });
            }
            let page = page_of(s);
            match kind(page, Some(region)) {
                Kind::Own => {}
                // Another device's memory (sharing our owner): not movable from here yet.
                Kind::Ours | Kind::Foreign => return Err(EBUSY),
                Kind::System => {
                    // SAFETY: Collected pages are valid and referenced until finalize.
                    let anon = !page.is_null() && unsafe { ffi::svm_page_is_anon(page) };
                    if self.file_backed && !anon {
                        // The file's own pages: the core would refuse to move them after
                        // the copy.
                        return Err(EOPNOTSUPP);
                    }
                    moving += span(s);
                }
            }
            i += span(s);
        }
        if moving == 0 {
            return Ok(None);
        }

        let devmem = alloc(moving)?;
        if !devmem.claim() {
            return Err(EBUSY);
        }
        *self.claimed = Some(devmem.clone());
        // From here the allocation is accepted: the zone-device data's drop runs `release`,
        // also on the errors below.
        let zdd = Zdd::init(zdd, devmem.clone());
        if !core::ptr::eq(devmem.pagemap(), self.pagemap) || devmem.npages() < moving {
            return Err(EINVAL);
        }
        let dpfns = &mut self.device_pfns[..moving];
        devmem.ops().populate_devmem_pfn(dpfns)?;
        if let Some(bad) = dpfns.iter().find(|pfn| !region.contains_pfn(**pfn)) {
            pr_err!("device pfn {bad:#x} is outside the pagemap's region\n");
            return Err(EINVAL);
        }
        // No pfn twice (a huge run's tail pages included): checked on a sorted copy.
        let sorted = &mut self.sorted[..moving];
        sorted.copy_from_slice(dpfns);
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            pr_err!("device pfn {:#x} is handed out twice\n", pair[0]);
            return Err(EINVAL);
        }
        devmem.set_va_range(start, end);

        let mut next = 0;
        let mut i = 0;
        while i < npages {
            let s = pfns.src[i];
            let n = span(s);
            let spage = page_of(s);
            if kind(spage, Some(region)) == Kind::Own {
                i += n;
                continue;
            }
            let run = &dpfns[next..next + n];
            next += n;
            let first = run[0];
            let huge = n > 1 && first % n == 0 && (1..n).all(|k| run[k] == first + k);
            let (folios, order) = if huge {
                // SAFETY: Reads a constant.
                (1, unsafe { ffi::svm_hpage_pmd_order() })
            } else {
                (n, 0)
            };
            for (f, &pfn) in run.iter().enumerate().take(folios) {
                // SAFETY: `pfn` is a page of the region (checked above).
                let dpage = unsafe { ffi::svm_pfn_to_page(pfn) };
                // A page in use (handed out twice, or still live): refuse rather than
                // re-initialise it. `DevmemOps`' contract covers what this cannot see.
                // SAFETY: As above.
                if unsafe { ffi::svm_page_ref_count(dpage) } != 0 {
                    pr_err!("device pfn {pfn:#x} is in use\n");
                    return Err(EINVAL);
                }
                // SAFETY: A free device page of our region, owned by this allocation
                // (`DevmemOps`' contract): initialise the folio (reference 1, locked), point it
                // at this migration's zone-device data and hand it to the migration.
                unsafe {
                    ffi::zone_device_page_init(dpage, region.as_raw(), order);
                    Zdd::attach(&zdd, dpage);
                    pfns.set_dst(i + f, dpage, huge);
                }
                pfns.dst[i + f] |= s & WRITE;
                let pages = if huge { 0..n } else { f..f + 1 };
                for k in pages {
                    let system = NonNull::new(spage).map(|p| {
                        // SAFETY: `p` heads the collected folio the `n` entries stand for.
                        let page = unsafe { ffi::svm_folio_nth_page(p.as_ptr(), k) };
                        // SAFETY: A page of a collected, locked system folio, valid until
                        // finalize, which comes after the copy callback.
                        unsafe { SystemPage::from_raw(NonNull::new_unchecked(page)) }
                    });
                    // Cannot fail: reserved for `npages` entries.
                    self.copies.push(
                        PageCopy {
                            device_pfn: pfn + k - f,
                            system,
                        },
                        GFP_KERNEL,
                    )?;
                }
            }
            i += n;
        }
        devmem.ops().copy_to_devmem(self.copies)?;
        // The timeslice starts once the data is there, before the pages become visible to
        // CPU faults (`migrate_vma_pages` comes next).
        devmem.start_timeslice(self.details.timeslice_ms);
        Ok(Some((devmem, moving)))
    }
}

/// The arrays one migration back to system memory works with, allocated once for all its
/// chunks.
struct BackBuffers<'p> {
    pfns: PfnArrays,
    batch: KVVec<PageCopy<'p>>,
}

impl BackBuffers<'_> {
    fn new(npages: usize) -> Result<Self> {
        Ok(Self {
            pfns: PfnArrays::new(npages)?,
            batch: KVVec::with_capacity(npages, GFP_KERNEL)?,
        })
    }
}

/// Moves the device pages of `[start, end)` of `vma` back to system memory: all of them with
/// the owner `owner`, or with `only`, just those of that allocation. At most as many pages as
/// `bufs` was made for.
///
/// # Safety
///
/// `vma` is valid under the mmap (or VMA) lock the caller holds, `[start, end)` inside it and
/// page-aligned; `fault_page` is null or the locked device page a CPU fault is on, inside the
/// range.
#[expect(clippy::too_many_arguments)]
unsafe fn vma_to_ram(
    bufs: &mut BackBuffers<'_>,
    vma: *mut ffi::vm_area_struct,
    start: usize,
    end: usize,
    owner: Owner,
    only: Option<&Devmem>,
    fault_page: *mut ffi::page,
    dir: Direction,
    folios: Folios,
) -> Result<usize> {
    let npages = (end - start) / PAGE_SIZE;
    bufs.pfns.reset(npages)?;
    bufs.batch.clear();
    let mut flags = ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_PRIVATE;
    if folios == Folios::Huge {
        flags |= ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND;
    }
    let batch = &mut bufs.batch;
    // SAFETY: Per this function's contract.
    let (copied, moved) = unsafe {
        run_migrate_vma(
            vma,
            start,
            end,
            owner,
            flags,
            fault_page,
            &mut bufs.pfns,
            |pfns| copy_back(pfns, batch, vma, start, only, dir, folios),
        )
    }?;
    // The batch named pages the migration has now unlocked.
    bufs.batch.clear();
    copied?;
    Ok(moved)
}

/// Moves the device pages of `[start, end)` of `vma` back to system memory in chunks of at
/// most [`CHUNK_PAGES`], aligned so that a huge folio is never cut; as [`vma_to_ram`].
///
/// # Safety
///
/// As [`vma_to_ram`], with no faulting page.
unsafe fn vma_to_ram_chunked(
    vma: *mut ffi::vm_area_struct,
    start: usize,
    end: usize,
    owner: Owner,
    dir: Direction,
    folios: Folios,
) -> Result<usize> {
    let chunk = CHUNK_PAGES * PAGE_SIZE;
    let mut bufs = BackBuffers::new(((end - start) / PAGE_SIZE).min(CHUNK_PAGES))?;
    let mut moved = 0;
    let mut addr = start;
    while addr < end {
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        let stop = end.min((addr & !(chunk - 1)).saturating_add(chunk));
        // SAFETY: Per the contract; `[addr, stop)` lies inside `[start, end)` and is at most
        // a chunk.
        moved += unsafe {
            vma_to_ram(
                &mut bufs,
                vma,
                addr,
                stop,
                owner,
                None,
                null_mut(),
                dir,
                folios,
            )
        }?;
        addr = stop;
    }
    Ok(moved)
}

/// Allocates system pages for the collected device pages of `pfns.src` that are ours (and
/// `only`'s, if given) and copies the data into them, one batch per device allocation through
/// that allocation's own ops. Other pages are left where they are. `vma` may be null
/// (eviction).
///
/// A huge device folio goes to a transparent huge page for [`Folios::Huge`] if one can be had; else
/// to base pages, and the core splits the device folio (which eviction, with no VMA, cannot:
/// there it is `ENOMEM`).
fn copy_back<'p>(
    pfns: &mut PfnArrays,
    batch: &mut KVVec<PageCopy<'p>>,
    vma: *mut ffi::vm_area_struct,
    start: usize,
    only: Option<&Devmem>,
    dir: Direction,
    folios: Folios,
) -> Result {
    let npages = pfns.src.len();
    let mut batch_owner: Option<Arc<Devmem>> = None;
    let mut i = 0;
    while i < npages {
        let s = pfns.src[i];
        let spage = page_of(s);
        if s & MIGRATE == 0 || !matches!(kind(spage, None), Kind::Ours) {
            // Not collected, a system page, or another driver's: stays.
            i += span(s);
            continue;
        }
        // SAFETY: A collected device page of a region with our ops, kept alive by the
        // migration until finalize.
        let devmem = unsafe { Zdd::of_page(spage) }.devmem().clone();
        if only.is_some_and(|only| !core::ptr::eq(only, &*devmem)) {
            i += span(s);
            continue;
        }
        if let Some(owner) = &batch_owner {
            if !Arc::ptr_eq(owner, &devmem) {
                owner.ops().copy_to_ram(batch, dir)?;
                owner.stats().count(dir, batch.len());
                batch.clear();
            }
        }
        batch_owner = Some(devmem);
        let n = span(s);
        let addr = if vma.is_null() {
            0
        } else {
            start + i * PAGE_SIZE
        };
        // SAFETY: `spage` is valid; the `n` pages of its folio follow it.
        let device_pfn = unsafe { ffi::svm_page_to_pfn(spage) };
        let thp = if n > 1 && folios == Folios::Huge {
            // SAFETY: `vma` is null or valid under the caller's lock, with `addr` inside it.
            unsafe { ffi::svm_alloc_locked_thp(vma, addr) }
        } else {
            null_mut()
        };
        if n > 1 && thp.is_null() && vma.is_null() {
            return Err(ENOMEM);
        }
        for k in 0..n {
            let dpage = if thp.is_null() {
                // SAFETY: As above.
                let page = unsafe { ffi::svm_alloc_locked_page(vma, addr + k * PAGE_SIZE) };
                if page.is_null() {
                    return Err(ENOMEM);
                }
                // SAFETY: A page just allocated and locked for this migration.
                unsafe { pfns.set_dst(i + k, page, false) };
                page
            } else {
                // SAFETY: `thp` heads a folio of `n` pages.
                unsafe { ffi::svm_folio_nth_page(thp, k) }
            };
            batch.push(
                PageCopy {
                    device_pfn: device_pfn + k,
                    // SAFETY: A destination page allocated and locked above, not mapped
                    // anywhere until the migration installs it after the copy.
                    system: Some(unsafe { SystemPage::from_raw(NonNull::new_unchecked(dpage)) }),
                },
                GFP_KERNEL,
            )?;
        }
        if !thp.is_null() {
            // SAFETY: A huge page just allocated and locked for this migration.
            unsafe { pfns.set_dst(i, thp, true) };
        }
        i += n;
    }
    if let Some(owner) = batch_owner {
        if !batch.is_empty() {
            owner.ops().copy_to_ram(batch, dir)?;
            owner.stats().count(dir, batch.len());
        }
    }
    Ok(())
}

/// Moves whatever of `range` of the address space locked by `mmap` lives in device
/// memory with the private owner `owner` (and this module's pagemap ops) back to system
/// memory, in chunks of at most [`CHUNK_PAGES`]. Returns the pages moved; `EINTR` if a fatal
/// signal arrives meanwhile (what moved until then stays moved).
///
/// Huge device folios come back as transparent huge pages where the VMA allows, unless
/// `folios` is [`Folios::Base`].
pub fn migrate_to_ram(
    mmap: &MmapReadGuard<'_>,
    range: PageRange,
    owner: Owner,
    folios: Folios,
) -> Result<usize> {
    let (start, end) = (range.start(), range.end());
    let mut moved = 0;
    let mut addr = start;
    while addr < end {
        let vma = mmap.vma_lookup(addr).ok_or(ENOENT)?;
        let stop = end.min(vma.end());
        // SAFETY: The VMA is valid under the mmap lock and `[addr, stop)` lies inside it.
        moved += unsafe {
            vma_to_ram_chunked(vma.as_ptr(), addr, stop, owner, Direction::ToRam, folios)
        }?;
        addr = stop;
    }
    Ok(moved)
}

/// How a CPU fault on a device page was served.
pub(crate) enum FaultServed {
    /// The page is in system memory now (or moved away meanwhile): the access is retried.
    Done,
    /// The fault's lock was dropped (as `VM_FAULT_RETRY` requires) to wait out a timeslice.
    Retry,
}

/// Serves a CPU fault on a device page: moves the faulting allocation's pages (and no other
/// allocation's) around the faulting address back to system memory, at most one chunk of
/// [`CHUNK_PAGES`] aligned pages.
///
/// If the allocation is still within its timeslice, the fault first waits, killably, until
/// it ends (at most [`crate::devmem::MAX_TIMESLICE_MS`]), with the page unlocked so that no
/// other fault spins on it: when the fault may be retried, with its lock dropped too, and the
/// fault is then retried; otherwise (a remote access, such as another device's range fault),
/// it migrates after the wait. Takes no lock of ours.
///
/// # Safety
///
/// `vmf` is a CPU fault on a locked, referenced device page of a region with our ops, with
/// the mmap or VMA lock held.
pub(crate) unsafe fn cpu_fault(vmf: *mut ffi::vm_fault) -> Result<FaultServed> {
    // SAFETY: Per the contract.
    let (page, vma, address) = unsafe {
        (
            (*vmf).page,
            (*vmf).__bindgen_anon_1.vma,
            (*vmf).__bindgen_anon_1.address,
        )
    };
    // SAFETY: The faulting page is ours and referenced for the duration of the fault.
    let devmem = unsafe { Zdd::of_page(page) }.devmem().clone();
    let left = devmem.timeslice_left_ms();
    // SAFETY: Per the contract.
    let pmd_fault = unsafe { (*vmf).pte }.is_null();
    // A PMD fault does not wait: the folio may be split while unlocked, and the core's PMD
    // fault path keeps using the folio it locked (migrated now instead, as C does not wait).
    if left > 0 && !pmd_fault && !fatal_signal_pending() {
        devmem
            .stats()
            .timeslice_waits
            .fetch_add(1, kernel::sync::atomic::Relaxed);
        // SAFETY: Per the contract `vmf` is a fault in progress.
        let retry = unsafe { ffi::svm_fault_may_retry(vmf) };
        if retry {
            // SAFETY: The fault's lock is held (contract); after this `vma` is not used.
            unsafe { ffi::svm_release_fault_lock(vmf) };
        }
        // SAFETY: The page is locked by the fault handler, which unlocks it after we return:
        // it is relocked below; the handler's reference keeps it alive meanwhile.
        unsafe {
            ffi::svm_unlock_page(page);
            ffi::svm_sleep_killable(left);
            ffi::svm_lock_page(page);
        }
        if retry {
            return Ok(FaultServed::Retry);
        }
    }
    // SAFETY: The VMA is valid under the caller's lock for the duration of the fault.
    let vma_ref = unsafe { VmaRef::from_raw(vma) };
    let (vm_start, vm_end) = (vma_ref.start(), vma_ref.end());
    let address = address & !(PAGE_SIZE - 1);
    // The allocation's range, clipped to the VMA; just the page if it moved since.
    let (mut start, mut end) = devmem.va_range();
    if address < start || address >= end {
        (start, end) = (address, address + PAGE_SIZE);
    }
    // A PMD-mapped folio moves whole: cover its aligned range.
    // SAFETY: Per the contract.
    let huge = unsafe { (*vmf).pte }.is_null();
    if huge {
        let size = huge_nr() * PAGE_SIZE;
        let base = address & !(size - 1);
        (start, end) = (start.min(base), end.max(base + size));
    }
    // One chunk around the faulting address: a fault's work and latency are bounded, and an
    // error elsewhere in the allocation never fails this access.
    let chunk = CHUNK_PAGES * PAGE_SIZE;
    let window = address & !(chunk - 1);
    let (mut start, mut end) = (
        start.max(vm_start).max(window),
        end.min(vm_end).min(window.saturating_add(chunk)),
    );
    // SAFETY: The faulting page is valid (contract).
    if !huge && unsafe { ffi::svm_page_in_large_folio(page) } {
        // A PTE-mapped page of a huge device folio: the core splits the folio while
        // collecting, and 7.3's migrate_vma_collect_pmd() keeps treating the old head as the
        // (locked) faulting folio after the split, migrating it unlocked. With just the
        // faulting page in the range the head is never collected: this fault splits the folio
        // and moves nothing, the retried fault moves the page (see patches/).
        (start, end) = (address, address + PAGE_SIZE);
    }
    let owner = devmem.pagemap().region().owner();
    let mut bufs = BackBuffers::new((end - start) / PAGE_SIZE)?;
    // A page mapped by a PTE may belong to a huge folio that is not fully split yet: move
    // base pages then, as the folio order cannot be relied on (the C test_hmm does the same).
    // SAFETY: The caller holds the lock `vma` needs; `page` is the locked faulting page, at
    // `address`, inside `[start, end)`, which is at most a chunk.
    unsafe {
        vma_to_ram(
            &mut bufs,
            vma,
            start,
            end,
            owner,
            Some(&*devmem),
            page,
            Direction::CpuFault,
            if huge { Folios::Huge } else { Folios::Base },
        )
    }?;
    devmem
        .stats()
        .cpu_faults
        .fetch_add(1, kernel::sync::atomic::Relaxed);
    Ok(FaultServed::Done)
}

/// Moves every page of `devmem` still in device memory back to system memory, without a VMA
/// (the provider needs its memory back, or is going away); takes the owner's mmap lock for
/// reading while the owner's address space lives, so it must not be called from reclaim or
/// with that lock held. Needs no address space: the pages are found by frame number and unmapped wherever they are mapped
/// (after a fork, in a child whose parent has exited). Retries while pages race with faults
/// or migrations, a bounded number of times: `EBUSY` if some page stays pinned, `EINTR` on a
/// fatal signal, `ENOMEM` if no memory can be had for the data. `Ok(true)` once every page
/// is back and the provider's `release` has run (waited for, killably, `EBUSY` after 10 s);
/// `Ok(false)` if no migration has claimed the allocation yet (it holds no data). The caller
/// holds no lock (the wait needs the crate's destroy queue and the owner's mmap lock).
pub fn evict_to_ram(devmem: &Arc<Devmem>) -> Result<bool> {
    const TRIES: usize = 8;
    let npages = devmem.npages();
    if !devmem.is_claimed() {
        // No migration has placed a page in it (yet): nothing to evict.
        return Ok(false);
    }
    // The migration placing the allocation's pages may still run (an allocation is visible
    // to its provider before): wait for it, killably and holding nothing. Its work is bounded
    // by the allocation's size; so is this wait.
    wait_until(POPULATE_WAIT_MS, || devmem.is_populated())?;
    let mut passes = 0;
    for pass in 0..TRIES {
        if devmem.is_detached() {
            break;
        }
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        if pass > 0 {
            // Pages that stayed are locked by a fault or a migration (a fault may be waiting
            // out the timeslice): give it time rather than retrying at once.
            let wait = devmem.timeslice_left_ms().clamp(1, 10);
            // SAFETY: Sleeping is allowed here (process context, no lock of ours held).
            unsafe { ffi::svm_sleep_killable(wait) };
        }
        let mut pfns = PfnArrays::new(npages)?;
        let mut batch = KVVec::with_capacity(npages, GFP_KERNEL)?;
        // Keep the address space, if it still has users, from being torn down meanwhile (its
        // last user reference is never dropped here but from a work item), and its mappings
        // from being unmapped: `migrate_device_finalize` walks the pages' `anon_vma`s, which
        // the core (7.3) does not hold across the migration, so a racing munmap could free
        // one under it (seen with KASAN). Pages a fork left in a child's address space after
        // the owner exited have no such protection (noted in the README).
        let user = devmem
            .mm()
            .and_then(|mm| mm.mmget_not_zero())
            .map(MmWithUser::into_mmput_async);
        let _mmap = user.as_deref().map(|user| user.mmap_read_lock());
        // The provider's pfns are the allocation's only while `release` has not run, and a
        // page is ours to lock only once the migration placing it is over (a page being
        // initialised for it is unlocked for a moment with stale zone-device data).
        let _pfns = devmem.lock_pfns();
        if devmem.is_detached() {
            break;
        }
        passes += 1;
        devmem.ops().populate_devmem_pfn(&mut pfns.src)?;
        // `migrate_device_pfns` wants plain pfns in `src`; any pfn outside our region would
        // be the provider breaking `DevmemOps`' contract: refuse it before the core sees it.
        let region = devmem.pagemap().region();
        if pfns.src.iter().any(|pfn| !region.contains_pfn(*pfn)) {
            return Err(EINVAL);
        }
        // SAFETY: `src` holds `npages` pfns of the allocation's device pages.
        to_result(unsafe { ffi::migrate_device_pfns(pfns.src.as_mut_ptr(), npages) })?;
        skip_retired(&mut pfns);
        let copied = copy_back(
            &mut pfns,
            &mut batch,
            null_mut(),
            0,
            Some(&**devmem),
            Direction::Eviction,
            Folios::Huge,
        );
        if copied.is_err() {
            pfns.abandon_dst();
        }
        // SAFETY: The arrays were set up by `migrate_device_pfns` and `copy_back`.
        unsafe {
            ffi::migrate_device_pages(pfns.src.as_mut_ptr(), pfns.dst.as_mut_ptr(), npages);
        }
        retire_moved(&pfns);
        // SAFETY: As above.
        unsafe {
            ffi::migrate_device_finalize(pfns.src.as_mut_ptr(), pfns.dst.as_mut_ptr(), npages);
        }
        copied?;
    }
    if devmem.is_detached() {
        if passes > 0 {
            devmem
                .stats()
                .evictions
                .fetch_add(1, kernel::sync::atomic::Relaxed);
        }
        // The provider has its memory back when this returns: its release (a short work
        // item, queued when the allocation was detached) has run.
        wait_until(RELEASE_WAIT_MS, || devmem.is_released())?;
        Ok(true)
    } else {
        Err(EBUSY)
    }
}

/// Longest an eviction waits for the migration placing its allocation's pages.
const POPULATE_WAIT_MS: u32 = 30_000;

/// Longest an eviction waits for the provider's release of the evicted allocation.
const RELEASE_WAIT_MS: u32 = 10_000;

/// Waits until `done()`, sleeping killably, at most `ms` milliseconds: `EINTR` on a fatal
/// signal, `EBUSY` when the time is up. Takes no lock; the caller must hold none that `done`
/// waits on.
fn wait_until(ms: u32, done: impl Fn() -> bool) -> Result {
    let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
    while !done() {
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        if start.elapsed().as_millis() > i64::from(ms) {
            return Err(EBUSY);
        }
        // SAFETY: Sleeping is allowed in the process context this runs in.
        unsafe { ffi::svm_sleep_killable(1) };
    }
    Ok(())
}

/// Leaves out of an eviction the folios `migrate_device_pfns` took that are retired (their
/// data already went to system memory; the last reference is on its way), as the C
/// `drm_pagemap_skip_retired_pages`: their stale data is not copied again. They stay in the
/// arrays, not migrating, so that finalize restores whatever the core unmapped (nothing, as a
/// retired folio is mapped nowhere; but that is the core's business to check).
fn skip_retired(pfns: &mut PfnArrays) {
    let mut i = 0;
    while i < pfns.src.len() {
        let s = pfns.src[i];
        let page = page_of(s);
        let n = span(s);
        // SAFETY: A page `migrate_device_pfns` collected is referenced and locked.
        if s & MIGRATE != 0 && kind(page, None) == Kind::Ours && unsafe { Zdd::is_retired(page) } {
            pfns.src[i] &= !MIGRATE;
        }
        i += n;
    }
}

#[kunit_tests(drm_pagemap_migrate)]
mod tests {
    use super::*;
    use crate::device_private::DevicePrivateRegion;
    use crate::devmem::DevmemOps;
    use crate::devmem::MigrationStats;
    use crate::pagemap::Folios;
    use crate::pagemap::MigrateDetails;
    use crate::pagemap::Pagemap;
    use crate::pagemap::PagemapOps;
    use kernel::faux;
    use kernel::sync::aref::ARef;
    use kernel::sync::atomic::Atomic;
    use kernel::sync::atomic::Full;
    use kernel::sync::atomic::Relaxed;
    use kernel::sync::Completion;
    use kernel::sync::SpinLock;
    use kernel::time::Instant;
    use kernel::time::Monotonic;
    use kernel::uaccess::UserPtr;
    use kernel::uaccess::UserSlice;

    const PAGES: usize = 8;

    struct NoOps;
    // SAFETY: A test type of this module.
    unsafe impl PagemapOps for NoOps {
        fn module(&self) -> &'static ThisModule {
            kernel::module::this_module::<crate::LocalModule>()
        }
    }

    /// How a test allocation's `populate_devmem_pfn` misbehaves.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Populate {
        /// Hands out the allocation's pages.
        Good,
        /// Fails with `ENOMEM` before writing anything.
        Fail,
        /// Writes half of the pfns, then fails with `ENOMEM`.
        FailHalfway,
        /// Hands out the first page twice.
        Duplicate,
    }

    /// Device memory of a test region: a real backing store, optional failures, and a count
    /// of releases.
    struct TestMem {
        first_pfn: usize,
        backing: Arc<SpinLock<KVVec<u8>>>,
        populate: Populate,
        fail_copy: bool,
        released: Arc<Atomic<u32>>,
        done: Arc<Completion>,
    }

    impl TestMem {
        fn offset(&self, pfn: usize) -> usize {
            (pfn - self.first_pfn) * PAGE_SIZE
        }
    }

    // SAFETY: Each test allocation owns a region of its own (one `Gpu` per allocation at a
    // time) and hands out its first pages in order. `Populate::Duplicate` breaks the contract
    // on purpose, to check that the core refuses what it can see.
    unsafe impl DevmemOps for TestMem {
        fn module(&self) -> &'static ThisModule {
            kernel::module::this_module::<crate::LocalModule>()
        }

        fn populate_devmem_pfn(&self, pfns: &mut [usize]) -> Result {
            let n = pfns.len();
            for (i, pfn) in pfns.iter_mut().enumerate() {
                match self.populate {
                    Populate::Fail => return Err(ENOMEM),
                    Populate::FailHalfway if i == n / 2 => return Err(ENOMEM),
                    Populate::Duplicate if i == n - 1 => *pfn = self.first_pfn,
                    _ => *pfn = self.first_pfn + i,
                }
            }
            Ok(())
        }

        fn copy_to_devmem(&self, copies: &[PageCopy<'_>]) -> Result {
            let mut page = [0u8; PAGE_SIZE];
            for c in copies {
                match &c.system {
                    Some(s) => s.read(&mut page),
                    None => page.fill(0),
                }
                let off = self.offset(c.device_pfn);
                self.backing.lock()[off..off + PAGE_SIZE].copy_from_slice(&page);
            }
            // A copy engine that fails after writing: the device pages hold garbage then.
            if self.fail_copy {
                return Err(EIO);
            }
            Ok(())
        }

        fn copy_to_ram(&self, copies: &[PageCopy<'_>], _dir: Direction) -> Result {
            let mut page = [0u8; PAGE_SIZE];
            for c in copies {
                let off = self.offset(c.device_pfn);
                page.copy_from_slice(&self.backing.lock()[off..off + PAGE_SIZE]);
                if let Some(s) = &c.system {
                    s.write(&page);
                }
            }
            Ok(())
        }

        fn release(&self) {
            self.released.fetch_add(1, Full);
            self.done.complete_all();
        }
    }

    /// A device-private region with a pagemap, on its own faux device.
    struct Gpu {
        _fdev: faux::Registration,
        region: Arc<DevicePrivateRegion>,
        pagemap: ARef<Pagemap>,
    }

    /// A test GPU whose pages have the owner `owner`: a static of this test module, shared
    /// only by the tests' GPUs that are meant to see each other's pages.
    fn gpu(name: &'static CStr, owner: &'static u8) -> Result<Gpu> {
        let fdev = faux::Registration::new(name, None)?;
        // SAFETY: Per this function's doc: no other driver's owner.
        let owner = unsafe { Owner::of(owner) };
        let region = Arc::pin_init(
            DevicePrivateRegion::new(2 * PAGES * PAGE_SIZE, name, owner),
            GFP_KERNEL,
        )?;
        let pagemap = Pagemap::new(fdev.as_ref().as_ref(), region.clone(), NoOps)?;
        Ok(Gpu {
            _fdev: fdev,
            region,
            pagemap,
        })
    }

    /// A test allocation, its count of releases and the completion its release fires.
    type TestAlloc = (Arc<Devmem>, Arc<Atomic<u32>>, Arc<Completion>);

    /// An allocation of `npages` of `gpu`'s memory, from `first` on, misbehaving as asked.
    fn alloc_at(
        gpu: &Gpu,
        mm: &kernel::mm::Mm,
        first: usize,
        npages: usize,
        populate: Populate,
        fail_copy: bool,
    ) -> Result<TestAlloc> {
        let released = Arc::new(Atomic::new(0), GFP_KERNEL)?;
        let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
        let backing = Arc::pin_init(
            kernel::new_spinlock!(KVVec::from_elem(0u8, npages * PAGE_SIZE, GFP_KERNEL)?),
            GFP_KERNEL,
        )?;
        let devmem = Devmem::new(
            gpu.pagemap.clone(),
            Some(mm),
            npages,
            Arc::new(MigrationStats::new(), GFP_KERNEL)?,
            TestMem {
                first_pfn: gpu.region.pfn_first() + first,
                backing,
                populate,
                fail_copy,
                released: released.clone(),
                done: done.clone(),
            },
        )?;
        Ok((devmem, released, done))
    }

    /// An allocation of all `PAGES` of `gpu`'s memory.
    fn alloc(
        gpu: &Gpu,
        mm: &kernel::mm::Mm,
        populate: Populate,
        fail_copy: bool,
    ) -> Result<TestAlloc> {
        alloc_at(gpu, mm, 0, PAGES, populate, fail_copy)
    }

    /// `PAGES` pages of private anonymous memory in the test's own address space, filled
    /// with a pattern per byte and page.
    fn user_range(seed: u8) -> Result<usize> {
        // SAFETY: Maps memory into the address space the test's kthread gets for it.
        let addr = unsafe { ffi::svm_kunit_mmap_anon(PAGES * PAGE_SIZE) };
        if addr == 0 || addr >= usize::MAX - 4095 {
            return Err(ENOMEM);
        }
        let mut data = KVVec::from_elem(0u8, PAGES * PAGE_SIZE, GFP_KERNEL)?;
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8) ^ ((i / PAGE_SIZE) as u8).wrapping_mul(37) ^ seed;
        }
        UserSlice::new(UserPtr::from_addr(addr), data.len())
            .writer()
            .write_slice(&data)?;
        Ok(addr)
    }

    /// Whether `pages` pages from page `first` of the range still hold their pattern (read by
    /// the CPU, faulting pages back).
    fn intact_pages(addr: usize, seed: u8, first: usize, pages: usize) -> Result<bool> {
        let mut data = KVVec::from_elem(0u8, pages * PAGE_SIZE, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(addr + first * PAGE_SIZE), data.len())
            .reader()
            .read_slice(&mut data)?;
        Ok(data.iter().enumerate().all(|(i, b)| {
            let i = i + first * PAGE_SIZE;
            *b == (i as u8) ^ ((i / PAGE_SIZE) as u8).wrapping_mul(37) ^ seed
        }))
    }

    fn intact(addr: usize, seed: u8) -> Result<bool> {
        intact_pages(addr, seed, 0, PAGES)
    }

    static OWNER_A: u8 = 0;
    static OWNER_B: u8 = 0;

    /// Migrates `pages` pages from `addr` into `devmem`; the pages moved.
    fn migrate_pages(
        devmem: &Arc<Devmem>,
        addr: usize,
        pages: usize,
        details: &MigrateDetails,
    ) -> Result<usize> {
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let mmap = mm.mmap_read_lock();
        migrate_to_devmem(
            devmem.pagemap(),
            &mmap,
            PageRange::with_pages(addr, pages)?,
            details,
            |_| Ok(devmem.clone()),
        )
    }

    fn migrate(devmem: &Arc<Devmem>, addr: usize) -> Result {
        migrate_pages(devmem, addr, PAGES, &MigrateDetails::default()).map(|_| ())
    }

    #[test]
    fn round_trip() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_a", &OWNER_A)?;
        let addr = user_range(1)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, released, done) = alloc(&a, mm, Populate::Good, false)?;
        migrate(&devmem, addr)?;
        assert_eq!(devmem.stats().pages_to_device.load(Relaxed), PAGES as u64);
        assert!(!devmem.is_detached());
        // The CPU reads every byte back, faulting the pages home.
        assert!(intact(addr, 1)?);
        assert_eq!(devmem.stats().cpu_faults.load(Relaxed), 1);
        devmem.wait_detached();
        done.wait_for_completion();
        assert_eq!(released.load(Relaxed), 1);
        Ok(())
    }

    /// A failing, half-failing or contract-breaking `populate_devmem_pfn`: the migration fails
    /// cleanly, releases the allocation once and leaves every byte (and every other page of
    /// the machine) alone.
    fn populate_failure(name: &'static CStr, populate: Populate, seed: u8, err: Error) -> Result {
        let a = gpu(name, &OWNER_A)?;
        let addr = user_range(seed)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, released, done) = alloc(&a, mm, populate, false)?;
        assert_eq!(migrate(&devmem, addr), Err(err));
        done.wait_for_completion();
        assert!(devmem.is_detached());
        assert_eq!(released.load(Relaxed), 1);
        assert_eq!(devmem.stats().pages_to_device.load(Relaxed), 0);
        assert!(intact(addr, seed)?);
        assert_eq!(devmem.stats().cpu_faults.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn allocation_failure_leaks_nothing() -> Result {
        populate_failure(c"drm_pagemap_kunit_mig_b", Populate::Fail, 2, ENOMEM)
    }

    #[test]
    fn populate_failing_halfway_touches_no_other_page() -> Result {
        populate_failure(c"drm_pagemap_kunit_mig_h", Populate::FailHalfway, 7, ENOMEM)
    }

    #[test]
    fn duplicate_device_pfn_is_refused() -> Result {
        populate_failure(c"drm_pagemap_kunit_mig_i", Populate::Duplicate, 8, EINVAL)
    }

    #[test]
    fn copy_failure_keeps_data() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_c", &OWNER_A)?;
        let addr = user_range(3)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, released, done) = alloc(&a, mm, Populate::Good, true)?;
        assert_eq!(migrate(&devmem, addr), Err(EIO));
        // The device pages set up for the copy were freed; nothing moved.
        done.wait_for_completion();
        assert_eq!(released.load(Relaxed), 1);
        assert_eq!(devmem.stats().pages_to_device.load(Relaxed), 0);
        assert!(intact(addr, 3)?);
        assert_eq!(devmem.stats().cpu_faults.load(Relaxed), 0);
        Ok(())
    }

    /// One page of the range lives on device `b`; migrating the range to `a` must not move
    /// anything, whatever the two owners.
    fn page_on_other_device(
        a: &Gpu,
        b: &Gpu,
        seed: u8,
    ) -> Result<(Arc<Devmem>, Arc<Completion>, usize)> {
        let addr = user_range(seed)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (on_b, _b_released, b_done) = alloc(b, mm, Populate::Good, false)?;
        migrate_pages(&on_b, addr + 3 * PAGE_SIZE, 1, &MigrateDetails::default())?;
        let (devmem, released, _done) = alloc(a, mm, Populate::Good, false)?;
        assert_eq!(migrate(&devmem, addr), Err(EBUSY));
        // Refused before any device memory was asked for: the allocation was never used.
        assert_eq!(released.load(Relaxed), 0);
        assert_eq!(devmem.stats().pages_to_device.load(Relaxed), 0);
        // The other device's page is still there.
        assert!(!on_b.is_detached());
        assert_eq!(on_b.stats().cpu_faults.load(Relaxed), 0);
        Ok((on_b, b_done, addr))
    }

    #[test]
    fn partial_collection_is_busy() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_d", &OWNER_A)?;
        let b = gpu(c"drm_pagemap_kunit_mig_e", &OWNER_B)?;
        let (on_b, b_done, addr) = page_on_other_device(&a, &b, 4)?;
        // Every byte is where it was, the other device's page included.
        assert!(intact(addr, 4)?);
        assert_eq!(on_b.stats().cpu_faults.load(Relaxed), 1);
        b_done.wait_for_completion();
        Ok(())
    }

    #[test]
    fn peer_page_with_same_owner_is_not_a_system_page() -> Result {
        // Two regions sharing an owner (as GPUs on one interconnect will): the migration
        // collects the peer's page, which must not be copied as if it were system memory.
        let a = gpu(c"drm_pagemap_kunit_mig_f", &OWNER_A)?;
        let b = gpu(c"drm_pagemap_kunit_mig_g", &OWNER_A)?;
        let (on_b, b_done, addr) = page_on_other_device(&a, &b, 5)?;
        // A migration back to RAM of the owner's pages moves the peer's page through its
        // own allocation's ops.
        {
            let task = kernel::current!();
            let mm = task.mm().ok_or(EINVAL)?;
            let mmap = mm.mmap_read_lock();
            let moved = migrate_to_ram(
                &mmap,
                PageRange::with_pages(addr, PAGES)?,
                a.region.owner(),
                Folios::Huge,
            )?;
            assert_eq!(moved, 1);
        }
        b_done.wait_for_completion();
        assert!(on_b.is_detached());
        assert_eq!(on_b.stats().pages_to_ram.load(Relaxed), 1);
        assert!(intact(addr, 5)?);
        Ok(())
    }

    #[test]
    fn resident_range_allocates_only_for_what_moves() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_j", &OWNER_A)?;
        let addr = user_range(9)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (first, _r1, done1) = alloc_at(&a, mm, 0, PAGES / 2, Populate::Good, false)?;
        // Half the range moves first.
        assert_eq!(
            migrate_pages(&first, addr, PAGES / 2, &MigrateDetails::default())?,
            PAGES / 2
        );
        let (second, _r2, done2) = alloc_at(&a, mm, PAGES / 2, PAGES / 2, Populate::Good, false)?;
        let mut asked = KVec::new();
        {
            let mmap = mm.mmap_read_lock();
            // The whole range: only the other half needs device memory.
            let moved = migrate_to_devmem(
                &a.pagemap,
                &mmap,
                PageRange::with_pages(addr, PAGES)?,
                &MigrateDetails::default(),
                |n| {
                    asked.push(n, GFP_KERNEL)?;
                    Ok(second.clone())
                },
            )?;
            assert_eq!(moved, PAGES / 2);
            // Everything is resident now: nothing is allocated.
            let moved = migrate_to_devmem(
                &a.pagemap,
                &mmap,
                PageRange::with_pages(addr, PAGES)?,
                &MigrateDetails::default(),
                |n| {
                    asked.push(n, GFP_KERNEL)?;
                    Err(ENOMEM)
                },
            )?;
            assert_eq!(moved, 0);
        }
        assert_eq!(&asked[..], &[PAGES / 2]);
        assert!(intact(addr, 9)?);
        done1.wait_for_completion();
        done2.wait_for_completion();
        Ok(())
    }

    /// A device page marked retired (its data already went to system memory; a CPU fault
    /// that moved it may still hold it) is left alone by eviction: not copied again and not
    /// migrated by finalize. Marked by hand here on a live page, whose data the CPU then still
    /// reaches by fault.
    #[test]
    fn eviction_skips_retired_pages() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_r", &OWNER_A)?;
        let addr = user_range(11)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, _released, done) = alloc(&a, mm, Populate::Good, false)?;
        migrate(&devmem, addr)?;
        // SAFETY: The allocation's first page, mapped at `addr`, in use; locked around the
        // marking as a migration would hold it.
        unsafe {
            let page = ffi::svm_pfn_to_page(a.region.pfn_first());
            ffi::svm_lock_page(page);
            Zdd::retire(page);
            ffi::svm_unlock_page(page);
        }
        let stats = devmem.stats();
        // The retired page stays (so the allocation stays attached); all others move.
        assert_eq!(evict_to_ram(&devmem), Err(EBUSY));
        assert!(!devmem.is_released());
        assert_eq!(stats.pages_to_ram.load(Relaxed), (PAGES - 1) as u64);
        assert!(!devmem.is_detached());
        // The CPU still gets its data back by fault.
        assert!(intact(addr, 11)?);
        done.wait_for_completion();
        assert!(devmem.is_detached());
        Ok(())
    }

    #[test]
    fn cpu_fault_moves_only_its_allocation() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_k", &OWNER_A)?;
        let addr = user_range(10)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let half = PAGES / 2;
        // `first` takes the whole range, then its upper half goes back and `second` takes it:
        // `first`'s address range now covers `second`'s pages.
        let (first, _r1, done1) = alloc_at(&a, mm, 0, PAGES, Populate::Good, false)?;
        migrate(&first, addr)?;
        {
            let mmap = mm.mmap_read_lock();
            let upper = addr + half * PAGE_SIZE;
            let moved = migrate_to_ram(
                &mmap,
                PageRange::new(upper, addr + PAGES * PAGE_SIZE)?,
                a.region.owner(),
                Folios::Huge,
            )?;
            assert_eq!(moved, half);
        }
        // `first` still owns all its pages; `second` gets pages of its own.
        let (second, _r2, done2) = alloc_at(&a, mm, PAGES, half, Populate::Good, false)?;
        let upper = addr + half * PAGE_SIZE;
        assert_eq!(
            migrate_pages(&second, upper, half, &MigrateDetails::default())?,
            half
        );
        // The CPU touches page 0: `first`'s pages come back, `second`'s stay.
        assert!(intact_pages(addr, 10, 0, 1)?);
        assert_eq!(first.stats().cpu_faults.load(Relaxed), 1);
        assert_eq!(second.stats().cpu_faults.load(Relaxed), 0);
        assert!(!second.is_detached());
        done1.wait_for_completion();
        assert!(first.is_detached());
        // Then everything, which faults `second`'s pages back on their own.
        assert!(intact(addr, 10)?);
        assert_eq!(second.stats().cpu_faults.load(Relaxed), 1);
        done2.wait_for_completion();
        Ok(())
    }

    #[test]
    fn timeslice_is_bounded_and_does_not_spin() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_l", &OWNER_A)?;
        let addr = user_range(11)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, _released, done) = alloc(&a, mm, Populate::Good, false)?;
        let details = MigrateDetails {
            timeslice_ms: u32::MAX,
            folios: Folios::Huge,
        };
        migrate_pages(&devmem, addr, PAGES, &details)?;
        let begun = Instant::<Monotonic>::now();
        // The CPU's read waits for the (clamped) timeslice, then gets its data.
        assert!(intact(addr, 11)?);
        let waited = begun.elapsed().as_millis();
        let max = i64::from(crate::devmem::MAX_TIMESLICE_MS);
        assert!(waited >= max / 2 && waited < 3 * max);
        // One fault waited (sleeping, its lock dropped), its retry migrated: a fault that
        // returned to be retried at once would have counted a wait per spin.
        assert_eq!(devmem.stats().timeslice_waits.load(Relaxed), 1);
        assert_eq!(devmem.stats().cpu_faults.load(Relaxed), 1);
        done.wait_for_completion();
        Ok(())
    }
}
