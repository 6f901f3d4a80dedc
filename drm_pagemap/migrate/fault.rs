// SPDX-License-Identifier: GPL-2.0

//! The CPU-fault path: a CPU touching a device page moves the faulting allocation's pages around
//! it back to system memory.

use super::*;
use crate::sys::fault::VmFault;

/// How a CPU fault on a device page was served.
pub(crate) enum FaultServed {
    /// The page is in system memory now (or moved away meanwhile): the access is retried.
    Done,
    /// The fault's lock was dropped (as `VM_FAULT_RETRY` requires) to wait out a timeslice.
    Retry,
}

/// Serves a CPU fault on a device page: moves the faulting allocation's pages (and no other
/// allocation's) around the faulting address back to system memory, at most one chunk of
/// [`CHUNK_PAGES`] aligned pages.
///
/// If the allocation is still within its timeslice, the fault first waits, killably, until
/// it ends (at most [`crate::devmem::MAX_TIMESLICE_MS`]), with the page unlocked so that no
/// other fault spins on it: when the fault may be retried, with its lock dropped too, and the
/// fault is then retried; otherwise (a remote access, such as another device's range fault),
/// it migrates after the wait. Takes no lock of ours.
pub(crate) fn cpu_fault(fault: &mut VmFault<'_>) -> Result<FaultServed> {
    let address = fault.address();
    let devmem = fault.zdd().devmem().clone();
    let left = devmem.timeslice_left_ms();
    let huge = fault.is_pmd();
    // A PMD fault does not wait: the folio may be split while unlocked, and the core's PMD
    // fault path keeps using the folio it locked (migrated now instead, as C does not wait).
    if left > 0 && !huge && !fatal_signal_pending() {
        devmem
            .stats()
            .timeslice_waits
            .fetch_add(1, kernel::sync::atomic::Relaxed);
        if fault.wait_unlocked(left) {
            return Ok(FaultServed::Retry);
        }
    }
    // The lock is still held: it was dropped only for a retry.
    let vma = fault.vma().ok_or(EFAULT)?;
    let (vm_start, vm_end) = (vma.start(), vma.end());
    // The allocation's range, clipped to the VMA; just the page if it moved since.
    let (mut start, mut end) = devmem.va_range();
    if address < start || address >= end {
        (start, end) = (address, address + PAGE_SIZE);
    }
    // A PMD-mapped folio moves whole: cover its aligned range.
    if huge {
        let size = huge_nr() * PAGE_SIZE;
        let base = address & !(size - 1);
        (start, end) = (start.min(base), end.max(base + size));
    }
    // One chunk around the faulting address: a fault's work and latency are bounded, and an
    // error elsewhere in the allocation never fails this access.
    let chunk = CHUNK_PAGES * PAGE_SIZE;
    let window = address & !(chunk - 1);
    let (mut start, mut end) = (
        start.max(vm_start).max(window),
        end.min(vm_end).min(window.saturating_add(chunk)),
    );
    if !huge && fault.in_large_folio() {
        // A PTE-mapped page of a huge device folio: the core splits the folio while
        // collecting, and 7.3's migrate_vma_collect_pmd() keeps treating the old head as the
        // (locked) faulting folio after the split, migrating it unlocked. With just the
        // faulting page in the range the head is never collected: this fault splits the folio
        // and moves nothing, the retried fault moves the page (see patches/).
        (start, end) = (address, address + PAGE_SIZE);
    }
    let owner = devmem.pagemap().region().owner();
    let mut bufs = BackBuffers::new((end - start) / PAGE_SIZE)?;
    // A page mapped by a PTE may belong to a huge folio that is not fully split yet: move
    // base pages then, as the folio order cannot be relied on (the C test_hmm does the same).
    vma_to_ram(
        &mut bufs,
        vma,
        PageRange::new(start, end)?,
        owner,
        Which::Allocation(&devmem),
        Some(&*fault),
        Direction::CpuFault,
        if huge { Folios::Huge } else { Folios::Base },
    )?;
    devmem
        .stats()
        .cpu_faults
        .fetch_add(1, kernel::sync::atomic::Relaxed);
    Ok(FaultServed::Done)
}
