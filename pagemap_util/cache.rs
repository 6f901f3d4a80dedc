// SPDX-License-Identifier: GPL-2.0

//! A per-region pagemap cache: the pagemap is created on first use and destroyed when its last
//! user is gone.
//!
//! The region's provider keeps no counted reference of its own: a counted reference pins the
//! provider's module (see [`Pagemap`]), so a provider that held one could never be unloaded.
//! The cache instead keeps an uncounted pointer and revives it with
//! [`Pagemap::get_unless_zero`] under its lock. The pagemaps it creates carry ops of its own
//! around the provider's, whose destroy unlinks the pagemap under the same lock before the
//! memory goes away: nothing the provider writes can leave a dangling pointer behind.
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
use kernel::sync::Arc;
use kernel::sync::Mutex;

/// The cache's one slot, shared with the ops of the pagemap it holds.
///
/// # Invariants
///
/// While `current` holds a pointer, that pagemap has not been freed: its destroy op (always
/// [`Cached::destroy`]) clears it under the lock before the pagemap is freed.
#[pin_data]
struct Slot {
    #[pin]
    current: Mutex<Option<NonNull<Pagemap>>>,
}

// SAFETY: The raw pointer is only dereferenced under the lock, and `Pagemap` is `Sync`.
unsafe impl Send for Slot {}
// SAFETY: As above; all access goes through the mutex.
unsafe impl Sync for Slot {}

impl Slot {
    /// Forgets `pagemap` if it is the cached one.
    fn unlink(&self, pagemap: &Pagemap) {
        let mut current = self.current.lock();
        if *current == Some(NonNull::from(pagemap)) {
            *current = None;
        }
    }
}

/// Holds a region's current pagemap, if any, without counting a reference on it.
pub struct PagemapCache {
    slot: Arc<Slot>,
}

/// The ops of a cached pagemap: the provider's, plus the unlink from the cache on destroy.
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

    // The unlink takes the slot's mutex: never in the last put's (maybe atomic) context.
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

impl PagemapCache {
    /// Creates an empty cache.
    pub fn new() -> Result<Self> {
        let slot = Arc::pin_init(
            pin_init!(Slot {
                current <- kernel::new_mutex!(None, "PagemapCache::current"),
            }),
            GFP_KERNEL,
        )?;
        Ok(Self { slot })
    }

    /// Returns a reference to the cached pagemap, or to a new pagemap of `region` on `device`
    /// with the ops `ops()` returns, if there is none or the cached one is being destroyed.
    /// The provider's [`PagemapOps::destroy`] runs from a work item.
    pub fn get_or_create<T: PagemapOps + 'static>(
        &self,
        device: &Device,
        region: &Arc<DevicePrivateRegion>,
        ops: impl FnOnce() -> Result<T>,
    ) -> Result<ARef<Pagemap>> {
        let mut current = self.slot.current.lock();
        if let Some(ptr) = *current {
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
        let pagemap = Pagemap::new(device, region.clone(), ops)?;
        // INVARIANT: Its ops are `Cached`, whose destroy unlinks it under this lock.
        *current = Some(NonNull::from(&*pagemap));
        Ok(pagemap)
    }

    /// The cached pagemap, with a new reference, if it is alive.
    pub fn current(&self) -> Option<ARef<Pagemap>> {
        let current = self.slot.current.lock();
        // SAFETY: As in `get_or_create`: not freed while cached, and the lock is held.
        current.and_then(|ptr| unsafe { ptr.as_ref() }.get_unless_zero())
    }

    /// Whether a pagemap is cached (alive or being destroyed). For diagnostics and tests.
    pub fn is_populated(&self) -> bool {
        self.slot.current.lock().is_some()
    }
}

#[kunit_tests(pagemap_util_cache)]
mod tests {
    use super::*;
    use kernel::faux;
    use kernel::sync::atomic::Atomic;
    use kernel::sync::atomic::Full;
    use kernel::sync::atomic::Relaxed;
    use kernel::sync::Completion;

    struct Counters {
        created: Atomic<u32>,
        destroyed: Atomic<u32>,
    }

    /// Provider ops that know nothing of the cache: the unlink is the cache's own business.
    struct ProviderOps {
        counters: Arc<Counters>,
        done: Arc<Completion>,
    }

    // SAFETY: A test type of this module.
    unsafe impl PagemapOps for ProviderOps {
        fn module(&self) -> &'static ThisModule {
            kernel::module::this_module::<crate::LocalModule>()
        }

        fn destroy(&self, _pagemap: &Pagemap) {
            self.counters.destroyed.fetch_add(1, Full);
            self.done.complete_all();
        }
    }

    static OWNER: u8 = 0;

    fn get(
        cache: &PagemapCache,
        fdev: &faux::Registration,
        region: &Arc<DevicePrivateRegion>,
        counters: &Arc<Counters>,
        done: &Arc<Completion>,
    ) -> Result<ARef<Pagemap>> {
        cache.get_or_create(fdev.as_ref().as_ref(), region, || {
            counters.created.fetch_add(1, Full);
            Ok(ProviderOps {
                counters: counters.clone(),
                done: done.clone(),
            })
        })
    }

    #[test]
    fn create_on_first_use_and_reuse() -> Result {
        let fdev = faux::Registration::new(c"pagemap_util_kunit0", None)?;
        // SAFETY: `OWNER` is a static of this test module, no other driver's owner.
        let owner = unsafe { drm_pagemap::owner::Owner::of(&OWNER) };
        let region = Arc::pin_init(
            DevicePrivateRegion::new(1 << 21, c"pagemap_util_kunit", owner),
            GFP_KERNEL,
        )?;
        let cache = PagemapCache::new()?;
        let counters = Arc::new(
            Counters {
                created: Atomic::new(0),
                destroyed: Atomic::new(0),
            },
            GFP_KERNEL,
        )?;
        let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;

        assert!(!cache.is_populated());
        let a = get(&cache, &fdev, &region, &counters, &done)?;
        let b = get(&cache, &fdev, &region, &counters, &done)?;
        assert!(core::ptr::eq(&*a, &*b));
        assert_eq!(counters.created.load(Relaxed), 1);
        assert_eq!(a.refcount(), 2);
        drop(a);
        drop(b);
        done.wait_for_completion();
        assert_eq!(counters.destroyed.load(Relaxed), 1);
        // The provider's destroy did not unlink it; the cache did.
        assert!(!cache.is_populated());

        // A new user after destruction gets a fresh pagemap (with KASAN, a dangling cached
        // pointer would be a use-after-free report here).
        let done2 = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
        let c = get(&cache, &fdev, &region, &counters, &done2)?;
        assert_eq!(counters.created.load(Relaxed), 2);
        assert_eq!(c.refcount(), 1);
        drop(c);
        done2.wait_for_completion();
        assert_eq!(counters.destroyed.load(Relaxed), 2);
        assert!(!cache.is_populated());
        Ok(())
    }
}
