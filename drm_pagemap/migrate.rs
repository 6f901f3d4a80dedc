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

use kernel::dma::DmaAddress;
use kernel::mm::virt::VmaRef;
use kernel::mm::MmWithUser;
use kernel::mm::MmapReadGuard;
use kernel::prelude::*;
use kernel::sync::Arc;

use crate::copy::CopyRuns;
use crate::device_private::DevicePrivateRegion;
use crate::devmem::Devmem;
use crate::devmem::Direction;
use crate::devmem::Zdd;
use crate::ffi;
use crate::owner::Owner;
use crate::pagemap::Folios;
use crate::pagemap::MigrateDetails;
use crate::pagemap::Pagemap;
use crate::pending::task::fatal_signal_pending;
use crate::range::PageRange;
use crate::sys::dma::maps_whole;
use crate::sys::fault::VmFault;
use crate::sys::migrate_vma::Kind;
use crate::sys::migrate_vma::MigrateVma;
use crate::sys::migrate_vma::PfnArrays;
use crate::sys::migrate_vma::Pfns;
use crate::sys::migrate_vma::Select;
use crate::sys::migrate_vma::Side;
use crate::sys::page::huge_nr;
use crate::sys::page::huge_order;
use crate::sys::page::vma_is_anonymous;
use crate::sys::page::NewPage;
use crate::sys::page::COMPOUND;
use crate::sys::page::MIGRATE;
use crate::sys::page::WRITE;
use kernel::page::PAGE_SIZE;

/// Pages one `migrate_vma` operation back to system memory covers at most (16 MiB, a
/// multiple of a huge page): bounds the memory a call allocates, whatever range it is given.
pub const CHUNK_PAGES: usize = 4096;

use crate::sys::migrate_vma::span_of as span;

/// Pages that moved, once `migrate_*_pages` ran: a huge source that moved whole into a huge
/// destination counts all its pages.
fn moved_pages(pfns: &Pfns<'_>) -> usize {
    let mut moved = 0;
    let mut i = 0;
    while i < pfns.len() {
        let (s, d) = (pfns.src()[i], pfns.dst()[i]);
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

/// Runs one `migrate_vma` operation over `range` of `vma`: collects the pages, lets `fill` set
/// up and fill the destinations, and moves what it set up. If `fill` fails, every destination
/// is abandoned so that nothing moves. Returns `fill`'s result and the number of pages that
/// moved. `fault` is the CPU fault this serves, if any (its page inside the range). With
/// `back`, the device pages that moved back to system memory are counted, as `back`, in
/// their allocations' statistics.
#[expect(clippy::too_many_arguments)]
fn run_migrate_vma<T>(
    vma: &VmaRef,
    range: PageRange,
    owner: Owner,
    select: Select,
    fault: Option<&VmFault<'_>>,
    back: Option<Direction>,
    pfns: &mut PfnArrays,
    fill: impl FnOnce(&mut Pfns<'_>) -> Result<T>,
) -> Result<(Result<T>, usize)> {
    let mut migration = MigrateVma::setup(vma, range, owner, select, fault, pfns)?;
    // From here on, every path goes through `migrate_vma_pages` and `migrate_vma_finalize`:
    // dropping `migration` abandons the destinations first, so that nothing moves.
    let filled = fill(&mut migration.pfns());
    if filled.is_err() {
        return Ok((filled, 0));
    }
    let moved = migration.commit(|pfns| {
        if let Some(dir) = back {
            count_moved_back(pfns, dir);
        }
        moved_pages(pfns)
    });
    Ok((filled, moved))
}

/// Counts, in each allocation's statistics, its device pages whose data `migrate_*_pages` has
/// just moved to system memory (between pages and finalize: the pages are still locked, and
/// their allocations alive). What was copied but did not move is not counted.
fn count_moved_back(pfns: &Pfns<'_>, dir: Direction) {
    let mut current: Option<(Arc<Devmem>, usize)> = None;
    let mut i = 0;
    // One pass over the arrays (an operation's size).
    while i < pfns.len() {
        let (s, d) = (pfns.src()[i], pfns.dst()[i]);
        let n = if s & COMPOUND != 0 && d & COMPOUND != 0 {
            huge_nr()
        } else {
            1
        };
        if let Some(devmem) = pfns.devmem_of(i).filter(|_| s & MIGRATE != 0 && d != 0) {
            match &mut current {
                Some((cur, pages)) if Arc::ptr_eq(cur, devmem) => *pages += n,
                _ => {
                    if let Some((cur, pages)) = current.replace((devmem.clone(), n)) {
                        cur.stats().count(dir, pages);
                    }
                }
            }
        }
        i += n;
    }
    if let Some((cur, pages)) = current {
        cur.stats().count(dir, pages);
    }
}

mod evict;
mod fault;
mod to_device;
mod to_ram;

pub use evict::evict_to_ram;
pub use evict::try_evict_to_ram;
pub(crate) use fault::cpu_fault;
pub(crate) use fault::FaultServed;
pub use to_device::migrate_to_devmem;
use to_ram::copy_back;
pub use to_ram::migrate_to_ram;
use to_ram::vma_to_ram;
use to_ram::BackBuffers;
use to_ram::CopyBatch;
use to_ram::Which;

#[kunit_tests(drm_pagemap_migrate)]
mod tests {
    use super::*;
    use crate::copy::set_software_dma_mask;
    use crate::copy::CopyFence;
    use crate::copy::CopyRun;
    use crate::copy::Counterpart;
    use crate::device_private::DevicePrivateRegion;
    use crate::devmem::DevmemOps;
    use crate::devmem::MigrationStats;
    use crate::pagemap::Folios;
    use crate::pagemap::MigrateDetails;
    use crate::pagemap::Pagemap;
    use crate::pagemap::PagemapOps;
    use crate::pending::workqueue::Order;
    use crate::pending::workqueue::OwnedQueue;
    use kernel::dma::DmaMask;
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

    /// How a test allocation's copy engine behaves.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Engine {
        /// Copies before returning, and signals.
        Sync,
        /// Copies later, from a work item, and signals from there.
        Async,
        /// Copies, then signals `EIO`: the device pages hold data, but the copy failed.
        FailAfterWrite,
        /// Drops the fence without signalling it.
        DropFence,
        /// Refuses to start (`EBUSY`), touching nothing.
        Refuse,
        /// Copies to device memory; the first copy back to system memory signals `EIO`
        /// without copying, later ones copy.
        FailToRamOnce,
    }

    /// Device memory of a test region: a real backing store, optional failures, and a count
    /// of releases.
    struct TestMem {
        first_pfn: usize,
        dev: ARef<kernel::device::Device>,
        backing: Arc<SpinLock<KVVec<u8>>>,
        populate: Populate,
        engine: Engine,
        /// Where `Engine::Async` copies: drained when the allocation goes, so that no work
        /// item of this module outlives it.
        queue: Option<OwnedQueue>,
        /// Whether `Engine::FailToRamOnce` failed already.
        failed: Atomic<bool>,
        released: Arc<Atomic<u32>>,
        done: Arc<Completion>,
    }

    /// Runs `runs` between `backing` (device memory from `first_pfn` on) and the system
    /// memory the runs' DMA addresses of `dev` name, as a CPU copy engine.
    ///
    /// # Safety
    ///
    /// The runs' system memory stays mapped for `dev` until this returns.
    unsafe fn run_copies(
        backing: &SpinLock<KVVec<u8>>,
        first_pfn: usize,
        dev: &kernel::device::Device,
        runs: &[CopyRun],
        to_device: bool,
    ) -> Result {
        let mut vram = backing.lock();
        for run in runs {
            let off = (run.device_pfn - first_pfn) * PAGE_SIZE;
            let dst = vram.get_mut(off..off + run.bytes()).ok_or(EINVAL)?;
            let addr = match run.counterpart {
                Counterpart::System(addr) => addr,
                Counterpart::Zeroes if to_device => {
                    dst.fill(0);
                    continue;
                }
                // The test engines have no interconnect.
                Counterpart::Zeroes | Counterpart::Peer(_) => return Err(EINVAL),
            };
            let sys = crate::copy::system_ptr(dev, addr, run.bytes())?;
            if to_device {
                // SAFETY: The run's system memory, mapped for `dev` (to be read) and held by
                // the migration until the fence of this copy is signalled, after this.
                dst.copy_from_slice(unsafe {
                    core::slice::from_raw_parts(sys.as_ptr(), run.bytes())
                });
            } else {
                // SAFETY: As above, to be written, and nothing else accesses it meanwhile.
                unsafe { core::slice::from_raw_parts_mut(sys.as_ptr(), run.bytes()) }
                    .copy_from_slice(dst);
            }
        }
        Ok(())
    }

    impl TestMem {
        /// Copies (or not, as `engine` says) and signals.
        ///
        /// # Safety
        ///
        /// As [`DevmemOps::copy_to_devmem`].
        unsafe fn copy(&self, runs: &[CopyRun], fence: CopyFence, to_device: bool) -> Result {
            let run = |runs: &[CopyRun]| {
                // SAFETY: Per this function's contract, until the fence is signalled, after.
                unsafe { run_copies(&self.backing, self.first_pfn, &self.dev, runs, to_device) }
            };
            // The path to signalling is marked for lockdep, as an engine must mark it; the
            // asynchronous engine marks its work item's.
            let signalling = crate::copy::Signalling::begin;
            match self.engine {
                Engine::Sync => {
                    let _section = signalling();
                    fence.signal(run(runs));
                }
                Engine::FailToRamOnce if !to_device && !self.failed.xchg(true, Full) => {
                    fence.signal(Err(EIO))
                }
                Engine::FailToRamOnce => {
                    let _section = signalling();
                    fence.signal(run(runs));
                }
                Engine::FailAfterWrite => {
                    let _section = signalling();
                    run(runs)?;
                    fence.signal(Err(EIO));
                }
                Engine::DropFence => drop(fence),
                Engine::Refuse => return Err(EBUSY),
                Engine::Async => {
                    let mut list = KVVec::with_capacity(runs.len(), GFP_KERNEL)?;
                    list.extend_from_slice(runs, GFP_KERNEL)?;
                    let (backing, first, dev) =
                        (self.backing.clone(), self.first_pfn, self.dev.clone());
                    let queue = self.queue.as_ref().ok_or(EINVAL)?;
                    queue.try_spawn(GFP_KERNEL, move || {
                        let _signalling = crate::copy::Signalling::begin();
                        // Late, so that the submitter surely waits.
                        kernel::time::delay::fsleep(kernel::time::Delta::from_millis(20));
                        // SAFETY: The runs stay mapped until the fence is signalled, after.
                        let result = unsafe { run_copies(&backing, first, &dev, &list, to_device) };
                        fence.signal(result);
                    })?;
                }
            }
            Ok(())
        }
    }

    // SAFETY: Each test allocation owns a region of its own (one `Gpu` per allocation at a
    // time) and hands out its first pages in order; its engine touches the runs' memory only
    // before it signals or drops the fence. `Populate::Duplicate` breaks the contract on
    // purpose, to check that the core refuses what it can see.
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

        unsafe fn copy_to_devmem(&self, runs: &[CopyRun], fence: CopyFence) -> Result {
            // SAFETY: The runs stay mapped until the fence is signalled (the caller's contract).
            unsafe { self.copy(runs, fence, true) }
        }

        unsafe fn copy_to_ram(
            &self,
            runs: &[CopyRun],
            _dir: Direction,
            fence: CopyFence,
        ) -> Result {
            // SAFETY: As above.
            unsafe { self.copy(runs, fence, false) }
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
        // SAFETY: The device is new: nothing maps for it yet.
        unsafe { set_software_dma_mask(fdev.as_ref().as_ref(), DmaMask::new::<64>()) }?;
        // SAFETY: Per this function's doc: no other driver's owner, a static.
        let owner = unsafe { crate::owner::RegionOwner::unique(Owner::of(owner)) };
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
        engine: Engine,
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
                dev: gpu.pagemap.device().into(),
                backing,
                populate,
                engine,
                queue: match engine {
                    Engine::Async => {
                        Some(OwnedQueue::new(c"drm_pagemap_kunit_copy", Order::Ordered)?)
                    }
                    _ => None,
                },
                failed: Atomic::new(false),
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
        engine: Engine,
    ) -> Result<TestAlloc> {
        alloc_at(gpu, mm, 0, PAGES, populate, engine)
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

    /// Migrates `PAGES` pages to a test GPU whose engine is `engine`, and back through CPU
    /// faults: every byte survives, and the allocation is released once.
    fn round_trip_with(name: &'static CStr, engine: Engine, seed: u8) -> Result {
        let a = gpu(name, &OWNER_A)?;
        let addr = user_range(seed)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, released, done) = alloc(&a, mm, Populate::Good, engine)?;
        migrate(&devmem, addr)?;
        assert_eq!(devmem.stats().pages_to_device.load(Relaxed), PAGES as u64);
        assert!(!devmem.is_detached());
        // The CPU reads every byte back, faulting the pages home.
        assert!(intact(addr, seed)?);
        assert_eq!(devmem.stats().cpu_faults.load(Relaxed), 1);
        devmem.wait_detached();
        done.wait_for_completion();
        assert_eq!(released.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn round_trip() -> Result {
        round_trip_with(c"drm_pagemap_kunit_mig_a", Engine::Sync, 1)
    }

    /// The engine signals from a work item, after the provider returned: the core waits for
    /// the fence before it remaps (and before the CPU can see) the pages.
    #[test]
    fn asynchronous_engine_round_trip() -> Result {
        round_trip_with(c"drm_pagemap_kunit_mig_as", Engine::Async, 11)
    }

    /// A copy that fails by its fence (dropped unsignalled) or before it starts moves nothing.
    fn failed_copy_moves_nothing(name: &'static CStr, engine: Engine, err: Error) -> Result {
        let a = gpu(name, &OWNER_A)?;
        let addr = user_range(12)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, released, done) = alloc(&a, mm, Populate::Good, engine)?;
        assert_eq!(migrate(&devmem, addr), Err(err));
        done.wait_for_completion();
        assert_eq!(released.load(Relaxed), 1);
        assert_eq!(devmem.stats().pages_to_device.load(Relaxed), 0);
        assert!(intact(addr, 12)?);
        assert_eq!(devmem.stats().cpu_faults.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn dropped_fence_fails_the_copy() -> Result {
        failed_copy_moves_nothing(c"drm_pagemap_kunit_mig_df", Engine::DropFence, EIO)
    }

    #[test]
    fn refused_copy_moves_nothing() -> Result {
        failed_copy_moves_nothing(c"drm_pagemap_kunit_mig_rf", Engine::Refuse, EBUSY)
    }

    /// A failing, half-failing or contract-breaking `populate_devmem_pfn`: the migration fails
    /// cleanly, releases the allocation once and leaves every byte (and every other page of
    /// the machine) alone.
    fn populate_failure(name: &'static CStr, populate: Populate, seed: u8, err: Error) -> Result {
        let a = gpu(name, &OWNER_A)?;
        let addr = user_range(seed)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, released, done) = alloc(&a, mm, populate, Engine::Sync)?;
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
        let (devmem, released, done) = alloc(&a, mm, Populate::Good, Engine::FailAfterWrite)?;
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
        let (on_b, _b_released, b_done) = alloc(b, mm, Populate::Good, Engine::Sync)?;
        migrate_pages(&on_b, addr + 3 * PAGE_SIZE, 1, &MigrateDetails::default())?;
        let (devmem, released, done) = alloc(a, mm, Populate::Good, Engine::Sync)?;
        assert_eq!(migrate(&devmem, addr), Err(EBUSY));
        // Another owner's page: refused before any device memory was asked for. A peer's
        // (same owner) that cannot be mapped for `a` (no link): refused when it is mapped,
        // and the allocation is released.
        if a.region.owner() == b.region.owner() {
            done.wait_for_completion();
            assert_eq!(released.load(Relaxed), 1);
        } else {
            assert_eq!(released.load(Relaxed), 0);
        }
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
        // A migration back to RAM of `a`'s pages leaves the peer's page alone (it is
        // collected, sharing the owner, and left); one of `b`'s moves it through its own
        // allocation's ops.
        // No assertion under the mmap lock: a failing one ends the test's thread there.
        let (moved_a, moved_b) = {
            let task = kernel::current!();
            let mm = task.mm().ok_or(EINVAL)?;
            let mmap = mm.mmap_read_lock();
            let range = PageRange::with_pages(addr, PAGES)?;
            (
                migrate_to_ram(&mmap, range, &a.region, Folios::Huge)?,
                migrate_to_ram(&mmap, range, &b.region, Folios::Huge)?,
            )
        };
        assert_eq!(moved_a, 0);
        assert_eq!(moved_b, 1);
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
        let (first, _r1, done1) = alloc_at(&a, mm, 0, PAGES / 2, Populate::Good, Engine::Sync)?;
        // Half the range moves first.
        assert_eq!(
            migrate_pages(&first, addr, PAGES / 2, &MigrateDetails::default())?,
            PAGES / 2
        );
        let (second, _r2, done2) =
            alloc_at(&a, mm, PAGES / 2, PAGES / 2, Populate::Good, Engine::Sync)?;
        let mut asked = KVec::new();
        // No assertion under the mmap lock: a failing one ends the test's thread there.
        let (moved, again) = {
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
            // Everything is resident now: nothing is allocated.
            let again = migrate_to_devmem(
                &a.pagemap,
                &mmap,
                PageRange::with_pages(addr, PAGES)?,
                &MigrateDetails::default(),
                |n| {
                    asked.push(n, GFP_KERNEL)?;
                    Err(ENOMEM)
                },
            )?;
            (moved, again)
        };
        assert_eq!(moved, PAGES / 2);
        assert_eq!(again, 0);
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
        let (devmem, _released, done) = alloc(&a, mm, Populate::Good, Engine::Sync)?;
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
        let (first, _r1, done1) = alloc_at(&a, mm, 0, PAGES, Populate::Good, Engine::Sync)?;
        migrate(&first, addr)?;
        // No assertion under the mmap lock: a failing one ends the test's thread there.
        let moved = {
            let mmap = mm.mmap_read_lock();
            let upper = addr + half * PAGE_SIZE;
            migrate_to_ram(
                &mmap,
                PageRange::new(upper, addr + PAGES * PAGE_SIZE)?,
                &a.region,
                Folios::Huge,
            )?
        };
        assert_eq!(moved, half);
        // `first` still owns all its pages; `second` gets pages of its own.
        let (second, _r2, done2) = alloc_at(&a, mm, PAGES, half, Populate::Good, Engine::Sync)?;
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

    /// A migration back over two allocations whose second copy fails moves nothing, and
    /// counts nothing: the first allocation's copy did succeed, but the operation was
    /// abandoned, so its pages stayed in device memory.
    #[test]
    fn abandoned_migration_back_counts_nothing() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_n", &OWNER_A)?;
        let addr = user_range(13)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let half = PAGES / 2;
        let upper = addr + half * PAGE_SIZE;
        let (first, _r1, done1) = alloc_at(&a, mm, 0, half, Populate::Good, Engine::Sync)?;
        let (second, _r2, done2) =
            alloc_at(&a, mm, half, half, Populate::Good, Engine::FailToRamOnce)?;
        let details = MigrateDetails::default();
        assert_eq!(migrate_pages(&first, addr, half, &details)?, half);
        assert_eq!(migrate_pages(&second, upper, half, &details)?, half);
        // No assertion under the mmap lock: a failing one ends the test's thread there.
        let back = {
            let mmap = mm.mmap_read_lock();
            let all = PageRange::with_pages(addr, PAGES)?;
            migrate_to_ram(&mmap, all, &a.region, Folios::Huge)
        };
        assert_eq!(back, Err(EIO));
        assert_eq!(first.stats().pages_to_ram.load(Relaxed), 0);
        assert_eq!(second.stats().pages_to_ram.load(Relaxed), 0);
        assert!(!first.is_detached() && !second.is_detached());
        // Both halves come back by CPU faults (the second engine failed once only), each
        // counted then, with every byte.
        assert!(intact(addr, 13)?);
        done1.wait_for_completion();
        done2.wait_for_completion();
        assert_eq!(first.stats().pages_to_ram.load(Relaxed), half as u64);
        assert_eq!(second.stats().pages_to_ram.load(Relaxed), half as u64);
        Ok(())
    }

    #[test]
    fn timeslice_is_bounded_and_does_not_spin() -> Result {
        let a = gpu(c"drm_pagemap_kunit_mig_l", &OWNER_A)?;
        let addr = user_range(11)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let (devmem, _released, done) = alloc(&a, mm, Populate::Good, Engine::Sync)?;
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
