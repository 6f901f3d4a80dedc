// SPDX-License-Identifier: GPL-2.0

//! A per-region pagemap cache: the pagemap is created on first use; when its last user is
//! gone it stays cached, idle, for a delay (the `idle_ms` module parameter, 5 s by default),
//! and is then destroyed, or earlier when a shrinker scan asks for memory. A lookup revives an
//! idle pagemap instead of racing its destruction (the C `drm_pagemap_get_from_cache`,
//! `drm_pagemap_shrinker`).
//!
//! The cache keeps one counted reference of its own, the keeper, while the pagemap is cached:
//! so the pagemap (and its provider's module) stays alive while idle, and the last user's put
//! leaves one reference, which the pagemap reports ([`PagemapOps::idle`]). Dropping the keeper
//! is what destroys an idle pagemap; it is done under the cache's lock, where a lookup would
//! take a new reference, so the two never race (the destroy the drop starts runs later, from a
//! work item). Besides, the cache keeps an uncounted pointer
//! that the pagemap's destroy clears (the ops wrap the provider's), so that nothing the
//! provider writes can leave a dangling pointer behind.
//!
//! Lock order: a cache's lock, then the list of kept pagemaps ([`KEPT`]). The reaper and the
//! shrinker go the other way, with `try_lock` only.
//!
//! C header: [`include/drm/drm_pagemap_util.h`](srctree/include/drm/drm_pagemap_util.h)

use core::ptr::NonNull;

use drm_pagemap::device_private::DevicePrivateRegion;
use drm_pagemap::pagemap::MigrateDetails;
use drm_pagemap::pagemap::Pagemap;
use drm_pagemap::pagemap::PagemapAddr;
use drm_pagemap::pagemap::PagemapOps;
use drm_pagemap::range::PageRange;
use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::mm::Mm;
use kernel::mm::MmapReadGuard;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Acquire;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Release;
use kernel::sync::Arc;
use kernel::sync::Mutex;
use kernel::time::Delta;
use kernel::time::Instant;
use kernel::time::Monotonic;

use crate::ffi;

kernel::sync::global_lock! {
    // SAFETY: `idle_init` initialises it in the module initializer, before any cache exists.
    pub(crate) unsafe(uninit) static KEPT: Mutex<Kept> = Kept { slots: KVec::new() };
}

/// The caches holding a keeper: what the reaper and the shrinker look at.
pub(crate) struct Kept {
    slots: KVec<Arc<Slot>>,
}

/// What a cache holds.
struct Current {
    /// The cached pagemap, alive or being destroyed (uncounted).
    ptr: Option<NonNull<Pagemap>>,
    /// The cache's own reference on it while it is cached; its slot is in [`KEPT`] then.
    keeper: Option<ARef<Pagemap>>,
}

/// The cache's one slot, shared with the ops of the pagemap it holds.
///
/// # Invariants
///
/// While `current.ptr` holds a pointer, that pagemap has not been freed: its destroy op
/// (always [`Cached::destroy`]) clears it under the lock before the pagemap is freed.
#[pin_data]
pub(crate) struct Slot {
    #[pin]
    current: Mutex<Current>,
    /// When the pagemap last became idle (a put left only the keeper), in nanoseconds since
    /// `born`; negative for never. Lock-free: reported from any context.
    idle_since: Atomic<i64>,
    /// The origin of `idle_since`.
    born: Instant<Monotonic>,
    /// How long an idle pagemap stays cached.
    delay: Delta,
}

// SAFETY: The raw pointer is only dereferenced under the lock, and `Pagemap` is `Sync`.
unsafe impl Send for Slot {}
// SAFETY: As above; all access goes through the locks.
unsafe impl Sync for Slot {}

impl Slot {
    /// Forgets `pagemap` if it is the cached one.
    fn unlink(&self, pagemap: &Pagemap) {
        let mut current = self.current.lock();
        if current.ptr == Some(NonNull::from(pagemap)) {
            current.ptr = None;
        }
    }

    /// Takes the keeper out of `current` if the pagemap is idle (only the keeper left) and,
    /// unless `now`, has been for the delay. Returns the keeper (to drop outside the lock),
    /// or how long until it expires.
    fn take_if_idle(
        &self,
        current: &mut Current,
        now: bool,
    ) -> core::result::Result<ARef<Pagemap>, Option<Delta>> {
        let Some(keeper) = current.keeper.as_ref() else {
            return Err(None);
        };
        let idle = keeper.refcount() == 1;
        if idle && now {
            return current.keeper.take().ok_or(None);
        }
        let since = self.idle_since.load(Acquire);
        if since < 0 {
            // Never reported idle: its first report arms the reaper.
            return Err(None);
        }
        let left = self.delay.as_nanos() - (self.born.elapsed().as_nanos() - since);
        if left > 0 {
            // Also when not idle (yet): the putter that reported it may not have dropped its
            // reference yet; looked at again when the delay is over.
            return Err(Some(Delta::from_nanos(left)));
        }
        if !idle {
            return Err(None);
        }
        current.keeper.take().ok_or(None)
    }
}

/// Holds a region's current pagemap, if any.
pub struct PagemapCache {
    slot: Arc<Slot>,
}

/// The ops of a cached pagemap: the provider's, plus the unlink from the cache on destroy
/// and the idle report.
struct Cached<T> {
    slot: Arc<Slot>,
    ops: T,
}

// SAFETY: `Cached<T>` is instantiated by `get_or_create::<T>`, in the crate that calls it; by
// `T`'s contract that crate is kept loaded by `T::module()` (it is `T`'s own, `T` being private
// to it), and so is this crate, a dependency of it.
unsafe impl<T: PagemapOps> PagemapOps for Cached<T> {
    fn module(&self) -> &'static ThisModule {
        self.ops.module()
    }

    fn device_map(
        &self,
        pagemap: &Pagemap,
        dev: &Device,
        pfn: usize,
        order: u32,
        dir: DataDirection,
    ) -> Result<PagemapAddr> {
        self.ops.device_map(pagemap, dev, pfn, order, dir)
    }

    fn device_unmap(&self, pagemap: &Pagemap, dev: &Device, addr: PagemapAddr) {
        self.ops.device_unmap(pagemap, dev, addr)
    }

    fn watches_idle(&self) -> bool {
        true
    }

    // Any context: an atomic store and a timer.
    fn idle(&self, _pagemap: &Pagemap) {
        let slot = &self.slot;
        slot.idle_since
            .store(slot.born.elapsed().as_nanos(), Release);
        arm(self.slot.delay);
    }

    // The unlink takes the slot's mutex: never in the last put's (maybe atomic, maybe
    // reclaim) context.
    fn destroy_in_work(&self) -> bool {
        true
    }

    fn destroy(&self, pagemap: &Pagemap) {
        self.slot.unlink(pagemap);
        self.ops.destroy(pagemap);
    }

    fn populate_mm(
        &self,
        pagemap: &Pagemap,
        mm: &Mm,
        mmap: &MmapReadGuard<'_>,
        range: PageRange,
        details: &MigrateDetails,
    ) -> Result {
        self.ops.populate_mm(pagemap, mm, mmap, range, details)
    }
}

/// Runs the reaper after `delay` (at the latest).
fn arm(delay: Delta) {
    let ms = u32::try_from(delay.as_millis_ceil()).unwrap_or(u32::MAX);
    // SAFETY: Queues the module's delayed work, which `idle_fini` cancels before unload.
    unsafe { ffi::svm_idle_arm(ms) };
}

impl PagemapCache {
    /// Creates an empty cache whose idle pagemaps stay for the module's `idle_ms`.
    pub fn new() -> Result<Self> {
        Self::with_idle_delay(Delta::from_millis(i64::from(
            crate::module_parameters::idle_ms.value(),
        )))
    }

    /// Creates an empty cache whose idle pagemaps stay for `delay` (`EINVAL` if negative).
    pub fn with_idle_delay(delay: Delta) -> Result<Self> {
        if delay.is_negative() {
            return Err(EINVAL);
        }
        let slot = Arc::pin_init(
            pin_init!(Slot {
                current <- kernel::new_mutex!(
                    Current {
                        ptr: None,
                        keeper: None,
                    },
                    "PagemapCache::current"
                ),
                idle_since: Atomic::new(-1),
                born: Instant::now(),
                delay,
            }),
            GFP_KERNEL,
        )?;
        Ok(Self { slot })
    }

    /// Returns a reference to the cached pagemap (reviving it if idle), or to a new pagemap
    /// of `region` on `device` with the ops `ops()` returns, if there is none or the cached
    /// one is being destroyed. The provider's [`PagemapOps::destroy`] runs from a work item.
    pub fn get_or_create<T: PagemapOps + 'static>(
        &self,
        device: &Device,
        region: &Arc<DevicePrivateRegion>,
        ops: impl FnOnce() -> Result<T>,
    ) -> Result<ARef<Pagemap>> {
        let mut current = self.slot.current.lock();
        if let Some(ptr) = current.ptr {
            // SAFETY: By the type invariant of `Slot` the pagemap is not freed while cached,
            // and we hold the lock its destroy op needs to leave it.
            if let Some(pagemap) = unsafe { ptr.as_ref() }.get_unless_zero() {
                return Ok(pagemap);
            }
        }
        let ops = Cached {
            slot: self.slot.clone(),
            ops: ops()?,
        };
        // Room in the kept list first: nothing allocates once the pagemap exists.
        KEPT.lock().slots.reserve(1, GFP_KERNEL)?;
        let pagemap = Pagemap::new(device, region.clone(), ops)?;
        // INVARIANT: Its ops are `Cached`, whose destroy unlinks it under this lock.
        current.ptr = Some(NonNull::from(&*pagemap));
        current.keeper = Some(pagemap.clone());
        let mut kept = KEPT.lock();
        if kept.slots.push_within_capacity(self.slot.clone()).is_err() {
            // Another cache took the room: kept uncached (destroyed with its last user).
            drop(kept);
            let keeper = current.keeper.take();
            drop(current);
            drop(keeper);
        }
        Ok(pagemap)
    }

    /// The cached pagemap, with a new reference, if it is alive.
    pub fn current(&self) -> Option<ARef<Pagemap>> {
        let current = self.slot.current.lock();
        let ptr = current.ptr?;
        // SAFETY: As in `get_or_create`: not freed while cached, and the lock is held.
        unsafe { ptr.as_ref() }.get_unless_zero()
    }

    /// Stops keeping the cached pagemap: it is destroyed with its last user, now if it is
    /// idle (a device going away).
    pub fn flush(&self) {
        let keeper = {
            let mut current = self.slot.current.lock();
            let keeper = current.keeper.take();
            if keeper.is_some() {
                KEPT.lock().slots.retain(|s| !Arc::ptr_eq(s, &self.slot));
            }
            keeper
        };
        drop(keeper);
    }

    /// Whether a pagemap is cached (alive, idle or being destroyed). For diagnostics and
    /// tests.
    pub fn is_populated(&self) -> bool {
        self.slot.current.lock().ptr.is_some()
    }
}

impl Drop for PagemapCache {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Sets up the reaper and the shrinker (module init).
pub(crate) fn idle_init() -> Result {
    // SAFETY: Called once, in the module initializer, before any cache exists.
    unsafe { KEPT.init() };
    // SAFETY: Registers the module's shrinker, unregistered by `idle_fini`.
    kernel::error::to_result(unsafe { ffi::svm_idle_init() })
}

/// Tears the reaper and the shrinker down (module exit): no cache exists any more.
pub(crate) fn idle_fini() {
    // SAFETY: Undoes `idle_init`; waits for a running reaper or scan.
    unsafe { ffi::svm_idle_fini() };
    // A static is never dropped: its buffer is freed here.
    drop(core::mem::take(&mut KEPT.lock().slots));
}

/// At most this many caches are looked at per reaper run or scan (the slots of one machine's
/// devices; more means a later run).
const SCAN_MAX: usize = 64;

/// The reaper: destroys the pagemaps idle for their delay, and runs again when the next one
/// is due.
#[no_mangle]
extern "C" fn svm_pagemap_idle_reap() {
    let mut again: Option<Delta> = None;
    // Never blocks on a cache's lock (the order is the other way): a busy cache is retried.
    let Some(mut kept) = KEPT.try_lock() else {
        arm(Delta::from_millis(100));
        return;
    };
    let mut seen = 0;
    kept.slots.retain(|slot| {
        seen += 1;
        if seen > SCAN_MAX {
            again = Some(Delta::from_millis(100));
            return true;
        }
        let Some(mut current) = slot.current.try_lock() else {
            again = Some(Delta::from_millis(100));
            return true;
        };
        match slot.take_if_idle(&mut current, false) {
            Ok(keeper) => {
                // Dropped under the cache's lock, where a lookup would revive it: the last
                // reference, whose destroy is queued (`destroy_in_work`), not run here.
                drop(keeper);
                false
            }
            Err(Some(left)) => {
                again = Some(match again {
                    Some(a) if a.as_nanos() < left.as_nanos() => a,
                    _ => left,
                });
                true
            }
            Err(None) => true,
        }
    });
    drop(kept);
    if let Some(delay) = again {
        arm(delay);
    }
}

/// The shrinker's count: pagemaps idle now, whatever their delay.
#[no_mangle]
extern "C" fn svm_pagemap_idle_count() -> usize {
    let Some(kept) = KEPT.try_lock() else {
        return 0;
    };
    kept.slots
        .iter()
        .take(SCAN_MAX)
        .filter(|slot| {
            slot.current
                .try_lock()
                .is_some_and(|c| c.keeper.as_ref().is_some_and(|k| k.refcount() == 1))
        })
        .count()
}

/// What the shrinker's scan returns when the list is busy (the C `SHRINK_STOP`).
const SHRINK_STOP: usize = !0 - 1;

/// The shrinker's scan: destroys up to `nr` idle pagemaps now; returns how many. In reclaim:
/// only `try_lock`, no allocation; the destruction itself runs from a work item.
#[no_mangle]
extern "C" fn svm_pagemap_idle_scan(nr: usize) -> usize {
    let Some(mut kept) = KEPT.try_lock() else {
        return SHRINK_STOP;
    };
    let mut freed = 0;
    let mut seen = 0;
    kept.slots.retain(|slot| {
        seen += 1;
        if freed >= nr || seen > SCAN_MAX {
            return true;
        }
        let Some(mut current) = slot.current.try_lock() else {
            return true;
        };
        match slot.take_if_idle(&mut current, true) {
            Ok(keeper) => {
                // The last reference: its destroy is queued, not run here.
                drop(keeper);
                freed += 1;
                false
            }
            Err(_) => true,
        }
    });
    freed
}

#[kunit_tests(pagemap_util_cache)]
mod tests {
    use super::*;
    use kernel::faux;
    use kernel::sync::atomic::Atomic;
    use kernel::sync::atomic::Full;
    use kernel::sync::atomic::Relaxed;
    use kernel::time::delay::fsleep;

    struct Counters {
        created: Atomic<u32>,
        destroyed: Atomic<u32>,
    }

    /// Provider ops that know nothing of the cache: the unlink is the cache's own business.
    struct ProviderOps {
        counters: Arc<Counters>,
    }

    // SAFETY: A test type of this module.
    unsafe impl PagemapOps for ProviderOps {
        fn module(&self) -> &'static ThisModule {
            kernel::module::this_module::<crate::LocalModule>()
        }

        fn destroy(&self, _pagemap: &Pagemap) {
            self.counters.destroyed.fetch_add(1, Full);
        }
    }

    static OWNER: u8 = 0;

    /// A cache, its region's device and region, and its provider's counters.
    struct Fixture {
        cache: PagemapCache,
        fdev: faux::Registration,
        region: Arc<DevicePrivateRegion>,
        counters: Arc<Counters>,
    }

    impl Fixture {
        fn new(name: &'static CStr, delay_ms: i64) -> Result<Self> {
            // SAFETY: `OWNER` is a static of this test module, no other driver's owner.
            let owner = unsafe {
                drm_pagemap::owner::RegionOwner::unique(drm_pagemap::owner::Owner::of(&OWNER))
            };
            Ok(Self {
                cache: PagemapCache::with_idle_delay(Delta::from_millis(delay_ms))?,
                fdev: faux::Registration::new(name, None)?,
                region: Arc::pin_init(
                    DevicePrivateRegion::new(1 << 21, c"pagemap_util_kunit", owner),
                    GFP_KERNEL,
                )?,
                counters: Arc::new(
                    Counters {
                        created: Atomic::new(0),
                        destroyed: Atomic::new(0),
                    },
                    GFP_KERNEL,
                )?,
            })
        }

        fn get(&self) -> Result<ARef<Pagemap>> {
            self.cache
                .get_or_create(self.fdev.as_ref().as_ref(), &self.region, || {
                    self.counters.created.fetch_add(1, Full);
                    Ok(ProviderOps {
                        counters: self.counters.clone(),
                    })
                })
        }

        fn created(&self) -> u32 {
            self.counters.created.load(Relaxed)
        }

        fn destroyed(&self) -> u32 {
            self.counters.destroyed.load(Relaxed)
        }

        /// Waits (at most `ms`) until `n` pagemaps were destroyed.
        fn wait_destroyed(&self, n: u32, ms: u32) -> bool {
            for _ in 0..ms / 10 {
                if self.destroyed() >= n {
                    return true;
                }
                fsleep(Delta::from_millis(10));
            }
            self.destroyed() >= n
        }
    }

    #[test]
    fn reuse_while_used() -> Result {
        let f = Fixture::new(c"pagemap_util_kunit0", 60_000)?;
        assert!(!f.cache.is_populated());
        let a = f.get()?;
        let b = f.get()?;
        assert!(core::ptr::eq(&*a, &*b));
        assert_eq!(f.created(), 1);
        // Two users and the keeper.
        assert_eq!(a.refcount(), 3);
        drop(a);
        drop(b);
        assert_eq!(f.destroyed(), 0);
        // Flushed (the device goes): destroyed now that it is idle.
        f.cache.flush();
        assert!(f.wait_destroyed(1, 2000));
        assert!(!f.cache.is_populated());
        // A new user after destruction gets a fresh pagemap (with KASAN, a dangling cached
        // pointer would be a use-after-free report here).
        let c = f.get()?;
        assert_eq!(f.created(), 2);
        drop(c);
        Ok(())
    }

    #[test]
    fn idle_destroy_fires_once_after_the_delay_and_not_before() -> Result {
        let f = Fixture::new(c"pagemap_util_kunit1", 1000)?;
        let a = f.get()?;
        drop(a);
        fsleep(Delta::from_millis(200));
        // Idle, not yet for the delay: still cached.
        assert_eq!(f.destroyed(), 0);
        assert!(f.cache.is_populated());
        assert!(f.wait_destroyed(1, 5000));
        assert!(!f.cache.is_populated());
        // Once.
        fsleep(Delta::from_millis(400));
        assert_eq!(f.destroyed(), 1);
        assert_eq!(f.created(), 1);
        Ok(())
    }

    #[test]
    fn lookup_revives_an_idle_pagemap() -> Result {
        let f = Fixture::new(c"pagemap_util_kunit2", 1000)?;
        let a = f.get()?;
        let first = NonNull::from(&*a);
        drop(a);
        // Idle; revived before its delay ends, and used past it.
        fsleep(Delta::from_millis(200));
        let b = f.get()?;
        assert!(NonNull::from(&*b) == first);
        assert_eq!(f.created(), 1);
        fsleep(Delta::from_millis(1300));
        assert_eq!(f.destroyed(), 0);
        drop(b);
        assert!(f.wait_destroyed(1, 5000));
        assert_eq!(f.created(), 1);
        Ok(())
    }

    #[test]
    fn revive_races_destroy() -> Result {
        // No delay: the reaper runs at once after every last put, racing the next lookup.
        let f = Fixture::new(c"pagemap_util_kunit3", 0)?;
        for i in 0..300u32 {
            let a = f.get()?;
            drop(a);
            if i % 3 == 0 {
                fsleep(Delta::from_micros(200));
            }
        }
        // Every pagemap created is destroyed exactly once, none while in use.
        f.cache.flush();
        assert!(f.wait_destroyed(f.created(), 3000));
        assert_eq!(f.destroyed(), f.created());
        assert!(f.created() >= 1);
        Ok(())
    }

    #[test]
    fn shrinker_scan_frees_idle_pagemaps() -> Result {
        let f = Fixture::new(c"pagemap_util_kunit4", 60_000)?;
        let busy = Fixture::new(c"pagemap_util_kunit5", 60_000)?;
        let a = f.get()?;
        let held = busy.get()?;
        drop(a);
        // One idle pagemap (the busy one is not counted, nor freed).
        assert_eq!(svm_pagemap_idle_count(), 1);
        assert_eq!(svm_pagemap_idle_scan(16), 1);
        assert!(f.wait_destroyed(1, 3000));
        assert_eq!(busy.destroyed(), 0);
        assert_eq!(svm_pagemap_idle_count(), 0);
        assert_eq!(svm_pagemap_idle_scan(16), 0);
        drop(held);
        busy.cache.flush();
        assert!(busy.wait_destroyed(1, 3000));
        Ok(())
    }
}
