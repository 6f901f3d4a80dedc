// SPDX-License-Identifier: GPL-2.0

//! The CPU-fault path: a CPU touching a device page moves the faulting allocation's pages around
//! it back to system memory.

use super::*;

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
///
/// # Safety
///
/// `vmf` is a CPU fault on a locked, referenced device page of a region with our ops, with
/// the mmap or VMA lock held.
pub(crate) unsafe fn cpu_fault(vmf: *mut ffi::vm_fault) -> Result<FaultServed> {
    // SAFETY: Per the contract.
    let (page, vma, address) = unsafe {
        (
            (*vmf).page,
            (*vmf).__bindgen_anon_1.vma,
            (*vmf).__bindgen_anon_1.address,
        )
    };
    // SAFETY: The faulting page is ours and referenced for the duration of the fault.
    let devmem = unsafe { Zdd::of_page(page) }.devmem().clone();
    let left = devmem.timeslice_left_ms();
    // SAFETY: Per the contract.
    let pmd_fault = unsafe { (*vmf).pte }.is_null();
    // A PMD fault does not wait: the folio may be split while unlocked, and the core's PMD
    // fault path keeps using the folio it locked (migrated now instead, as C does not wait).
    if left > 0 && !pmd_fault && !fatal_signal_pending() {
        devmem
            .stats()
            .timeslice_waits
            .fetch_add(1, kernel::sync::atomic::Relaxed);
        // SAFETY: Per the contract `vmf` is a fault in progress.
        let retry = unsafe { ffi::svm_fault_may_retry(vmf) };
        if retry {
            // SAFETY: The fault's lock is held (contract); after this `vma` is not used.
            unsafe { ffi::svm_release_fault_lock(vmf) };
        }
        // SAFETY: The page is locked by the fault handler, which unlocks it after we return:
        // it is relocked below; the handler's reference keeps it alive meanwhile.
        unsafe {
            ffi::svm_unlock_page(page);
            ffi::svm_sleep_killable(left);
            ffi::svm_lock_page(page);
        }
        if retry {
            return Ok(FaultServed::Retry);
        }
    }
    // SAFETY: The VMA is valid under the caller's lock for the duration of the fault.
    let vma_ref = unsafe { VmaRef::from_raw(vma) };
    let (vm_start, vm_end) = (vma_ref.start(), vma_ref.end());
    let address = address & !(PAGE_SIZE - 1);
    // The allocation's range, clipped to the VMA; just the page if it moved since.
    let (mut start, mut end) = devmem.va_range();
    if address < start || address >= end {
        (start, end) = (address, address + PAGE_SIZE);
    }
    // A PMD-mapped folio moves whole: cover its aligned range.
    // SAFETY: Per the contract.
    let huge = unsafe { (*vmf).pte }.is_null();
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
    // SAFETY: The faulting page is valid (contract).
    if !huge && unsafe { ffi::svm_page_in_large_folio(page) } {
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
    // SAFETY: The caller holds the lock `vma` needs; `page` is the locked faulting page, at
    // `address`, inside `[start, end)`, which is at most a chunk.
    unsafe {
        vma_to_ram(
            &mut bufs,
            vma,
            start,
            end,
            owner,
            Some(&*devmem),
            page,
            Direction::CpuFault,
            if huge { Folios::Huge } else { Folios::Base },
        )
    }?;
    devmem
        .stats()
        .cpu_faults
        .fetch_add(1, kernel::sync::atomic::Relaxed);
    Ok(FaultServed::Done)
}
