// SPDX-License-Identifier: GPL-2.0

//! The crate's queue for work that must not run where it is triggered: destroying a pagemap
//! whose last reference went in atomic context, releasing an allocation whose last device page
//! was freed under a page-table lock. One unordered workqueue, alive while the module is.

use core::sync::atomic::AtomicPtr;
use core::sync::atomic::Ordering as AtomicOrdering;

use kernel::prelude::*;
use kernel::workqueue::Queue;

use crate::pending::workqueue::Order;
use crate::pending::workqueue::OwnedQueue;

/// The queue, set while this module is loaded.
static QUEUE: AtomicPtr<OwnedQueue> = AtomicPtr::new(core::ptr::null_mut());

/// Sets up the queue; called once from module init.
pub(crate) fn init() -> Result {
    let queue = KBox::new(
        OwnedQueue::new(c"drm_pagemap_destroy", Order::Unordered)?,
        GFP_KERNEL,
    )?;
    QUEUE.store(KBox::into_raw(queue), AtomicOrdering::Release);
    Ok(())
}

/// Drains and frees the queue; called once from module exit.
pub(crate) fn fini() {
    let ptr = QUEUE.swap(core::ptr::null_mut(), AtomicOrdering::AcqRel);
    if !ptr.is_null() {
        // SAFETY: `ptr` came from `KBox::into_raw` in `init` and was swapped out,
        // so this is its only owner. Dropping it drains every pending destroy.
        drop(unsafe { KBox::from_raw(ptr) });
    }
}

/// The queue.
pub(crate) fn queue() -> &'static Queue {
    let ptr = QUEUE.load(AtomicOrdering::Acquire);
    // The queue is set in module init, before any pagemap exists, and freed in module exit,
    // which cannot run while a provider module (a user of this one) still holds pagemaps.
    // SAFETY: So the queue is alive whenever a pagemap or allocation is being released.
    unsafe { &*ptr }
}
