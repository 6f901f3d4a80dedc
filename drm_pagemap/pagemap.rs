// SPDX-License-Identifier: GPL-2.0

//! The refcounted pagemap: one device memory region's handle, shared by every user of it.
//!
//! A [`Pagemap`] lives behind [`ARef`]: cloning takes a reference, dropping gives one back.
//! While it lives it holds a reference on its device and on the module that provides it, so a
//! pagemap exported to another driver keeps its provider loaded. When the last reference goes,
//! [`PagemapOps::destroy`] runs exactly once, either in the context of that last put or, when
//! the ops ask for it, from this module's own workqueue (for last puts from contexts that must
//! not sleep or take the provider's locks). The device and module references are dropped after
//! `destroy` returns, from this module's code, never from the provider's.
//!
//! C header: [`include/drm/drm_pagemap.h`](srctree/include/drm/drm_pagemap.h)

use core::ptr::NonNull;

use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::mm::Mm;
use kernel::mm::MmapReadGuard;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::aref::AlwaysRefCounted;
use kernel::sync::atomic::Acquire;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Full;
use kernel::sync::atomic::Relaxed;
use kernel::sync::atomic::Release;
use kernel::sync::Arc;
use kernel::sync::Refcount;
use kernel::workqueue::Work;
use kernel::workqueue::WorkItem;

use crate::device_private::DevicePrivateRegion;
use crate::pending::module_ref::ModuleRef;
use crate::range::PageRange;

/// How a device reaches memory it mapped through [`PagemapOps::device_map`] (the C
/// `enum drm_interconnect_protocol`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Interconnect {
    /// A DMA address of system memory.
    System,
    /// A driver-defined address: the device's own memory, or a peer's over a link the driver
    /// knows; the value names the link.
    Driver(u32),
}

/// An address a device uses for a page of a pagemap, with what it means (the C
/// `struct drm_pagemap_addr`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PagemapAddr {
    /// The DMA or driver-defined address.
    pub addr: u64,
    /// How the device reaches it.
    pub proto: Interconnect,
    /// Order of the mapping: it covers `PAGE_SIZE << order` bytes.
    pub order: u32,
    /// Direction of the transfers it is mapped for.
    pub dir: DataDirection,
}

/// Which folios a migration moves whole.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub enum Folios {
    /// Transparent huge pages move into 2 MiB device folios, and those come back as
    /// transparent huge pages, where the range, the VMA and the memory allow.
    #[default]
    Huge,
    /// Base pages only: huge pages are split on the way.
    Base,
}

/// How a migration to device memory behaves (the C `drm_pagemap_migrate_details`).
#[derive(Clone, Copy, Default)]
pub struct MigrateDetails {
    /// For how long freshly migrated pages stay on the device against CPU faults, in ms (at
    /// most [`crate::devmem::MAX_TIMESLICE_MS`]; providers clamp it to their own policy).
    pub timeslice_ms: u32,
    /// Which folios move whole.
    pub folios: Folios,
}

/// Operations a pagemap provider implements.
///
/// # Safety
///
/// [`PagemapOps::module`] returns a module that stays loaded as long as any code of this
/// implementation can run: the module of the crate that defines the type. Keep the type
/// private to that crate: generic code instantiated with it (such as [`Pagemap::new`] and the
/// vtable it makes) is emitted in whichever crate instantiates it, which must be one that the
/// returned module keeps loaded.
pub unsafe trait PagemapOps: Send + Sync {
    /// The module whose code this implementation is (see the trait's safety contract):
    /// usually `kernel::module::this_module::<crate::LocalModule>()`. The pagemap keeps it
    /// loaded until destroyed.
    fn module(&self) -> &'static ThisModule;

    /// Maps the pagemap's page `pfn` (the head of `PAGE_SIZE << order` bytes) for access by
    /// `dev`, which may be the owning device or a peer. `EOPNOTSUPP` if `dev` cannot reach
    /// it. Every successful map is undone by [`Self::device_unmap`].
    fn device_map(
        &self,
        _pagemap: &Pagemap,
        _dev: &Device,
        _pfn: usize,
        _order: u32,
        _dir: DataDirection,
    ) -> Result<PagemapAddr> {
        Err(EOPNOTSUPP)
    }

    /// Undoes a [`Self::device_map`] of `addr` for `dev`.
    fn device_unmap(&self, _pagemap: &Pagemap, _dev: &Device, _addr: PagemapAddr) {}

    /// Whether [`Self::idle`] is wanted: a cache that keeps one reference of its own on the
    /// pagemap learns when every other user is gone.
    fn watches_idle(&self) -> bool {
        false
    }

    /// With [`Self::watches_idle`]: a put is about to leave one reference (the caller's own
    /// is still counted while this runs). Called from the put's context, which may be atomic:
    /// record and schedule, nothing more. It may also be called when the count then does not
    /// drop to one (a racing get), never missed when it does.
    fn idle(&self, _pagemap: &Pagemap) {}

    /// Whether [`Self::destroy`] must run from a work item instead of the last put's context.
    fn destroy_in_work(&self) -> bool {
        false
    }

    /// Called exactly once, when the last reference is gone and before the device and module
    /// references are dropped. `pagemap` can no longer be revived ([`Pagemap::get_unless_zero`]
    /// fails), so this is where a provider unlinks it from its lookup structures.
    fn destroy(&self, _pagemap: &Pagemap) {}

    /// Moves `range` of `mm`, locked by `mmap`, into this pagemap's memory as
    /// `details` say (keeping it there for at least `details.timeslice_ms` against CPU
    /// faults). Best effort: on success the data may still be (partly) elsewhere later.
    fn populate_mm(
        &self,
        _pagemap: &Pagemap,
        _mm: &Mm,
        _mmap: &MmapReadGuard<'_>,
        _range: PageRange,
        _details: &MigrateDetails,
    ) -> Result {
        Err(EOPNOTSUPP)
    }
}

/// Populates `range` of `mm` with `pagemap`'s memory through its provider: takes a user
/// reference on `mm` (`EFAULT` if the address space is already gone) and its mmap lock for
/// reading, and calls [`PagemapOps::populate_mm`]. `ENODEV` once the pagemap is revoked.
pub fn populate_mm(
    pagemap: &Pagemap,
    mm: &Mm,
    range: PageRange,
    details: &MigrateDetails,
) -> Result {
    if pagemap.is_revoked() {
        return Err(ENODEV);
    }
    let user = mm.mmget_not_zero().ok_or(EFAULT)?;
    let mmap = user.mmap_read_lock();
    pagemap
        .ops()
        .populate_mm(pagemap, mm, &mmap, range, details)
}

/// A refcounted handle to a device memory region.
///
/// # Invariants
///
/// - A `Pagemap` is only ever allocated by [`Pagemap::new`], in a pinned [`KBox`], and freed by
///   [`Pagemap::release`] once `refcount` has dropped to zero.
/// - `refcount` counts the [`ARef`]s in existence; once zero it never rises again.
#[pin_data]
pub struct Pagemap {
    refcount: Refcount,
    /// Non-zero once the device is going away: no new data moves in.
    revoked: Atomic<u32>,
    // Dropped before `module`: the ops may hold the provider's state, whose drop code lives in
    // the provider module.
    ops: KBox<dyn PagemapOps>,
    device: ARef<Device>,
    region: Arc<DevicePrivateRegion>,
    #[pin]
    work: Work<Pagemap>,
    module: ModuleRef,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Pagemap { self.work }
}

impl Pagemap {
    /// Creates a pagemap of `region` with one reference, holding `device` and the module of
    /// `ops` ([`PagemapOps::module`]) until destroyed.
    pub fn new(
        device: &Device,
        region: Arc<DevicePrivateRegion>,
        ops: impl PagemapOps + 'static,
    ) -> Result<ARef<Self>> {
        let module = ops.module();
        Self::new_dyn(device, module, region, KBox::new(ops, GFP_KERNEL)?)
    }

    // Not generic and never inlined, so that this module is the one place holding the work
    // item's lock class key and name: lockdep refuses one key under two names, which is what
    // a copy monomorphized into each provider module would give.
    #[inline(never)]
    fn new_dyn(
        device: &Device,
        module: &'static ThisModule,
        region: Arc<DevicePrivateRegion>,
        ops: KBox<dyn PagemapOps>,
    ) -> Result<ARef<Self>> {
        let module = ModuleRef::new(module)?;
        let pagemap = KBox::pin_init(
            try_pin_init!(Pagemap {
                refcount: Refcount::new(1),
                revoked: Atomic::new(0),
                ops,
                device: device.into(),
                region,
                work <- kernel::new_work!("Pagemap::work"),
                module,
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: The pagemap is never moved out of its box: only `release` takes it back.
        let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(pagemap) });
        // SAFETY: `raw` is valid and non-null; the one reference `refcount` counts moves into
        // the returned `ARef`.
        Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(raw)) })
    }

    /// The device whose memory this pagemap maps.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The device-private memory this pagemap hands out.
    pub fn region(&self) -> &DevicePrivateRegion {
        &self.region
    }

    /// Marks the pagemap's device as going away (unplugged, unbound, its driver unloading):
    /// [`populate_mm`] refuses it with `ENODEV` from now on. References stay valid (a held
    /// pagemap file descriptor keeps working as a descriptor); evicting what lives in the
    /// memory is the provider's part.
    pub fn revoke(&self) {
        self.revoked.store(1, Release);
    }

    /// Whether [`Pagemap::revoke`] was called.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Acquire) != 0
    }

    /// The provider's ops.
    pub fn ops(&self) -> &dyn PagemapOps {
        &*self.ops
    }

    /// Takes a new reference unless the count already dropped to zero.
    ///
    /// Caches that keep an uncounted pointer use this under the lock that [`PagemapOps::destroy`]
    /// takes to unlink the pagemap: holding `&self` proves the memory is still there, and a
    /// pagemap whose count reached zero is on its way to destruction and is not revived.
    pub fn get_unless_zero(&self) -> Option<ARef<Self>> {
        let count = self.refcount.as_atomic();
        let mut old = count.load(Relaxed);
        // Lock-free: a retry means another CPU changed the count meanwhile, so some CPU always
        // makes progress; nothing here sleeps or depends on userspace.
        loop {
            if old <= 0 {
                return None;
            }
            match count.cmpxchg(old, old + 1, Full) {
                // SAFETY: The count was non-zero and has been raised: that reference now belongs
                // to the returned `ARef`.
                Ok(_) => return Some(unsafe { ARef::from_raw(NonNull::from(self)) }),
                Err(cur) => old = cur,
            }
        }
    }

    /// The current reference count, for diagnostics and tests only: it may change at any time.
    pub fn refcount(&self) -> i32 {
        self.refcount.as_atomic().load(Relaxed)
    }

    /// Runs the destroy op and frees the pagemap.
    ///
    /// # Safety
    ///
    /// `ptr` is a pagemap whose count just dropped to zero; the caller owns it from now on.
    unsafe fn release(ptr: NonNull<Self>) {
        // SAFETY: Per the type invariant the pagemap was leaked from a pinned `KBox` by `new`,
        // and per this function's contract nobody else refers to it any more.
        let boxed = unsafe { Pin::new_unchecked(KBox::from_raw(ptr.as_ptr())) };
        if boxed.ops.destroy_in_work() {
            // A boxed work item cannot already be queued: the count reaches zero once.
            crate::deferred::queue().enqueue(boxed);
        } else {
            Self::destroy(boxed);
        }
    }

    fn destroy(this: Pin<KBox<Self>>) {
        this.ops.destroy(&this);
        // Drops the ops, then the device and module references, in this module's code.
        drop(this);
    }
}

impl WorkItem for Pagemap {
    type Pointer = Pin<KBox<Self>>;

    fn run(this: Pin<KBox<Self>>) {
        Self::destroy(this);
    }
}

// SAFETY: The count is only raised by `inc_ref`/`get_unless_zero` while a reference is held
// (or the count is checked non-zero atomically) and the pagemap is freed only once it reaches
// zero, by `release`.
unsafe impl AlwaysRefCounted for Pagemap {
    fn inc_ref(&self) {
        self.refcount.inc();
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller gives back a reference it owns, so `obj` is alive.
        let this = unsafe { obj.as_ref() };
        if this.ops.watches_idle() {
            let count = this.refcount.as_atomic();
            let mut old = count.load(Relaxed);
            // Lock-free: a retry means another CPU changed the count meanwhile.
            loop {
                // We hold a reference: never zero here, unless a put was unbalanced.
                if kernel::warn_on!(old <= 0) {
                    return;
                }
                // Told while our reference still keeps the pagemap alive.
                if old == 2 {
                    this.ops.idle(this);
                }
                match count.cmpxchg(old, old - 1, Full) {
                    Ok(1) => break,
                    Ok(_) => return,
                    Err(cur) => old = cur,
                }
            }
        } else if !this.refcount.dec_and_test() {
            return;
        }
        // SAFETY: The count just reached zero; nothing else may touch the pagemap.
        unsafe { Self::release(obj) };
    }
}

// SAFETY: All fields are thread-safe; the ops are `Send + Sync` by the trait bound.
unsafe impl Send for Pagemap {}
// SAFETY: Shared access only reads immutable fields or the atomic count.
unsafe impl Sync for Pagemap {}

#[kunit_tests(drm_pagemap_refcount)]
mod tests {
    use super::*;
    use crate::owner::Owner;
    use kernel::faux;
    use kernel::sync::atomic::Atomic;
    use kernel::sync::Arc;
    use kernel::sync::Completion;
    use kernel::workqueue;

    /// Counts destroys and checks the pagemap can't be revived from inside `destroy`.
    struct CountingOps {
        destroys: Arc<Atomic<u32>>,
        revived: Arc<Atomic<u32>>,
        in_work: bool,
        done: Option<Arc<Completion>>,
    }

    // SAFETY: A test type of this module.
    unsafe impl PagemapOps for CountingOps {
        fn module(&self) -> &'static ThisModule {
            this_module()
        }

        fn destroy_in_work(&self) -> bool {
            self.in_work
        }

        fn destroy(&self, pagemap: &Pagemap) {
            if pagemap.get_unless_zero().is_some() {
                self.revived.fetch_add(1, Full);
            }
            self.destroys.fetch_add(1, Full);
            if let Some(done) = &self.done {
                done.complete_all();
            }
        }
    }

    /// The device-private owner of the tests' regions.
    static OWNER: u8 = 0;

    fn owner() -> crate::owner::RegionOwner {
        // SAFETY: `OWNER` is a static of this test module, no other driver's owner.
        unsafe { crate::owner::RegionOwner::unique(Owner::of(&OWNER)) }
    }

    /// A small device-private region for a test's pagemap.
    fn test_region() -> Result<Arc<DevicePrivateRegion>> {
        Arc::pin_init(
            DevicePrivateRegion::new(1 << 21, c"drm_pagemap_kunit", owner()),
            GFP_KERNEL,
        )
    }

    #[test]
    fn region_needs_a_size_in_pages() {
        for size in [0, 4095, (1 << 21) + 1] {
            let r = Arc::pin_init(
                DevicePrivateRegion::new(size, c"drm_pagemap_kunit", owner()),
                GFP_KERNEL,
            );
            assert_eq!(r.err(), Some(EINVAL));
        }
    }

    fn this_module() -> &'static ThisModule {
        kernel::module::this_module::<crate::LocalModule>()
    }

    type Counter = Arc<Atomic<u32>>;

    fn counters() -> Result<(Counter, Counter)> {
        Ok((
            Arc::new(Atomic::new(0), GFP_KERNEL)?,
            Arc::new(Atomic::new(0), GFP_KERNEL)?,
        ))
    }

    #[test]
    fn last_put_destroys_once() -> Result {
        let fdev = faux::Registration::new(c"drm_pagemap_kunit0", None)?;
        let (destroys, revived) = counters()?;
        let ops = CountingOps {
            destroys: destroys.clone(),
            revived: revived.clone(),
            in_work: false,
            done: None,
        };
        let pm = Pagemap::new(fdev.as_ref().as_ref(), test_region()?, ops)?;
        assert_eq!(pm.refcount(), 1);
        let second = pm.clone();
        assert_eq!(pm.refcount(), 2);
        drop(second);
        assert_eq!(destroys.load(Relaxed), 0);
        assert_eq!(pm.refcount(), 1);
        drop(pm);
        assert_eq!(destroys.load(Relaxed), 1);
        assert_eq!(revived.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn get_unless_zero_fails_after_zero() -> Result {
        let fdev = faux::Registration::new(c"drm_pagemap_kunit1", None)?;
        let (destroys, revived) = counters()?;
        let ops = CountingOps {
            destroys: destroys.clone(),
            revived: revived.clone(),
            in_work: false,
            done: None,
        };
        let pm = Pagemap::new(fdev.as_ref().as_ref(), test_region()?, ops)?;
        // While counted, it can be revived.
        let again = pm.get_unless_zero().ok_or(EINVAL)?;
        assert_eq!(pm.refcount(), 2);
        drop(again);
        drop(pm);
        // `destroy` tried `get_unless_zero` at count zero: it must have failed.
        assert_eq!(revived.load(Relaxed), 0);
        assert_eq!(destroys.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn deferred_destroy_runs_once_in_work() -> Result {
        let fdev = faux::Registration::new(c"drm_pagemap_kunit2", None)?;
        let (destroys, revived) = counters()?;
        let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
        let ops = CountingOps {
            destroys: destroys.clone(),
            revived: revived.clone(),
            in_work: true,
            done: Some(done.clone()),
        };
        let pm = Pagemap::new(fdev.as_ref().as_ref(), test_region()?, ops)?;
        drop(pm);
        done.wait_for_completion();
        assert_eq!(destroys.load(Relaxed), 1);
        assert_eq!(revived.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn concurrent_get_put_balances() -> Result {
        const WORKERS: usize = 4;
        const ROUNDS: u32 = 20000;

        let fdev = faux::Registration::new(c"drm_pagemap_kunit3", None)?;
        let (destroys, revived) = counters()?;
        let ops = CountingOps {
            destroys: destroys.clone(),
            revived: revived.clone(),
            in_work: false,
            done: None,
        };
        let pm = Pagemap::new(fdev.as_ref().as_ref(), test_region()?, ops)?;
        let mut dones = KVec::with_capacity(WORKERS, GFP_KERNEL)?;
        for _ in 0..WORKERS {
            let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
            let mine = pm.clone();
            let signal = done.clone();
            workqueue::system_unbound().try_spawn(GFP_KERNEL, move || {
                for _ in 0..ROUNDS {
                    let a = mine.clone();
                    let b = a.get_unless_zero();
                    drop(a);
                    drop(b);
                }
                drop(mine);
                signal.complete_all();
            })?;
            dones.push(done, GFP_KERNEL)?;
        }
        for done in dones.iter() {
            done.wait_for_completion();
        }
        assert_eq!(pm.refcount(), 1);
        assert_eq!(destroys.load(Relaxed), 0);
        drop(pm);
        assert_eq!(destroys.load(Relaxed), 1);
        assert_eq!(revived.load(Relaxed), 0);
        Ok(())
    }
}
