// SPDX-License-Identifier: GPL-2.0

//! Device-memory allocations and the zone-device data their pages point to.
//!
//! A provider backs a migration with a [`Devmem`]: a run of device pages plus the ops that
//! copy data in and out of them. Each device page handed to the core mm points, through its
//! `zone_device_data`, to one shared [`Zdd`] per migration, which holds the allocation. When
//! the last such page is freed the allocation is *detached*: [`Devmem::wait_detached`]
//! returns and [`DevmemOps::release`] runs, in process context, on this module's workqueue.

use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use kernel::mm::Mm;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Full;
use kernel::sync::atomic::Relaxed;
use kernel::sync::atomic::Release;
use kernel::sync::Arc;
use kernel::sync::ArcBorrow;
use kernel::sync::Completion;
use kernel::workqueue::Work;
use kernel::workqueue::WorkItem;

use crate::ffi;
use crate::pagemap::Pagemap;

/// The size of one page.
pub const PAGE_SIZE: usize = 1 << ffi::PAGE_SHIFT;

/// A system page taking part in a migration: locked by the core mm for the duration of the
/// copy, so it is neither freed nor moved while a [`PageCopy`] names it.
#[derive(Clone, Copy)]
pub struct SystemPage(NonNull<ffi::page>);

// SAFETY: The page is locked and referenced by the migration for as long as copies may use it;
// its contents may be accessed from any thread.
unsafe impl Send for SystemPage {}
// SAFETY: As above; reads and writes go through the kernel's page mapping helpers.
unsafe impl Sync for SystemPage {}

impl SystemPage {
    pub(crate) fn from_raw(page: NonNull<ffi::page>) -> Self {
        Self(page)
    }

    /// Copies the page's contents into `dst`.
    pub fn read(&self, dst: &mut [u8; PAGE_SIZE]) {
        // SAFETY: `dst` is a page's worth of memory we hold exclusively.
        unsafe { self.read_raw(dst.as_mut_ptr()) };
    }

    /// Overwrites the page with `src`.
    pub fn write(&self, src: &[u8; PAGE_SIZE]) {
        // SAFETY: `src` is a page's worth of memory nothing writes while we hold it.
        unsafe { self.write_raw(src.as_ptr()) };
    }

    /// Copies the page's contents to `dst`, a page's worth of memory, in one pass.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writes of `PAGE_SIZE` bytes, not the page itself, and nothing else
    /// accesses it meanwhile.
    pub unsafe fn read_raw(&self, dst: *mut u8) {
        // SAFETY: The page is valid; `dst` per the contract.
        unsafe { ffi::svm_copy_from_page(dst.cast(), self.0.as_ptr()) };
    }

    /// Overwrites the page with `PAGE_SIZE` bytes from `src`, in one pass.
    ///
    /// # Safety
    ///
    /// `src` is valid for reads of `PAGE_SIZE` bytes, not the page itself, and nothing
    /// writes it meanwhile.
    pub unsafe fn write_raw(&self, src: *const u8) {
        // SAFETY: The page is valid; `src` per the contract.
        unsafe { ffi::svm_copy_to_page(self.0.as_ptr(), src.cast()) };
    }

    /// The page's frame number.
    pub fn pfn(&self) -> usize {
        // SAFETY: The page is valid.
        unsafe { ffi::svm_page_to_pfn(self.0.as_ptr()) }
    }
}

/// One page of a copy between system and device memory.
#[derive(Clone, Copy)]
pub struct PageCopy {
    /// Device-private page frame number, in the allocation's region.
    pub device_pfn: usize,
    /// The system page, or `None` when the source has no page yet (never touched, or the zero
    /// page): the device page is then to be filled with zeroes.
    pub system: Option<SystemPage>,
}

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
}

/// Counters of what moved, shared by a provider's allocations.
pub struct MigrationStats {
    /// Pages moved into device memory.
    pub pages_to_device: Atomic<u64>,
    /// Pages moved back to system memory, for any reason.
    pub pages_to_ram: Atomic<u64>,
    /// CPU faults on device pages that were served by a migration.
    pub cpu_faults: Atomic<u64>,
    /// Allocations evicted.
    pub evictions: Atomic<u64>,
}

impl MigrationStats {
    /// All counters zero.
    pub fn new() -> Self {
        Self {
            pages_to_device: Atomic::new(0),
            pages_to_ram: Atomic::new(0),
            cpu_faults: Atomic::new(0),
            evictions: Atomic::new(0),
        }
    }

    pub(crate) fn count(&self, dir: Direction, pages: usize) {
        let pages = pages as u64;
        match dir {
            Direction::ToDevice => {
                self.pages_to_device.fetch_add(pages, Relaxed);
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
pub trait DevmemOps: Send + Sync {
    /// Fills `pfns` with the device-private page frame numbers backing the allocation's first
    /// `pfns.len()` pages, in address order.
    fn populate_devmem_pfn(&self, pfns: &mut [usize]) -> Result;

    /// Copies each entry's system page (or zeroes) into its device page. On error nothing
    /// has been migrated: the data stays in system memory.
    fn copy_to_devmem(&self, copies: &[PageCopy]) -> Result;

    /// Copies each entry's device page into its system page (`system` is always set).
    fn copy_to_ram(&self, copies: &[PageCopy], dir: Direction) -> Result;

    /// Called once, in process context, when no device page refers to the allocation any
    /// more. Dropping the last [`Arc<Devmem>`] frees the allocation after that.
    fn release(&self) {}
}

/// A device-memory allocation of `npages` pages, the source or target of migrations.
///
/// # Invariants
///
/// `detached` is set, and `detached_done` completed, exactly once: when the last page
/// referring to it through a [`Zdd`] is freed.
#[pin_data]
pub struct Devmem {
    ops: KBox<dyn DevmemOps>,
    pagemap: ARef<Pagemap>,
    mm: Option<ARef<Mm>>,
    npages: usize,
    stats: Arc<MigrationStats>,
    timeslice_expiration: Atomic<u64>,
    claimed: Atomic<bool>,
    va_start: Atomic<u64>,
    detached: Atomic<bool>,
    #[pin]
    detached_done: Completion,
    #[pin]
    release_work: Work<Devmem>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Devmem { self.release_work }
}

impl WorkItem for Devmem {
    type Pointer = Arc<Devmem>;

    fn run(this: Arc<Devmem>) {
        this.ops.release();
    }
}

impl Devmem {
    /// Creates an allocation of `npages` device pages of `pagemap`, holding data of the
    /// address space `mm` (if any), moved by `ops` and counted in `stats`.
    pub fn new(
        pagemap: ARef<Pagemap>,
        mm: Option<&Mm>,
        npages: usize,
        stats: Arc<MigrationStats>,
        ops: impl DevmemOps + 'static,
    ) -> Result<Arc<Self>> {
        Self::new_dyn(pagemap, mm, npages, stats, KBox::new(ops, GFP_KERNEL)?)
    }

    // Not generic: the work item's lock class lives in this module only.
    #[inline(never)]
    fn new_dyn(
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
            try_pin_init!(Devmem {
                ops,
                pagemap,
                mm: mm.map(ARef::from),
                npages,
                stats,
                timeslice_expiration: Atomic::new(0),
                claimed: Atomic::new(false),
                va_start: Atomic::new(0),
                detached: Atomic::new(false),
                detached_done <- Completion::new(),
                release_work <- kernel::new_work!("Devmem::release_work"),
            }),
            GFP_KERNEL,
        )
    }

    /// The provider's ops.
    pub fn ops(&self) -> &dyn DevmemOps {
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

    /// Marks the allocation used by a migration; false if it already was.
    pub(crate) fn claim(&self) -> bool {
        self.claimed.cmpxchg(false, true, Full).is_ok()
    }

    /// Gives back a claim no page was placed under.
    pub(crate) fn unclaim(&self) {
        self.claimed.store(false, Release);
    }

    /// Whether a migration has used this allocation: if so, [`DevmemOps::release`] runs exactly
    /// once, when it is detached; if not, it never runs.
    pub fn is_claimed(&self) -> bool {
        self.claimed.load(Relaxed)
    }

    /// Records where in the address space the allocation's data went.
    pub(crate) fn set_va_start(&self, start: usize) {
        self.va_start.store(start as u64, Relaxed);
    }

    /// The address range the allocation's data was migrated from.
    pub(crate) fn va_range(&self) -> (usize, usize) {
        let start = self.va_start.load(Relaxed) as usize;
        (start, start + self.npages * PAGE_SIZE)
    }

    /// Keeps freshly migrated pages on the device for `ms` milliseconds: CPU faults within
    /// that window retry instead of pulling the data back.
    pub(crate) fn start_timeslice(&self, ms: u32) {
        // SAFETY: Pure computation.
        let now = unsafe { ffi::svm_jiffies() };
        // SAFETY: Pure computation.
        let len = unsafe { ffi::svm_msecs_to_jiffies(ms) };
        self.timeslice_expiration.store(now + len, Relaxed);
    }

    /// Whether the timeslice started by the last migration is still running.
    pub(crate) fn in_timeslice(&self) -> bool {
        // SAFETY: Pure computation.
        let now = unsafe { ffi::svm_jiffies() };
        (now as i64).wrapping_sub(self.timeslice_expiration.load(Relaxed) as i64) < 0
    }
}

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
    pub(crate) fn new(devmem: Arc<Devmem>) -> Result<Arc<Self>> {
        // INVARIANT: Initialised here.
        Ok(Arc::new(
            Self {
                devmem: ManuallyDrop::new(devmem),
            },
            GFP_KERNEL,
        )?)
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
        unsafe {
            let raw = ffi::svm_page_zone_device_data(page);
            ArcBorrow::from_raw(raw.cast::<Self>().cast_const())
        }
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
        let data = if raw.is_null() {
            raw
        } else {
            // SAFETY: As above; `orig` keeps its reference while we take another.
            let zdd: Arc<Self> =
                unsafe { ArcBorrow::from_raw(raw.cast::<Self>().cast_const()) }.into();
            Arc::into_raw(zdd).cast_mut().cast()
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
        let raw = unsafe { ffi::svm_folio_zone_device_data(folio) };
        if !raw.is_null() {
            // SAFETY: As above; the reference is given back exactly once.
            drop(unsafe { Arc::from_raw(raw.cast::<Self>().cast_const()) });
        }
    }
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
        let _ = crate::pagemap::destroy_queue().enqueue(devmem);
    }
}

#[kunit_tests(drm_pagemap_devmem)]
mod tests {
    use super::*;
    use crate::device_private::DevicePrivateRegion;
    use crate::pagemap::PagemapOps;
    use kernel::faux;

    struct NoOps;
    impl PagemapOps for NoOps {}

    /// Hands out the region's first pages and counts releases.
    struct CountingDevmem {
        first_pfn: usize,
        released: Arc<Atomic<u32>>,
        done: Arc<Completion>,
    }

    impl DevmemOps for CountingDevmem {
        fn populate_devmem_pfn(&self, pfns: &mut [usize]) -> Result {
            for (i, pfn) in pfns.iter_mut().enumerate() {
                *pfn = self.first_pfn + i;
            }
            Ok(())
        }

        fn copy_to_devmem(&self, _copies: &[PageCopy]) -> Result {
            Ok(())
        }

        fn copy_to_ram(&self, _copies: &[PageCopy], _dir: Direction) -> Result {
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
        let region = Arc::pin_init(
            DevicePrivateRegion::new(
                1 << 21,
                c"drm_pagemap_kunit",
                core::ptr::from_ref(&OWNER) as usize,
            ),
            GFP_KERNEL,
        )?;
        let pagemap = Pagemap::new(
            fdev.as_ref().as_ref(),
            kernel::module::this_module::<crate::LocalModule>(),
            region.clone(),
            NoOps,
        )?;
        let released = Arc::new(Atomic::new(0), GFP_KERNEL)?;
        let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
        // A kthread has no address space: this allocation holds no process's data.
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
        let zdd = Zdd::new(devmem.clone())?;
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
}
