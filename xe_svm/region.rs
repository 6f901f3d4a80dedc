// SPDX-License-Identifier: GPL-2.0

//! A VRAM region served as device-private memory: its pagemap (`populate_mm`, `device_map`),
//! its allocations (`populate_devmem_pfn`, copies on the region's engine) and their eviction
//! when the backend wants the VRAM back, and revocation when the GPU goes. The provider logic,
//! the same for xe and for the KUnit tests' memory: everything hardware-specific is the
//! [`Backend`]'s.
//!
//! Addresses: a device-private page frame number maps linearly onto the region's device
//! physical addresses (DPA), `pfn_first` onto `dpa_base`. The GPU reaches its own pages by
//! DPA, a peer by the PCIe BAR over the same offset (`io_start + (dpa - dpa_base)`), if the BAR
//! covers it and PCIe peer-to-peer reaches it.

use drm_pagemap::copy::CopyFence;
use drm_pagemap::copy::CopyRun;
use drm_pagemap::copy::Counterpart;
use drm_pagemap::device_private::DevicePrivateRegion;
use drm_pagemap::devmem::Devmem;
use drm_pagemap::devmem::DevmemOps;
use drm_pagemap::devmem::Direction;
use drm_pagemap::devmem::MigrationStats;
use drm_pagemap::migrate;
use drm_pagemap::migrate::migrate_to_devmem;
use drm_pagemap::owner::RegionOwner;
use drm_pagemap::pagemap::Interconnect;
use drm_pagemap::pagemap::MigrateDetails;
use drm_pagemap::pagemap::Pagemap;
use drm_pagemap::pagemap::PagemapAddr;
use drm_pagemap::pagemap::PagemapOps;
use drm_pagemap::pending::task::fatal_signal_pending;
use drm_pagemap::range::PageRange;
use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::mm::Mm;
use kernel::mm::MmapReadGuard;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::Arc;
use kernel::sync::Mutex;
use kernel::time::Instant;
use kernel::time::Monotonic;
use pagemap_util::allocations::Allocations;
use pagemap_util::cache::PagemapCache;
use pagemap_util::owner::Membership;

use crate::backend::Backend;
use crate::backend::CopyAddr;
use crate::backend::CopyDir;
use crate::backend::Proto;
use crate::backend::RegionInfo;
use crate::backend::MAX_COPY;

/// How the GPU reaches its own VRAM: by DPA (xe's `XE_INTERCONNECT_VRAM`).
pub(crate) const LOCAL_VRAM: Interconnect = Interconnect::Driver(0);
/// How a peer reaches this VRAM: a bus address of the BAR (xe's `XE_INTERCONNECT_P2P`).
pub(crate) const PCIE_P2P: Interconnect = Interconnect::Driver(1);

/// The longest timeslice (ms) a migration into a region gets.
pub(crate) const TIMESLICE_MAX_MS: u32 = 5;

/// The most a migration into VRAM moves at once, in aligned pieces: an allocation is one
/// buffer object of contiguous VRAM, and one the size of a whole large range would evict every
/// other user of the GPU.
pub(crate) const PIECE: usize = MAX_COPY;

/// The end of the piece of a range ending at `end` that starts at `at`: the next [`PIECE`]
/// boundary, or `end` if that comes first (also when the boundary would be past the top of
/// the address space).
pub(crate) fn piece_end(at: usize, end: usize) -> usize {
    (at + 1)
        .checked_next_multiple_of(PIECE)
        .map_or(end, |n| n.min(end))
}

/// The longest an unbind spends moving data back to system memory, in ms.
const UNBIND_MS: i64 = 30_000;

/// A VRAM region's device-private memory.
///
/// # Invariants
///
/// `region` has at least `info.usable_size` bytes of pages: each byte of the VRAM has a page.
#[pin_data]
pub(crate) struct Region<B: Backend> {
    backend: B,
    info: RegionInfo,
    region: Arc<DevicePrivateRegion>,
    /// The region's place in its interconnect group (none in the KUnit tests).
    _membership: Option<Membership>,
    stats: Arc<MigrationStats>,
    pagemaps: PagemapCache,
    /// Allocations that may hold data, until their release: what an unbind evicts. Revoked
    /// once the GPU is going: no new allocation, no new pagemap.
    allocations: Pin<KBox<Allocations>>,
}

impl<B: Backend> Region<B> {
    /// The device-private memory of `backend`'s region, whose pages carry `owner`;
    /// `membership` is kept for the region's life.
    pub(crate) fn new(
        backend: B,
        owner: RegionOwner,
        membership: Option<Membership>,
    ) -> Result<Arc<Self>> {
        let info = backend.info();
        info.check()?;
        let size = usize::try_from(info.usable_size).map_err(|_| EINVAL)?;
        let region = Arc::pin_init(DevicePrivateRegion::new(size, c"xe_svm", owner), GFP_KERNEL)?;
        // INVARIANT: The region was made `usable_size` bytes large.
        Arc::pin_init(
            try_pin_init!(Self {
                backend,
                info,
                region,
                _membership: membership,
                stats: Arc::new(MigrationStats::new(), GFP_KERNEL)?,
                pagemaps: PagemapCache::new()?,
                allocations: Allocations::new()?,
            }),
            GFP_KERNEL,
        )
    }

    /// The hardware.
    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// What the region is.
    pub(crate) fn info(&self) -> &RegionInfo {
        &self.info
    }

    /// Migration counters.
    pub(crate) fn stats(&self) -> &MigrationStats {
        &self.stats
    }

    /// The page frame number of the page at `dpa`: `EINVAL` outside the region or unaligned.
    pub(crate) fn dpa_to_pfn(&self, dpa: u64) -> Result<usize> {
        let offset = dpa.checked_sub(self.info.dpa_base).ok_or(EINVAL)?;
        if offset >= self.info.usable_size || offset % PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        // Fits: below `usable_size`, which fits a `usize` (`RegionInfo::check`).
        Ok(self.region.pfn_first() + (offset as usize) / PAGE_SIZE)
    }

    /// The DPA of page `pfn`: `EINVAL` if it is not a page of the region's VRAM.
    pub(crate) fn pfn_to_dpa(&self, pfn: usize) -> Result<u64> {
        let index = pfn.checked_sub(self.region.pfn_first()).ok_or(EINVAL)?;
        let offset = (index as u64).checked_mul(PAGE_SIZE as u64).ok_or(EINVAL)?;
        if offset >= self.info.usable_size {
            return Err(EINVAL);
        }
        Ok(self.info.dpa_base + offset)
    }

    /// The CPU physical address of the BAR over `len` bytes at `dpa`: `EOPNOTSUPP` if the BAR
    /// does not cover them all (a small BAR reaches only the start of VRAM).
    pub(crate) fn bar_of(&self, dpa: u64, len: u64) -> Result<u64> {
        let offset = dpa.checked_sub(self.info.dpa_base).ok_or(EINVAL)?;
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.info.io_size {
            return Err(EOPNOTSUPP);
        }
        Ok(self.info.io_start + offset)
    }

    /// The device-private memory.
    pub(crate) fn device_private(&self) -> &DevicePrivateRegion {
        &self.region
    }

    /// How many allocations are listed: they hold (or may hold) data.
    pub(crate) fn allocations(&self) -> usize {
        self.allocations.len()
    }

    /// A reference to the region's pagemap, created on first use: `ENODEV` once revoked.
    pub(crate) fn pagemap(self: &Arc<Self>) -> Result<ARef<Pagemap>> {
        if self.allocations.is_revoked() {
            return Err(ENODEV);
        }
        self.pagemaps
            .get_or_create(self.backend.dma_device(), &self.region, || {
                // Again under the cache's lock, which an unbind takes after revoking: either it
                // finds this pagemap and revokes it, or this sees the region revoked.
                if self.allocations.is_revoked() {
                    return Err(ENODEV);
                }
                Ok(RegionPagemap {
                    region: self.clone(),
                })
            })
            // A cached one, revived after an unbind revoked it, is refused too.
            .and_then(|pagemap| match pagemap.is_revoked() {
                true => Err(ENODEV),
                false => Ok(pagemap),
            })
    }

    /// The GPU is going: no data moves in any more (`ENODEV`), then everything in VRAM moves
    /// back to system memory. Returns how many allocations were evicted; an allocation that
    /// cannot be (a page stays pinned) keeps its VRAM, and the first error is returned after
    /// every allocation was tried. Stops early on a fatal signal (`EINTR`) and, between two
    /// allocations, once [`UNBIND_MS`] have passed (`ETIMEDOUT`; one allocation's eviction is
    /// bounded on its own: see [`migrate::evict_to_ram`]): what stays in VRAM is reached by CPU
    /// faults while the GPU works, and lost with it.
    pub(crate) fn unbind(&self) -> Result<u32> {
        // Ordered before the eviction reads whether a migration claimed an allocation, as the
        // migration's claim is before its copy reads this (`Allocation::copy`): either the
        // eviction sees the allocation claimed, or the copy sees the region revoked.
        self.allocations.revoke();
        if let Some(pagemap) = self.pagemaps.current() {
            pagemap.revoke();
        }
        // Not kept idle any more: destroyed with its last user.
        self.pagemaps.flush();
        let start = Instant::<Monotonic>::now();
        self.allocations.evict_all(|| {
            if fatal_signal_pending() {
                Some(EINTR)
            } else if start.elapsed().as_millis() > UNBIND_MS {
                Some(ETIMEDOUT)
            } else {
                None
            }
        })
    }

    /// An allocation of at least `npages` pages for a migration of `range` of `mm`, listed
    /// for eviction until its release.
    fn allocate(
        self: &Arc<Self>,
        pagemap: &Pagemap,
        mm: &Mm,
        npages: usize,
    ) -> Result<Arc<Devmem>> {
        if pagemap.is_revoked() || self.allocations.is_revoked() {
            return Err(ENODEV);
        }
        let size = npages
            .checked_mul(PAGE_SIZE)
            .ok_or(ENOMEM)?
            .next_multiple_of(self.info.min_page_size as usize) as u64;
        let slot = Arc::pin_init(EvictSlot::new(), GFP_KERNEL)?;
        // The copies' entries, made now: a copy runs with pages locked, where an allocation
        // could wait on reclaim, which could wait on those pages.
        let entries = KVVec::with_capacity(npages.min(MAX_COPY / PAGE_SIZE), GFP_KERNEL)?;
        let entries = KBox::pin_init(
            kernel::new_mutex!(entries, "xe_svm::Allocation::entries"),
            GFP_KERNEL,
        )?;
        let alloc = self.backend.alloc(size, slot.clone())?;
        let pfns = self.pfns_of(&alloc, npages)?;
        let id = self.allocations.next_id();
        let devmem = Devmem::new(
            pagemap.into(),
            Some(mm),
            npages,
            self.stats.clone(),
            Allocation {
                _alloc: alloc,
                slot: slot.clone(),
                entries,
                pfns,
                id,
                region: self.clone(),
            },
        )?;
        // Before the migration accepts it (`ENODEV` once the GPU is going).
        self.allocations.list(id, &devmem)?;
        slot.set_live(&devmem);
        Ok(devmem)
    }

    /// The page frame numbers of the first `npages` pages of `alloc`, in order.
    fn pfns_of(&self, alloc: &B::Alloc, npages: usize) -> Result<KVVec<usize>> {
        let mut pfns = KVVec::with_capacity(npages, GFP_KERNEL)?;
        let result = self.backend.blocks(alloc, &mut |dpa, size| {
            let first = self.dpa_to_pfn(dpa)?;
            let pages = usize::try_from(size).map_err(|_| EINVAL)? / PAGE_SIZE;
            // The block must lie inside the region.
            self.pfn_to_dpa(first + pages.checked_sub(1).ok_or(EINVAL)?)?;
            // Bounded by the allocation's pages: stops once `npages` are listed.
            for k in 0..pages {
                if pfns.len() == npages {
                    break;
                }
                pfns.push_within_capacity(first + k).map_err(|_| ENOMEM)?;
            }
            Ok(())
        });
        result?;
        if pfns.len() < npages {
            return Err(EINVAL);
        }
        Ok(pfns)
    }
}

/// How an allocation stands for the backend's eviction of it.
enum SlotState {
    /// Not yet listed: a migration may be about to use it.
    Fresh,
    /// Listed, maybe holding data.
    Live(Arc<Devmem>),
    /// Released: no page refers to it.
    Gone,
}

/// What the backend calls when it wants an allocation's VRAM back: moves the allocation's data
/// to system memory, then lets the VRAM go.
///
/// The transitions: `Fresh` (refuses, `EBUSY`) until the allocation is listed, then `Live`
/// (evicts: `EBUSY` while a migration is still placing its pages or the owner's mmap lock is
/// contended, as the backend may call with locks held that these wait behind), then `Gone`
/// (nothing to do) once released, which a successful eviction waits for.
#[pin_data]
pub(crate) struct EvictSlot {
    #[pin]
    state: Mutex<SlotState>,
}

impl EvictSlot {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            state <- kernel::new_mutex!(SlotState::Fresh, "xe_svm::EvictSlot::state"),
        })
    }

    fn set_live(&self, devmem: &Arc<Devmem>) {
        *self.state.lock() = SlotState::Live(devmem.clone());
    }

    /// Called from the allocation's release: breaks the reference cycle with the allocation.
    fn set_gone(&self) {
        let old = core::mem::replace(&mut *self.state.lock(), SlotState::Gone);
        drop(old);
    }

    /// Moves the allocation's data to system memory: `Ok` once none is left in VRAM.
    pub(crate) fn evict(&self) -> Result {
        let devmem = match &*self.state.lock() {
            SlotState::Fresh => return Err(EBUSY),
            SlotState::Gone => return Ok(()),
            SlotState::Live(devmem) => devmem.clone(),
        };
        let result = migrate::try_evict_to_ram(&devmem);
        // Maybe the last reference: frees the backend's allocation from inside its `evict`,
        // which the backend allows.
        drop(devmem);
        match result {
            Ok(true) => Ok(()),
            // Not claimed (cannot happen after `try_evict_to_ram` agreed to evict): kept.
            Ok(false) => Err(EBUSY),
            Err(e) => Err(e),
        }
    }
}

/// The pagemap ops of a region.
struct RegionPagemap<B: Backend> {
    region: Arc<Region<B>>,
}

// SAFETY: The type is private to this module, whose module `module` returns.
unsafe impl<B: Backend> PagemapOps for RegionPagemap<B> {
    fn module(&self) -> &'static ThisModule {
        kernel::module::this_module::<crate::LocalModule>()
    }

    // The GPU reaches its VRAM by DPA; a peer by the BAR, mapped for it, where PCIe
    // peer-to-peer reaches it and the BAR covers the pages; anything else gets `EOPNOTSUPP`.
    fn device_map(
        &self,
        pagemap: &Pagemap,
        dev: &Device,
        pfn: usize,
        order: u32,
        dir: DataDirection,
    ) -> Result<PagemapAddr> {
        let region = &self.region;
        let pages = 1usize.checked_shl(order).ok_or(EINVAL)?;
        let dpa = region.pfn_to_dpa(pfn)?;
        // The last page is in the region too.
        region.pfn_to_dpa(pfn.checked_add(pages - 1).ok_or(EINVAL)?)?;
        if core::ptr::eq(dev, pagemap.device()) {
            return Ok(PagemapAddr {
                addr: dpa,
                proto: LOCAL_VRAM,
                order,
                dir,
            });
        }
        if !region.backend.p2p_reachable(dev) {
            return Err(EOPNOTSUPP);
        }
        let len = (pages * PAGE_SIZE) as u64;
        let phys = region.bar_of(dpa, len)?;
        let addr = region.backend.map_peer(dev, phys, len, dir)?;
        Ok(PagemapAddr {
            addr,
            proto: PCIE_P2P,
            order,
            dir,
        })
    }

    fn device_unmap(&self, _pagemap: &Pagemap, dev: &Device, addr: PagemapAddr) {
        if addr.proto != PCIE_P2P {
            return;
        }
        let len = (PAGE_SIZE as u64) << addr.order;
        // SAFETY: The core gives back, once, a mapping `device_map` made for `dev`, which
        // nothing uses any more.
        unsafe {
            self.region
                .backend
                .unmap_peer(dev, addr.addr, len, addr.dir)
        };
    }

    fn populate_mm(
        &self,
        pagemap: &Pagemap,
        mm: &Mm,
        mmap: &MmapReadGuard<'_>,
        range: PageRange,
        details: &MigrateDetails,
    ) -> Result {
        let region = &self.region;
        let unit = region.info.min_page_size as usize;
        // VRAM pages come in `unit`s on GPUs that need 64 KiB pages: ranges must too.
        if range.start() % unit != 0 || range.end() % unit != 0 {
            return Err(EINVAL);
        }
        if range.size() as u64 > region.info.usable_size {
            return Err(ENOMEM);
        }
        if pagemap.is_revoked() || region.allocations.is_revoked() {
            return Err(ENODEV);
        }
        let details = &MigrateDetails {
            timeslice_ms: details.timeslice_ms.min(TIMESLICE_MAX_MS),
            ..*details
        };
        region.backend.pm_get()?;
        // In aligned pieces of at most `PIECE`, each all or nothing: a failure leaves the
        // pieces before it moved. Bounded by the range; a fatal signal stops it.
        let mut result = Ok(());
        let mut at = range.start();
        while at < range.end() {
            if fatal_signal_pending() {
                result = Err(EINTR);
                break;
            }
            let next = piece_end(at, range.end());
            let moved = PageRange::new(at, next).and_then(|piece| {
                migrate_to_devmem(pagemap, mmap, piece, details, |npages| {
                    region.allocate(pagemap, mm, npages)
                })
            });
            if let Err(e) = moved {
                result = Err(e);
                break;
            }
            at = next;
        }
        region.backend.pm_put();
        result
    }
}

/// VRAM backing one migration.
struct Allocation<B: Backend> {
    // Held for its VRAM, freed first: the backend calls `slot` until then.
    _alloc: B::Alloc,
    slot: Arc<EvictSlot>,
    /// The entries of a copy call, one per page: taken by one copy at a time.
    entries: Pin<KBox<Mutex<KVVec<CopyAddr>>>>,
    /// The pages, in order, as the backend's blocks gave them.
    pfns: KVVec<usize>,
    id: u64,
    region: Arc<Region<B>>,
}

impl<B: Backend> Allocation<B> {
    /// Copies `runs` between the allocation's pages and their counterparts, on the region's
    /// engine, and waits for it.
    ///
    /// # Safety
    ///
    /// As [`DevmemOps::copy_to_devmem`]: the runs' memory is mapped for the pagemap's device
    /// (the backend's DMA device) until this returns.
    unsafe fn copy(&self, runs: &[CopyRun], dir: CopyDir) -> Result {
        let region = &self.region;
        let backend = &region.backend;
        let map_dir = match dir {
            CopyDir::ToVram => DataDirection::ToDevice,
            CopyDir::FromVram => DataDirection::FromDevice,
        };
        // Nothing moves in once the GPU is going: an unbind that saw this allocation
        // unclaimed does not evict it (see `Region::unbind`). The data moving out may.
        if dir == CopyDir::ToVram && region.allocations.is_revoked() {
            return Err(ENODEV);
        }
        let mut addrs = self.entries.lock();
        // Two calls in flight at most: each new one waits for the one before it.
        let mut pending = None;
        let result = plan_batches(region, runs, map_dir, &mut addrs, |dpa, batch| {
            // SAFETY: The entries come from the runs, mapped until this function returns,
            // which it does only after waiting for every call; `dpa` is this allocation's.
            let fence = unsafe { backend.copy(dir, dpa, batch) }?;
            match pending.replace(fence) {
                Some(prev) => backend.wait(prev),
                None => Ok(()),
            }
        });
        // Also after an error: the engine may still read or write the memory.
        let last = pending.map_or(Ok(()), |fence| backend.wait(fence));
        result.and(last)
    }
}

/// Groups `runs` into copy calls: each a run of pages contiguous in VRAM, at most
/// [`MAX_COPY`] bytes, with one entry per page in `addrs` (cleared before each call, whose
/// capacity bounds a call); `submit(dpa, entries)` makes each call. Runs from zeroes need no
/// copy (fresh VRAM reads zeroes) and end a call.
pub(crate) fn plan_batches<B: Backend>(
    region: &Region<B>,
    runs: &[CopyRun],
    dir: DataDirection,
    addrs: &mut KVVec<CopyAddr>,
    mut submit: impl FnMut(u64, &mut [CopyAddr]) -> Result,
) -> Result {
    addrs.clear();
    let cap = addrs.capacity().min(MAX_COPY / PAGE_SIZE);
    if cap == 0 {
        return if runs.is_empty() { Ok(()) } else { Err(EINVAL) };
    }
    let mut start = 0u64;
    // Bounded by the runs, and each run by its order.
    for run in runs {
        let (base, proto) = match run.counterpart {
            Counterpart::Zeroes => {
                if !addrs.is_empty() {
                    submit(start, addrs)?;
                    addrs.clear();
                }
                continue;
            }
            Counterpart::System(addr) => (addr, Proto::System),
            Counterpart::Peer(addr) if addr.proto == PCIE_P2P => (addr.addr, Proto::P2p),
            // A peer's own interconnect, or a foreign provider's: not ours to copy from.
            Counterpart::Peer(_) => return Err(EINVAL),
        };
        let pages = run.pages();
        if pages > cap {
            return Err(EINVAL);
        }
        let dpa = region.pfn_to_dpa(run.device_pfn)?;
        // The whole run is in the region.
        region.pfn_to_dpa(run.device_pfn + (pages - 1))?;
        let next = start + (addrs.len() * PAGE_SIZE) as u64;
        if !addrs.is_empty() && (dpa != next || addrs.len() + pages > cap) {
            submit(start, addrs)?;
            addrs.clear();
        }
        if addrs.is_empty() {
            start = dpa;
        }
        // Bounded by the run's pages (at most 512).
        for k in 0..pages {
            let order = if k == 0 { run.order } else { 0 };
            let addr = CopyAddr::new(base + (k * PAGE_SIZE) as u64, proto, order, dir);
            addrs.push_within_capacity(addr).map_err(|_| ENOMEM)?;
        }
    }
    if !addrs.is_empty() {
        submit(start, addrs)?;
        addrs.clear();
    }
    Ok(())
}

// SAFETY: `populate_devmem_pfn` hands out the pages of the backend's blocks of `alloc`, which
// this allocation holds until it is dropped (the backend frees them only then, or once `slot`
// let them go after every page left), always the same ones in the same order. The type is
// private to this module, whose module `module` returns.
unsafe impl<B: Backend> DevmemOps for Allocation<B> {
    fn module(&self) -> &'static ThisModule {
        kernel::module::this_module::<crate::LocalModule>()
    }

    fn populate_devmem_pfn(&self, pfns: &mut [usize]) -> Result {
        let mine = self.pfns.get(..pfns.len()).ok_or(EINVAL)?;
        pfns.copy_from_slice(mine);
        Ok(())
    }

    unsafe fn copy_to_devmem(&self, runs: &[CopyRun], fence: CopyFence) -> Result {
        // SAFETY: The caller's contract is `copy`'s.
        let result = unsafe { self.copy(runs, CopyDir::ToVram) };
        fence.signal(result);
        Ok(())
    }

    unsafe fn copy_to_ram(&self, runs: &[CopyRun], _dir: Direction, fence: CopyFence) -> Result {
        // SAFETY: As above.
        let result = unsafe { self.copy(runs, CopyDir::FromVram) };
        fence.signal(result);
        Ok(())
    }

    fn release(&self) {
        self.slot.set_gone();
        self.region.allocations.unlist(self.id);
    }
}
