// SPDX-License-Identifier: GPL-2.0

//! A GPU SVM: a device's view of one process's address space, in SVM ranges created around GPU
//! page faults, watched by chunked interval notifiers, each range's pages mapped for the device
//! (the Rust counterpart of the C `drm_gpusvm`).
//!
//! C header: [`include/drm/drm_gpusvm.h`](srctree/include/drm/drm_gpusvm.h)
//!
//! # Locks
//!
//! Two locks, taken in this order (the C version's driver lock and `notifier_lock`):
//!
//! - [`Gpusvm::lock`] ([`Svm`]): the notifier and range trees' shape. Held for a whole GPU fault
//!   (range lookup or creation, migration, [`Svm::get_pages`]), and by the garbage collector.
//!   Never taken by an invalidation, so anything may be done under it: allocate, take the mmap
//!   lock, wait for a migration.
//! - [`Gpusvm::notifier_lock`] ([`Bindings`]): the ranges' page mappings and the driver's
//!   [`Driver::Locked`] state (its GPU page table). Taken by every invalidation, possibly in
//!   reclaim: nothing under it allocates, sleeps on I/O or takes the mmap lock. It covers
//!   page-table programming (and checking [`Bindings::pages_valid`] before a bind), never a
//!   migration's copies.
//!
//! A range is created by [`Svm::find_or_insert`] and destroyed by [`Svm::collect_garbage`] once
//! the CPU unmapped any of it (the rest of it faults again into new ranges), by
//! [`Svm::remove`], or with the SVM. An invalidation of any kind unmaps the pages of every range
//! it touches and calls [`Driver::unbind`] for it first.

use core::ops::Range as Span;
use core::pin::Pin;

use kernel::device::Device;
use kernel::mm::virt::VmaRef;
use kernel::mm::Mm;
use kernel::mm::MmWithUser;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::rbtree::RBTreeNodeReservation;
use kernel::str::CStr;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::sync::LockClassKey;
use kernel::sync::Mutex;
use kernel::sync::MutexGuard;

use crate::chunk::ChunkSizes;
use crate::notifier::Event;
use crate::notifier::Invalidate;
use crate::notifier::Invalidation;
use crate::notifier::Notifier;
use crate::pages::Pages;

/// Ranges removed per pass of [`Svm::shrink`] or [`Svm::collect_garbage`] (the room for them is
/// allocated up front, outside the notifier lock).
const REMOVE_BATCH: usize = 64;

/// `VM_WRITE`, `VM_IO`, `VM_PFNMAP`, `VM_SHARED`, `VM_HUGETLB`.
use kernel::bindings::VM_HUGETLB;
use kernel::bindings::VM_IO;
use kernel::bindings::VM_PFNMAP;
use kernel::bindings::VM_READ;
use kernel::bindings::VM_SHARED;
use kernel::bindings::VM_WRITE;

/// What a driver on a GPU SVM provides.
pub trait Driver: Send + Sync + Sized + 'static {
    /// The driver's state under the notifier lock: its GPU page table.
    type Locked: Send + Unpin;

    /// Drops every GPU mapping of `range` (page-table entries, TLBs): called under the
    /// notifier lock before the range's pages are unmapped, for an invalidation touching it
    /// (`inv`) or for its removal (`None`). Must not allocate or sleep.
    fn unbind(&self, locked: &mut Self::Locked, range: &Range, inv: Option<&Invalidation<'_>>);
}

/// One SVM range: a fixed, chunk-aligned part of the address space, faulted and mapped as a
/// whole. Its pages live in the SVM's [`Bindings`].
pub struct Range {
    start: usize,
    end: usize,
    /// Start of the notifier whose tree holds it.
    notifier: usize,
    /// Whether its data may move to device memory (private anonymous memory).
    devmem_possible: bool,
    /// Set under the notifier lock once the CPU unmapped any of it; the garbage collector
    /// destroys it then. Read without the lock as a hint.
    unmapped: Atomic<u32>,
}

impl Range {
    /// First address.
    pub fn start(&self) -> usize {
        self.start
    }

    /// End address (exclusive).
    pub fn end(&self) -> usize {
        self.end
    }

    /// Pages in the range.
    pub fn npages(&self) -> usize {
        (self.end - self.start) / PAGE_SIZE
    }

    /// Whether a migration may move its data to device memory: the mapping it was created
    /// in was private anonymous memory (`migrate_vma` moves nothing else).
    pub fn devmem_possible(&self) -> bool {
        self.devmem_possible
    }

    /// Whether the CPU unmapped any of it (the garbage collector will destroy it).
    pub fn is_unmapped(&self) -> bool {
        self.unmapped.load(Relaxed) != 0
    }

    /// As a [`crate::range`]-style span.
    pub fn span(&self) -> Span<usize> {
        self.start..self.end
    }
}

/// A range in its notifier's tree, with its mapped pages.
pub(crate) struct Entry {
    pub(crate) range: Arc<Range>,
    pub(crate) pages: Pages,
}

/// A notifier's ranges (keyed by start; they never overlap).
struct Ranges {
    tree: RBTree<usize, Entry>,
    /// How many of them are marked unmapped.
    garbage: usize,
}

/// What the notifier lock protects.
pub struct Inner<D: Driver> {
    /// Each notifier's ranges, keyed by the notifier's start.
    slots: RBTree<usize, Ranges>,
    /// Ranges in all slots.
    ranges: usize,
    /// Pages of all ranges.
    pages: usize,
    /// Ranges marked unmapped in all slots.
    garbage: usize,
    driver: D::Locked,
}

/// What [`Gpusvm::lock`] protects: the notifiers, keyed by start.
pub struct Outer<D: Driver> {
    notifiers: RBTree<usize, Pin<KBox<Notifier<Watch<D>>>>>,
    /// The start of the one notifier kept without ranges: the last one emptied, so that a
    /// fault coming back to its chunk (a buffer freed and allocated again, the common case)
    /// neither removes nor inserts one. At most one: empty notifiers never pile up. The C
    /// version removes a notifier with its last range.
    spare: Option<usize>,
}

/// A notifier's data: the SVM it belongs to.
pub struct Watch<D: Driver> {
    svm: *const Gpusvm<D>,
    start: usize,
}

// SAFETY: `svm` is only dereferenced as a shared reference to a `Gpusvm<D>`, which is `Sync`
// (its state is behind locks, `D: Send + Sync`); it outlives the notifier (type invariant of
// `Gpusvm`).
unsafe impl<D: Driver> Send for Watch<D> {}
// SAFETY: As above.
unsafe impl<D: Driver> Sync for Watch<D> {}

impl<D: Driver> Invalidate for Watch<D> {
    fn invalidate(notifier: &Notifier<Self>, inv: &Invalidation<'_>, cur_seq: usize) -> bool {
        let watch = notifier.data();
        // SAFETY: The SVM removes its notifiers before it is dropped (its invariant).
        let svm = unsafe { &*watch.svm };
        let mut inner = if inv.blockable() {
            svm.inner.lock()
        } else {
            match svm.inner.try_lock() {
                Some(inner) => inner,
                None => return false,
            }
        };
        notifier.set_seq(cur_seq);
        svm.invalidate_locked(&mut inner, watch.start, inv.start()..inv.end(), Some(inv));
        true
    }
}

/// Options of a fault, the C `struct drm_gpusvm_ctx`.
#[derive(Clone, Copy)]
pub struct Ctx {
    /// Fault the pages writable (else read-only).
    pub write: bool,
    /// Fail with `EFAULT` if a page is found in system memory (a GPU atomic that needs device
    /// memory).
    pub devmem_only: bool,
    /// Allow system and device pages (of one pagemap) in one range.
    pub allow_mixed: bool,
    /// The device-private owner whose pages the device reaches in place (its interconnect
    /// group's); other device pages are migrated to system memory by the fault.
    pub owner: Option<drm_pagemap::owner::Owner>,
}

/// A GPU SVM over one process's address space.
///
/// # Invariants
///
/// Every notifier in `outer` has a `Watch` pointing at `self`, and is removed (dropped) before
/// `self` is: when retired after the spare it was (`Svm::retire_notifier`), when a fault that
/// added it fails, or in drop.
#[pin_data(PinnedDrop)]
pub struct Gpusvm<D: Driver> {
    mm: ARef<Mm>,
    dev: ARef<Device>,
    va: Span<usize>,
    notifier_size: usize,
    chunks: ChunkSizes,
    max_pages: usize,
    #[pin]
    outer: Mutex<Outer<D>>,
    #[pin]
    inner: Mutex<Inner<D>>,
    driver: D,
}

// SAFETY: The raw pointers in `Watch` are covered above; everything else is `Send`.
unsafe impl<D: Driver> Send for Gpusvm<D> {}
// SAFETY: All mutable state is behind the two mutexes.
unsafe impl<D: Driver> Sync for Gpusvm<D> {}

/// The shape of an SVM (see [`Gpusvm::new`]).
pub struct Geometry<'a> {
    /// The GPU VA window (page-aligned).
    pub va: Span<usize>,
    /// Bytes each notifier watches: a power of two, at least the largest chunk.
    pub notifier_size: usize,
    /// The chunk sizes of ranges (see [`ChunkSizes::new`]).
    pub chunks: &'a [usize],
    /// Pages the ranges cover at most in all.
    pub max_pages: usize,
}

/// The names and lockdep classes of an SVM's two locks, given by the driver (one per driver,
/// from `kernel::static_lock_class!()`).
pub struct LockClasses {
    /// The outer lock's name and class.
    pub outer: (&'static CStr, Pin<&'static LockClassKey>),
    /// The notifier lock's name and class.
    pub inner: (&'static CStr, Pin<&'static LockClassKey>),
}

impl<D: Driver> Gpusvm<D> {
    /// A GPU SVM over `mm` for the device `dev` (whose DMA mappings of system pages it makes),
    /// covering `geometry.va`, with notifiers of `geometry.notifier_size` bytes and ranges of
    /// `geometry.chunks`, holding ranges of at most `geometry.max_pages` pages in all (each
    /// page costs a few bytes, charged to the faulting process's memory cgroup: a fault that
    /// would exceed it first drops every other range, as a cache). `EINVAL` for bad sizes.
    pub fn new(
        mm: &Mm,
        dev: &Device,
        geometry: Geometry<'_>,
        classes: LockClasses,
        driver: D,
        locked: D::Locked,
    ) -> Result<impl PinInit<Self, Error> + use<D>> {
        let Geometry {
            va,
            notifier_size,
            chunks,
            max_pages,
        } = geometry;
        let chunks = ChunkSizes::new(chunks)?;
        if !notifier_size.is_power_of_two()
            || notifier_size < chunks.as_slice()[0]
            || va.start >= va.end
            || va.start % PAGE_SIZE != 0
            || va.end % PAGE_SIZE != 0
            || max_pages < chunks.as_slice()[0] / PAGE_SIZE
        {
            return Err(EINVAL);
        }
        let mm: ARef<Mm> = mm.into();
        let dev: ARef<Device> = dev.into();
        Ok(try_pin_init!(Self {
            mm,
            dev,
            va,
            notifier_size,
            chunks,
            max_pages,
            outer <- Mutex::new(
                Outer {
                    notifiers: RBTree::new(),
                    spare: None,
                },
                classes.outer.0,
                classes.outer.1,
            ),
            inner <- Mutex::new(
                Inner {
                    slots: RBTree::new(),
                    ranges: 0,
                    pages: 0,
                    garbage: 0,
                    driver: locked,
                },
                classes.inner.0,
                classes.inner.1,
            ),
            driver,
        }? Error))
    }

    /// The driver's data.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The address space.
    pub fn mm(&self) -> &Mm {
        &self.mm
    }

    /// The device the pages are mapped for.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// Takes the outer lock (the C driver lock): range creation, faults and collection.
    pub fn lock(&self) -> Svm<'_, D> {
        Svm {
            svm: self,
            guard: self.outer.lock(),
        }
    }

    /// Takes the notifier lock: page-table programming.
    pub fn notifier_lock(&self) -> Bindings<'_, D> {
        Bindings {
            svm: self,
            guard: self.inner.lock(),
        }
    }

    /// Under the notifier lock: unbinds and unmaps every range of notifier `key` that overlaps
    /// `span`; with an unmap event, marks them for the garbage collector.
    fn invalidate_locked(
        &self,
        inner: &mut Inner<D>,
        key: usize,
        span: Span<usize>,
        inv: Option<&Invalidation<'_>>,
    ) {
        let Inner {
            slots,
            garbage,
            driver,
            ..
        } = inner;
        let Some(slot) = slots.get_mut(&key) else {
            return;
        };
        let unmap = inv.is_some_and(|i| i.event() == Event::Unmap);
        let Ranges {
            tree,
            garbage: slot_garbage,
        } = slot;
        let mut each = |entry: &mut Entry| {
            self.driver.unbind(driver, &entry.range, inv);
            entry.pages.unmap(&self.dev);
            if unmap && entry.range.unmapped.load(Relaxed) == 0 {
                entry.range.unmapped.store(1, Relaxed);
                *garbage += 1;
                *slot_garbage += 1;
            }
        };
        for_each_overlapping(tree, span, &mut each);
    }
}

/// Calls `f` on every entry of `tree` overlapping `span`, in address order. Bounded by the
/// tree's size.
fn for_each_overlapping(
    tree: &mut RBTree<usize, Entry>,
    span: Span<usize>,
    f: &mut impl FnMut(&mut Entry),
) {
    if span.start >= span.end {
        return;
    }
    // The range starting before `span` that may reach into it.
    let mut cursor = match tree.cursor_lower_bound_mut(&span.start) {
        Some(mut c) => {
            if let Some((_, prev)) = c.peek_prev_mut() {
                if prev.range.end > span.start {
                    f(prev);
                }
            }
            Some(c)
        }
        None => {
            if let Some(mut c) = tree.cursor_back_mut() {
                let (_, last) = c.current_mut();
                if last.range.end > span.start {
                    f(last);
                }
            }
            None
        }
    };
    // One walk, bounded by the tree's size.
    while let Some(mut c) = cursor {
        let (start, entry) = c.current_mut();
        if *start >= span.end {
            break;
        }
        f(entry);
        cursor = c.move_next();
    }
}

/// The first key of `slots` in `[from, end)`.
fn next_slot<T>(slots: &RBTree<usize, T>, from: usize, end: usize) -> Option<usize> {
    slots
        .cursor_lower_bound(&from)
        .map(|c| *c.current().0)
        .filter(|k| *k < end)
}

/// The start of the last entry of `tree` starting before `end`.
fn last_before(tree: &RBTree<usize, Entry>, end: usize) -> Option<usize> {
    match tree.cursor_lower_bound(&end) {
        Some(c) => c.peek_prev().map(|(k, _)| *k),
        None => tree.cursor_back().map(|c| *c.current().0),
    }
}

/// The entry of `tree` containing `addr`.
fn containing(tree: &RBTree<usize, Entry>, addr: usize) -> Option<&Entry> {
    let key = match addr.checked_add(1) {
        Some(next) => last_before(tree, next),
        None => tree.cursor_back().map(|c| *c.current().0),
    }?;
    tree.get(&key)
        .filter(|e| e.range.start <= addr && addr < e.range.end)
}

/// Whether some entry of `tree` overlaps `span`.
fn overlaps(tree: &RBTree<usize, Entry>, span: &Span<usize>) -> bool {
    last_before(tree, span.end)
        .and_then(|k| tree.get(&k))
        .is_some_and(|e| e.range.end > span.start)
}

#[pinned_drop]
impl<D: Driver> PinnedDrop for Gpusvm<D> {
    fn drop(self: Pin<&mut Self>) {
        // Notifiers first (their callbacks point here), outside the notifier lock: removing
        // one waits for its running invalidations, which take it.
        let notifiers = core::mem::replace(&mut self.outer.lock().notifiers, RBTree::new());
        drop(notifiers);
        let mut inner = self.inner.lock();
        let Inner { slots, driver, .. } = &mut *inner;
        // Every range once: bounded by the page budget.
        for (_, slot) in slots.iter_mut() {
            for (_, entry) in slot.tree.iter_mut() {
                self.driver.unbind(driver, &entry.range, None);
                entry.pages.unmap(&self.dev);
            }
        }
        let slots = core::mem::replace(slots, RBTree::new());
        drop(inner);
        // Pagemap references go outside the lock.
        drop(slots);
    }
}

/// The outer lock held: faults, range creation and collection.
pub struct Svm<'a, D: Driver> {
    svm: &'a Gpusvm<D>,
    guard: MutexGuard<'a, Outer<D>>,
}

/// What [`Svm::find_or_insert`] found.
pub struct Found {
    /// The range around the fault.
    pub range: Arc<Range>,
    /// Whether it was created by this call.
    pub created: bool,
    /// Ranges the call collected as garbage first (see [`Svm::collect_garbage`]).
    pub collected: usize,
    /// Whether the mapping at the fault address is writable now.
    pub writable: bool,
}

impl<'a, D: Driver> Svm<'a, D> {
    /// The SVM.
    pub fn svm(&self) -> &'a Gpusvm<D> {
        self.svm
    }

    /// The notifier lock, taken under this one.
    pub fn notifier_lock(&self) -> Bindings<'a, D> {
        self.svm.notifier_lock()
    }

    /// Finds the range containing `addr`, or creates one: the largest chunk around it that
    /// lies inside its mapping, its notifier, the GPU VA window and `gpuva`, and overlaps no
    /// other range (the C `drm_gpusvm_range_find_or_insert`, whose `gpuva_start`/`gpuva_end`
    /// are `gpuva`: the driver's GPU mapping around `addr`, page aligned, split where its
    /// attributes differ, such as the preferred location, so that a range has one set of
    /// them). A range found is
    /// returned as it is: a driver that narrows a mapping removes the ranges across its new
    /// edges ([`Self::remove_across`]). Errors: `EINVAL` outside the window or `gpuva`,
    /// `EFAULT` if no mapping holds `addr`, it is inaccessible (`PROT_NONE`; the C version gives
    /// `EPERM` for a write there) or the address space is gone, `EPERM` for `ctx.write` on a
    /// mapping without write permission, `EIO` for I/O and PFN mappings (no pages to mirror).
    pub fn find_or_insert(&mut self, addr: usize, gpuva: Span<usize>, ctx: &Ctx) -> Result<Found> {
        // A range the CPU unmapped (in part) stays in the tree until collected: if one is in
        // the way, collect it, then try again; the same past the page budget (another munmap
        // racing with every try gives `EBUSY`).
        let mut collected = 0;
        let mut res = Err(EBUSY);
        // Three tries: garbage in the way, then ranges over the budget, each cleared once.
        for _ in 0..3 {
            match self.try_find_or_insert(addr, &gpuva, ctx) {
                Ok(Some(mut found)) => {
                    found.collected = collected;
                    return Ok(found);
                }
                Ok(None) => collected += self.collect_garbage(),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        // A notifier added for nothing (a fault at a hole, say) is retired, or faults at junk
        // addresses would pile them up.
        let key = addr & !(self.svm.notifier_size - 1);
        let unused = self.svm.inner.lock().slots.get(&key).is_none();
        if unused && self.guard.notifiers.get(&key).is_some() {
            self.retire_notifier(key);
        }
        res
    }

    /// [`Self::find_or_insert`], or `None` if a range marked unmapped is in the way.
    fn try_find_or_insert(
        &mut self,
        addr: usize,
        gpuva: &Span<usize>,
        ctx: &Ctx,
    ) -> Result<Option<Found>> {
        let svm = self.svm;
        if !svm.va.contains(&addr) || !gpuva.contains(&addr) {
            return Err(EINVAL);
        }
        let key = addr & !(svm.notifier_size - 1);
        let notifier_span = key..key.saturating_add(svm.notifier_size);
        let user = svm.mm.mmget_not_zero().ok_or(EFAULT)?;
        // A notifier first (it must watch the range before its pages are looked at): the spare
        // if it is this chunk's.
        if self.guard.spare == Some(key) {
            self.guard.spare = None;
        } else if self.guard.notifiers.get(&key).is_none() {
            self.add_notifier(&user, key)?;
        }
        // Allocated before the notifier lock; most faults find their range and free them.
        let node = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        let slot_node = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        // Held until the range is in the tree: a munmap in between would find no range to
        // mark unmapped, and the range would outlive its mapping (as the C version, which
        // inserts under the mmap lock too).
        let mmap = user.mmap_read_lock();
        let vma = mmap.vma_lookup(addr).ok_or(EFAULT)?;
        let flags = vma.flags();
        // Inaccessible (`PROT_NONE`): as a hole to a CPU access.
        if flags & (VM_READ | VM_WRITE) == 0 {
            return Err(EFAULT);
        }
        let writable = flags & VM_WRITE != 0;
        if ctx.write && !writable {
            return Err(EPERM);
        }
        if flags & (VM_IO | VM_PFNMAP) != 0 {
            return Err(EIO);
        }
        let devmem_possible = is_anonymous(vma) && flags & (VM_SHARED | VM_HUGETLB) == 0;
        let vma_span = vma.start()..vma.end();
        {
            let inner = svm.inner.lock();
            if let Some(entry) = inner
                .slots
                .get(&key)
                .and_then(|s| containing(&s.tree, addr))
            {
                if entry.range.is_unmapped() {
                    return Ok(None);
                }
                return Ok(Some(Found {
                    range: entry.range.clone(),
                    created: false,
                    collected: 0,
                    writable,
                }));
            }
        }
        // Candidate windows are checked against the tree under the notifier lock, without
        // allocating there.
        let window = {
            let inner = svm.inner.lock();
            let tree = inner.slots.get(&key).map(|s| &s.tree);
            svm.chunks.window(
                addr,
                &[vma_span, notifier_span, svm.va.clone(), gpuva.clone()],
                |w| tree.is_none_or(|t| !overlaps(t, w)),
            )
        }
        .ok_or(EINVAL)?;
        let npages = window.len() / PAGE_SIZE;
        // Over budget: the other ranges go, then the caller tries again (without the mmap
        // lock: dropping ranges may take notifiers along, which waits for invalidations).
        if svm.inner.lock().pages + npages > svm.max_pages {
            drop(mmap);
            self.shrink(&window);
            return Ok(None);
        }
        let range = Arc::new(
            Range {
                start: window.start,
                end: window.end,
                notifier: key,
                devmem_possible,
                unmapped: Atomic::new(0),
            },
            GFP_KERNEL_ACCOUNT,
        )?;
        let pages = Pages::new(range.npages())?;
        let mut inner = svm.inner.lock();
        let inner = &mut *inner;
        if inner.pages + npages > svm.max_pages {
            return Err(ENOMEM);
        }
        if inner.slots.get(&key).is_none() {
            inner.slots.insert(slot_node.into_node(
                key,
                Ranges {
                    tree: RBTree::new(),
                    garbage: 0,
                },
            ));
        }
        let slot = inner.slots.get_mut(&key).ok_or(EINVAL)?;
        // Only faults (holding the outer lock, as we do) insert ranges, but one marked
        // unmapped stays in the tree until collected (a single page is taken without a check).
        if overlaps(&slot.tree, &window) {
            return Ok(None);
        }
        slot.tree.insert(node.into_node(
            window.start,
            Entry {
                range: range.clone(),
                pages,
            },
        ));
        inner.ranges += 1;
        inner.pages += npages;
        Ok(Some(Found {
            range,
            created: true,
            collected: 0,
            writable,
        }))
    }

    /// Inserts the notifier for `[key, key + notifier_size)`.
    fn add_notifier(&mut self, mm: &MmWithUser, key: usize) -> Result {
        let svm = self.svm;
        let watch = Watch {
            svm: core::ptr::from_ref(svm),
            start: key,
        };
        let len = svm.notifier_size.min(usize::MAX - key);
        let notifier = KBox::pin_init(
            Notifier::new(mm, key, len & !(PAGE_SIZE - 1), Ok::<_, Error>(watch)),
            GFP_KERNEL_ACCOUNT,
        )?;
        let node = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        // INVARIANT: The notifier points here and is removed when retired or with the SVM.
        self.guard.notifiers.insert(node.into_node(key, notifier));
        Ok(())
    }

    /// Retires the notifier at `key`, which watches no range any more (outside the notifier
    /// lock: removing one waits for its running invalidations, which take that lock). It
    /// stays as the spare; the previous spare goes.
    fn retire_notifier(&mut self, key: usize) {
        if let Some(old) = self.guard.spare.replace(key) {
            if old != key {
                drop(self.guard.notifiers.remove(&old));
            }
        }
    }

    /// The notifier watching `range`.
    fn notifier_of(&self, range: &Range) -> Result<&Notifier<Watch<D>>> {
        self.guard
            .notifiers
            .get(&range.notifier)
            .map(|n| &**n)
            .ok_or(ENOENT)
    }

    /// Destroys every range marked unmapped, and retires the notifiers left without ranges
    /// (the C driver's garbage collector, run at the start of a fault). Returns how many
    /// ranges went.
    pub fn collect_garbage(&mut self) -> usize {
        let pending = self.svm.inner.lock().garbage;
        if pending == 0 {
            return 0;
        }
        self.remove_where(pending, |e| e.range.is_unmapped())
    }

    /// Destroys every range that does not overlap `keep` (the GPU page table is a cache of CPU
    /// mappings: what goes faults again when next used), and retires the notifiers left
    /// without ranges. Returns how many ranges went.
    pub fn shrink(&mut self, keep: &Span<usize>) -> usize {
        let all = self.svm.inner.lock().ranges;
        self.remove_where(all, |e| {
            e.range.end <= keep.start || e.range.start >= keep.end
        })
    }

    /// Destroys the range that `edge` cuts, if any (starting before it and ending after it: a
    /// driver split its GPU mapping there, and what goes faults again into ranges on either
    /// side), and retires its notifier if left without ranges. Returns how many ranges went.
    pub fn remove_across(&mut self, edge: usize) -> usize {
        // At most one range holds `edge`, in the notifier of its chunk (ranges never cross
        // notifiers).
        let key = edge & !(self.svm.notifier_size - 1);
        let cut = {
            let inner = self.svm.inner.lock();
            inner
                .slots
                .get(&key)
                .and_then(|s| containing(&s.tree, edge))
                .filter(|e| e.range.start < edge)
                .map(|e| e.range.clone())
        };
        match cut {
            Some(range) => {
                self.remove(&range);
                1
            }
            None => 0,
        }
    }

    /// Removes at most `max` ranges for which `doomed` holds, unbound and unmapped, and retires
    /// the notifiers left without ranges.
    fn remove_where(&mut self, max: usize, doomed: impl Fn(&Entry) -> bool) -> usize {
        // In batches: room for each is allocated before the notifier lock.
        let mut removed = 0;
        // Bounded by `max`: each pass removes a batch, or ends.
        while removed < max {
            let n = self.remove_batch((max - removed).min(REMOVE_BATCH), &doomed);
            removed += n;
            if n == 0 {
                break;
            }
        }
        removed
    }

    /// One batch of [`Self::remove_where`]: at most `max` ranges.
    fn remove_batch(&mut self, max: usize, doomed: &impl Fn(&Entry) -> bool) -> usize {
        let svm = self.svm;
        // Room for what goes, allocated before the notifier lock; what goes is dropped after
        // it (pages hold pagemap references). What is left over waits for the next pass.
        let (Ok(mut entries), Ok(mut keys)) = (
            KVec::<Entry>::with_capacity(max, GFP_KERNEL),
            KVec::<usize>::with_capacity(max, GFP_KERNEL),
        ) else {
            return 0;
        };
        {
            let mut inner = svm.inner.lock();
            let Inner {
                slots,
                ranges,
                pages,
                garbage,
                driver,
            } = &mut *inner;
            for (key, slot) in slots.iter_mut() {
                // One walk of the slot's ranges.
                let mut cursor = slot.tree.cursor_front_mut();
                while let Some(c) = cursor {
                    if !doomed(c.current().1) {
                        cursor = c.move_next();
                        continue;
                    }
                    if entries.len() == entries.capacity() {
                        break;
                    }
                    let (next, node) = c.remove_current();
                    let (_, mut entry) = node.to_key_value();
                    svm.driver.unbind(driver, &entry.range, None);
                    entry.pages.unmap(&svm.dev);
                    if entry.range.is_unmapped() {
                        slot.garbage -= 1;
                        *garbage -= 1;
                    }
                    *ranges -= 1;
                    *pages -= entry.range.npages();
                    // Room checked above.
                    let _ = entries.push_within_capacity(entry);
                    cursor = next;
                }
                if slot.tree.is_empty() && keys.len() < keys.capacity() {
                    let _ = keys.push_within_capacity(*key);
                }
            }
            // At most a batch.
            for key in keys.iter() {
                // Empty: frees its node only.
                drop(slots.remove(key));
            }
        }
        let removed = entries.len();
        drop(entries);
        // Their notifiers are retired too. No range was created there meanwhile: that needs
        // the outer lock, held.
        for key in keys.iter() {
            self.retire_notifier(*key);
        }
        removed
    }

    /// Removes `range` now (its pages unmapped, unbound first), wherever the CPU maps it.
    pub fn remove(&mut self, range: &Range) {
        let svm = self.svm;
        let mut inner = svm.inner.lock();
        let Inner {
            slots,
            ranges,
            pages,
            garbage,
            driver,
        } = &mut *inner;
        let Some(slot) = slots.get_mut(&range.notifier) else {
            return;
        };
        let found = slot
            .tree
            .get(&range.start)
            .is_some_and(|e| core::ptr::eq(&*e.range, range));
        if !found {
            return;
        }
        if let Some(mut entry) = slot.tree.remove(&range.start) {
            svm.driver.unbind(driver, &entry.range, None);
            entry.pages.unmap(&svm.dev);
            if entry.range.is_unmapped() {
                slot.garbage -= 1;
                *garbage -= 1;
            }
            *ranges -= 1;
            *pages -= entry.range.npages();
            // Its notifier is retired with the last range under it.
            let empty = slot.tree.is_empty();
            if empty {
                drop(slots.remove(&range.notifier));
            }
            drop(inner);
            drop(entry);
            if empty {
                self.retire_notifier(range.notifier);
            }
        }
    }

    /// Unbinds and unmaps the pages of every range overlapping `span` (advice changed; the
    /// next access faults them again).
    pub fn invalidate(&mut self, span: Span<usize>) {
        let svm = self.svm;
        let mut inner = svm.inner.lock();
        let mut from = span.start & !(svm.notifier_size - 1);
        // One round per slot overlapping `span`.
        while let Some(key) = next_slot(&inner.slots, from, span.end) {
            svm.invalidate_locked(&mut inner, key, span.clone(), None);
            from = match key.checked_add(svm.notifier_size) {
                Some(next) => next,
                None => break,
            };
        }
    }

    /// Calls `f` on each range overlapping `span`, in address order, under the notifier lock:
    /// `f` must not allocate or sleep.
    pub fn for_each_range(&mut self, span: Span<usize>, mut f: impl FnMut(&Arc<Range>)) {
        let svm = self.svm;
        let mut inner = svm.inner.lock();
        let mut from = span.start & !(svm.notifier_size - 1);
        // One round per slot overlapping `span`.
        while let Some(key) = next_slot(&inner.slots, from, span.end) {
            if let Some(slot) = inner.slots.get_mut(&key) {
                for_each_overlapping(&mut slot.tree, span.clone(), &mut |e| f(&e.range));
            }
            from = match key.checked_add(svm.notifier_size) {
                Some(next) => next,
                None => break,
            };
        }
    }

    /// How many notifiers there are.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn notifiers(&self) -> usize {
        self.guard.notifiers.iter().count()
    }

    /// How many ranges there are, and how many await collection.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.svm.inner.lock();
        (inner.ranges, inner.garbage)
    }

    /// The notifier of `range` and its entry's state, for [`crate::pages`].
    pub(crate) fn parts(&self, range: &Range) -> Result<(&Notifier<Watch<D>>, &'a Gpusvm<D>)> {
        Ok((self.notifier_of(range)?, self.svm))
    }
}

/// The notifier lock held: page-table programming.
pub struct Bindings<'a, D: Driver> {
    svm: &'a Gpusvm<D>,
    guard: MutexGuard<'a, Inner<D>>,
}

impl<D: Driver> Bindings<'_, D> {
    /// The driver's state (its page table).
    pub fn driver(&mut self) -> &mut D::Locked {
        &mut self.guard.driver
    }

    /// The entry of `range`, if it is still in its tree.
    pub(crate) fn entry(&self, range: &Range) -> Option<&Entry> {
        self.guard
            .slots
            .get(&range.notifier)?
            .tree
            .get(&range.start)
            .filter(|e| core::ptr::eq(&*e.range, range))
    }

    /// The entry of `range` and the driver's state.
    pub(crate) fn entry_mut(&mut self, range: &Range) -> Option<(&mut Entry, &mut D::Locked)> {
        let Inner { slots, driver, .. } = &mut *self.guard;
        let entry = slots
            .get_mut(&range.notifier)?
            .tree
            .get_mut(&range.start)
            .filter(|e| core::ptr::eq(&*e.range, range))?;
        Some((entry, driver))
    }

    /// Whether `range`'s pages are mapped and no invalidation touched them since: checked
    /// right before a bind is committed, under this lock (the C `drm_gpusvm_pages_valid`).
    pub fn pages_valid(&self, range: &Range) -> bool {
        self.entry(range)
            .is_some_and(|e| !e.range.is_unmapped() && e.pages.is_valid())
    }

    /// The pages of `range`, if mapped and valid (see [`Self::pages_valid`]).
    pub fn pages(&self, range: &Range) -> Option<&Pages> {
        self.entry(range)
            .filter(|e| !e.range.is_unmapped() && e.pages.is_valid())
            .map(|e| &e.pages)
    }

    /// For a software device reading page `index` of `range` in system memory through its DMA
    /// mapping: makes what the CPU wrote visible to it (a bounce buffer is refreshed).
    pub fn sync_for_device(&self, range: &Range, index: usize) {
        if let Some(pages) = self.pages(range) {
            pages.sync_for_device(&self.svm.dev, index);
        }
    }

    /// After a software device wrote page `index` of `range` in system memory through its DMA
    /// mapping: makes it visible to the CPU. Unmapping does not copy a bounce buffer back (the
    /// CPU may have written the page since), so a device writing through these mappings calls
    /// this after its writes.
    pub fn sync_for_cpu(&self, range: &Range, index: usize) {
        if let Some(pages) = self.pages(range) {
            pages.sync_for_cpu(&self.svm.dev, index);
        }
    }

    /// Unbinds `range` and unmaps its pages (the C `drm_gpusvm_unmap_pages`).
    pub fn unmap_pages(&mut self, range: &Range) {
        let svm = self.svm;
        if let Some((entry, driver)) = self.entry_mut(range) {
            svm.driver.unbind(driver, &entry.range, None);
            entry.pages.unmap(&svm.dev);
        }
    }
}

/// Whether `vma` maps anonymous memory.
fn is_anonymous(vma: &VmaRef) -> bool {
    // SAFETY: `vma` is a live VMA (the caller holds the mmap lock through its reference).
    unsafe { (*vma.as_ptr()).vm_ops.is_null() }
}
