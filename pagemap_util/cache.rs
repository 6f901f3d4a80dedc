// SPDX-License-Identifier: GPL-2.0

//! A per-region pagemap cache: the pagemap is created on first use and destroyed when its last
//! user is gone.
//!
//! The region's provider keeps no counted reference of its own: a counted reference pins the
//! provider's module (see [`Pagemap`]), so a provider that held one could never be unloaded.
//! The cache instead keeps an uncounted pointer and revives it with
//! [`Pagemap::get_unless_zero`] under its lock; the pagemap's destroy op calls
//! [`PagemapCache::unlink`], under the same lock, before the memory goes away.

use core::ptr::NonNull;

use drm_pagemap::lock_class::LockClass;
use drm_pagemap::pagemap::Pagemap;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::Mutex;

/// Holds a region's current pagemap, if any, without counting a reference on it.
///
/// # Invariants
///
/// While `current` holds a pointer, that pagemap has not been freed: its destroy op calls
/// [`PagemapCache::unlink`], which clears it under the lock, before it is freed.
#[pin_data]
pub struct PagemapCache {
    #[pin]
    current: Mutex<Option<NonNull<Pagemap>>>,
}

static CURRENT_CLASS: LockClass = LockClass::new(c"PagemapCache::current");

impl PagemapCache {
    /// Creates an empty cache.
    pub fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            current <- Mutex::new(None, CURRENT_CLASS.name(), CURRENT_CLASS.key()),
        })
    }

    /// Returns a reference to the cached pagemap, or to a new one made by `create` if there is
    /// none or the cached one is being destroyed.
    ///
    /// The pagemap `create` returns must call [`Self::unlink`] from its destroy op, and destroy
    /// in a work item ([`drm_pagemap::pagemap::PagemapOps::destroy_in_work`]) since `unlink`
    /// sleeps.
    pub fn get_or_create(
        &self,
        create: impl FnOnce() -> Result<ARef<Pagemap>>,
    ) -> Result<ARef<Pagemap>> {
        let mut current = self.current.lock();
        if let Some(ptr) = *current {
            // SAFETY: By the type invariant the pagemap is not freed while cached, and we
            // hold the lock its destroy op needs to leave it.
            if let Some(pagemap) = unsafe { ptr.as_ref() }.get_unless_zero() {
                return Ok(pagemap);
            }
        }
        let pagemap = create()?;
        // INVARIANT: `create`'s contract makes the pagemap unlink itself before it is freed.
        *current = Some(NonNull::from(&*pagemap));
        Ok(pagemap)
    }

    /// Forgets `pagemap` if it is the cached one. Called from its destroy op.
    pub fn unlink(&self, pagemap: &Pagemap) {
        let mut current = self.current.lock();
        if *current == Some(NonNull::from(pagemap)) {
            *current = None;
        }
    }

    /// Whether a pagemap is cached (alive or being destroyed). For diagnostics and tests.
    pub fn is_populated(&self) -> bool {
        self.current.lock().is_some()
    }
}

// SAFETY: The raw pointer is only dereferenced under the lock, and `Pagemap` is `Sync`.
unsafe impl Send for PagemapCache {}
// SAFETY: As above; all access goes through the mutex.
unsafe impl Sync for PagemapCache {}

#[kunit_tests(pagemap_util_cache)]
mod tests {
    use super::*;
    use drm_pagemap::device_private::DevicePrivateRegion;
    use drm_pagemap::pagemap::PagemapOps;
    use kernel::faux;
    use kernel::sync::atomic::Atomic;
    use kernel::sync::atomic::Full;
    use kernel::sync::atomic::Relaxed;
    use kernel::sync::Arc;
    use kernel::sync::Completion;

    struct Shared {
        cache: Pin<KBox<PagemapCache>>,
        created: Atomic<u32>,
        destroyed: Atomic<u32>,
    }

    struct CachedOps {
        shared: Arc<Shared>,
        done: Arc<Completion>,
    }

    impl PagemapOps for CachedOps {
        fn destroy_in_work(&self) -> bool {
            true
        }

        fn destroy(&self, pagemap: &Pagemap) {
            self.shared.cache.unlink(pagemap);
            self.shared.destroyed.fetch_add(1, Full);
            self.done.complete_all();
        }
    }

    fn create(
        fdev: &faux::Registration,
        shared: &Arc<Shared>,
        done: &Arc<Completion>,
    ) -> Result<ARef<Pagemap>> {
        shared.created.fetch_add(1, Full);
        static OWNER: u8 = 0;
        let region = Arc::pin_init(
            DevicePrivateRegion::new(
                1 << 21,
                c"pagemap_util_kunit",
                core::ptr::from_ref(&OWNER) as usize,
            ),
            GFP_KERNEL,
        )?;
        Pagemap::new(
            fdev.as_ref().as_ref(),
            kernel::module::this_module::<crate::LocalModule>(),
            region,
            CachedOps {
                shared: shared.clone(),
                done: done.clone(),
            },
        )
    }

    #[test]
    fn create_on_first_use_and_reuse() -> Result {
        let fdev = faux::Registration::new(c"pagemap_util_kunit0", None)?;
        let shared = Arc::new(
            Shared {
                cache: KBox::pin_init(PagemapCache::new(), GFP_KERNEL)?,
                created: Atomic::new(0),
                destroyed: Atomic::new(0),
            },
            GFP_KERNEL,
        )?;
        let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;

        assert!(!shared.cache.is_populated());
        let a = shared
            .cache
            .get_or_create(|| create(&fdev, &shared, &done))?;
        let b = shared
            .cache
            .get_or_create(|| create(&fdev, &shared, &done))?;
        assert!(core::ptr::eq(&*a, &*b));
        assert_eq!(shared.created.load(Relaxed), 1);
        assert_eq!(a.refcount(), 2);
        drop(a);
        drop(b);
        done.wait_for_completion();
        assert_eq!(shared.destroyed.load(Relaxed), 1);
        assert!(!shared.cache.is_populated());

        // A new user after destruction gets a fresh pagemap.
        let done2 = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
        let c = shared
            .cache
            .get_or_create(|| create(&fdev, &shared, &done2))?;
        assert_eq!(shared.created.load(Relaxed), 2);
        drop(c);
        done2.wait_for_completion();
        assert_eq!(shared.destroyed.load(Relaxed), 2);
        assert!(!shared.cache.is_populated());
        Ok(())
    }
}
