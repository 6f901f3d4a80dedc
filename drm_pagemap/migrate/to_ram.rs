// SPDX-License-Identifier: GPL-2.0

//! Migration back to system memory over a VMA, in bounded chunks: the explicit way back and the
//! copy both the CPU-fault and the eviction paths use.

use super::*;

/// The runs of one copy back to system memory, for at most a given number of pages: empty
/// between operations.
pub(super) struct CopyBatch {
    runs: CopyRuns,
}

impl CopyBatch {
    pub(super) fn new(npages: usize) -> Result<Self> {
        Ok(Self {
            runs: CopyRuns::new(npages)?,
        })
    }

    /// Has `owner`'s engine copy the batch and waits for it, then lets the device go of the
    /// system pages.
    fn flush(&mut self, pfns: &mut Pfns<'_>, owner: &Devmem, dir: Direction) -> Result {
        let copied = pfns.copy_to_ram(owner, &self.runs, dir);
        self.runs.clear();
        pfns.unmap_all();
        copied
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

/// Which of the collected device pages a migration back moves.
#[derive(Clone, Copy)]
pub(super) enum Which<'a> {
    /// Those of one region (one device's memory; its peers share the owner).
    Region(&'a DevicePrivateRegion),
    /// Those of one allocation.
    Allocation(&'a Devmem),
}

impl Which<'_> {
    fn takes(&self, devmem: &Devmem) -> bool {
        match self {
            Which::Region(region) => core::ptr::eq(devmem.pagemap().region(), *region),
            Which::Allocation(only) => core::ptr::eq(*only, devmem),
        }
    }
}

/// Moves the device pages of `range` of `vma` with the owner `owner` that `which` takes back
/// to system memory. At most as many pages as
/// `bufs` was made for. `fault` is the CPU fault this serves, if any (its page inside the
/// range).
#[expect(clippy::too_many_arguments)]
pub(super) fn vma_to_ram(
    bufs: &mut BackBuffers,
    vma: &VmaRef,
    range: PageRange,
    owner: Owner,
    which: Which<'_>,
    fault: Option<&VmFault<'_>>,
    dir: Direction,
    folios: Folios,
) -> Result<usize> {
    bufs.pfns.reset(range.size() / PAGE_SIZE)?;
    let mut select = Select::DEVICE_PRIVATE;
    if folios == Folios::Huge {
        select |= Select::COMPOUND;
    }
    let batch = &mut bufs.batch;
    let start = range.start();
    let (copied, moved) = run_migrate_vma(
        vma,
        range,
        owner,
        select,
        fault,
        Some(dir),
        &mut bufs.pfns,
        |pfns| copy_back(pfns, batch, Some(vma), start, which, dir, folios),
    )?;
    copied?;
    Ok(moved)
}

/// Moves the device pages of `range` of `vma` back to system memory in chunks of at most
/// [`CHUNK_PAGES`], aligned so that a huge folio is never cut; as [`vma_to_ram`].
fn vma_to_ram_chunked(
    vma: &VmaRef,
    range: PageRange,
    region: &DevicePrivateRegion,
    dir: Direction,
    folios: Folios,
) -> Result<usize> {
    let chunk = CHUNK_PAGES * PAGE_SIZE;
    let (start, end) = (range.start(), range.end());
    let mut bufs = BackBuffers::new((range.size() / PAGE_SIZE).min(CHUNK_PAGES))?;
    let mut moved = 0;
    let mut addr = start;
    // One pass per chunk of a range inside one VMA.
    while addr < end {
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        let stop = end.min((addr & !(chunk - 1)).saturating_add(chunk));
        let part = PageRange::new(addr, stop)?;
        let which = Which::Region(region);
        moved += vma_to_ram(
            &mut bufs,
            vma,
            part,
            region.owner(),
            which,
            None,
            dir,
            folios,
        )?;
        addr = stop;
    }
    Ok(moved)
}

/// Allocates system pages for the collected device pages of `pfns.src` that are ours and
/// `which` takes and copies the data into them, one batch per device allocation through
/// that allocation's own ops. Other pages are left where they are. With no `vma` (eviction)
/// pages come from any node. `batch` is empty, and the pages unmapped for the device, when
/// this returns.
///
/// A huge device folio goes to a transparent huge page for [`Folios::Huge`] if one can be had; else
/// to base pages, and the core splits the device folio (which eviction, with no VMA, cannot:
/// there it is `ENOMEM`).
pub(super) fn copy_back(
    pfns: &mut Pfns<'_>,
    batch: &mut CopyBatch,
    vma: Option<&VmaRef>,
    start: usize,
    which: Which<'_>,
    dir: Direction,
    folios: Folios,
) -> Result {
    let copied = fill_and_copy(pfns, batch, vma, start, which, dir, folios);
    // What is left was not copied (an error): the device loses access before the migration
    // abandons the destinations.
    batch.runs.clear();
    pfns.unmap_all();
    copied
}

/// [`copy_back`]'s work, which may leave `batch` filled on error.
fn fill_and_copy(
    pfns: &mut Pfns<'_>,
    batch: &mut CopyBatch,
    vma: Option<&VmaRef>,
    start: usize,
    which: Which<'_>,
    dir: Direction,
    folios: Folios,
) -> Result {
    let npages = pfns.len();
    let mut batch_owner: Option<Arc<Devmem>> = None;
    let mut i = 0;
    while i < npages {
        let s = pfns.src()[i];
        let n = span(s);
        // Not collected, a system page, or another driver's: stays.
        let devmem = match pfns.devmem_of(i) {
            Some(devmem) if s & MIGRATE != 0 && which.takes(devmem) => devmem,
            _ => {
                i += n;
                continue;
            }
        };
        // A reference is taken once per batch, not per page.
        if batch_owner.as_ref().is_none_or(|o| !Arc::ptr_eq(o, devmem)) {
            if let Some(owner) = batch_owner.replace(devmem.clone()) {
                batch.flush(pfns, &owner, dir)?;
            }
        }
        let Some(devmem) = &batch_owner else {
            return Err(EINVAL);
        };
        let dev = devmem.pagemap().device();
        let addr = if vma.is_some() {
            start + i * PAGE_SIZE
        } else {
            0
        };
        // The `n` pages of its folio follow it.
        let device_pfn = pfns.src_pfn(i);
        let thp = match n > 1 && folios == Folios::Huge {
            true => NewPage::alloc_huge(vma, addr),
            false => None,
        };
        if n > 1 && thp.is_none() && vma.is_none() {
            return Err(ENOMEM);
        }
        // Room for `npages` runs.
        if let Some(thp) = thp {
            pfns.set_new_dst(i, thp)?;
            if maps_whole(dev, huge_order()) {
                let system = pfns.map(Side::Dst, i, dev)?;
                pfns.add_run(&mut batch.runs, device_pfn, Some(system), huge_order())?;
            } else {
                // The device cannot map it whole: page by page.
                for k in 0..n {
                    let system = pfns.map_page(Side::Dst, i, k, dev)?;
                    pfns.add_run(&mut batch.runs, device_pfn + k, Some(system), 0)?;
                }
            }
        } else {
            for k in 0..n {
                let page = NewPage::alloc(vma, addr + k * PAGE_SIZE).ok_or(ENOMEM)?;
                pfns.set_new_dst(i + k, page)?;
                let system = pfns.map(Side::Dst, i + k, dev)?;
                pfns.add_run(&mut batch.runs, device_pfn + k, Some(system), 0)?;
            }
        }
        i += n;
    }
    if let Some(owner) = batch_owner {
        batch.flush(pfns, &owner, dir)?;
    }
    Ok(())
}

/// Moves whatever of `range` of the address space locked by `mmap` lives in `region` (one
/// device's memory: not its peers', which share its owner) back to system memory, in chunks
/// of at most [`CHUNK_PAGES`]. Returns the pages moved; `EINTR` if a fatal
/// signal arrives meanwhile (what moved until then stays moved).
///
/// Huge device folios come back as transparent huge pages where the VMA allows, unless
/// `folios` is [`Folios::Base`].
pub fn migrate_to_ram(
    mmap: &MmapReadGuard<'_>,
    range: PageRange,
    region: &DevicePrivateRegion,
    folios: Folios,
) -> Result<usize> {
    let (start, end) = (range.start(), range.end());
    let mut moved = 0;
    let mut addr = start;
    while addr < end {
        let vma = mmap.vma_lookup(addr).ok_or(ENOENT)?;
        let stop = end.min(vma.end());
        let part = PageRange::new(addr, stop)?;
        moved += vma_to_ram_chunked(vma, part, region, Direction::ToRam, folios)?;
        addr = stop;
    }
    Ok(moved)
}
