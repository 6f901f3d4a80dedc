// SPDX-License-Identifier: GPL-2.0

//! A backend made of memory, for the KUnit tests: its "VRAM" is a buffer, its allocator hands
//! out `min_page_size` units first-fit (so an allocation may be several blocks), its copy
//! engine is the CPU (over the faux device's direct DMA mapping, and over a shared bus of such
//! regions for peer-to-peer), and [`MockBackend::evict_all`] does what TTM does under memory
//! pressure: asks each allocation to give its VRAM back, and frees it if it did.

use core::ptr::NonNull;

use drm_pagemap::copy::system_ptr;
use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::sync::Mutex;

use crate::backend::Backend;
use crate::backend::CopyAddr;
use crate::backend::CopyDir;
use crate::backend::Proto;
use crate::backend::RegionInfo;
use crate::backend::MAX_COPY;
use crate::region::EvictSlot;

/// The mock regions peers reach by BAR address (the PCIe bus of the test).
#[pin_data]
pub(crate) struct MockBus {
    #[pin]
    vrams: Mutex<KVec<Arc<MockVram>>>,
}

impl MockBus {
    /// An empty bus.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                vrams <- kernel::new_mutex!(KVec::new(), "xe_svm::MockBus::vrams"),
            }),
            GFP_KERNEL,
        )
    }

    /// The VRAM whose BAR holds `len` bytes at `phys`, and the offset of `phys` in it.
    fn resolve(&self, phys: u64, len: u64) -> Option<(Arc<MockVram>, usize)> {
        let vrams = self.vrams.lock();
        let vram = vrams.iter().find(|v| {
            phys >= v.info.io_start
                && phys
                    .checked_add(len)
                    .is_some_and(|end| end <= v.info.io_start + v.info.io_size)
        })?;
        Some((vram.clone(), (phys - vram.info.io_start) as usize))
    }
}

/// What the mock's allocator and memory hold.
struct MockState {
    /// The memory, `usable_size` bytes.
    mem: KVVec<u8>,
    /// Which `min_page_size` units are allocated.
    used: KVVec<bool>,
    /// Live allocations, for eviction.
    allocs: KVec<Arc<MockAllocInner>>,
}

/// A mock region's memory.
#[pin_data]
pub(crate) struct MockVram {
    info: RegionInfo,
    #[pin]
    state: Mutex<MockState>,
    /// Copy calls made, and pages they moved.
    pub(crate) copy_calls: Atomic<u32>,
    pub(crate) pages_copied: Atomic<u64>,
}

struct MockAllocInner {
    vram: Arc<MockVram>,
    /// (DPA, bytes) of each block.
    blocks: KVec<(u64, u64)>,
    slot: Arc<EvictSlot>,
    /// Set once the blocks went back to the allocator (evicted or freed).
    returned: Atomic<bool>,
}

impl MockAllocInner {
    /// Gives the blocks back, once.
    fn give_back(&self, state: &mut MockState) {
        if self.returned.xchg(true, Relaxed) {
            return;
        }
        let unit = self.vram.info.min_page_size;
        // Bounded by the allocation's blocks and their units.
        for &(dpa, size) in self.blocks.iter() {
            let first = ((dpa - self.vram.info.dpa_base) / unit) as usize;
            for u in state.used[first..first + (size / unit) as usize].iter_mut() {
                *u = false;
            }
        }
    }
}

/// An allocation of the mock: its blocks go back when it is dropped.
pub(crate) struct MockAlloc(Arc<MockAllocInner>);

impl Drop for MockAlloc {
    fn drop(&mut self) {
        let vram = &self.0.vram;
        let mut state = vram.state.lock();
        self.0.give_back(&mut state);
        state.allocs.retain(|a| !Arc::ptr_eq(a, &self.0));
    }
}

/// A backend of memory.
pub(crate) struct MockBackend {
    dev: ARef<Device>,
    vram: Arc<MockVram>,
    bus: Arc<MockBus>,
    /// Whether peers reach this region over "PCIe".
    p2p: bool,
}

impl MockBackend {
    /// A region described by `info`, whose copy engine maps system memory for `dev` (a device
    /// with a software DMA mask), on `bus`; peers reach it if `p2p`.
    pub(crate) fn new(
        dev: &Device,
        info: RegionInfo,
        bus: &Arc<MockBus>,
        p2p: bool,
    ) -> Result<Self> {
        info.check()?;
        let units = (info.usable_size / info.min_page_size) as usize;
        let vram = Arc::pin_init(
            try_pin_init!(MockVram {
                info,
                state <- kernel::new_mutex!(
                    MockState {
                        mem: KVVec::from_elem(0xa5u8, info.usable_size as usize, GFP_KERNEL)?,
                        used: KVVec::from_elem(false, units, GFP_KERNEL)?,
                        allocs: KVec::new(),
                    },
                    "xe_svm::MockVram::state"
                ),
                copy_calls: Atomic::new(0),
                pages_copied: Atomic::new(0),
            }),
            GFP_KERNEL,
        )?;
        bus.vrams.lock().push(vram.clone(), GFP_KERNEL)?;
        Ok(Self {
            dev: dev.into(),
            vram,
            bus: bus.clone(),
            p2p,
        })
    }

    /// The memory.
    pub(crate) fn vram(&self) -> &Arc<MockVram> {
        &self.vram
    }

    /// Does what TTM does under memory pressure: asks every live allocation to give its VRAM
    /// back, and frees that of each one that did. Returns (freed, refused).
    pub(crate) fn evict_all(&self) -> Result<(u32, u32)> {
        let live = {
            let state = self.vram.state.lock();
            let mut v = KVec::with_capacity(state.allocs.len(), GFP_KERNEL)?;
            // Bounded by the live allocations.
            for a in state.allocs.iter() {
                v.push(a.clone(), GFP_KERNEL)?;
            }
            v
        };
        let (mut freed, mut refused) = (0, 0);
        // Bounded by the snapshot.
        for a in live.iter() {
            match a.slot.evict() {
                Ok(()) => {
                    a.give_back(&mut self.vram.state.lock());
                    freed += 1;
                }
                Err(_) => refused += 1,
            }
        }
        Ok((freed, refused))
    }
}

impl MockVram {
    /// Bytes not allocated.
    pub(crate) fn free(&self) -> u64 {
        let state = self.state.lock();
        state.used.iter().filter(|u| !**u).count() as u64 * self.info.min_page_size
    }

    /// Copies the bytes at `dpa` into `buf`.
    pub(crate) fn read(&self, dpa: u64, buf: &mut [u8]) -> Result {
        let state = self.state.lock();
        let off = dpa.checked_sub(self.info.dpa_base).ok_or(EINVAL)? as usize;
        let end = off.checked_add(buf.len()).ok_or(EINVAL)?;
        buf.copy_from_slice(state.mem.get(off..end).ok_or(EINVAL)?);
        Ok(())
    }
}

// SAFETY: The allocator hands out each unit to one allocation at a time, in the region, until
// the allocation is dropped or its eviction succeeded; it clears what it hands out; a copy
// writes only the VRAM it is given (checked) and the entries' pages; `map_peer` checks the
// BAR.
unsafe impl Backend for MockBackend {
    type Alloc = MockAlloc;
    type Fence = Result;

    fn info(&self) -> RegionInfo {
        self.vram.info
    }

    fn dma_device(&self) -> &Device {
        &self.dev
    }

    fn alloc(&self, size: u64, evict: Arc<EvictSlot>) -> Result<MockAlloc> {
        let info = &self.vram.info;
        let unit = info.min_page_size;
        if size == 0 || size % unit != 0 || size > info.usable_size {
            return Err(EINVAL);
        }
        let mut want = (size / unit) as usize;
        let mut blocks = KVec::new();
        let mut state = self.vram.state.lock();
        if state.used.iter().filter(|u| !**u).count() < want {
            return Err(ENOSPC);
        }
        state.allocs.reserve(1, GFP_KERNEL)?;
        // First fit, a block per run of free units. Bounded by the units.
        let mut i = 0;
        while want > 0 && i < state.used.len() {
            if state.used[i] {
                i += 1;
                continue;
            }
            let start = i;
            // Bounded by the units (and by what is still wanted).
            while i < state.used.len() && !state.used[i] && i - start < want {
                i += 1;
            }
            blocks.push(
                (
                    info.dpa_base + start as u64 * unit,
                    (i - start) as u64 * unit,
                ),
                GFP_KERNEL,
            )?;
            want -= i - start;
        }
        // Cleared, as xe clears a buffer object's VRAM.
        // Bounded by the blocks just made.
        for &(dpa, len) in blocks.iter() {
            let first = ((dpa - info.dpa_base) / unit) as usize;
            let n = (len / unit) as usize;
            state.used[first..first + n]
                .iter_mut()
                .for_each(|u| *u = true);
            let off = (dpa - info.dpa_base) as usize;
            state.mem[off..off + len as usize].fill(0);
        }
        let inner = Arc::new(
            MockAllocInner {
                vram: self.vram.clone(),
                blocks,
                slot: evict,
                returned: Atomic::new(false),
            },
            GFP_KERNEL,
        )?;
        state
            .allocs
            .push_within_capacity(inner.clone())
            .map_err(|_| ENOMEM)?;
        Ok(MockAlloc(inner))
    }

    fn blocks(&self, alloc: &MockAlloc, each: &mut dyn FnMut(u64, u64) -> Result) -> Result {
        if alloc.0.returned.load(Relaxed) {
            return Err(EBUSY);
        }
        // Bounded by the allocation's blocks.
        for &(dpa, size) in alloc.0.blocks.iter() {
            each(dpa, size)?;
        }
        Ok(())
    }

    unsafe fn copy(&self, dir: CopyDir, dpa: u64, addrs: &mut [CopyAddr]) -> Result<Result> {
        let info = &self.vram.info;
        let len = addrs.len() * PAGE_SIZE;
        let off = dpa.checked_sub(info.dpa_base).ok_or(EINVAL)? as usize;
        if addrs.is_empty()
            || len > MAX_COPY
            || off
                .checked_add(len)
                .is_none_or(|end| end as u64 > info.usable_size)
        {
            return Err(EINVAL);
        }
        self.vram.copy_calls.fetch_add(1, Relaxed);
        // A page of a peer, read before this VRAM's lock is taken (both locks are of one
        // class); on the heap: this runs deep in a CPU fault.
        let mut peer_page: Option<KVVec<u8>> = None;
        // Bounded by the entries, at most `MAX_COPY` bytes of them.
        for (i, entry) in addrs.iter().enumerate() {
            let at = off + i * PAGE_SIZE;
            let other: NonNull<u8> = match entry.proto() {
                Some(Proto::System) => system_ptr(&self.dev, entry.addr(), PAGE_SIZE)?,
                Some(Proto::P2p) if dir == CopyDir::ToVram => {
                    let (peer, poff) = self
                        .bus
                        .resolve(entry.addr(), PAGE_SIZE as u64)
                        .ok_or(EIO)?;
                    let page = match &mut peer_page {
                        Some(page) => page,
                        None => peer_page.insert(KVVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?),
                    };
                    peer.read(peer.info.dpa_base + poff as u64, page)?;
                    let mut state = self.vram.state.lock();
                    state.mem[at..at + PAGE_SIZE].copy_from_slice(page);
                    continue;
                }
                _ => return Err(EINVAL),
            };
            let mut state = self.vram.state.lock();
            let vram = &mut state.mem[at..at + PAGE_SIZE];
            // `other`: a page of system memory mapped for the copy until its fence is waited for.
            // SAFETY: So valid for `PAGE_SIZE` bytes (this function's contract); not our buffer.
            unsafe {
                match dir {
                    CopyDir::ToVram => {
                        core::ptr::copy_nonoverlapping(other.as_ptr(), vram.as_mut_ptr(), PAGE_SIZE)
                    }
                    CopyDir::FromVram => {
                        core::ptr::copy_nonoverlapping(vram.as_ptr(), other.as_ptr(), PAGE_SIZE)
                    }
                }
            };
        }
        self.vram
            .pages_copied
            .fetch_add(addrs.len() as u64, Relaxed);
        Ok(Ok(()))
    }

    fn wait(&self, fence: Result) -> Result {
        fence
    }

    fn pm_get(&self) -> Result {
        Ok(())
    }

    fn pm_put(&self) {}

    fn p2p_reachable(&self, _client: &Device) -> bool {
        self.p2p
    }

    fn map_peer(&self, _client: &Device, phys: u64, len: u64, _dir: DataDirection) -> Result<u64> {
        let info = &self.vram.info;
        let end = phys.checked_add(len).ok_or(EINVAL)?;
        if phys < info.io_start || end > info.io_start + info.io_size {
            return Err(EINVAL);
        }
        // No IOMMU on the test's bus: the bus address is the physical one.
        Ok(phys)
    }

    unsafe fn unmap_peer(&self, _client: &Device, _addr: u64, _len: u64, _dir: DataDirection) {}
}
