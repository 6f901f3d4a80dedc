// SPDX-License-Identifier: GPL-2.0

//! Migration into device memory: collect a range, allocate for what moves, copy, remap (all or
//! nothing).

use super::*;

/// Moves `range` of the address space locked by `mmap` into `pagemap`'s memory, all or
/// nothing, and returns the number of pages that moved.
///
/// Pages already in `pagemap`'s memory stay; for the others `alloc(n)` is asked for an
/// allocation of at least `n` pages of `pagemap` (a fully resident range allocates nothing).
/// The allocation `alloc` returns is accepted: its [`DevmemOps::release`] runs exactly once,
/// when no page refers to it any more, also when the migration then fails.
///
/// Pages in a peer's memory (a pagemap of the same provider sharing `pagemap`'s owner: a
/// device on the same interconnect) are copied straight from there, through the peer's
/// [`PagemapOps::device_map`] of them for `pagemap`'s device, each folio once; they count as
/// [`Direction::ToPeer`] in the peer's statistics and in `pages_from_peer` here.
///
/// If any page cannot be collected (pinned, locked, in the memory of a device with another
/// owner or of another provider, racing), nothing moves and the result is `EBUSY`. Refuses
/// unaligned or empty ranges (`EINVAL`),
/// ranges larger than the pagemap's memory (`ENOMEM`), addresses with no mapping (`ENOENT`),
/// ranges crossing the end of their mapping (`EINVAL`), shared mappings, and pages of private
/// file mappings that are still the file's own pages rather than the process's private copies
/// (`EOPNOTSUPP`): only anonymous memory can live in device-private memory. An allocation
/// backs one migration only (`EBUSY` on reuse).
///
/// [`PagemapOps::device_map`]: crate::pagemap::PagemapOps::device_map
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
    let file_backed = !vma_is_anonymous(vma);
    // The arrays are allocated before the pages are collected and locked (the copy's fence
    // and the provider's job are allocated after: small, and an error there moves nothing).
    let mut pfns = PfnArrays::new(npages)?;
    let mut device_pfns = KVVec::from_elem(0usize, npages, GFP_KERNEL)?;
    let mut sorted = KVVec::from_elem(0usize, npages, GFP_KERNEL)?;
    let mut copies = CopyRuns::new(npages)?;
    let zdd = Zdd::reserve()?;
    // The allocation the migration claims, marked populated once it has finished.
    let mut claimed = None;

    let mut select = Select::SYSTEM | Select::DEVICE_PRIVATE;
    if details.folios == Folios::Huge {
        select |= Select::COMPOUND;
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
    let result = run_migrate_vma(
        vma,
        range,
        region.owner(),
        select,
        None,
        // Peer pages that moved count in their allocations' statistics.
        Some(Direction::ToPeer),
        &mut pfns,
        |pfns| placement.place(pfns, start, end, zdd, alloc),
    );
    if let Some(devmem) = claimed {
        devmem.set_populated();
    }
    let (placed, moved) = result?;
    let (devmem, wanted, from_peer) = match placed? {
        Some(placed) => placed,
        None => return Ok(0),
    };
    devmem.stats().count(Direction::ToDevice, moved);
    if moved < wanted {
        // Some page changed under us between setup and now; what moved has its data.
        return Err(EBUSY);
    }
    devmem
        .stats()
        .pages_from_peer
        .fetch_add(from_peer as u64, kernel::sync::atomic::Relaxed);
    Ok(moved)
}

/// What placing a range in device memory needs besides the collected pages.
struct Placement<'a> {
    pagemap: &'a Pagemap,
    device_pfns: &'a mut KVVec<usize>,
    sorted: &'a mut KVVec<usize>,
    copies: &'a mut CopyRuns,
    file_backed: bool,
    details: &'a MigrateDetails,
    claimed: &'a mut Option<Arc<Devmem>>,
}

impl Placement<'_> {
    /// Sets up `pfns.dst` with device pages of an allocation from `alloc` and copies the data
    /// there. Returns the allocation, how many pages are to move and how many of those come
    /// from a peer's memory, or `None` if every page
    /// already is in the pagemap's memory; on error no destination page is set up any more
    /// (the caller abandons them).
    ///
    /// A huge source (a transparent huge page, or a huge hole) moves into one huge device
    /// folio when the provider's pages for it are contiguous and aligned; otherwise into base
    /// pages, and the core splits the source.
    fn place(
        self,
        pfns: &mut Pfns<'_>,
        start: usize,
        end: usize,
        zdd: kernel::sync::UniqueArc<core::mem::MaybeUninit<Zdd>>,
        alloc: impl FnOnce(usize) -> Result<Arc<Devmem>>,
    ) -> Result<Option<(Arc<Devmem>, usize, usize)>> {
        let region = self.pagemap.region();
        // At most the region's pages (`migrate_to_devmem` refuses more): the walks below are
        // bounded whatever range a caller passes.
        let npages = pfns.len();
        // Pages already in this pagemap stay; everything else moves, or nothing does.
        let mut moving = 0;
        let mut from_peer = 0;
        let mut i = 0;
        // One pass over the arrays: each round moves past at least one entry.
        while i < npages {
            let s = pfns.src()[i];
            if s & MIGRATE == 0 {
                // Some page could not be collected; in a file mapping, a hole.
                return Err(if self.file_backed { EOPNOTSUPP } else { EBUSY });
            }
            match pfns.kind(i, Some(region)) {
                Kind::Own => {}
                // A peer's memory (sharing our owner): copied over the interconnect, if the
                // peer is of our provider (whose engine knows the peer's addresses).
                Kind::Ours => {
                    let same_provider = pfns.devmem_of(i).is_some_and(|peer| {
                        core::ptr::eq(peer.pagemap().ops().module(), self.pagemap.ops().module())
                    });
                    if !same_provider {
                        return Err(EBUSY);
                    }
                    moving += span(s);
                    from_peer += span(s);
                }
                // Another driver's memory that shares our owner: we cannot read it.
                Kind::Foreign => return Err(EBUSY),
                Kind::System => {
                    if self.file_backed && !pfns.is_anon(i) {
                        // The file's own pages (or a hole): the core would refuse to move
                        // them after the copy.
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
        let claim = devmem.claim().ok_or(EBUSY)?;
        *self.claimed = Some(devmem.clone());
        // From here the allocation is accepted: the zone-device data's drop runs `release`,
        // also on the errors below.
        let zdd = Zdd::init(zdd, devmem.clone());
        if !core::ptr::eq(devmem.pagemap(), self.pagemap) || devmem.npages() < moving {
            return Err(EINVAL);
        }
        let mut pages = devmem.populate(
            &claim,
            &mut self.device_pfns[..moving],
            &mut self.sorted[..],
        )?;
        devmem.set_va_range(start, end);

        let dev = self.pagemap.device();
        let mut next = 0;
        let mut i = 0;
        // The same walk as above: bounded by the region's pages.
        while i < npages {
            let s = pfns.src()[i];
            let n = span(s);
            if pfns.kind(i, Some(region)) == Kind::Own {
                i += n;
                continue;
            }
            let run = pages.pfns().get(next..next + n).ok_or(EINVAL)?;
            let first = run[0];
            let huge = n > 1 && first % n == 0 && (1..n).all(|k| run[k] == first + k);
            let folios = if huge { 1 } else { n };
            // One folio, or its pages: at most a huge page's.
            for f in 0..folios {
                pfns.set_device_dst(i + f, &mut pages, next + f, &zdd, huge, s & WRITE != 0)?;
            }
            if pfns.kind(i, Some(region)) == Kind::Ours {
                // A peer's folio: read over the interconnect, whole if it moves whole.
                // A peer that cannot map its page for us has no link to us: not movable.
                let busy = |e: Error| if e == EOPNOTSUPP { EBUSY } else { e };
                if huge {
                    let addr = pfns.map_peer(i, None, dev).map_err(busy)?;
                    pfns.add_peer_run(self.copies, first, addr)?;
                } else {
                    // One folio's pages: at most a huge page's.
                    for k in 0..n {
                        let device_pfn = pages.pfn(next + k).ok_or(EINVAL)?;
                        let addr = pfns.map_peer(i, Some(k), dev).map_err(busy)?;
                        pfns.add_peer_run(self.copies, device_pfn, addr)?;
                    }
                }
                next += n;
                i += n;
                continue;
            }
            // The source folio mapped whole for the device: one address for its `n` pages
            // (none for a hole: zeroes); page by page where the device cannot map it whole.
            let hole = pfns.src_is_hole(i);
            let source_order = if n > 1 { huge_order() } else { 0 };
            let whole = match hole || !maps_whole(dev, source_order) {
                true => None,
                false => Some(pfns.map(Side::Src, i, dev)?),
            };
            // Room for `npages` runs.
            if huge && (hole || whole.is_some()) {
                pfns.add_run(self.copies, first, whole, huge_order())?;
            } else {
                // One folio's pages: at most a huge page's.
                for k in 0..n {
                    let device_pfn = pages.pfn(next + k).ok_or(EINVAL)?;
                    let system = match whole {
                        Some(addr) => Some(addr + (k * PAGE_SIZE) as DmaAddress),
                        None if hole => None,
                        None => Some(pfns.map_page(Side::Src, i, k, dev)?),
                    };
                    pfns.add_run(self.copies, device_pfn, system, 0)?;
                }
            }
            next += n;
            i += n;
        }
        pfns.copy_to_devmem(&devmem, self.copies)?;
        // The timeslice starts once the data is there, before the pages become visible to
        // CPU faults (`migrate_vma_pages` comes next).
        devmem.start_timeslice(self.details.timeslice_ms);
        Ok(Some((devmem, moving, from_peer)))
    }
}
