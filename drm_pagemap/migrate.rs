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
