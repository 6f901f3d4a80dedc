// SPDX-License-Identifier: GPL-2.0

//! Eviction: every page of an allocation back to system memory, found by frame number, without a
//! VMA.

use super::*;
use crate::pending::task::sleep_killable;

/// Moves every page of `devmem` still in device memory back to system memory, without a VMA
/// (the provider needs its memory back, or is going away); takes the owner's mmap lock for
/// reading while the owner's address space lives, so it must not be called from reclaim or
/// with that lock held. Needs no address space: the pages are found by frame number and unmapped wherever they are mapped
/// (after a fork, in a child whose parent has exited). Retries while pages race with faults
/// or migrations, a bounded number of times: `EBUSY` if some page stays pinned, `EINTR` on a
/// fatal signal, `ENOMEM` if no memory can be had for the data. `Ok(true)` once every page
/// is back and the provider's `release` has run (waited for, killably, `EBUSY` after 10 s);
/// `Ok(false)` if no migration has claimed the allocation yet (it holds no data). The caller
/// holds no lock (the wait needs the crate's destroy queue and the owner's mmap lock).
pub fn evict_to_ram(devmem: &Arc<Devmem>) -> Result<bool> {
    evict(devmem, Waits::Block)
}

/// As [`evict_to_ram`], for a caller that may hold locks which the migration placing the
/// allocation, or a holder of the owner's mmap lock, waits behind (a memory manager evicting
/// under a buffer object's reservation, maybe from a thread that holds the mmap lock): `EBUSY`
/// instead of waiting for that migration or for the mmap lock, and for an allocation no
/// migration has finished placing (claimed or not: its pages may still come).
pub fn try_evict_to_ram(devmem: &Arc<Devmem>) -> Result<bool> {
    evict(devmem, Waits::NoWait)
}

/// Whether an eviction may wait for a migration and for the owner's mmap lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waits {
    Block,
    NoWait,
}

fn evict(devmem: &Arc<Devmem>, waits: Waits) -> Result<bool> {
    const TRIES: usize = 8;
    let npages = devmem.npages();
    if waits == Waits::NoWait && !(devmem.is_claimed() && devmem.is_populated()) {
        return Err(EBUSY);
    }
    if !devmem.is_claimed() {
        // No migration has placed a page in it (yet): nothing to evict.
        return Ok(false);
    }
    // The migration placing the allocation's pages may still run (an allocation is visible
    // to its provider before): wait for it, killably and holding nothing. Its work is bounded
    // by the allocation's size; so is this wait.
    wait_until(POPULATE_WAIT_MS, || devmem.is_populated())?;
    let mut passes = 0;
    for pass in 0..TRIES {
        if devmem.is_detached() {
            break;
        }
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        if pass > 0 {
            // Pages that stayed are locked by a fault or a migration (a fault may be waiting
            // out the timeslice): give it time rather than retrying at once.
            let wait = devmem.timeslice_left_ms().clamp(1, 10);
            sleep_killable(wait);
        }
        let mut pfns = PfnArrays::new(npages)?;
        let mut batch = CopyBatch::new(npages)?;
        // Keep the address space, if it still has users, from being torn down meanwhile (its
        // last user reference is never dropped here but from a work item), and its mappings
        // from being unmapped: `migrate_device_finalize` walks the pages' `anon_vma`s, which
        // the core (7.3) does not hold across the migration, so a racing munmap could free
        // one under it (seen with KASAN). Pages a fork left in a child's address space after
        // the owner exited have no such protection (noted in the README).
        let user = devmem
            .mm()
            .and_then(|mm| mm.mmget_not_zero())
            .map(MmWithUser::into_mmput_async);
        let _mmap = match (user.as_deref(), waits) {
            (None, _) => None,
            (Some(user), Waits::Block) => Some(user.mmap_read_lock()),
            (Some(user), Waits::NoWait) => Some(user.mmap_read_trylock().ok_or(EBUSY)?),
        };
        // The provider's pfns are the allocation's only while `release` has not run, and a
        // page is ours to lock only once the migration placing it is over (a page being
        // initialised for it is unlocked for a moment with stale zone-device data).
        let held = devmem.lock_pfns();
        if devmem.is_detached() {
            break;
        }
        passes += 1;
        let mut migration = devmem.collect_for_eviction(&held, &mut pfns)?;
        skip_retired(&mut migration.pfns());
        let copied = copy_back(
            &mut migration.pfns(),
            &mut batch,
            None,
            0,
            Which::Allocation(devmem),
            Direction::Eviction,
            Folios::Huge,
        );
        if copied.is_ok() {
            migration.commit(|pfns| count_moved_back(pfns, Direction::Eviction));
        } else {
            // Abandons every destination: nothing moves, the data stays in device memory.
            drop(migration);
        }
        copied?;
    }
    if devmem.is_detached() {
        if passes > 0 {
            devmem
                .stats()
                .evictions
                .fetch_add(1, kernel::sync::atomic::Relaxed);
        }
        // The provider has its memory back when this returns: its release (a short work
        // item, queued when the allocation was detached) has run.
        wait_until(RELEASE_WAIT_MS, || devmem.is_released())?;
        Ok(true)
    } else {
        Err(EBUSY)
    }
}

/// Longest an eviction waits for the migration placing its allocation's pages.
const POPULATE_WAIT_MS: u32 = 30_000;

/// Longest an eviction waits for the provider's release of the evicted allocation.
const RELEASE_WAIT_MS: u32 = 10_000;

/// Waits until `done()`, sleeping killably, at most `ms` milliseconds: `EINTR` on a fatal
/// signal, `EBUSY` when the time is up. Takes no lock; the caller must hold none that `done`
/// waits on.
fn wait_until(ms: u32, done: impl Fn() -> bool) -> Result {
    let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
    while !done() {
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        if start.elapsed().as_millis() > i64::from(ms) {
            return Err(EBUSY);
        }
        sleep_killable(1);
    }
    Ok(())
}

/// Leaves out of an eviction the folios `migrate_device_pfns` took that are retired (their
/// data already went to system memory; the last reference is on its way), as the C
/// `drm_pagemap_skip_retired_pages`: their stale data is not copied again. They stay in the
/// arrays, not migrating, so that finalize restores whatever the core unmapped (nothing, as a
/// retired folio is mapped nowhere; but that is the core's business to check).
fn skip_retired(pfns: &mut Pfns<'_>) {
    let mut i = 0;
    while i < pfns.len() {
        let s = pfns.src()[i];
        let n = span(s);
        if s & MIGRATE != 0 && pfns.is_retired(i) {
            pfns.keep(i);
        }
        i += n;
    }
}
