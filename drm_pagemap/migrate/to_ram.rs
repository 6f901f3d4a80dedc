// SPDX-License-Identifier: GPL-2.0

//! Migration back to system memory over a VMA, in bounded chunks: the explicit way back and the
//! copy both the CPU-fault and the eviction paths use.

use super::*;

/// The runs of one copy back to system memory and the DMA mappings they use, for at most a
/// given number of pages: empty, and unmapped, between operations.
pub(super) struct CopyBatch {
    runs: KVVec<CopyRun>,
    maps: DmaMappings,
}

impl CopyBatch {
    pub(super) fn new(npages: usize) -> Result<Self> {
        Ok(Self {
            runs: KVVec::with_capacity(npages, GFP_KERNEL)?,
            maps: DmaMappings::new(npages, DataDirection::FromDevice)?,
        })
    }

    /// Has `owner`'s engine copy the batch and waits for it, then lets the device go of the
    /// system pages.
    fn flush(&mut self, owner: &Devmem, dir: Direction) -> Result {
        let runs = &self.runs;
        let pages = runs.iter().map(CopyRun::pages).sum();
        let copied = copy_and_wait(|fence| owner.ops().copy_to_ram(runs, dir, fence));
        self.clear();
        copied?;
        owner.stats().count(dir, pages);
        Ok(())
    }

    /// Drops the runs and the mappings without copying.
    fn clear(&mut self) {
        self.runs.clear();
        self.maps.unmap_all();
    }
}

/// The arrays one migration back to system memory works with, allocated once for all its
/// chunks.
pub(super) struct BackBuffers {
    pfns: PfnArrays,
    batch: CopyBatch,
}

impl BackBuffers {
    pub(super) fn new(npages: usize) -> Result<Self> {
        Ok(Self {
            pfns: PfnArrays::new(npages)?,
            batch: CopyBatch::new(npages)?,
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
pub(super) unsafe fn vma_to_ram(
    bufs: &mut BackBuffers,
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
    let mut flags = ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_PRIVATE;
    if folios == Folios::Huge {
        flags |= ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND;
    }
    let batch = &mut bufs.batch;
    // SAFETY: Per this function's contract, for `run_migrate_vma` and for `copy_back` in the
    // closure (the same VMA and range).
    let (copied, moved) = unsafe {
        run_migrate_vma(
            vma,
            start,
            end,
            owner,
            flags,
            fault_page,
            &mut bufs.pfns,
            // Per this function's contract for `vma` and `[start, end)` (this closure runs
            // inside the `unsafe` block above, whose SAFETY comment covers it).
            |pfns| copy_back(pfns, batch, vma, start, only, dir, folios),
        )
    }?;
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
/// (eviction). `batch` is empty and unmapped when this returns.
///
/// A huge device folio goes to a transparent huge page for [`Folios::Huge`] if one can be had; else
/// to base pages, and the core splits the device folio (which eviction, with no VMA, cannot:
/// there it is `ENOMEM`).
///
/// # Safety
///
/// `vma` is null, or valid under the mmap (or VMA) lock the caller holds, with the range
/// `pfns` covers from `start` inside it.
pub(super) unsafe fn copy_back(
    pfns: &mut Pfns<'_>,
    batch: &mut CopyBatch,
    vma: *mut ffi::vm_area_struct,
    start: usize,
    only: Option<&Devmem>,
    dir: Direction,
    folios: Folios,
) -> Result {
    // SAFETY: Per this function's contract.
    let copied = unsafe { fill_and_copy(pfns, batch, vma, start, only, dir, folios) };
    // What is left was not copied (an error): the device loses access before the migration
    // abandons the destinations.
    batch.clear();
    copied
}

/// [`copy_back`]'s work, which may leave `batch` filled on error.
///
/// # Safety
///
/// As [`copy_back`].
unsafe fn fill_and_copy(
    pfns: &mut Pfns<'_>,
    batch: &mut CopyBatch,
    vma: *mut ffi::vm_area_struct,
    start: usize,
    only: Option<&Devmem>,
    dir: Direction,
    folios: Folios,
) -> Result {
    let npages = pfns.len();
    let mut batch_owner: Option<Arc<Devmem>> = None;
    let mut i = 0;
    while i < npages {
        let s = pfns.src()[i];
        let spage = page_of(s);
        if s & MIGRATE == 0 || !matches!(pfns.kind(i, None), Kind::Ours) {
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
                batch.flush(owner, dir)?;
            }
        }
        let dev = devmem.pagemap().device();
        let n = span(s);
        let addr = if vma.is_null() {
            0
        } else {
            start + i * PAGE_SIZE
        };
        // The `n` pages of its folio follow it.
        let device_pfn = page_to_pfn(spage);
        let thp = if n > 1 && folios == Folios::Huge {
            // SAFETY: `vma` is null or valid under the caller's lock, with `addr` inside it.
            unsafe { ffi::svm_alloc_locked_thp(vma, addr) }
        } else {
            null_mut()
        };
        if n > 1 && thp.is_null() && vma.is_null() {
            return Err(ENOMEM);
        }
        if thp.is_null() {
            for k in 0..n {
                // SAFETY: As above.
                let page = unsafe { ffi::svm_alloc_locked_page(vma, addr + k * PAGE_SIZE) };
                if page.is_null() {
                    return Err(ENOMEM);
                }
                // SAFETY: A page just allocated and locked for this migration: the migration
                // owns it from here (and frees it if abandoned).
                unsafe { pfns.set_dst(i + k, page, false, false) };
                // SAFETY: A destination page, allocated until finalize, which comes after
                // `copy_back` unmapped it.
                let system = unsafe { batch.maps.map(dev, page, 0) }?;
                // Cannot fail: room for `npages` runs.
                batch.runs.push(
                    CopyRun {
                        device_pfn: device_pfn + k,
                        system: Some(system),
                        order: 0,
                    },
                    GFP_KERNEL,
                )?;
            }
        } else {
            // SAFETY: A huge page just allocated and locked for this migration.
            unsafe { pfns.set_dst(i, thp, true, false) };
            // SAFETY: As above, for the huge page.
            let system = unsafe { batch.maps.map(dev, thp, huge_order()) }?;
            // Cannot fail: as above.
            batch.runs.push(
                CopyRun {
                    device_pfn,
                    system: Some(system),
                    order: huge_order(),
                },
                GFP_KERNEL,
            )?;
        }
        batch_owner = Some(devmem);
        i += n;
    }
    if let Some(owner) = batch_owner {
        batch.flush(&owner, dir)?;
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
