// SPDX-License-Identifier: GPL-2.0

//! A virtual GPU's device memory: a device-private region, its allocator, its real backing
//! pages, its copy engine and its pagemap.

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
use drm_pagemap::owner::Owner;
use drm_pagemap::owner::RegionOwner;
use drm_pagemap::pagemap::Folios;
use drm_pagemap::pagemap::Interconnect;
use drm_pagemap::pagemap::MigrateDetails;
use drm_pagemap::pagemap::Pagemap;
use drm_pagemap::pagemap::PagemapAddr;
use drm_pagemap::pagemap::PagemapOps;
use drm_pagemap::pending::task::fatal_signal_pending;
use drm_pagemap::range::PageRange;
use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::drm;
use kernel::gpu::buddy::AllocatedBlocks;
use kernel::gpu::buddy::GpuBuddy;
use kernel::gpu::buddy::GpuBuddyAllocFlags;
use kernel::gpu::buddy::GpuBuddyAllocMode;
use kernel::gpu::buddy::GpuBuddyParams;
use kernel::mm::Mm;
use kernel::mm::MmapReadGuard;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::ptr::Alignment;
use kernel::sizes::SZ_2M;
use kernel::sizes::SZ_4K;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Full;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use pagemap_util::allocations::Allocations;
use pagemap_util::cache::PagemapCache;

use crate::driver::VgpuDevice;
use crate::driver::VgpuDriver;
use crate::engine::Backing;
use crate::engine::CopyDir;
use crate::engine::CopyEngine;
use crate::engine::Peers;
use crate::engine::VramPages;
use crate::fabric::Fabric;
use crate::fabric::Memory;
use crate::fabric::MemoryEntry;

/// The GPU's huge-folio policy (module parameter and debugfs `vgpu<N>/huge_folios`).
pub(crate) fn folios(dev: &VgpuDevice) -> Folios {
    match dev.huge_folios.load(Relaxed) {
        0 => Folios::Base,
        _ => Folios::Huge,
    }
}

/// Which pending signals stop an eviction of the whole memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signals {
    /// Any: a caller that can retry (the `EVICT` ioctl).
    Any,
    /// Only a fatal one: a device going away, which must not leave data behind because its
    /// writer got a signal.
    Fatal,
}

/// Smallest allocation unit of device memory.
pub(crate) const VRAM_PAGE_SIZE: usize = SZ_4K;

/// The device memory of one virtual GPU.
#[pin_data]
pub(crate) struct Vram {
    /// The GPU's index on its fabric.
    index: u32,
    /// This memory's entry on the interconnect, where linked peers find it (also once the
    /// GPU is unplugged, while the memory lives).
    entry: MemoryEntry,
    region: Arc<DevicePrivateRegion>,
    allocator: GpuBuddy,
    engine: CopyEngine,
    stats: Arc<MigrationStats>,
    /// Error injection (debugfs `vgpu<N>/fail_allocs`): how many of the next allocations
    /// fail with `ENOMEM`.
    pub(crate) fail_allocs: Atomic<u32>,
    /// Error injection (debugfs `vgpu<N>/fail_copies`): how many of the next copy jobs fail
    /// with `EIO`.
    pub(crate) fail_copies: Atomic<u32>,
    /// Pages of linked peers' memory the GPU read or wrote in place.
    peer_accesses: Atomic<u64>,
    /// Pagemaps of this memory created and destroyed (debugfs `vgpu<N>/pagemaps`): a pagemap
    /// stays cached, idle, for a while after its last user.
    pub(crate) pagemaps_created: Atomic<u32>,
    pub(crate) pagemaps_destroyed: Atomic<u32>,
    /// Device policy: the longest timeslice (ms) a migration into this memory gets; longer
    /// requests are clamped to it, whichever GPU's client asks (through a pagemap fd too).
    /// Set from the module parameter, changed in debugfs (at most [`crate::TIMESLICE_MAX_MS`]).
    pub(crate) timeslice_max_ms: Atomic<u32>,
    /// GPU SVM counters of the VMs on this GPU.
    pub(crate) svm_stats: crate::svm::SvmStats,
    /// Allocations holding data, until their release op: what eviction evicts. Revoked once
    /// the GPU is unplugged: no new allocation, no new pagemap.
    allocations: Pin<KBox<Allocations>>,
    pagemaps: PagemapCache,
}

/// Takes one from an error-injection counter; true if this operation is to fail.
fn inject(counter: &Atomic<u32>) -> bool {
    let mut old = counter.load(Relaxed);
    while old > 0 {
        match counter.cmpxchg(old, old - 1, Full) {
            Ok(_) => return true,
            Err(cur) => old = cur,
        }
    }
    false
}

impl Vram {
    /// Creates `size` bytes of device memory whose pages carry the device-private `owner`.
    pub(crate) fn new(
        index: u32,
        fabric: Arc<Fabric>,
        size: usize,
        owner: impl Into<RegionOwner>,
        timeslice_max_ms: u32,
        engine_name: &CStr,
    ) -> Result<impl PinInit<Self, Error>> {
        let region = Arc::pin_init(DevicePrivateRegion::new(size, c"vgpu", owner), GFP_KERNEL)?;
        let pages = Arc::new(
            VramPages {
                backing: Backing::new(size)?,
                pfn_first: region.pfn_first(),
                bytes_copied: Atomic::new(0),
                copy_delay_ms: Atomic::new(0),
                queued: Atomic::new(0),
            },
            GFP_KERNEL,
        )?;
        let entry = fabric.add_memory(index, pages.clone(), region.clone())?;
        let engine = CopyEngine::new(engine_name, pages)?;
        Ok(try_pin_init!(Self {
            index,
            entry,
            region,
            allocator: GpuBuddy::new(GpuBuddyParams {
                base_offset: 0,
                size: size as u64,
                chunk_size: Alignment::new::<VRAM_PAGE_SIZE>(),
            })?,
            engine,
            stats: Arc::new(MigrationStats::new(), GFP_KERNEL)?,
            fail_allocs: Atomic::new(0),
            fail_copies: Atomic::new(0),
            peer_accesses: Atomic::new(0),
            timeslice_max_ms: Atomic::new(timeslice_max_ms),
            svm_stats: crate::svm::SvmStats::default(),
            pagemaps_created: Atomic::new(0),
            pagemaps_destroyed: Atomic::new(0),
            allocations: Allocations::new()?,
            pagemaps: PagemapCache::new()?,
        }))
    }

    /// Size in bytes. The device-private region behind it may be larger: the core mm hands
    /// out physical address space in whole memory sections.
    pub(crate) fn size(&self) -> u64 {
        self.allocator.size()
    }

    /// Bytes not allocated.
    pub(crate) fn free(&self) -> u64 {
        self.allocator.avail()
    }

    /// Migration counters.
    pub(crate) fn stats(&self) -> &MigrationStats {
        &self.stats
    }

    /// The copy engine's race widener (debugfs `vgpu<N>/copy_delay_ms`).
    pub(crate) fn copy_delay_ms(&self) -> &Atomic<u32> {
        &self.engine.vram().copy_delay_ms
    }

    /// Pages of linked peers' memory the GPU read or wrote in place.
    pub(crate) fn peer_accesses(&self) -> u64 {
        self.peer_accesses.load(Relaxed)
    }

    /// The GPU reading (or with `write`, writing) page `pfn` of a linked peer's memory in
    /// place, over the link (also the memory of a peer since unplugged, while it lives):
    /// `EFAULT` if no live memory of a linked GPU has that page.
    pub(crate) fn access_peer(&self, pfn: usize, buf: &mut [u8; PAGE_SIZE], write: bool) -> Result {
        let fabric = self.entry.fabric();
        let peer = fabric.memory_of_pfn(pfn).ok_or(EFAULT)?;
        if peer.id == self.entry.id() || !fabric.linked(self.index, peer.index) {
            return Err(EFAULT);
        }
        let index = pfn - peer.pages.pfn_first;
        match write {
            true => peer.pages.backing.write_page(index, Some(buf))?,
            false => peer.pages.backing.read_page(index, buf)?,
        }
        self.peer_accesses.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The GPU's atomic add of `value` to the 32-bit word at byte `offset` of its page at VRAM
    /// address `addr` (`proto` [`LOCAL_VRAM`]), or of a linked peer's (`proto` its link, as for
    /// [`Self::access_link`]); returns the old value.
    pub(crate) fn fetch_add(
        &self,
        proto: Interconnect,
        addr: u64,
        offset: usize,
        value: u32,
    ) -> Result<u32> {
        let index = usize::try_from(addr).map_err(|_| EFAULT)? / PAGE_SIZE;
        if proto == LOCAL_VRAM {
            return self
                .engine
                .vram()
                .backing
                .fetch_add_u32(index, offset, value);
        }
        let id = peer_of_link(proto).ok_or(EFAULT)?;
        let fabric = self.entry.fabric();
        let peer = fabric.memory(id).ok_or(EFAULT)?;
        if peer.id == self.entry.id() || !fabric.linked(self.index, peer.index) {
            return Err(EFAULT);
        }
        let old = peer.pages.backing.fetch_add_u32(index, offset, value)?;
        self.peer_accesses.fetch_add(1, Relaxed);
        Ok(old)
    }

    /// The GPU reading (or with `write`, writing) the page at `addr` of a linked peer's memory
    /// over the interconnect `proto`, as its `device_map` gave them: `EFAULT` if `proto` names
    /// no live memory of a linked GPU.
    pub(crate) fn access_link(
        &self,
        proto: Interconnect,
        addr: u64,
        buf: &mut [u8; PAGE_SIZE],
        write: bool,
    ) -> Result {
        let id = peer_of_link(proto).ok_or(EFAULT)?;
        let fabric = self.entry.fabric();
        let peer = fabric.memory(id).ok_or(EFAULT)?;
        if peer.id == self.entry.id() || !fabric.linked(self.index, peer.index) {
            return Err(EFAULT);
        }
        let index = usize::try_from(addr).map_err(|_| EFAULT)? / PAGE_SIZE;
        match write {
            true => peer.pages.backing.write_page(index, Some(buf))?,
            false => peer.pages.backing.read_page(index, buf)?,
        }
        self.peer_accesses.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Moves whatever of `range` lives in the memory of a GPU outside this GPU's interconnect
    /// group (plugged or not) back to system memory, through that memory's own migration;
    /// returns the pages moved. What a migration into this GPU found uncollectable (`EBUSY`)
    /// may be such pages: its caller bounces them and tries again, as a C driver evicts and
    /// retries.
    ///
    /// `memories` is [`Vram::memories`], taken before the mmap lock and dropped after it:
    /// dropping the last reference on a memory's region unmaps its pages, which must not
    /// happen under the mmap lock.
    pub(crate) fn bounce_foreign(
        &self,
        mmap: &MmapReadGuard<'_>,
        range: PageRange,
        memories: &[Memory],
    ) -> Result<usize> {
        let mut bounced = 0;
        for memory in memories {
            if memory.region.owner() != self.owner() {
                bounced += migrate::migrate_to_ram(mmap, range, &memory.region, Folios::Huge)?;
            }
        }
        Ok(bounced)
    }

    /// The fabric's live memories, plugged or not (see [`Vram::bounce_foreign`]).
    pub(crate) fn memories(&self) -> Result<KVec<Memory>> {
        self.entry.fabric().memories()
    }

    /// The device-private region of this memory.
    pub(crate) fn region(&self) -> &DevicePrivateRegion {
        &self.region
    }

    /// Bytes the copy engine moved.
    pub(crate) fn bytes_copied(&self) -> u64 {
        self.engine.vram().bytes_copied.load(Relaxed)
    }

    /// The device-private owner of this memory's pages.
    pub(crate) fn owner(&self) -> Owner {
        self.region.owner()
    }

    /// The GPU reading its own memory: copies the page at VRAM address `addr` into `dst`.
    pub(crate) fn read_at(&self, addr: u64, dst: &mut [u8; PAGE_SIZE]) -> Result {
        let index = usize::try_from(addr).map_err(|_| EINVAL)? / PAGE_SIZE;
        self.engine.vram().backing.read_page(index, dst)
    }

    /// The GPU writing its own memory: overwrites the page at VRAM address `addr` with `src`.
    pub(crate) fn write_at(&self, addr: u64, src: &[u8; PAGE_SIZE]) -> Result {
        let index = usize::try_from(addr).map_err(|_| EINVAL)? / PAGE_SIZE;
        self.engine.vram().backing.write_page(index, Some(src))
    }

    /// The GPU is going away: no data moves in any more (`ENODEV`), through its current
    /// pagemap or a new one.
    pub(crate) fn revoke(&self) {
        self.allocations.revoke();
        if let Some(pagemap) = self.pagemaps.current() {
            pagemap.revoke();
        }
        // Not kept idle any more: destroyed with its last user.
        self.pagemaps.flush();
    }

    /// Whether no allocation holds data.
    pub(crate) fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    /// Moves the data of every allocation back to system memory. Returns how many
    /// allocations were evicted.
    ///
    /// An allocation that cannot be evicted (its copy failed, a page stayed pinned, ...)
    /// keeps its data in device memory and does not stop the others: every allocation is
    /// tried, then the first error is returned. A pending signal (with `Signals::Fatal`, only
    /// a fatal one) stops the walk between two allocations with `EINTR` (unless an error came
    /// first); what was evicted stays so.
    pub(crate) fn evict_all(&self, stop: Signals) -> Result<u32> {
        self.allocations.evict_all(|| {
            let stopped = match stop {
                Signals::Any => kernel::current!().signal_pending(),
                Signals::Fatal => fatal_signal_pending(),
            };
            stopped.then_some(EINTR)
        })
    }
}

/// Returns a reference to the pagemap of `drm`'s device memory, created on first use.
pub(crate) fn pagemap(drm: &drm::Device<VgpuDriver>) -> Result<ARef<Pagemap>> {
    let parent: &kernel::faux::Device = drm.as_ref();
    drm.vram.pagemap(parent.as_ref())
}

impl Vram {
    /// Returns a reference to the pagemap of this memory, on `device`, created on first use.
    pub(crate) fn pagemap(self: &Arc<Self>, device: &Device) -> Result<ARef<Pagemap>> {
        if self.allocations.is_revoked() {
            return Err(ENODEV);
        }
        self.pagemaps.get_or_create(device, &self.region, || {
            self.pagemaps_created.fetch_add(1, Relaxed);
            Ok(VramPagemap { vram: self.clone() })
        })
    }

    /// Buddy blocks for `size` bytes: 2 MiB blocks if `huge` and the allocator has them
    /// (so that huge pages can move whole), 4 KiB blocks otherwise.
    fn alloc_blocks(&self, size: u64, huge: bool) -> Result<Pin<KBox<AllocatedBlocks>>> {
        let alloc = |block: Alignment| {
            KBox::pin_init(
                self.allocator.alloc_blocks(
                    GpuBuddyAllocMode::Simple,
                    size,
                    block,
                    GpuBuddyAllocFlags::default(),
                ),
                GFP_KERNEL,
            )
        };
        match huge {
            true => alloc(Alignment::new::<SZ_2M>())
                .or_else(|_| alloc(Alignment::new::<VRAM_PAGE_SIZE>())),
            false => alloc(Alignment::new::<VRAM_PAGE_SIZE>()),
        }
        .map_err(|_| ENOMEM)
    }
}

/// The pagemap ops of a virtual GPU's device memory.
struct VramPagemap {
    vram: Arc<Vram>,
}

/// The interconnect of a GPU's own memory: addresses are VRAM offsets.
pub(crate) const LOCAL_VRAM: Interconnect = Interconnect::Driver(0);

/// The interconnect by which a linked peer reaches the memory `id` (a [`MemoryEntry`] id,
/// never reused: a re-plugged GPU's memory is another): addresses are VRAM offsets in it.
pub(crate) fn peer_link(id: u32) -> Interconnect {
    Interconnect::Driver(id)
}

/// The memory an address of interconnect `proto` lies in, if `proto` is a peer link.
pub(crate) fn peer_of_link(proto: Interconnect) -> Option<u32> {
    match proto {
        // Memory ids start at 1; 0 is a GPU's own memory (`LOCAL_VRAM`).
        Interconnect::Driver(id) if id >= 1 => Some(id),
        _ => None,
    }
}

// SAFETY: The type is private to this module, whose module `module` returns.
unsafe impl PagemapOps for VramPagemap {
    fn module(&self) -> &'static ThisModule {
        kernel::module::this_module::<crate::LocalModule>()
    }

    fn destroy(&self, _pagemap: &Pagemap) {
        self.vram.pagemaps_destroyed.fetch_add(1, Relaxed);
    }

    // The GPU itself reaches its memory by VRAM offset, a linked peer by the same offset on
    // the link named after this GPU; any other device gets `EOPNOTSUPP`.
    fn device_map(
        &self,
        pagemap: &Pagemap,
        dev: &Device,
        pfn: usize,
        order: u32,
        dir: DataDirection,
    ) -> Result<PagemapAddr> {
        let vram = &self.vram;
        let proto = if core::ptr::eq(dev, pagemap.device()) {
            LOCAL_VRAM
        } else {
            match vram.entry.fabric().member_of(dev) {
                Some((peer, _)) if vram.entry.fabric().linked(vram.index, peer) => {
                    peer_link(vram.entry.id())
                }
                _ => return Err(EOPNOTSUPP),
            }
        };
        let region = pagemap.region();
        let pages = 1usize.checked_shl(order).ok_or(EINVAL)?;
        if !region.contains_pfn(pfn) || !region.contains_pfn(pfn + pages - 1) {
            return Err(EINVAL);
        }
        Ok(PagemapAddr {
            addr: ((pfn - region.pfn_first()) * PAGE_SIZE) as u64,
            proto,
            order,
            dir,
        })
    }

    fn populate_mm(
        &self,
        pagemap: &Pagemap,
        mm: &Mm,
        mmap: &MmapReadGuard<'_>,
        range: PageRange,
        details: &MigrateDetails,
    ) -> Result {
        let vram = &self.vram;
        if range.size() as u64 > vram.size() {
            return Err(ENOMEM);
        }
        // The timeslice is this memory's policy.
        let details = &MigrateDetails {
            timeslice_ms: details
                .timeslice_ms
                .min(vram.timeslice_max_ms.load(Relaxed)),
            ..*details
        };
        migrate_to_devmem(pagemap, mmap, range, details, |npages| {
            self.allocate(pagemap, mm, range, npages, details)
        })?;
        Ok(())
    }
}

impl VramPagemap {
    /// An allocation of `npages` pages of device memory for a migration of `range`
    /// of `mm`, listed for eviction until its release op runs.
    fn allocate(
        &self,
        pagemap: &Pagemap,
        mm: &Mm,
        range: PageRange,
        npages: usize,
        details: &MigrateDetails,
    ) -> Result<Arc<Devmem>> {
        let vram = &self.vram;
        if pagemap.is_revoked() {
            return Err(ENODEV);
        }
        if inject(&vram.fail_allocs) {
            return Err(ENOMEM);
        }
        let size = npages.checked_mul(PAGE_SIZE).ok_or(ENOMEM)? as u64;
        let huge = details.folios == Folios::Huge
            && range.start() % SZ_2M == 0
            && range.end() % SZ_2M == 0
            && size % SZ_2M as u64 == 0;
        let blocks = vram.alloc_blocks(size, huge)?;
        let id = vram.allocations.next_id();
        let devmem = Devmem::new(
            pagemap.into(),
            Some(mm),
            npages,
            vram.stats.clone(),
            VramAllocation {
                id,
                blocks,
                vram: self.vram.clone(),
                dev: pagemap.device().into(),
            },
        )?;
        // Before the migration accepts it (`ENODEV` once the GPU is unplugged).
        vram.allocations.list(id, &devmem)?;
        Ok(devmem)
    }
}

/// Device memory backing one migration.
struct VramAllocation {
    id: u64,
    blocks: Pin<KBox<AllocatedBlocks>>,
    vram: Arc<Vram>,
    /// The pagemap's device: the one the core maps system memory for.
    dev: ARef<Device>,
}

impl VramAllocation {
    /// Queues the copy of `runs` on the GPU's engine.
    ///
    /// # Safety
    ///
    /// As [`DevmemOps::copy_to_devmem`]: `runs`' system memory is mapped for our pagemap's
    /// device until `fence` is signalled.
    unsafe fn copy(&self, runs: &[CopyRun], dir: CopyDir, fence: CopyFence) -> Result {
        let vram = &self.vram;
        if inject(&vram.fail_copies) {
            return Err(EIO);
        }
        // The memory of the peers the runs read from, looked up once per call (not on the
        // engine's path to signalling).
        let mut peers = Peers::default();
        for run in runs.iter() {
            let Counterpart::Peer(addr) = run.counterpart else {
                continue;
            };
            let id = peer_of_link(addr.proto).ok_or(EINVAL)?;
            if peers.get(id).is_none() {
                let memory = vram.entry.fabric().memory(id).ok_or(ENODEV)?;
                peers.add(id, memory.pages)?;
            }
        }
        // SAFETY: Per this function's contract (`dev` is our pagemap's device).
        unsafe { vram.engine.copy(&self.dev, runs, dir, peers, fence) }
    }
}

// SAFETY: `populate_devmem_pfn` hands out the pages of `blocks`, buddy blocks of this GPU's
// allocator over its region, which this allocation owns until it is dropped; always the same
// ones, in the same order. The type is private to this module, whose module `module` returns.
unsafe impl DevmemOps for VramAllocation {
    fn module(&self) -> &'static ThisModule {
        kernel::module::this_module::<crate::LocalModule>()
    }

    fn populate_devmem_pfn(&self, pfns: &mut [usize]) -> Result {
        let first = self.vram.region.pfn_first();
        let mut i = 0;
        for block in self.blocks.iter() {
            let base = first + (block.offset() as usize) / PAGE_SIZE;
            for k in 0..(block.size() as usize) / PAGE_SIZE {
                if i == pfns.len() {
                    return Ok(());
                }
                pfns[i] = base + k;
                i += 1;
            }
        }
        if i < pfns.len() {
            return Err(EINVAL);
        }
        Ok(())
    }

    unsafe fn copy_to_devmem(&self, runs: &[CopyRun], fence: CopyFence) -> Result {
        // SAFETY: The caller's contract is `copy`'s.
        unsafe { self.copy(runs, CopyDir::ToVram, fence) }
    }

    unsafe fn copy_to_ram(&self, runs: &[CopyRun], _dir: Direction, fence: CopyFence) -> Result {
        // SAFETY: As above.
        unsafe { self.copy(runs, CopyDir::ToRam, fence) }
    }

    fn release(&self) {
        // The device memory is freed with the allocation.
        self.vram.allocations.unlist(self.id);
    }
}

#[kunit_tests(vgpu_vram)]
mod tests {
    use super::*;

    /// The device-private owner of the tests' memory.
    static OWNER: u8 = 0;

    const SIZE: usize = 8 << 20;

    fn vram(name: &'static CStr) -> Result<Arc<Vram>> {
        // SAFETY: `OWNER` is a static of this test module, no other driver's owner.
        let owner = unsafe { RegionOwner::unique(Owner::of(&OWNER)) };
        let fabric = Fabric::new(Some(c"none"), 1)?;
        Arc::pin_init(Vram::new(0, fabric, SIZE, owner, 0, name)?, GFP_KERNEL)
    }

    /// The pfns of `pages` pages of a fresh allocation of `vram`, and the allocation.
    fn pfns_of(
        vram: &Arc<Vram>,
        pages: usize,
        huge: bool,
    ) -> Result<(KVec<usize>, VramAllocation)> {
        let blocks = vram.alloc_blocks((pages * PAGE_SIZE) as u64, huge)?;
        // Only for copies, which these tests do not make: a device that outlives its
        // registration is enough.
        let fdev = kernel::faux::Registration::new(c"vgpu_kunit_vram", None)?;
        let alloc = VramAllocation {
            id: 0,
            blocks,
            vram: vram.clone(),
            dev: fdev.as_ref().as_ref().into(),
        };
        let mut pfns = KVec::from_elem(0usize, pages, GFP_KERNEL)?;
        alloc.populate_devmem_pfn(&mut pfns)?;
        Ok((pfns, alloc))
    }

    /// Every pfn handed out is a page of the GPU's region, none twice, and the memory is
    /// counted as used until the allocation goes.
    #[test]
    fn pfns_come_from_the_allocations_blocks() -> Result {
        let vram = vram(c"vgpu_kunit_vram_a")?;
        let free = vram.free();
        let (mut pfns, alloc) = pfns_of(&vram, 300, false)?;
        assert_eq!(vram.free(), free - (300 * PAGE_SIZE) as u64);
        assert!(pfns.iter().all(|&p| vram.region.contains_pfn(p)));
        pfns.sort_unstable();
        assert!(pfns.windows(2).all(|w| w[0] != w[1]));
        // Asking for more pages than the allocation has is refused.
        let mut more = KVec::from_elem(0usize, 301, GFP_KERNEL)?;
        assert_eq!(alloc.populate_devmem_pfn(&mut more), Err(EINVAL));
        drop(alloc);
        assert_eq!(vram.free(), free);
        Ok(())
    }

    /// With huge blocks, each 2 MiB of an allocation is one aligned, contiguous run of pfns
    /// (what a 2 MiB device folio needs).
    #[test]
    fn huge_blocks_give_aligned_contiguous_runs() -> Result {
        let vram = vram(c"vgpu_kunit_vram_h")?;
        let n = SZ_2M / PAGE_SIZE;
        let (pfns, _alloc) = pfns_of(&vram, 2 * n, true)?;
        for run in pfns.chunks(n) {
            assert_eq!(run[0] % n, 0);
            assert!(run.iter().enumerate().all(|(k, &p)| p == run[0] + k));
        }
        Ok(())
    }

    /// An error-injection counter fails exactly as many operations as it was set to.
    #[test]
    fn injection_counts_down() {
        let counter = Atomic::new(2u32);
        assert!(inject(&counter));
        assert!(inject(&counter));
        assert!(!inject(&counter));
        assert_eq!(counter.load(Relaxed), 0);
    }
}
