// SPDX-License-Identifier: GPL-2.0

//! Interval notifiers: a driver's view of CPU page-table changes over part of a process's
//! address space, with the sequence count that tells a range fault it raced with one.
//!
//! C header: [`include/linux/mmu_notifier.h`](srctree/include/linux/mmu_notifier.h)

use core::marker::PhantomPinned;

use kernel::error::to_result;
use kernel::mm::Mm;
use kernel::mm::MmWithUser;
use kernel::prelude::*;
use kernel::types::Opaque;

use crate::ffi;
use drm_pagemap::owner::Owner;

/// Why the CPU page tables of a range change (`enum mmu_notifier_event`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// The range is unmapped for good (munmap, process exit).
    Unmap,
    /// The range migrates; [`Invalidation::owner`] says who moves it.
    Migrate,
    /// A page is made exclusive to a device (`make_device_exclusive`);
    /// [`Invalidation::owner`] says for whom. A device that raised it itself skips it (its
    /// own mapping of the page is what the exclusive entry is for).
    Exclusive,
    /// Anything else: protection changes, clearing, splitting, exclusive access...
    Other,
}

/// One invalidation, as passed to [`Invalidate::invalidate`].
pub struct Invalidation<'a> {
    raw: &'a ffi::mmu_notifier_range,
}

impl Invalidation<'_> {
    /// First byte of the range whose CPU mappings change.
    pub fn start(&self) -> usize {
        self.raw.start
    }

    /// End (exclusive) of the range.
    pub fn end(&self) -> usize {
        self.raw.end
    }

    /// Why it changes.
    pub fn event(&self) -> Event {
        match self.raw.event {
            ffi::mmu_notifier_event_MMU_NOTIFY_UNMAP => Event::Unmap,
            ffi::mmu_notifier_event_MMU_NOTIFY_MIGRATE => Event::Migrate,
            ffi::mmu_notifier_event_MMU_NOTIFY_EXCLUSIVE => Event::Exclusive,
            _ => Event::Other,
        }
    }

    /// Whether the invalidation comes from a migration or an exclusive access by `owner`.
    ///
    /// A migration's owner is its pagemap's, which a whole interconnect group shares: a
    /// device that skips the migrations it "owns" would also skip its peers' and keep stale
    /// mappings of their pages. Skip only invalidations raised with a cookie of the device's
    /// own (as vgpu does for `make_device_exclusive`).
    pub fn is_owned_by(&self, owner: Owner) -> bool {
        core::ptr::eq(self.raw.owner, owner.as_ptr())
    }

    /// Whether the callback may sleep; if not, it must not block and may fail.
    pub fn blockable(&self) -> bool {
        // SAFETY: `raw` is the valid range of an invalidation in progress.
        unsafe { ffi::svm_mmu_notifier_range_blockable(self.raw) }
    }
}

/// What a notifier's owner does when part of its range changes.
pub trait Invalidate: Send + Sync + Sized {
    /// Called before the CPU page tables of `range` change. The implementation takes the lock
    /// its range faults check [`Notifier::read_retry`] under, calls [`Notifier::set_seq`] with
    /// `cur_seq` and drops every device mapping of the range. Returns `false` only if
    /// `range.blockable()` is false and the lock could not be taken without blocking.
    fn invalidate(notifier: &Notifier<Self>, range: &Invalidation<'_>, cur_seq: usize) -> bool;
}

/// An interval notifier over `[start, start + length)` of one address space, with its
/// owner's data.
///
/// # Invariants
///
/// `raw` is inserted into the notifiers of the mm it was created for from the end of the
/// initialiser until drop; the mm stays allocated (grabbed by the notifier) meanwhile.
#[pin_data(PinnedDrop)]
pub struct Notifier<T: Invalidate> {
    #[pin]
    raw: Opaque<ffi::mmu_interval_notifier>,
    #[pin]
    data: T,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: The C notifier is used from any thread by design; `T` is `Send + Sync`.
unsafe impl<T: Invalidate> Send for Notifier<T> {}
// SAFETY: As above; `&self` methods only read the sequence or call thread-safe C functions.
unsafe impl<T: Invalidate> Sync for Notifier<T> {}

impl<T: Invalidate> Notifier<T> {
    const OPS: ffi::mmu_interval_notifier_ops = ffi::mmu_interval_notifier_ops {
        invalidate: Some(Self::invalidate_callback),
        invalidate_start: None,
        invalidate_finish: None,
    };

    /// Watches `[start, start + length)` of `mm` (page-aligned; the whole address space is
    /// `0, usize::MAX & PAGE_MASK`).
    pub fn new<'a>(
        mm: &'a MmWithUser,
        start: usize,
        length: usize,
        data: impl PinInit<T, Error> + 'a,
    ) -> impl PinInit<Self, Error> + 'a
    where
        T: 'a,
    {
        // `data` is initialised first: the notifier may call back as soon as it is inserted.
        try_pin_init!(Self {
            data <- data,
            _pin: PhantomPinned,
            raw <- Opaque::try_ffi_init(move |slot: *mut ffi::mmu_interval_notifier| {
                // INVARIANT: On success the notifier is inserted.
                // `slot` is pinned, removed in drop before it is freed; `OPS` is a promoted
                // constant; `mm` has users (`MmWithUser`), as inserting a notifier requires.
                // SAFETY: As above.
                to_result(unsafe {
                    ffi::mmu_interval_notifier_insert(
                        slot,
                        mm.as_raw(),
                        start,
                        length,
                        &Self::OPS,
                    )
                })
            }),
        })
    }

    /// The owner's data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The mm this notifier watches.
    pub fn mm(&self) -> &Mm {
        // SAFETY: By the type invariant the notifier holds a grab on its mm until drop.
        unsafe { Mm::from_raw((*self.raw.get()).mm) }
    }

    pub(crate) fn as_raw(&self) -> *mut ffi::mmu_interval_notifier {
        self.raw.get()
    }

    /// Starts a read side: returns the sequence a range fault checks with
    /// [`Self::read_retry`] before it uses what it found. May sleep until a running
    /// invalidation of this notifier is over.
    pub fn read_begin(&self) -> usize {
        // SAFETY: The notifier is inserted (type invariant).
        unsafe { ffi::mmu_interval_read_begin(self.raw.get()) as usize }
    }

    /// Whether an invalidation started since `seq` was read. Call it under the same lock that
    /// [`Invalidate::invalidate`] takes; if `false`, what the fault found stays valid until
    /// that lock is dropped.
    pub fn read_retry(&self, seq: usize) -> bool {
        // SAFETY: The notifier is inserted (type invariant).
        unsafe { ffi::svm_mmu_interval_read_retry(self.raw.get(), seq) }
    }

    /// Records the sequence of the invalidation in progress; only from
    /// [`Invalidate::invalidate`], under the owner's lock.
    pub fn set_seq(&self, cur_seq: usize) {
        // SAFETY: The notifier is inserted (type invariant).
        unsafe { ffi::svm_mmu_interval_set_seq(self.raw.get(), cur_seq) }
    }

    /// The C callback of `OPS`.
    ///
    /// # Safety
    ///
    /// Called by the core mm only, for a notifier inserted with `OPS`, with a valid range.
    unsafe extern "C" fn invalidate_callback(
        mni: *mut ffi::mmu_interval_notifier,
        range: *const ffi::mmu_notifier_range,
        cur_seq: kernel::ffi::c_ulong,
    ) -> bool {
        // SAFETY: `mni` is the `raw` field of a live `Notifier<T>`: only those are inserted
        // with `Self::OPS`, and they are removed before they are freed.
        let this = unsafe { &*kernel::container_of!(Opaque::cast_from(mni), Self, raw) };
        // SAFETY: The core passes a valid range for the duration of the callback.
        let raw = unsafe { &*range };
        T::invalidate(this, &Invalidation { raw }, cur_seq)
    }
}

#[pinned_drop]
impl<T: Invalidate> PinnedDrop for Notifier<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Inserted (type invariant); this waits for running invalidations to end.
        unsafe { ffi::mmu_interval_notifier_remove(self.raw.get()) };
    }
}
