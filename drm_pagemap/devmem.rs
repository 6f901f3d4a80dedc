// SPDX-License-Identifier: GPL-2.0

//! Device-memory allocations and the zone-device data their pages point to.
//!
//! A provider backs a migration with a [`Devmem`]: a run of device pages plus the ops that
//! copy data in and out of them. Each device page handed to the core mm points, through its
//! `zone_device_data`, to one shared [`Zdd`] per migration, which holds the allocation. When
//! the last such page is freed the allocation is *detached*: [`Devmem::wait_detached`]
//! returns and [`DevmemOps::release`] runs, in process context, on this module's workqueue.
//!
//! C header: [`include/drm/drm_pagemap.h`](srctree/include/drm/drm_pagemap.h)

use core::mem::ManuallyDrop;
use core::mem::MaybeUninit;

use kernel::mm::Mm;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Acquire;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Full;
use kernel::sync::atomic::Relaxed;
use kernel::sync::atomic::Release;
use kernel::sync::Arc;
use kernel::sync::ArcBorrow;
use kernel::sync::Completion;
use kernel::sync::Mutex;
use kernel::sync::UniqueArc;
use kernel::time::Delta;
use kernel::time::Instant;
use kernel::time::Monotonic;
use kernel::workqueue::Work;
use kernel::workqueue::WorkItem;

use crate::copy::CopyFence;
use crate::copy::CopyRun;
use crate::device_private::DevicePrivateRegion;
use crate::ffi;
use crate::pagemap::Pagemap;
use crate::pending::module_ref::ModuleRef;
use crate::sys::migrate_vma::MigrateDevice;
use crate::sys::migrate_vma::PfnArrays;

/// Why data moves, for statistics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// System memory to device memory.
    ToDevice,
    /// Device memory to system memory on an explicit request.
    ToRam,
    /// Device memory to system memory because the CPU touched the page.
    CpuFault,
    /// Device memory to system memory because the provider evicted the allocation.
    Eviction,
    /// Device memory to a peer's device memory, directly over the interconnect.
    ToPeer,
}

/// Counters of what moved, shared by a provider's allocations.
pub struct MigrationStats {
    /// Pages moved into device memory.
    pub pages_to_device: Atomic<u64>,
    /// Pages moved back to system memory, for any reason.
    pub pages_to_ram: Atomic<u64>,
    /// Pages moved out of this memory straight into a peer's, over the interconnect.
    pub pages_to_peer: Atomic<u64>,
    /// Of `pages_to_device`, those that came straight from a peer's memory.
    pub pages_from_peer: Atomic<u64>,
    /// CPU faults on device pages that were served by a migration.
    pub cpu_faults: Atomic<u64>,
    /// Allocations evicted.
    pub evictions: Atomic<u64>,
    /// CPU faults that found their allocation's timeslice running and waited for its end.
    pub timeslice_waits: Atomic<u64>,
}

impl MigrationStats {
    /// All counters zero.
    pub fn new() -> Self {
        Self {
            pages_to_device: Atomic::new(0),
            pages_to_ram: Atomic::new(0),
            pages_to_peer: Atomic::new(0),
            pages_from_peer: Atomic::new(0),
            cpu_faults: Atomic::new(0),
            evictions: Atomic::new(0),
            timeslice_waits: Atomic::new(0),
        }
    }

    pub(crate) fn count(&self, dir: Direction, pages: usize) {
        let pages = pages as u64;
        match dir {
            Direction::ToDevice => {
                self.pages_to_device.fetch_add(pages, Relaxed);
            }
            Direction::ToPeer => {
                self.pages_to_peer.fetch_add(pages, Relaxed);
            }
            _ => {
                self.pages_to_ram.fetch_add(pages, Relaxed);
            }
        }
    }
}

impl Default for MigrationStats {
    fn default() -> Self {
        Self::new()
    }
}

/// What a provider implements for a device-memory allocation.
///
/// # Safety
///
/// The core mm trusts the page frame numbers [`DevmemOps::populate_devmem_pfn`] hands out:
/// an implementation must fill `pfns` with pages of the allocation's pagemap region, all
/// distinct, and owned by this allocation alone (free: no other allocation hands them out and
/// no page of another migration lives there) from the first call until [`DevmemOps::release`]
/// has run and the [`Devmem`] is dropped; every call returns the same pages in the same order.
/// The migration core checks what it cheaply can (region, duplicates, a base or head page
/// already in use) and refuses with `EINVAL`, but cannot check ownership against a concurrent
/// migration.
///
/// A copy call's engine accesses the system memory of the call's runs, and writes device
/// memory, only until it signals (or drops) the call's [`CopyFence`]; it writes no device page
/// outside the runs. The fence follows the `dma_fence` signalling rules: it signals in
/// bounded time, and the path that signals it takes no lock a migration may hold while it
/// waits (the mmap lock, page locks, this crate's locks, locks the provider holds around its
/// own migrations) and does not allocate memory with direct reclaim, which could wait on
/// those pages. The core waits for it uninterruptibly, holding them. An engine marks its
/// path to signalling with [`crate::copy::Signalling`], so that lockdep checks the lock rule
/// (once a wait holding that lock has been seen); the reclaim rule is not checked.
///
/// [`DevmemOps::module`] returns a module that stays loaded as long as any code of this
/// implementation can run: the module of the crate that defines the type. Keep the type
/// private to that crate: generic code instantiated with it (such as [`Devmem::new`] and the
/// vtable it makes) is emitted in whichever crate instantiates it, which must be one that the
/// returned module keeps loaded.
pub unsafe trait DevmemOps: Send + Sync {
    /// The module whose code this implementation is (see the trait's safety contract):
    /// usually `kernel::module::this_module::<crate::LocalModule>()`.
    fn module(&self) -> &'static ThisModule;

    /// Fills `pfns` with the device-private page frame numbers backing the allocation's first
    /// `pfns.len()` pages, in order.
    fn populate_devmem_pfn(&self, pfns: &mut [usize]) -> Result;

    /// Starts copying each run's counterpart (system memory, zeroes, or a peer's device
    /// memory) into its device pages, and signals `fence` with the result once the engine has
    /// finished; may return before that. An error returned means the copy did not start (the
    /// core still waits for `fence`, which dropping signals). On any error nothing has been
    /// migrated: the data stays where it was.
    ///
    /// # Safety
    ///
    /// A run's [`Counterpart::System`] address lies inside a live DMA mapping, for the device
    /// of the allocation's pagemap, of system memory that stays allocated and mapped until
    /// `fence` is signalled or dropped; a [`Counterpart::Peer`] address is one the source
    /// page's pagemap (a pagemap of this same provider, sharing the owner) gave for that
    /// device by `device_map`, for a page locked by the migration and mapped until then (the
    /// core's calls, from the mappings of the running migration).
    ///
    /// [`Counterpart::System`]: crate::copy::Counterpart::System
    /// [`Counterpart::Peer`]: crate::copy::Counterpart::Peer
    unsafe fn copy_to_devmem(&self, runs: &[CopyRun], fence: CopyFence) -> Result;

    /// Starts copying each run's device pages into its system memory (`system` is always set),
    /// as [`Self::copy_to_devmem`].
    ///
    /// # Safety
    ///
    /// As for [`Self::copy_to_devmem`].
    unsafe fn copy_to_ram(&self, runs: &[CopyRun], dir: Direction, fence: CopyFence) -> Result;

    /// Called once, in process context, for an allocation a migration accepted (see
    /// [`crate::migrate::migrate_to_devmem`]) when no device page refers to it any more.
    /// Dropping the last [`Arc<Devmem>`] frees the allocation after that.
    fn release(&self) {}
}

/// [`Devmem::lock_pfns`]: while held, the provider's pfns are the allocation's (its
/// `release` waits).
pub(crate) struct PfnsLock<'a> {
    devmem: &'a Devmem,
    _guard: kernel::sync::MutexGuard<'a, ()>,
}

/// Device pages an allocation handed out for a migration ([`Devmem::populate`]).
///
/// # Invariants
///
/// Every pfn is a page of `region`, none twice, and the allocation's own (by [`DevmemOps`]'
/// contract).
pub(crate) struct DevicePages<'a> {
    devmem: &'a Devmem,
    pfns: &'a [usize],
    region: &'a DevicePrivateRegion,
    /// Which pages a destination was set up with (each at most once).
    used: KVVec<bool>,
}

/// The right to populate an allocation: one migration's ([`Devmem::claim`]).
pub(crate) struct Claim<'a> {
    devmem: &'a Devmem,
}

impl DevicePages<'_> {
    /// The `index`th page's frame number.
    pub(crate) fn pfn(&self, index: usize) -> Option<usize> {
        self.pfns.get(index).copied()
    }

    /// The allocation they belong to.
    pub(crate) fn devmem(&self) -> &Devmem {
        self.devmem
    }

    /// Takes pages `index..index + n` for a destination: `EINVAL` if any is out of range or
    /// was taken before.
    pub(crate) fn take(&mut self, index: usize, n: usize) -> Result<&[usize]> {
        let end = index.checked_add(n).ok_or(EINVAL)?;
        let used = self.used.get_mut(index..end).ok_or(EINVAL)?;
        if used.iter().any(|u| *u) {
            return Err(EINVAL);
        }
        used.iter_mut().for_each(|u| *u = true);
        Ok(&self.pfns[index..end])
    }

    /// All of them, in order.
    pub(crate) fn pfns(&self) -> &[usize] {
        self.pfns
    }

    /// The region they belong to.
    pub(crate) fn region(&self) -> &DevicePrivateRegion {
        self.region
    }
}

/// Longest timeslice a migration may ask for, whatever the provider allows: a CPU fault on a
/// page within its timeslice sleeps until it ends.
pub const MAX_TIMESLICE_MS: u32 = 1000;

/// A device-memory allocation of `npages` pages, the source or target of migrations.
///
/// # Invariants
///
/// - `detached` is set, and `detached_done` completed, exactly once: when the last page
///   referring to it through a [`Zdd`] is freed.
/// - `module` keeps loaded the module whose code `ops` is ([`DevmemOps::module`]).
/// - `release` runs only after `detached` is set and `pfns_lock` has been free since: an
///   eviction pass that holds `pfns_lock` and saw `detached` clear finishes before it.
/// - `populated` is set once the migration that claimed the allocation has finished: no page
///   of it is initialised after that.
#[pin_data]
pub struct Devmem {
    // Dropped before `module`: it is that module's code.
    ops: KBox<dyn DevmemOps>,
    pagemap: ARef<Pagemap>,
    mm: Option<ARef<Mm>>,
    npages: usize,
    stats: Arc<MigrationStats>,
    /// When the allocation was made: the origin of `timeslice_end_ns`.
    created: Instant<Monotonic>,
    /// When the timeslice of the last migration ends, in ns after `created`.
    timeslice_end_ns: Atomic<i64>,
    claimed: Atomic<bool>,
    populated: Atomic<bool>,
    va_start: Atomic<u64>,
    va_end: Atomic<u64>,
    detached: Atomic<bool>,
    #[pin]
    detached_done: Completion,
    /// Held by an eviction pass from reading the provider's pfns to finalizing the pages;
    /// `release` waits for it: a provider never gets a pfn back while an eviction may still
    /// lock its page.
    #[pin]
    pfns_lock: Mutex<()>,
    /// Set once `release` has run.
    released: Atomic<bool>,
    #[pin]
    release_work: Work<Devmem>,
    module: ModuleRef,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Devmem { self.release_work }
}

impl WorkItem for Devmem {
    type Pointer = Arc<Devmem>;

    fn run(this: Arc<Devmem>) {
        // INVARIANT: `detached` is set (before the work was queued); a pass that saw it clear
        // still holds the lock, later passes see it set. Not held across `release`, whose
        // locks must not be ordered after the mmap lock that an eviction pass holds.
        drop(this.pfns_lock.lock());
        this.ops.release();
        this.released.store(true, Release);
    }
}

impl Devmem {
    /// Creates an allocation of `npages` device pages of `pagemap`, holding data of the
    /// address space `mm` (if any), moved by `ops` and counted in `stats`. Keeps the module of
    /// `ops` ([`DevmemOps::module`]) loaded until the allocation is freed.
    pub fn new(
        pagemap: ARef<Pagemap>,
        mm: Option<&Mm>,
        npages: usize,
        stats: Arc<MigrationStats>,
        ops: impl DevmemOps + 'static,
    ) -> Result<Arc<Self>> {
        let module = ModuleRef::new(ops.module())?;
        // An allocation lives as long as a process's data does: charged to its memory cgroup.
        let ops = KBox::new(ops, GFP_KERNEL_ACCOUNT)?;
        Self::new_dyn(module, pagemap, mm, npages, stats, ops)
    }

    // Not generic: the work item's lock class lives in this module only.
    #[inline(never)]
    fn new_dyn(
        module: ModuleRef,
        pagemap: ARef<Pagemap>,
        mm: Option<&Mm>,
        npages: usize,
        stats: Arc<MigrationStats>,
        ops: KBox<dyn DevmemOps>,
    ) -> Result<Arc<Self>> {
        if npages == 0 {
            return Err(EINVAL);
        }
        Arc::pin_init(
            // INVARIANT: `module` is that of `ops` (`DevmemOps`' contract).
            try_pin_init!(Devmem {
                ops,
                pagemap,
                mm: mm.map(ARef::from),
                npages,
                stats,
                created: Instant::now(),
                timeslice_end_ns: Atomic::new(0),
                claimed: Atomic::new(false),
                populated: Atomic::new(false),
                va_start: Atomic::new(0),
                va_end: Atomic::new(0),
                detached: Atomic::new(false),
                detached_done <- Completion::new(),
                pfns_lock <- kernel::new_mutex!((), "Devmem::pfns_lock"),
                released: Atomic::new(false),
                release_work <- kernel::new_work!("Devmem::release_work"),
                module,
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// The provider's ops.
    pub(crate) fn ops(&self) -> &dyn DevmemOps {
        &*self.ops
    }

    /// The pagemap whose pages back this allocation.
    pub fn pagemap(&self) -> &Pagemap {
        &self.pagemap
    }

    /// The address space the allocation holds data of, if any.
    pub fn mm(&self) -> Option<&Mm> {
        self.mm.as_deref()
    }

    /// Size in pages.
    pub fn npages(&self) -> usize {
        self.npages
    }

    /// The counters this allocation's migrations add to.
    pub fn stats(&self) -> &MigrationStats {
        &self.stats
    }

    /// Whether no device page refers to the allocation any more.
    pub fn is_detached(&self) -> bool {
        self.detached.load(Relaxed)
    }

    /// Waits until no device page refers to the allocation any more.
    pub fn wait_detached(&self) {
        self.detached_done.wait_for_completion();
    }

    /// Whether a migration has accepted the allocation (pages may live in it).
    pub(crate) fn is_claimed(&self) -> bool {
        self.claimed.load(Relaxed)
    }

    /// Marks the allocation used by a migration: the one migration that gets the [`Claim`]
    /// may populate it; `None` if it already was.
    pub(crate) fn claim(&self) -> Option<Claim<'_>> {
        self.claimed
            .cmpxchg(false, true, Full)
            .ok()
            .map(|_| Claim { devmem: self })
    }

    /// Whether the provider's `release` has run.
    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Acquire)
    }

    /// Marks the migration that claimed the allocation as finished (its pages are set up or
    /// abandoned).
    pub(crate) fn set_populated(&self) {
        // INVARIANT: Called by that migration after `migrate_vma_finalize`.
        self.populated.store(true, Release);
    }

    /// Whether the migration that claimed the allocation has finished.
    pub(crate) fn is_populated(&self) -> bool {
        self.populated.load(Acquire)
    }

    /// Locks out `release` (see the type's invariants).
    pub(crate) fn lock_pfns(&self) -> PfnsLock<'_> {
        PfnsLock {
            devmem: self,
            _guard: self.pfns_lock.lock(),
        }
    }

    /// Asks the provider for the device pages backing the allocation's first `pfns.len()`
    /// pages, and checks what the core cheaply can of [`DevmemOps`]' contract: every page in
    /// the pagemap's region, none twice (`EINVAL` otherwise). `sorted` is scratch space of
    /// the same length.
    pub(crate) fn populate<'a>(
        &'a self,
        claim: &Claim<'_>,
        pfns: &'a mut [usize],
        sorted: &mut [usize],
    ) -> Result<DevicePages<'a>> {
        if !core::ptr::eq(claim.devmem, self) || pfns.len() > self.npages {
            return Err(EINVAL);
        }
        let region = self.pagemap.region();
        self.ops.populate_devmem_pfn(pfns)?;
        if let Some(bad) = pfns.iter().find(|pfn| !region.contains_pfn(**pfn)) {
            pr_err!("device pfn {bad:#x} is outside the pagemap's region\n");
            return Err(EINVAL);
        }
        // No pfn twice (a huge run's tail pages included): checked on a sorted copy.
        let sorted = sorted.get_mut(..pfns.len()).ok_or(EINVAL)?;
        sorted.copy_from_slice(pfns);
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            pr_err!("device pfn {:#x} is handed out twice\n", pair[0]);
            return Err(EINVAL);
        }
        // INVARIANT: Checked above; the allocation's own per `DevmemOps`' contract.
        let used = KVVec::from_elem(false, pfns.len(), GFP_KERNEL)?;
        Ok(DevicePages {
            devmem: self,
            pfns,
            region,
            used,
        })
    }

    /// Locks and unmaps the allocation's device pages for an eviction (the provider's pfns,
    /// into `pfns.src`; those that cannot be locked are left out). `held` is this
    /// allocation's pfns lock, which keeps the pages the allocation's while the operation
    /// runs. `EINVAL` for a lock of another allocation or a pfn outside the region.
    pub(crate) fn collect_for_eviction<'a>(
        &self,
        held: &'a PfnsLock<'_>,
        pfns: &'a mut PfnArrays,
    ) -> Result<MigrateDevice<'a>> {
        if !core::ptr::eq(held.devmem, self) || pfns.len() > self.npages {
            return Err(EINVAL);
        }
        // Only once the migration that placed the pages is over (a page being initialised
        // for it is unlocked for a moment with stale zone-device data), and while they are
        // still the allocation's.
        if !self.is_populated() || self.is_detached() {
            return Err(EBUSY);
        }
        self.ops.populate_devmem_pfn(pfns.plain_pfns())?;
        // `migrate_device_pfns` wants plain pfns in `src`; any pfn outside our region would
        // be the provider breaking `DevmemOps`' contract: refuse it before the core sees it.
        let region = self.pagemap.region();
        if pfns
            .plain_pfns()
            .iter()
            .any(|pfn| !region.contains_pfn(*pfn))
        {
            return Err(EINVAL);
        }
        // SAFETY: `src` holds pfns of the allocation's device pages (in our region, checked
        // above), whose zone-device data the allocation keeps while `held` is held.
        unsafe { MigrateDevice::collect(pfns) }
    }

    /// Records where in the address space the allocation's data went.
    pub(crate) fn set_va_range(&self, start: usize, end: usize) {
        self.va_start.store(start as u64, Relaxed);
        self.va_end.store(end as u64, Relaxed);
    }

    /// The address range the allocation's data was migrated from (it may have holes: pages
    /// that were already in device memory did not use the allocation).
    pub(crate) fn va_range(&self) -> (usize, usize) {
        (
            self.va_start.load(Relaxed) as usize,
            self.va_end.load(Relaxed) as usize,
        )
    }

    /// Keeps freshly migrated pages on the device for `ms` milliseconds (at most
    /// [`MAX_TIMESLICE_MS`]): CPU faults within that window wait for it to end.
    pub(crate) fn start_timeslice(&self, ms: u32) {
        let len = Delta::from_millis(ms.min(MAX_TIMESLICE_MS).into());
        let end = self
            .created
            .elapsed()
            .as_nanos()
            .saturating_add(len.as_nanos());
        self.timeslice_end_ns.store(end, Relaxed);
    }

    /// How many milliseconds of the timeslice started by the last migration are left; 0 once
    /// it ended.
    pub(crate) fn timeslice_left_ms(&self) -> u32 {
        let now = self.created.elapsed().as_nanos();
        let left = Delta::from_nanos(self.timeslice_end_ns.load(Relaxed).saturating_sub(now));
        if left.as_nanos() <= 0 {
            return 0;
        }
        // Rounded up, and never more than the longest timeslice.
        let ms = u32::try_from(left.as_millis_ceil()).unwrap_or(MAX_TIMESLICE_MS);
        ms.clamp(1, MAX_TIMESLICE_MS)
    }
}

/// The low bit of a folio's zone-device data: the folio's data has been migrated to system
/// memory (it is unmapped, waiting for its last reference to go). `Zdd` is more than 1-byte
/// aligned, so the bit is free.
const RETIRED: usize = 1;

/// Zone-device data: one per migration into device memory, referenced by each device page
/// it placed.
///
/// # Invariants
///
/// `devmem` is initialised until `drop` moves it into the release work.
pub(crate) struct Zdd {
    devmem: ManuallyDrop<Arc<Devmem>>,
}

impl Zdd {
    /// Memory for the zone-device data of a migration, allocated before the migration
    /// collects (and locks) any page.
    pub(crate) fn reserve() -> Result<UniqueArc<MaybeUninit<Self>>> {
        UniqueArc::new_uninit(GFP_KERNEL_ACCOUNT).map_err(|_| ENOMEM)
    }

    /// The zone-device data of a migration into `devmem`, in memory from [`Zdd::reserve`]:
    /// from now on `devmem`'s release runs when this and every page's reference are gone.
    pub(crate) fn init(mem: UniqueArc<MaybeUninit<Self>>, devmem: Arc<Devmem>) -> Arc<Self> {
        // INVARIANT: Initialised here.
        mem.write(Self {
            devmem: ManuallyDrop::new(devmem),
        })
        .into()
    }

    pub(crate) fn devmem(&self) -> &Arc<Devmem> {
        &self.devmem
    }

    /// Makes `page` point to `this`, with a reference of its own.
    ///
    /// # Safety
    ///
    /// `page` is a device-private page just initialised for this migration, whose data is not
    /// set.
    pub(crate) unsafe fn attach(this: &Arc<Self>, page: *mut ffi::page) {
        let raw = Arc::into_raw(this.clone());
        // SAFETY: Per the contract the page is ours to set up.
        unsafe { ffi::svm_page_set_zone_device_data(page, raw.cast_mut().cast()) };
    }

    /// The zone-device data of `page`, borrowed.
    ///
    /// # Safety
    ///
    /// `page` is a device-private page of a region using this module's ops, in use (not freed)
    /// for the returned lifetime.
    pub(crate) unsafe fn of_page<'a>(page: *mut ffi::page) -> ArcBorrow<'a, Self> {
        // SAFETY: Per the contract the page is in use, so its data holds a reference made by
        // `attach`, which outlives `'a`.
        unsafe { ArcBorrow::from_raw(Self::ptr_of_page(page)) }
    }

    /// The `Zdd` `page`'s zone-device data points to, its retired tag taken off.
    ///
    /// # Safety
    ///
    /// `page` is a device-private page of a region using this module's ops.
    unsafe fn ptr_of_page(page: *mut ffi::page) -> *const Self {
        // SAFETY: Per the contract, a valid device page.
        unsafe { ffi::svm_page_zone_device_data(page) }
            .map_addr(|a| a & !RETIRED)
            .cast::<Self>()
            .cast_const()
    }

    /// The allocation `page` belongs to, borrowed (no reference taken: a migration looks it up
    /// for every page it collects).
    ///
    /// # Safety
    ///
    /// As [`Zdd::of_page`].
    pub(crate) unsafe fn devmem_of_page<'a>(page: *mut ffi::page) -> &'a Arc<Devmem> {
        // SAFETY: Per the contract the page is in use, so its data is a live `Zdd` (as in
        // `of_page`) for `'a`.
        unsafe { &(*Self::ptr_of_page(page)).devmem }
    }

    /// Marks `page`'s folio as migrated to system memory: an eviction skips it from now on
    /// (as the C `DRM_PAGEMAP_ZDD_FLAG_MIGRATED`).
    ///
    /// # Safety
    ///
    /// `page` is a device-private page of a region using this module's ops whose data was set
    /// by `attach`, locked by a migration that has just moved its data.
    pub(crate) unsafe fn retire(page: *mut ffi::page) {
        // SAFETY: Per the contract the page's folio is ours and its data is set; the folio
        // lock keeps other writers of the data out.
        unsafe {
            let raw = ffi::svm_page_zone_device_data(page);
            ffi::svm_page_set_zone_device_data(page, raw.map_addr(|a| a | RETIRED));
        }
    }

    /// Whether `page`'s folio was marked by [`Zdd::retire`].
    ///
    /// # Safety
    ///
    /// `page` is a device-private page of a region using this module's ops, in use.
    pub(crate) unsafe fn is_retired(page: *mut ffi::page) -> bool {
        // SAFETY: Per the contract.
        unsafe { ffi::svm_page_zone_device_data(page) }.addr() & RETIRED != 0
    }

    /// Gives `new`, just split off the device folio `orig`, a reference of its own to
    /// `orig`'s zone-device data: each folio is freed on its own from now on.
    ///
    /// # Safety
    ///
    /// `orig` is a device-private folio of a region using this module's ops whose data was
    /// set by `attach`; `new` was split off it and its data is not set.
    pub(crate) unsafe fn attach_split(orig: *mut ffi::folio, new: *mut ffi::folio) {
        // SAFETY: Per the contract `orig` holds a reference from `attach`.
        let raw = unsafe { ffi::svm_folio_zone_device_data(orig) };
        let flags = raw.addr() & RETIRED;
        let ptr = raw.map_addr(|a| a & !RETIRED);
        let data = if ptr.is_null() {
            ptr
        } else {
            // SAFETY: As above; `orig` keeps its reference while we take another.
            let zdd: Arc<Self> =
                unsafe { ArcBorrow::from_raw(ptr.cast::<Self>().cast_const()) }.into();
            // A retired folio's pieces are retired too.
            Arc::into_raw(zdd)
                .cast_mut()
                .cast::<kernel::ffi::c_void>()
                .map_addr(|a| a | flags)
        };
        // SAFETY: Per the contract `new` is ours to set up.
        unsafe { ffi::svm_folio_set_zone_device_data(new, data) };
    }

    /// Gives back the reference a freed folio held.
    ///
    /// # Safety
    ///
    /// `folio` is a device-private folio of a region using this module's ops, being freed; its
    /// data was set by `attach` and is not used again.
    pub(crate) unsafe fn detach_folio(folio: *mut ffi::folio) {
        // SAFETY: Per the contract the folio's data is a reference from `attach`.
        let raw = unsafe { ffi::svm_folio_zone_device_data(folio) }.map_addr(|a| a & !RETIRED);
        if !raw.is_null() {
            // SAFETY: As above; the reference is given back exactly once.
            drop(unsafe { Arc::from_raw(raw.cast::<Self>().cast_const()) });
        }
    }
}

/// The pagemap whose memory holds the device-private page `pfn`, if it is a page of a region
/// of this crate (another driver's device page gives `None`). For a device mapping the page
/// found by a range fault: its pagemap's [`PagemapOps::device_map`] says how to reach it.
///
/// # Safety
///
/// `pfn` names a page the caller knows stays allocated while this runs: a page a process maps,
/// found by a range fault whose answer the caller checked current under the lock its
/// notifier's invalidations take, and still holds.
///
/// [`PagemapOps::device_map`]: crate::pagemap::PagemapOps::device_map
pub unsafe fn pagemap_of_page(pfn: usize) -> Option<ARef<Pagemap>> {
    let page = crate::sys::page::pfn_to_page(pfn);
    // SAFETY: Per this function's contract the page is allocated.
    if !unsafe { ffi::svm_is_device_private_page(page) } {
        return None;
    }
    // SAFETY: As above; a device-private page has a live pagemap.
    let pgmap = unsafe { ffi::svm_page_pgmap(page) };
    // SAFETY: `pgmap` is the live pagemap of an allocated page.
    if !unsafe { crate::device_private::has_our_ops(pgmap) } {
        return None;
    }
    // SAFETY: A page of one of our regions, in use (mapped) per the contract: its data was set
    // by the migration that placed it and holds its allocation.
    let zdd = unsafe { Zdd::of_page(page) };
    Some(zdd.devmem().pagemap().into())
}

impl Drop for Zdd {
    fn drop(&mut self) {
        // Runs when the last device page goes, possibly in atomic context: mark, wake the
        // waiters, and leave `release` to a work item.
        // INVARIANT: A `Zdd` is created for one migration and dropped once.
        self.devmem.detached.store(true, Release);
        self.devmem.detached_done.complete_all();
        // Our reference goes to the work item, not dropped here: this context may be atomic
        // (a folio freed under a page-table lock), and once the release has run elsewhere,
        // ours could be the last reference, whose drop frees the provider's allocation
        // (which may sleep).
        // SAFETY: `devmem` is initialised (type invariant) and not used after this.
        let devmem = unsafe { ManuallyDrop::take(&mut self.devmem) };
        // Cannot be queued already: an allocation backs one migration, so one `Zdd`.
        let _ = crate::deferred::queue().enqueue(devmem);
    }
}

#[kunit_tests(drm_pagemap_devmem)]
mod tests {
    use super::*;
    use crate::device_private::DevicePrivateRegion;
    use crate::pagemap::PagemapOps;
    use kernel::faux;

    struct NoOps;
    // SAFETY: A test type of this module.
    unsafe impl PagemapOps for NoOps {
        fn module(&self) -> &'static ThisModule {
            kernel::module::this_module::<crate::LocalModule>()
        }
    }

    /// Hands out the region's first pages and counts releases.
    struct CountingDevmem {
        first_pfn: usize,
        released: Arc<Atomic<u32>>,
        done: Arc<Completion>,
    }

    // SAFETY: The test's region is its own; the allocation hands out its first pages.
    unsafe impl DevmemOps for CountingDevmem {
        fn module(&self) -> &'static ThisModule {
            kernel::module::this_module::<crate::LocalModule>()
        }

        fn populate_devmem_pfn(&self, pfns: &mut [usize]) -> Result {
            for (i, pfn) in pfns.iter_mut().enumerate() {
                *pfn = self.first_pfn + i;
            }
            Ok(())
        }

        unsafe fn copy_to_devmem(&self, _runs: &[CopyRun], fence: CopyFence) -> Result {
            fence.signal(Ok(()));
            Ok(())
        }

        unsafe fn copy_to_ram(
            &self,
            _runs: &[CopyRun],
            _dir: Direction,
            fence: CopyFence,
        ) -> Result {
            fence.signal(Ok(()));
            Ok(())
        }

        fn release(&self) {
            self.released.fetch_add(1, Full);
            self.done.complete_all();
        }
    }

    static OWNER: u8 = 0;

    #[test]
    fn zone_device_data_lifetime() -> Result {
        const PAGES: usize = 3;
        let fdev = faux::Registration::new(c"drm_pagemap_kunit_devmem", None)?;
        // SAFETY: `OWNER` is a static of this test module, no other driver's owner.
        let owner = unsafe { crate::owner::RegionOwner::unique(crate::owner::Owner::of(&OWNER)) };
        let region = Arc::pin_init(
            DevicePrivateRegion::new(1 << 21, c"drm_pagemap_kunit", owner),
            GFP_KERNEL,
        )?;
        let pagemap = Pagemap::new(fdev.as_ref().as_ref(), region.clone(), NoOps)?;
        let released = Arc::new(Atomic::new(0), GFP_KERNEL)?;
        let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
        // A kthread has no address space: this allocation holds no process's data.
        let refs_before = module_refs();
        let devmem = Devmem::new(
            pagemap.clone(),
            None,
            PAGES,
            Arc::new(MigrationStats::new(), GFP_KERNEL)?,
            CountingDevmem {
                first_pfn: region.pfn_first(),
                released: released.clone(),
                done: done.clone(),
            },
        )?;
        let mut pfns = [0usize; PAGES];
        devmem.ops().populate_devmem_pfn(&mut pfns)?;

        // What a migration does with each device page it places.
        // The allocation keeps the module of its ops loaded.
        assert_eq!(module_refs(), refs_before + 1);
        let zdd = Zdd::init(Zdd::reserve()?, devmem.clone());
        let mut pages = [core::ptr::null_mut(); PAGES];
        for (page, pfn) in pages.iter_mut().zip(pfns) {
            // SAFETY: A free page of our region, set up as migration would.
            unsafe {
                *page = ffi::svm_pfn_to_page(pfn);
                ffi::zone_device_page_init(*page, region.as_raw(), 0);
                Zdd::attach(&zdd, *page);
            }
        }
        drop(zdd);
        assert!(!devmem.is_detached());

        for (i, page) in pages.iter().enumerate() {
            // The pages hold the data: it is detached only when the last one goes.
            assert!(!devmem.is_detached());
            // SAFETY: The page is locked and holds its one reference since init; freeing it
            // runs `folio_free`.
            unsafe { ffi::svm_unlock_put_page(*page) };
            assert_eq!(devmem.is_detached(), i == PAGES - 1);
        }
        devmem.wait_detached();
        done.wait_for_completion();
        assert_eq!(released.load(Relaxed), 1);
        Ok(())
    }

    /// References on this module.
    fn module_refs() -> i32 {
        let module = kernel::module::this_module::<crate::LocalModule>();
        // SAFETY: `module` is this (live) module.
        unsafe { ffi::svm_module_refcount(module.as_ptr()) }
    }
}
