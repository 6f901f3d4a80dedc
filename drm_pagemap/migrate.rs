// SPDX-License-Identifier: GPL-2.0

//! Migration of a process's pages between system memory and device memory.
//!
//! Every path keeps the data: a page's contents move only once the provider's copy succeeded,
//! and on any error the pages stay (with their data) where they were. Locking follows
//! `Documentation/gpu/rfc/gpusvm.rst`: the mmap lock is taken by the callers around the core-mm
//! calls only, and the CPU-fault path takes no lock of ours.

use core::ptr::null_mut;

use kernel::error::to_result;
use kernel::mm::virt::VmaRef;
use kernel::mm::MmapReadGuard;
use kernel::prelude::*;
use kernel::sync::Arc;

use crate::devmem::Devmem;
use crate::devmem::Direction;
use crate::devmem::PageCopy;
use crate::devmem::SystemPage;
use crate::devmem::Zdd;
use crate::devmem::PAGE_SIZE;
use crate::ffi;

/// How a migration to device memory behaves.
#[derive(Clone, Copy, Default)]
pub struct MigrateDetails {
    /// For how long freshly migrated pages stay on the device against CPU faults, in ms.
    pub timeslice_ms: u32,
    /// Use base pages only, even where a huge page could move whole.
    pub base_pages_only: bool,
}

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
struct PfnArrays {
    src: KVVec<usize>,
    dst: KVVec<usize>,
}

impl PfnArrays {
    fn new(npages: usize) -> Result<Self> {
        Ok(Self {
            src: KVVec::from_elem(0, npages, GFP_KERNEL)?,
            dst: KVVec::from_elem(0, npages, GFP_KERNEL)?,
        })
    }

    /// Unlocks and frees every destination page set so far, so that nothing moves.
    fn abandon_dst(&mut self) {
        for d in self.dst.iter_mut() {
            // SAFETY: A non-zero `dst` entry is a migrate pfn of a page this operation
            // allocated and locked; it is not referenced anywhere else yet.
            let page = unsafe { ffi::svm_migrate_pfn_to_page(*d) };
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
/// page-aligned and `pfns` sized for it; `fault_page` is null or the locked faulting page.
#[expect(clippy::too_many_arguments)]
unsafe fn run_migrate_vma<T>(
    vma: *mut ffi::vm_area_struct,
    start: usize,
    end: usize,
    owner: usize,
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
    args.pgmap_owner = owner as *mut kernel::ffi::c_void;
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
    let moved = moved_pages(pfns);
    // SAFETY: As above; this ends the migration and unlocks every page.
    unsafe { ffi::migrate_vma_finalize(&mut args) };
    Ok((filled, moved))
}

fn page_of(mpfn: usize) -> *mut ffi::page {
    // SAFETY: Pure computation on a migrate pfn; null if it names no page.
    unsafe { ffi::svm_migrate_pfn_to_page(mpfn) }
}

fn is_device_private(page: *mut ffi::page) -> bool {
    // SAFETY: `page` is a valid page collected by a migration.
    !page.is_null() && unsafe { ffi::svm_is_device_private_page(page) }
}

/// Moves `[start, end)` of the address space locked by `mmap` into `devmem`, all or nothing:
/// if any page cannot be collected (pinned, locked, of another device, racing), nothing moves
/// and the result is `EBUSY`. Pages already in `devmem`'s pagemap stay where they are.
///
/// Refuses unaligned or empty ranges and ranges larger than `devmem` (`EINVAL`), addresses
/// with no mapping (`ENOENT`), ranges crossing the end of their mapping (`EINVAL`), shared
/// mappings, and pages of private file mappings that are still the file's own pages rather
/// than the process's private copies (`EOPNOTSUPP`): only anonymous memory can live in
/// device-private memory. An allocation backs one migration only (`EBUSY` on reuse).
pub fn migrate_to_devmem(
    devmem: &Arc<Devmem>,
    mmap: &MmapReadGuard<'_>,
    start: usize,
    end: usize,
    details: &MigrateDetails,
) -> Result {
    if start >= end || start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
        return Err(EINVAL);
    }
    let npages = (end - start) / PAGE_SIZE;
    if npages > devmem.npages() {
        return Err(EINVAL);
    }
    let vma = mmap.vma_lookup(start).ok_or(ENOENT)?;
    if end > vma.end() {
        return Err(EINVAL);
    }
    // SAFETY: The VMA is valid while the mmap lock is held.
    if unsafe { ffi::svm_vma_is_shared(vma.as_ptr()) } {
        return Err(EOPNOTSUPP);
    }
    // A private file mapping holds the file's pages until written, then anonymous copies.
    // SAFETY: As above.
    let file_backed = !unsafe { ffi::svm_vma_is_anonymous(vma.as_ptr()) };
    let region = devmem.pagemap().region();
    let mut pfns = PfnArrays::new(npages)?;
    let mut copies = KVec::with_capacity(npages, GFP_KERNEL)?;
    if !devmem.claim() {
        return Err(EBUSY);
    }
    // Claimed iff a `Zdd` exists: its drop is what runs the release op.
    let zdd = Zdd::new(devmem.clone()).inspect_err(|_| devmem.unclaim())?;

    let mut flags = ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM
        | ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_PRIVATE;
    if !details.base_pages_only {
        flags |= ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND;
    }
    // SAFETY: The VMA is valid under the mmap lock and the range lies inside it.
    let (placed, moved) = unsafe {
        run_migrate_vma(
            vma.as_ptr(),
            start,
            end,
            region.owner(),
            flags,
            null_mut(),
            &mut pfns,
            |pfns| place_in_devmem(devmem, &zdd, pfns, &mut copies, npages, file_backed),
        )
    }?;
    devmem.stats().count(Direction::ToDevice, moved);

    let wanted = placed?;
    if moved < wanted {
        // Some page changed under us between setup and now; what moved has its data.
        return Err(EBUSY);
    }
    devmem.start_timeslice(details.timeslice_ms);
    devmem.set_va_start(start);
    Ok(())
}

/// Fills `pfns.dst` with `devmem`'s pages and copies the data there. Returns how many pages
/// are to move; on error no destination page is set up any more (the caller abandons them).
///
/// A huge source (a transparent huge page, or a huge hole) moves into one huge device folio
/// when the provider's pages for it are contiguous and aligned; otherwise into base pages, and
/// the core splits the source.
fn place_in_devmem(
    devmem: &Arc<Devmem>,
    zdd: &Arc<Zdd>,
    pfns: &mut PfnArrays,
    copies: &mut KVec<PageCopy>,
    npages: usize,
    file_backed: bool,
) -> Result<usize> {
    let region = devmem.pagemap().region();
    let is_own = |page: *mut ffi::page| {
        // SAFETY: Collected pages are valid and referenced until finalize.
        is_device_private(page) && unsafe { ffi::svm_page_pgmap(page) } == region.as_raw()
    };
    // Pages already in this pagemap stay; everything else moves, or nothing does.
    let mut own = 0;
    let mut i = 0;
    while i < npages {
        let s = pfns.src[i];
        if s & MIGRATE == 0 {
            // Some page could not be collected; in a file mapping, a hole.
            return Err(if file_backed { EOPNOTSUPP } else { EBUSY });
        }
        let page = page_of(s);
        // SAFETY: Collected pages are valid and referenced until finalize.
        let anon = !page.is_null() && unsafe { ffi::svm_page_is_anon(page) };
        if file_backed && !(anon || is_device_private(page)) {
            // The file's own pages: the core would refuse to move them after the copy.
            return Err(EOPNOTSUPP);
        }
        if is_own(page) {
            own += span(s);
        }
        i += span(s);
    }
    if own == npages {
        return Ok(0);
    }
    devmem.ops().populate_devmem_pfn(&mut pfns.dst)?;
    if let Some(bad) = pfns.dst.iter().find(|pfn| !region.contains_pfn(**pfn)) {
        pr_err!("device pfn {bad:#x} is outside the pagemap's region\n");
        pfns.dst.iter_mut().for_each(|d| *d = 0);
        return Err(EINVAL);
    }
    let mut i = 0;
    while i < npages {
        let s = pfns.src[i];
        let n = span(s);
        let spage = page_of(s);
        if is_own(spage) {
            pfns.dst[i..i + n].iter_mut().for_each(|d| *d = 0);
            i += n;
            continue;
        }
        let first = pfns.dst[i];
        let huge =
            n > 1 && first % n == 0 && (1..n).all(|k| pfns.dst.get(i + k) == Some(&(first + k)));
        let (folios, order) = if huge {
            // SAFETY: Reads a constant.
            (1, unsafe { ffi::svm_hpage_pmd_order() })
        } else {
            (n, 0)
        };
        for f in 0..folios {
            let pfn = pfns.dst[i + f];
            // SAFETY: `pfn` is a page of the region (checked above), handed to us free by the
            // provider's allocator, with the folio's pages after it when huge.
            let dpage = unsafe { ffi::svm_pfn_to_page(pfn) };
            // SAFETY: Free device pages of our region: initialise the folio (reference 1,
            // locked) and point it at this migration's zone-device data.
            unsafe {
                ffi::zone_device_page_init(dpage, region.as_raw(), order);
                Zdd::attach(zdd, dpage);
            }
            let pages = if huge { 0..n } else { f..f + 1 };
            for k in pages {
                let system = core::ptr::NonNull::new(spage).map(|p| {
                    // SAFETY: `p` heads the collected folio the `n` entries stand for.
                    let page = unsafe { ffi::svm_folio_nth_page(p.as_ptr(), k) };
                    // SAFETY: A page of a valid folio is not null.
                    SystemPage::from_raw(unsafe { core::ptr::NonNull::new_unchecked(page) })
                });
                // Cannot fail: reserved for `npages` entries.
                copies.push(
                    PageCopy {
                        device_pfn: pfn + k - f,
                        system,
                    },
                    GFP_KERNEL,
                )?;
            }
            // SAFETY: Pure computation.
            let mut mpfn = unsafe { ffi::svm_migrate_pfn(pfn) } | (s & WRITE);
            if huge {
                mpfn |= COMPOUND;
            }
            pfns.dst[i + f] = mpfn;
        }
        if huge {
            pfns.dst[i + 1..i + n].iter_mut().for_each(|d| *d = 0);
        }
        i += n;
    }
    devmem.ops().copy_to_devmem(copies)?;
    Ok(npages - own)
}

/// Moves the device pages of `[start, end)` of `vma` back to system memory.
///
/// # Safety
///
/// `vma` is valid under the mmap (or VMA) lock the caller holds, `[start, end)` inside it and
/// page-aligned; `fault_page` is null or the locked device page a CPU fault is on.
unsafe fn vma_to_ram(
    vma: *mut ffi::vm_area_struct,
    start: usize,
    end: usize,
    owner: usize,
    fault_page: *mut ffi::page,
    dir: Direction,
    huge: bool,
) -> Result<usize> {
    let npages = (end - start) / PAGE_SIZE;
    let mut pfns = PfnArrays::new(npages)?;
    let mut flags = ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_PRIVATE;
    if huge {
        flags |= ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND;
    }
    // SAFETY: Per this function's contract.
    let (copied, moved) = unsafe {
        run_migrate_vma(
            vma,
            start,
            end,
            owner,
            flags,
            fault_page,
            &mut pfns,
            |pfns| copy_back(pfns, vma, start, dir, huge),
        )
    }?;
    copied?;
    Ok(moved)
}

/// Allocates system pages for the collected device pages of `pfns.src` and copies the data
/// into them, one batch per device allocation. `vma` may be null (eviction).
///
/// A huge device folio goes to a transparent huge page when `huge` and one can be had; else
/// to base pages, and the core splits the device folio (which eviction, with no VMA, cannot:
/// there it is `ENOMEM`).
fn copy_back(
    pfns: &mut PfnArrays,
    vma: *mut ffi::vm_area_struct,
    start: usize,
    dir: Direction,
    huge: bool,
) -> Result {
    let npages = pfns.src.len();
    let mut batch: KVec<PageCopy> = KVec::with_capacity(npages, GFP_KERNEL)?;
    let mut batch_owner: Option<Arc<Devmem>> = None;
    let mut i = 0;
    while i < npages {
        let s = pfns.src[i];
        let spage = page_of(s);
        if s & MIGRATE == 0 || !is_device_private(spage) {
            i += 1;
            continue;
        }
        // SAFETY: A collected device page of a region with our ops, kept alive by the
        // migration until finalize.
        let devmem = unsafe { Zdd::of_page(spage) }.devmem().clone();
        if let Some(owner) = &batch_owner {
            if !Arc::ptr_eq(owner, &devmem) {
                owner.ops().copy_to_ram(&batch, dir)?;
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
        let thp = if n > 1 && huge {
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
                // SAFETY: Pure computation.
                pfns.dst[i + k] = unsafe { ffi::svm_migrate_pfn(ffi::svm_page_to_pfn(page)) };
                page
            } else {
                // SAFETY: `thp` heads a folio of `n` pages.
                unsafe { ffi::svm_folio_nth_page(thp, k) }
            };
            batch.push(
                PageCopy {
                    device_pfn: device_pfn + k,
                    // SAFETY: Checked or derived from a valid folio above.
                    system: Some(SystemPage::from_raw(unsafe {
                        core::ptr::NonNull::new_unchecked(dpage)
                    })),
                },
                GFP_KERNEL,
            )?;
        }
        if !thp.is_null() {
            // SAFETY: Pure computation.
            pfns.dst[i] = unsafe { ffi::svm_migrate_pfn(ffi::svm_page_to_pfn(thp)) } | COMPOUND;
        }
        i += n;
    }
    if let Some(owner) = batch_owner {
        if !batch.is_empty() {
            owner.ops().copy_to_ram(&batch, dir)?;
            owner.stats().count(dir, batch.len());
        }
    }
    Ok(())
}

/// Moves whatever of `[start, end)` of the address space locked by `mmap` lives in device
/// memory with the private owner `owner` back to system memory. Returns the pages moved.
///
/// Huge device folios come back as transparent huge pages where the VMA allows, unless
/// `base_pages_only`.
pub fn migrate_to_ram(
    mmap: &MmapReadGuard<'_>,
    start: usize,
    end: usize,
    owner: usize,
    base_pages_only: bool,
) -> Result<usize> {
    if start >= end || start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
        return Err(EINVAL);
    }
    let mut moved = 0;
    let mut addr = start;
    while addr < end {
        let vma = mmap.vma_lookup(addr).ok_or(ENOENT)?;
        let stop = end.min(vma.end());
        // SAFETY: The VMA is valid under the mmap lock and `[addr, stop)` lies inside it.
        moved += unsafe {
            vma_to_ram(
                vma.as_ptr(),
                addr,
                stop,
                owner,
                null_mut(),
                Direction::ToRam,
                !base_pages_only,
            )
        }?;
        addr = stop;
    }
    Ok(moved)
}

/// Serves a CPU fault on a device page: moves the faulting allocation's pages of the VMA back
/// to system memory, unless the allocation is still within its timeslice (the fault is then
/// retried). Takes no lock of ours.
///
/// # Safety
///
/// `vmf` is a CPU fault on a locked, referenced device page of a region with our ops, with
/// the mmap or VMA lock held.
pub(crate) unsafe fn cpu_fault(vmf: *mut ffi::vm_fault) -> Result {
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
    if devmem.in_timeslice() {
        return Ok(());
    }
    // SAFETY: The VMA is valid under the caller's lock for the duration of the fault.
    let vma_ref = unsafe { VmaRef::from_raw(vma) };
    let (vm_start, vm_end) = (vma_ref.start(), vma_ref.end());
    let address = address & !(PAGE_SIZE - 1);
    // The allocation's whole range, clipped to the VMA; just the page if it moved since.
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
    let start = start.max(vm_start);
    let end = end.min(vm_end);
    // SAFETY: `page`'s pagemap is ours, with a valid owner.
    let owner = unsafe { (*ffi::svm_page_pgmap(page)).owner } as usize;
    // A page mapped by a PTE may belong to a huge folio that is not fully split yet: move
    // base pages then, as the folio order cannot be relied on (the C test_hmm does the same).
    // SAFETY: The caller holds the lock `vma` needs; `page` is the locked faulting page.
    unsafe { vma_to_ram(vma, start, end, owner, page, Direction::CpuFault, huge) }?;
    devmem
        .stats()
        .cpu_faults
        .fetch_add(1, kernel::sync::atomic::Relaxed);
    Ok(())
}

/// Moves every page of `devmem` still in device memory back to system memory, without the
/// mmap lock or a VMA (the provider needs its memory back, or is going away). Retries while
/// pages race with faults or migrations; `EBUSY` if some page stays pinned.
pub fn evict_to_ram(devmem: &Arc<Devmem>) -> Result {
    const TRIES: usize = 8;
    let npages = devmem.npages();
    for pass in 0..TRIES {
        if devmem.is_detached() {
            if pass > 0 {
                devmem
                    .stats()
                    .evictions
                    .fetch_add(1, kernel::sync::atomic::Relaxed);
            }
            return Ok(());
        }
        // Keep the address space from being torn down under the migration.
        let _user = match devmem.mm() {
            Some(mm) => match mm.mmget_not_zero() {
                Some(user) => Some(user),
                None => {
                    // It is being torn down, which frees every page.
                    devmem.wait_detached();
                    return Ok(());
                }
            },
            None => None,
        };
        let mut pfns = PfnArrays::new(npages)?;
        devmem.ops().populate_devmem_pfn(&mut pfns.src)?;
        // SAFETY: `src` holds `npages` pfns of the allocation's device pages.
        to_result(unsafe { ffi::migrate_device_pfns(pfns.src.as_mut_ptr(), npages) })?;
        let copied = copy_back(&mut pfns, null_mut(), 0, Direction::Eviction, true);
        if copied.is_err() {
            pfns.abandon_dst();
        }
        // SAFETY: The arrays were set up by `migrate_device_pfns` and `copy_back`.
        unsafe {
            ffi::migrate_device_pages(pfns.src.as_mut_ptr(), pfns.dst.as_mut_ptr(), npages);
            ffi::migrate_device_finalize(pfns.src.as_mut_ptr(), pfns.dst.as_mut_ptr(), npages);
        }
        copied?;
    }
    if devmem.is_detached() {
        devmem
            .stats()
            .evictions
            .fetch_add(1, kernel::sync::atomic::Relaxed);
        Ok(())
    } else {
        Err(EBUSY)
    }
}

#[kunit_tests(drm_pagemap_migrate)]
mod tests {
    use super::*;
    use crate::device_private::DevicePrivateRegion;
    use crate::devmem::DevmemOps;
    use crate::devmem::MigrationStats;
    use crate::pagemap::Pagemap;
    use crate::pagemap::PagemapOps;
    use kernel::faux;
    use kernel::sync::aref::ARef;
    use kernel::sync::atomic::Atomic;
    use kernel::sync::atomic::Full;
    use kernel::sync::atomic::Relaxed;
    use kernel::sync::Completion;
    use kernel::sync::SpinLock;
    use kernel::uaccess::UserPtr;
    use kernel::uaccess::UserSlice;

    const PAGES: usize = 8;

    struct NoOps;
    impl PagemapOps for NoOps {}

    /// Device memory of a test region: a real backing store, optional failures, and a count
    /// of releases.
    struct TestMem {
        first_pfn: usize,
        backing: Arc<SpinLock<KVVec<u8>>>,
        fail_populate: bool,
        fail_copy: bool,
        released: Arc<Atomic<u32>>,
        done: Arc<Completion>,
    }

    impl TestMem {
        fn offset(&self, pfn: usize) -> usize {
            (pfn - self.first_pfn) * PAGE_SIZE
        }
    }

    impl DevmemOps for TestMem {
        fn populate_devmem_pfn(&self, pfns: &mut [usize]) -> Result {
            if self.fail_populate {
                return Err(ENOMEM);
            }
            for (i, pfn) in pfns.iter_mut().enumerate() {
                *pfn = self.first_pfn + i;
            }
            Ok(())
        }

        fn copy_to_devmem(&self, copies: &[PageCopy]) -> Result {
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

        fn copy_to_ram(&self, copies: &[PageCopy], _dir: Direction) -> Result {
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

    fn gpu(name: &'static CStr, owner: &'static u8) -> Result<Gpu> {
        let fdev = faux::Registration::new(name, None)?;
        let region = Arc::pin_init(
            DevicePrivateRegion::new(PAGES * PAGE_SIZE, name, core::ptr::from_ref(owner) as usize),
            GFP_KERNEL,
        )?;
        let pagemap = Pagemap::new(
            fdev.as_ref().as_ref(),
            kernel::module::this_module::<crate::LocalModule>(),
            region.clone(),
            NoOps,
        )?;
        Ok(Gpu {
            _fdev: fdev,
            region,
            pagemap,
        })
    }

    /// A test allocation, its count of releases and the completion its release fires.
    type TestAlloc = (Arc<Devmem>, Arc<Atomic<u32>>, Arc<Completion>);

    /// An allocation of `gpu`'s memory with the given failures, and its release counter.
    fn alloc(
        gpu: &Gpu,
        mm: &kernel::mm::Mm,
        fail_populate: bool,
        fail_copy: bool,
    ) -> Result<TestAlloc> {
        let released = Arc::new(Atomic::new(0), GFP_KERNEL)?;
        let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
        let backing = Arc::pin_init(
            kernel::new_spinlock!(KVVec::from_elem(0u8, PAGES * PAGE_SIZE, GFP_KERNEL)?),
            GFP_KERNEL,
        )?;
        let devmem = Devmem::new(
            gpu.pagemap.clone(),
            Some(mm),
            PAGES,
            Arc::new(MigrationStats::new(), GFP_KERNEL)?,
            TestMem {
                first_pfn: gpu.region.pfn_first(),
                backing,
                fail_populate,
                fail_copy,
                released: released.clone(),
                done: done.clone(),
            },
        )?;
        Ok((devmem, released, done))
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

    /// Whether the range still holds its pattern (read by the CPU, faulting pages back).
    fn intact(addr: usize, seed: u8) -> Result<bool> {
        let mut data = KVVec::from_elem(0u8, PAGES * PAGE_SIZE, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(addr), data.len())
            .reader()
            .read_slice(&mut data)?;
        Ok(data
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i as u8) ^ ((i / PAGE_SIZE) as u8).wrapping_mul(37) ^ seed))
    }

    static OWNER_A: u8 = 0;
    static OWNER_B: u8 = 0;

    fn migrate(devmem: &Arc<Devmem>, addr: usize) -> Result {
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let mmap = mm.mmap_read_lock();
        migrate_to_devmem(
            devmem,
            &mmap,
            addr,
            addr + PAGES * PAGE_SIZE,
            &MigrateDetails::default(),
        )
    }

    #[test]
    fn round_trip() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_a", &OWNER_A)?;
        let addr = user_range(1)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, released, done) = alloc(&a, mm, false, false)?;
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

    #[test]
    fn allocation_failure_leaks_nothing() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_b", &OWNER_A)?;
        let addr = user_range(2)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, released, done) = alloc(&a, mm, true, false)?;
        assert_eq!(migrate(&devmem, addr), Err(ENOMEM));
        // No page was placed: the allocation is released at once, exactly once.
        done.wait_for_completion();
        assert!(devmem.is_detached());
        assert_eq!(released.load(Relaxed), 1);
        assert_eq!(devmem.stats().pages_to_device.load(Relaxed), 0);
        assert!(intact(addr, 2)?);
        assert_eq!(devmem.stats().cpu_faults.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn copy_failure_keeps_data() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_c", &OWNER_A)?;
        let addr = user_range(3)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, released, done) = alloc(&a, mm, false, true)?;
        assert_eq!(migrate(&devmem, addr), Err(EIO));
        // The device pages set up for the copy were freed; nothing moved.
        done.wait_for_completion();
        assert_eq!(released.load(Relaxed), 1);
        assert_eq!(devmem.stats().pages_to_device.load(Relaxed), 0);
        assert!(intact(addr, 3)?);
        assert_eq!(devmem.stats().cpu_faults.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn partial_collection_is_busy() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_d", &OWNER_A)?;
        let b = gpu(c"drm_pagemap_kunit_mig_e", &OWNER_B)?;
        let addr = user_range(4)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        // One page of the range lives on the other device: it cannot be collected.
        let (on_b, _b_released, b_done) = alloc(&b, mm, false, false)?;
        {
            let mmap = mm.mmap_read_lock();
            let page = addr + 3 * PAGE_SIZE;
            migrate_to_devmem(
                &on_b,
                &mmap,
                page,
                page + PAGE_SIZE,
                &MigrateDetails::default(),
            )?;
        }
        let (devmem, released, done) = alloc(&a, mm, false, false)?;
        assert_eq!(migrate(&devmem, addr), Err(EBUSY));
        done.wait_for_completion();
        assert_eq!(released.load(Relaxed), 1);
        assert_eq!(devmem.stats().pages_to_device.load(Relaxed), 0);
        // Every byte is where it was, the other device's page included.
        assert!(intact(addr, 4)?);
        assert_eq!(devmem.stats().cpu_faults.load(Relaxed), 0);
        assert_eq!(on_b.stats().cpu_faults.load(Relaxed), 1);
        b_done.wait_for_completion();
        Ok(())
    }
}
