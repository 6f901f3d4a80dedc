// SPDX-License-Identifier: GPL-2.0

//! A workqueue owned by its creator and drained when dropped.
//!
//! C header: [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h)

use core::ops::Deref;
use core::ptr::NonNull;

use kernel::prelude::*;
use kernel::workqueue::Queue;

use crate::ffi;

/// A workqueue allocated with `alloc_workqueue` and destroyed, after draining every queued
/// item, when dropped.
///
/// # Invariants
///
/// `self.0` points to a workqueue this object allocated and has not destroyed.
pub struct OwnedQueue(NonNull<ffi::workqueue_struct>);

/// How an [`OwnedQueue`] runs its items.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Order {
    /// One item at a time, in queueing order (a DMA engine's submission queue).
    Ordered,
    /// Unbound, items in parallel.
    Unordered,
}

impl OwnedQueue {
    /// Allocates a workqueue named `name`, running its items as `order` says. It can make
    /// progress under memory reclaim.
    pub fn new(name: &CStr, order: Order) -> Result<Self> {
        let ordered = order == Order::Ordered;
        // SAFETY: `name` is a valid NUL-terminated string; the workqueue copies it.
        let ptr = unsafe { ffi::svm_alloc_workqueue(name.as_char_ptr(), ordered) };
        // INVARIANT: A non-null return is a freshly allocated workqueue.
        Ok(Self(NonNull::new(ptr).ok_or(ENOMEM)?))
    }
}

impl Deref for OwnedQueue {
    type Target = Queue;

    fn deref(&self) -> &Queue {
        // SAFETY: By the type invariant the workqueue is alive until `drop`, which cannot run
        // while the returned reference borrows `self`.
        unsafe { Queue::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the workqueue is alive; `destroy_workqueue` drains it
        // first, so no item runs on it after this returns.
        unsafe { ffi::destroy_workqueue(self.0.as_ptr()) };
    }
}

// SAFETY: Workqueues may be used and destroyed from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: Queueing work is thread-safe.
unsafe impl Sync for OwnedQueue {}
