// SPDX-License-Identifier: GPL-2.0

//! The allocations of one device memory that may hold data, for the day the device goes: it
//! revokes (no allocation is listed any more), then evicts each listed one back to system
//! memory. A provider lists an allocation before a migration accepts it and takes it off in
//! its release op.

use drm_pagemap::devmem::Devmem;
use drm_pagemap::migrate;
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::rbtree::RBTreeNodeReservation;
use kernel::sync::atomic::Acquire;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Full;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::sync::Mutex;

/// The listed allocations of a device memory, by id (a release takes its entry out in
/// O(log n): a process can make tens of thousands of small allocations).
#[pin_data]
pub struct Allocations {
    next_id: Atomic<u64>,
    /// Non-zero once revoked: nothing is listed any more.
    revoked: Atomic<u32>,
    #[pin]
    list: Mutex<RBTree<u64, Arc<Devmem>>>,
}

impl Allocations {
    /// An empty list, not revoked.
    // Made here, never inlined: the lock's class (its key and name) must be this module's
    // only, not a copy in each caller.
    #[inline(never)]
    pub fn new() -> Result<Pin<KBox<Self>>> {
        KBox::pin_init(
            pin_init!(Self {
                next_id: Atomic::new(0),
                revoked: Atomic::new(0),
                list <- kernel::new_mutex!(RBTree::new(), "Allocations::list"),
            }),
            GFP_KERNEL,
        )
    }

    /// An id for an allocation about to be listed, never given before.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    /// Lists `devmem` under `id`, before the migration accepts it: from then on its release op
    /// ([`Allocations::unlist`]) may run at any time. `ENODEV` (and not listed) once revoked:
    /// an unplug revokes, then evicts what is listed, so either it sees this allocation or
    /// this sees it revoked (the list's lock orders the two). The lock is held just for the
    /// update, never across a migration.
    pub fn list(&self, id: u64, devmem: &Arc<Devmem>) -> Result {
        let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
        self.list.lock().insert(node.into_node(id, devmem.clone()));
        if self.is_revoked() {
            self.unlist(id);
            return Err(ENODEV);
        }
        Ok(())
    }

    /// Takes allocation `id` off the list (its release op); the list's reference is dropped
    /// outside the lock.
    pub fn unlist(&self, id: u64) {
        let gone = self.list.lock().remove(&id);
        drop(gone);
    }

    /// How many allocations are listed.
    pub fn len(&self) -> usize {
        self.list.lock().iter().count()
    }

    /// Whether no allocation is listed.
    pub fn is_empty(&self) -> bool {
        self.list.lock().is_empty()
    }

    /// Lists nothing from now on. Full: ordered before what the caller reads next (whether a
    /// migration claimed an allocation, in [`Allocations::evict_all`]), as a provider that
    /// refuses copies into a revoked memory reads this after the migration's claim. Either
    /// the eviction sees the allocation claimed, or the copy sees the memory revoked.
    pub fn revoke(&self) {
        self.revoked.xchg(1, Full);
    }

    /// Whether [`Allocations::revoke`] was called.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Acquire) != 0
    }

    /// Moves the data of every listed allocation back to system memory; returns how many
    /// allocations were evicted.
    ///
    /// An allocation that cannot be evicted (its copy failed, a page stayed pinned, ...) keeps
    /// its data in device memory and does not stop the others: every allocation is tried,
    /// then the first error is returned. `stop()`, asked before each allocation, ends the walk
    /// with the error it gives (unless an error came first); what was evicted stays so.
    pub fn evict_all(&self, mut stop: impl FnMut() -> Option<Error>) -> Result<u32> {
        // As many entries as allocations, up to one per device page: may be large, so
        // virtually contiguous if it must.
        let snapshot = {
            let list = self.list.lock();
            let mut v = KVVec::with_capacity(list.values().count(), GFP_KERNEL)?;
            // Bounded by the listed allocations.
            for devmem in list.values() {
                v.push(devmem.clone(), GFP_KERNEL)?;
            }
            v
        };
        let mut evicted = 0;
        let mut first_err = None;
        // Bounded by the snapshot, taken once (and by `stop`).
        for devmem in snapshot.iter() {
            if let Some(e) = stop() {
                return Err(first_err.unwrap_or(e));
            }
            if devmem.is_detached() {
                continue;
            }
            match migrate::evict_to_ram(devmem) {
                Ok(true) => evicted += 1,
                // Not yet claimed by a migration: holds no data.
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(evicted),
        }
    }
}
