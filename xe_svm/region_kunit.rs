// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the provider logic on the memory backend: address encoding, DPA and PFN
//! arithmetic, how copies are cut into engine calls, migrations there and back, eviction by
//! the backend, unbind with live allocations, device mappings and peer-to-peer migration.

use drm_pagemap::copy::set_software_dma_mask;
use drm_pagemap::copy::CopyRun;
use drm_pagemap::copy::Counterpart;
use drm_pagemap::owner::Owner;
use drm_pagemap::owner::RegionOwner;
use drm_pagemap::pagemap;
use drm_pagemap::pagemap::MigrateDetails;
use drm_pagemap::pagemap::PagemapAddr;
use drm_pagemap::pending::task::sleep_killable;
use drm_pagemap::range::PageRange;
use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::dma::DmaMask;
use kernel::faux;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sizes::SZ_2M;
use kernel::sizes::SZ_4M;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;
use pagemap_util::owner::OwnerList;

use crate::backend::CopyAddr;
use crate::backend::Proto;
use crate::backend::RegionInfo;
use crate::backend::MAX_COPY;
use crate::mock::MockBackend;
use crate::mock::MockBus;
use crate::region::piece_end;
use crate::region::plan_batches;
use crate::region::EvictSlot;
use crate::region::Region;
use crate::region::LOCAL_VRAM;
use crate::region::PCIE_P2P;

/// The device-private owner of the tests' regions that are alone.
static OWNER: u8 = 0;

const DPA_BASE: u64 = 0x1_0000_0000;
const IO_START: u64 = 0xe000_0000;
/// 16 MiB of "VRAM", of which the first 2 MiB are under the BAR.
const INFO: RegionInfo = RegionInfo {
    dpa_base: DPA_BASE,
    usable_size: 16 << 20,
    io_start: IO_START,
    io_size: SZ_2M as u64,
    min_page_size: PAGE_SIZE as u64,
};

/// A region on the memory backend, with the faux device it copies for.
struct TestRegion {
    // Dropped first: the region maps for the device.
    region: Arc<Region<MockBackend>>,
    faux: faux::Registration,
}

impl TestRegion {
    fn dev(&self) -> &Device {
        self.faux.as_ref().as_ref()
    }
}

impl Drop for TestRegion {
    fn drop(&mut self) {
        // Revoked and emptied: its pagemap goes with its last user, not after an idle delay.
        let _ = self.region.unbind();
    }
}

fn test_region(
    name: &'static CStr,
    bus: &Arc<MockBus>,
    p2p: bool,
    owner: RegionOwner,
) -> Result<TestRegion> {
    let faux = faux::Registration::new(name, None)?;
    let dev: &Device = faux.as_ref().as_ref();
    // SAFETY: The device is new: nothing maps for it yet; it does no DMA of its own.
    unsafe { set_software_dma_mask(dev, DmaMask::new::<64>()) }?;
    let backend = MockBackend::new(dev, INFO, bus, p2p)?;
    let region = Region::new(backend, owner, None)?;
    Ok(TestRegion { region, faux })
}

fn alone(name: &'static CStr) -> Result<TestRegion> {
    // SAFETY: `OWNER` is a static of this test module, no other driver's owner.
    let owner = unsafe { RegionOwner::unique(Owner::of(&OWNER)) };
    test_region(name, &MockBus::new()?, false, owner)
}

/// Whether `page` says it is page `m`: each byte is `m` xor its offset.
fn is_marked(page: &[u8], m: u8) -> bool {
    page.iter().enumerate().all(|(i, b)| *b == m ^ (i as u8))
}

/// A page-sized buffer on the heap: the tests' reads run deep CPU faults on a small stack.
fn page_buf() -> Result<KVVec<u8>> {
    Ok(KVVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?)
}

/// `pages` pages of the test's address space, page `i` marked `seed + i`.
fn user_pages(pages: usize, seed: u8) -> Result<usize> {
    let addr = gpusvm::hmm::kunit_mmap_anon(pages * PAGE_SIZE)?;
    let mut page = page_buf()?;
    // Bounded by the pages asked for.
    for i in 0..pages {
        let m = seed.wrapping_add(i as u8);
        page.iter_mut()
            .enumerate()
            .for_each(|(k, b)| *b = m ^ (k as u8));
        UserSlice::new(UserPtr::from_addr(addr + i * PAGE_SIZE), PAGE_SIZE)
            .writer()
            .write_slice(&page)?;
    }
    Ok(addr)
}

/// Whether every page reads back its mark (faulting it back to system memory if needed).
fn intact(addr: usize, pages: usize, seed: u8) -> Result<bool> {
    let mut page = page_buf()?;
    // Bounded by the pages asked for.
    for i in 0..pages {
        UserSlice::new(UserPtr::from_addr(addr + i * PAGE_SIZE), PAGE_SIZE)
            .reader()
            .read_slice(&mut page)?;
        if !is_marked(&page, seed.wrapping_add(i as u8)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Moves `pages` pages at `addr` of the test's address space into `region`.
fn migrate_into(region: &Arc<Region<MockBackend>>, addr: usize, pages: usize) -> Result {
    let task = kernel::current!();
    let mm = task.mm().ok_or(EINVAL)?;
    let pagemap = region.pagemap()?;
    pagemap::populate_mm(
        &pagemap,
        mm,
        PageRange::with_pages(addr, pages)?,
        &MigrateDetails::default(),
    )
}

/// Waits (at most a second) until `region` lists no allocation: releases run from a work item.
fn wait_released(region: &Region<MockBackend>) -> bool {
    // Bounded: 1000 tries of a millisecond.
    for _ in 0..1000 {
        if region.allocations() == 0 {
            return true;
        }
        sleep_killable(1);
    }
    false
}

#[kunit_tests(xe_svm_region)]
mod tests {
    use super::*;

    /// An entry of a copy has the layout of the C `struct drm_pagemap_addr` that xe's engine
    /// reads: the address, then `proto` in bits 0-53, `order` in 54-61, `dir` in 62-63.
    #[test]
    fn copy_entries_have_the_c_layout() {
        let e = CopyAddr::new(0x1234_5000, Proto::P2p, 9, DataDirection::ToDevice);
        assert_eq!(e.addr(), 0x1234_5000);
        assert_eq!(e.proto(), Some(Proto::P2p));
        assert_eq!(e.order(), 9);
        assert_eq!(core::mem::size_of::<CopyAddr>(), 16);
        // SAFETY: `CopyAddr` is 16 bytes of plain data (checked above).
        let words: [u64; 2] = unsafe { core::mem::transmute(e) };
        assert_eq!(words[0], 0x1234_5000);
        assert_eq!(words[1], 2 | (9 << 54) | (1 << 62));
        let s = CopyAddr::new(0x8000, Proto::System, 0, DataDirection::FromDevice);
        // SAFETY: As above.
        let words: [u64; 2] = unsafe { core::mem::transmute(s) };
        assert_eq!(words[1], 2 << 62);
    }

    /// Page frame numbers map linearly onto the region's DPAs; nothing outside the region or
    /// off a page boundary maps; the BAR reaches only what it covers.
    #[test]
    fn dpa_pfn_and_bar_arithmetic() -> Result {
        let t = alone(c"xe_svm_kunit_arith")?;
        let r = &t.region;
        let first = r.dpa_to_pfn(DPA_BASE)?;
        let pages = INFO.usable_size as usize / PAGE_SIZE;
        assert_eq!(r.pfn_to_dpa(first), Ok(DPA_BASE));
        assert_eq!(r.dpa_to_pfn(DPA_BASE + 5 * PAGE_SIZE as u64), Ok(first + 5));
        assert_eq!(
            r.pfn_to_dpa(first + pages - 1),
            Ok(DPA_BASE + INFO.usable_size - 4096)
        );
        assert_eq!(r.pfn_to_dpa(first + pages), Err(EINVAL));
        assert_eq!(r.pfn_to_dpa(first - 1), Err(EINVAL));
        assert_eq!(r.dpa_to_pfn(DPA_BASE - PAGE_SIZE as u64), Err(EINVAL));
        assert_eq!(r.dpa_to_pfn(DPA_BASE + INFO.usable_size), Err(EINVAL));
        assert_eq!(r.dpa_to_pfn(DPA_BASE + 100), Err(EINVAL));
        assert_eq!(r.dpa_to_pfn(u64::MAX), Err(EINVAL));
        // The BAR covers the first 2 MiB.
        assert_eq!(
            r.bar_of(DPA_BASE + (1 << 20), 4096),
            Ok(IO_START + (1 << 20))
        );
        assert_eq!(r.bar_of(DPA_BASE + SZ_2M as u64, 4096), Err(EOPNOTSUPP));
        assert_eq!(
            r.bar_of(DPA_BASE + SZ_2M as u64 - 4096, 8192),
            Err(EOPNOTSUPP)
        );
        assert_eq!(r.bar_of(DPA_BASE + 4096, u64::MAX), Err(EINVAL));
        assert_eq!(r.bar_of(DPA_BASE - 4096, 4096), Err(EINVAL));
        // A region the core cannot back is refused.
        let bad = RegionInfo {
            usable_size: 4096 + 1,
            ..INFO
        };
        assert_eq!(bad.check(), Err(EINVAL));
        Ok(())
    }

    /// A migration moves 8 MiB-aligned pieces; the last one ends with the range, also at the
    /// top of the address space (where the next boundary does not exist).
    #[test]
    fn pieces_end_at_8_mib_boundaries() {
        const M: usize = 1 << 20;
        assert_eq!(piece_end(0, 20 * M), 8 * M);
        assert_eq!(piece_end(8 * M - 4096, 20 * M), 8 * M);
        assert_eq!(piece_end(8 * M, 20 * M), 16 * M);
        assert_eq!(piece_end(16 * M, 20 * M), 20 * M);
        assert_eq!(
            piece_end(usize::MAX - 8191, usize::MAX - 4095),
            usize::MAX - 4095
        );
    }

    /// Copies go to the engine a run of contiguous VRAM at a time, at most 8 MiB, one entry
    /// per page (a huge page's head carries its order); zero-filled runs need no copy and end
    /// a call; a peer's address on any link but PCIe is refused.
    #[test]
    fn copies_are_cut_at_vram_gaps_and_8_mib() -> Result {
        let t = alone(c"xe_svm_kunit_plan")?;
        let r = &t.region;
        let first = r.dpa_to_pfn(DPA_BASE)?;
        let sys = |addr: u64| Counterpart::System(addr);
        let runs = [
            // Pages 0 and 1: contiguous in VRAM, not in system memory: one call.
            CopyRun {
                device_pfn: first,
                counterpart: sys(0x10_0000),
                order: 0,
            },
            CopyRun {
                device_pfn: first + 1,
                counterpart: sys(0x90_0000),
                order: 0,
            },
            // A gap in VRAM: a new call.
            CopyRun {
                device_pfn: first + 5,
                counterpart: sys(0x20_0000),
                order: 0,
            },
            // Zeroes: no copy; ends the call.
            CopyRun {
                device_pfn: first + 6,
                counterpart: Counterpart::Zeroes,
                order: 0,
            },
            CopyRun {
                device_pfn: first + 7,
                counterpart: sys(0x30_0000),
                order: 0,
            },
        ];
        let mut calls = KVec::<(u64, usize, u64, u64)>::new();
        let mut addrs = KVVec::with_capacity(MAX_COPY / PAGE_SIZE, GFP_KERNEL)?;
        plan_batches(
            r,
            &runs,
            DataDirection::ToDevice,
            &mut addrs,
            |dpa, batch| {
                let last = &batch[batch.len() - 1];
                calls.push((dpa, batch.len(), batch[0].addr(), last.addr()), GFP_KERNEL)?;
                Ok(())
            },
        )?;
        let page = PAGE_SIZE as u64;
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0], (DPA_BASE, 2, 0x10_0000, 0x90_0000));
        assert_eq!(calls[1], (DPA_BASE + 5 * page, 1, 0x20_0000, 0x20_0000));
        assert_eq!(calls[2], (DPA_BASE + 7 * page, 1, 0x30_0000, 0x30_0000));

        // Five contiguous 2 MiB runs: 8 MiB in the first call, the rest in a second.
        let mut huge = KVec::new();
        // Bounded: five runs.
        for k in 0..5usize {
            huge.push(
                CopyRun {
                    device_pfn: first + 512 + k * 512,
                    counterpart: sys(0x4000_0000 + (k * SZ_2M) as u64),
                    order: 9,
                },
                GFP_KERNEL,
            )?;
        }
        let mut calls = KVec::<(u64, usize, u32, u32)>::new();
        plan_batches(
            r,
            &huge,
            DataDirection::ToDevice,
            &mut addrs,
            |dpa, batch| {
                calls.push(
                    (dpa, batch.len(), batch[0].order(), batch[1].order()),
                    GFP_KERNEL,
                )?;
                Ok(())
            },
        )?;
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], (DPA_BASE + SZ_2M as u64, 2048, 9, 0));
        assert_eq!(calls[1], (DPA_BASE + 5 * SZ_2M as u64, 512, 9, 0));

        // A run outside the region, and a peer address on the GPU's own link, are refused.
        let outside = [CopyRun {
            device_pfn: first + 4096,
            counterpart: sys(0x1000),
            order: 0,
        }];
        let mut n = 0;
        let res = plan_batches(r, &outside, DataDirection::ToDevice, &mut addrs, |_, _| {
            n += 1;
            Ok(())
        });
        assert_eq!(res, Err(EINVAL));
        let local = [CopyRun {
            device_pfn: first,
            counterpart: Counterpart::Peer(PagemapAddr {
                addr: DPA_BASE,
                proto: LOCAL_VRAM,
                order: 0,
                dir: DataDirection::ToDevice,
            }),
            order: 0,
        }];
        let res = plan_batches(r, &local, DataDirection::ToDevice, &mut addrs, |_, _| {
            n += 1;
            Ok(())
        });
        assert_eq!(res, Err(EINVAL));
        assert_eq!(n, 0);
        Ok(())
    }

    /// A range moves into VRAM (its bytes land there) and comes back on CPU faults, byte for
    /// byte; its VRAM is freed once the last page left.
    #[test]
    fn migration_there_and_back() -> Result {
        const PAGES: usize = 16;
        let t = alone(c"xe_svm_kunit_migrate")?;
        let r = &t.region;
        let vram = r.backend().vram().clone();
        let free = vram.free();
        let addr = user_pages(PAGES, 3)?;
        migrate_into(r, addr, PAGES)?;
        assert_eq!(r.stats().pages_to_device.load(Relaxed), PAGES as u64);
        assert_eq!(r.allocations(), 1);
        assert_eq!(vram.free(), free - (PAGES * PAGE_SIZE) as u64);
        assert!(vram.copy_calls.load(Relaxed) >= 1);
        // First fit from the bottom: page i is at DPA_BASE + i pages.
        let mut page = page_buf()?;
        // Bounded by the test's pages.
        for i in 0..PAGES {
            vram.read(DPA_BASE + (i * PAGE_SIZE) as u64, &mut page)?;
            assert!(is_marked(&page, 3 + i as u8));
        }
        // The CPU reads fault every page back.
        assert!(intact(addr, PAGES, 3)?);
        assert_eq!(r.stats().pages_to_ram.load(Relaxed), PAGES as u64);
        assert!(wait_released(r));
        assert_eq!(vram.free(), free);
        Ok(())
    }

    /// The backend's eviction (TTM's, under VRAM pressure) moves the data to system memory and
    /// frees the VRAM; an allocation not yet in use refuses (`EBUSY`); once released there is
    /// nothing to do.
    #[test]
    fn eviction_by_the_backend() -> Result {
        const PAGES: usize = 8;
        let t = alone(c"xe_svm_kunit_evict")?;
        let r = &t.region;
        let vram = r.backend().vram().clone();
        let free = vram.free();
        // Fresh: a migration may be about to use it.
        let fresh = Arc::pin_init(EvictSlot::new(), GFP_KERNEL)?;
        assert_eq!(fresh.evict(), Err(EBUSY));

        let addr = user_pages(PAGES, 40)?;
        migrate_into(r, addr, PAGES)?;
        assert_eq!(vram.free(), free - (PAGES * PAGE_SIZE) as u64);
        assert_eq!(r.backend().evict_all()?, (1, 0));
        assert_eq!(vram.free(), free);
        assert_eq!(r.allocations(), 0);
        assert_eq!(r.stats().evictions.load(Relaxed), 1);
        // Nothing left to evict.
        assert_eq!(r.backend().evict_all()?, (0, 0));
        assert!(intact(addr, PAGES, 40)?);
        // Evicted pages are in system memory: moving them in again works.
        migrate_into(r, addr, PAGES)?;
        assert!(intact(addr, PAGES, 40)?);
        Ok(())
    }

    /// Unbinding with data in VRAM revokes the region (no new pagemap, no migration through
    /// an old one) and moves everything back to system memory.
    #[test]
    fn unbind_with_live_allocations() -> Result {
        const PAGES: usize = 8;
        let t = alone(c"xe_svm_kunit_unbind")?;
        let r = &t.region;
        let vram = r.backend().vram().clone();
        let free = vram.free();
        let a = user_pages(PAGES, 7)?;
        let b = user_pages(PAGES, 9)?;
        migrate_into(r, a, PAGES)?;
        migrate_into(r, b, PAGES)?;
        let old = r.pagemap()?;
        assert_eq!(r.allocations(), 2);
        assert_eq!(r.unbind(), Ok(2));
        assert_eq!(r.allocations(), 0);
        assert_eq!(vram.free(), free);
        assert!(r.pagemap().is_err());
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let range = PageRange::with_pages(a, PAGES)?;
        assert_eq!(
            pagemap::populate_mm(&old, mm, range, &MigrateDetails::default()),
            Err(ENODEV)
        );
        assert!(intact(a, PAGES, 7)?);
        assert!(intact(b, PAGES, 9)?);
        Ok(())
    }

    /// The GPU maps its pages by DPA; a peer by bus address through the BAR, if PCIe reaches
    /// it and the BAR covers the page; nothing else maps.
    #[test]
    fn device_map_by_dpa_or_bar() -> Result {
        let bus = MockBus::new()?;
        // SAFETY: `OWNER` is a static of this test module, no other driver's owner.
        let owner = unsafe { RegionOwner::unique(Owner::of(&OWNER)) };
        let t = test_region(c"xe_svm_kunit_map", &bus, true, owner)?;
        let peer = faux::Registration::new(c"xe_svm_kunit_map_peer", None)?;
        let peer_dev: &Device = peer.as_ref().as_ref();
        let pagemap = t.region.pagemap()?;
        let first = t.region.dpa_to_pfn(DPA_BASE)?;
        let dir = DataDirection::Bidirectional;
        let ops = pagemap.ops();
        let own = ops.device_map(&pagemap, t.dev(), first + 3, 0, dir)?;
        assert_eq!((own.addr, own.proto), (DPA_BASE + 3 * 4096, LOCAL_VRAM));
        // Page 256 is 1 MiB into the VRAM; a 2 MiB page from page 0 is the whole BAR.
        let p = ops.device_map(&pagemap, peer_dev, first + 256, 0, dir)?;
        assert_eq!(
            (p.addr, p.proto, p.order),
            (IO_START + (1 << 20), PCIE_P2P, 0)
        );
        ops.device_unmap(&pagemap, peer_dev, p);
        let p = ops.device_map(&pagemap, peer_dev, first, 9, dir)?;
        assert_eq!((p.addr, p.proto, p.order), (IO_START, PCIE_P2P, 9));
        ops.device_unmap(&pagemap, peer_dev, p);
        // Past the 2 MiB BAR, or straddling its end.
        assert_eq!(
            ops.device_map(&pagemap, peer_dev, first + 256, 9, dir),
            Err(EOPNOTSUPP)
        );
        assert_eq!(
            ops.device_map(&pagemap, peer_dev, first + 512, 0, dir),
            Err(EOPNOTSUPP)
        );
        assert_eq!(
            ops.device_map(&pagemap, peer_dev, first + SZ_4M / 4096, 0, dir),
            Err(EOPNOTSUPP)
        );
        // Outside the region.
        assert_eq!(
            ops.device_map(&pagemap, t.dev(), first + (16 << 20) / 4096, 0, dir),
            Err(EINVAL)
        );
        // Without PCIe peer-to-peer, a peer gets nothing.
        let u = alone(c"xe_svm_kunit_map_nop2p")?;
        let upm = u.region.pagemap()?;
        let ufirst = u.region.dpa_to_pfn(DPA_BASE)?;
        assert_eq!(
            upm.ops().device_map(&upm, peer_dev, ufirst, 0, dir),
            Err(EOPNOTSUPP)
        );
        Ok(())
    }

    /// Two regions in one interconnect group: data in the first moves into the second
    /// straight over the first's BAR (never through system memory), byte for byte.
    #[test]
    fn peer_to_peer_migration() -> Result {
        const PAGES: usize = 8;
        let bus = MockBus::new()?;
        let owners = OwnerList::new()?;
        let ma = owners.acquire(0, |_, _| true)?;
        let mb = owners.acquire(1, |_, _| true)?;
        assert_eq!(ma.owner(), mb.owner());
        let a = test_region(c"xe_svm_kunit_p2p_a", &bus, true, ma.region_owner())?;
        let b = test_region(c"xe_svm_kunit_p2p_b", &bus, true, mb.region_owner())?;
        let addr = user_pages(PAGES, 77)?;
        migrate_into(&a.region, addr, PAGES)?;
        let a_vram = a.region.backend().vram().clone();
        let b_vram = b.region.backend().vram().clone();
        migrate_into(&b.region, addr, PAGES)?;
        assert_eq!(b.region.stats().pages_from_peer.load(Relaxed), PAGES as u64);
        assert_eq!(a.region.stats().pages_to_peer.load(Relaxed), PAGES as u64);
        assert_eq!(a.region.stats().pages_to_ram.load(Relaxed), 0);
        let mut page = page_buf()?;
        // Bounded by the test's pages.
        for i in 0..PAGES {
            b_vram.read(DPA_BASE + (i * PAGE_SIZE) as u64, &mut page)?;
            assert!(is_marked(&page, 77 + i as u8));
        }
        assert!(wait_released(&a.region));
        assert_eq!(a_vram.free(), INFO.usable_size);
        assert!(intact(addr, PAGES, 77)?);
        drop((a, b));
        drop((ma, mb));
        Ok(())
    }
}
