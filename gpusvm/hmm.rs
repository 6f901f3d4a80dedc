// SPDX-License-Identifier: GPL-2.0

//! Range faults: what a process's CPU page tables map over a range, optionally faulting pages
//! in first (`hmm_range_fault`), checked against an interval notifier so that a driver never
//! uses a stale answer.
//!
//! C header: [`include/linux/hmm.h`](srctree/include/linux/hmm.h)

use kernel::mm::MmWithUser;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::time::Instant;
use kernel::time::Monotonic;

use crate::ffi;
use crate::notifier::Invalidate;
use crate::notifier::Notifier;
use drm_pagemap::owner::Owner;
use drm_pagemap::range::PageRange;

/// How long a range fault keeps retrying against concurrent invalidations before it gives up
/// with `EBUSY` (the C `HMM_RANGE_DEFAULT_TIMEOUT`).
const TIMEOUT_MS: i64 = 1000;

/// How many times a range fault retries at most, however fast the retries come, before it
/// gives up with `EBUSY`.
const MAX_RETRIES: u32 = 10_000;

/// Page order of a PMD mapping (2 MiB on x86).
const PMD_ORDER: u32 = 9;

pub use drm_pagemap::pending::task::fatal_signal_pending;

const VALID: usize = ffi::hmm_pfn_flags_HMM_PFN_VALID;
const WRITE: usize = ffi::hmm_pfn_flags_HMM_PFN_WRITE;
const ERROR: usize = ffi::hmm_pfn_flags_HMM_PFN_ERROR;

/// What a range fault does with pages the CPU does not map (well enough).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: report what is mapped (a snapshot).
    None,
    /// Fault in every page readable.
    Read,
    /// Fault in every page writable (breaking copy-on-write).
    Write,
}

/// One page of a range fault's answer (an HMM pfn).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(transparent)]
pub struct HmmPfn(usize);

impl HmmPfn {
    /// A valid entry for page frame `pfn`, writable if `write`: what a range fault would
    /// report for a page the caller mapped by other means (say, exclusively).
    ///
    /// # Safety
    ///
    /// `pfn` names a page with a `struct page` ([`HmmPfn::is_device_private`] and
    /// [`HmmPfn::page`] read it), mapped by the caller as a range fault would have reported it.
    pub unsafe fn mapped(pfn: usize, write: bool) -> Self {
        Self(pfn | VALID | if write { WRITE } else { 0 })
    }

    /// The raw HMM pfn.
    pub fn raw(self) -> usize {
        self.0
    }

    /// Whether a page is mapped.
    pub fn is_valid(self) -> bool {
        self.0 & VALID != 0
    }

    /// Whether it is mapped writable.
    pub fn is_write(self) -> bool {
        self.0 & WRITE != 0
    }

    /// Whether the address cannot be accessed at all (`PROT_NONE`, no VMA) in a snapshot.
    pub fn is_error(self) -> bool {
        self.0 & ERROR != 0
    }

    /// The page frame number; meaningful if valid.
    pub fn pfn(self) -> usize {
        // SAFETY: Pure computation.
        unsafe { ffi::svm_hmm_pfn_to_pfn(self.0) }
    }

    /// Order of the CPU mapping: 0 for a PTE, 9 for a 2 MiB PMD on x86.
    pub fn map_order(self) -> u32 {
        // SAFETY: Pure computation.
        unsafe { ffi::svm_hmm_pfn_to_map_order(self.0) }
    }

    /// Whether the page is the shared zero page.
    pub fn is_zero_page(self) -> bool {
        // SAFETY: Pure computation.
        self.is_valid() && unsafe { ffi::svm_pfn_is_zero(self.pfn()) }
    }

    /// Whether the page is device-private memory (of the fault's owner).
    ///
    /// # Safety
    ///
    /// The entry is current: read under the lock [`fault_range`] returned with it (or, for
    /// [`HmmPfn::mapped`], while the caller keeps the page mapped), so that its `struct page`
    /// is alive (a device-private region's pages go with the region).
    pub unsafe fn is_device_private(self) -> bool {
        // SAFETY: A valid, current HMM pfn names a live `struct page` (contract).
        self.is_valid() && unsafe { ffi::svm_pfn_is_device_private(self.pfn()) }
    }

    /// Whether a write fault left this page read-only because it is device-private memory of
    /// the fault's own owner: `hmm_range_fault` reports those as they are and never
    /// write-faults them (copy-on-write after fork, `mprotect`). Retrying the fault does not
    /// help; the caller migrates the page to system memory first (a write fault then breaks
    /// the sharing or fails with `EPERM`).
    ///
    /// # Safety
    ///
    /// As [`HmmPfn::is_device_private`].
    pub unsafe fn needs_migration_for_write(self) -> bool {
        // SAFETY: Per this function's contract.
        self.is_valid() && !self.is_write() && unsafe { self.is_device_private() }
    }

    /// The entry of the page at `addr` if this one reports a PMD-mapped device-private folio:
    /// the folio's head plus the page's offset in the PMD (see `fault_range`).
    pub(crate) fn fix_device_pmd(self, addr: usize) -> Self {
        if !self.is_valid() || self.map_order() != PMD_ORDER {
            return self;
        }
        // A valid HMM pfn names a page with a `struct page`; the caller keeps the mapping, and
        // so the folio, from changing (notifier sequence checked under the owner's lock).
        // SAFETY: As above.
        Self(unsafe { ffi::svm_hmm_pfn_fix_device_pmd(self.0, addr) })
    }

    /// The `struct page` of a valid pfn.
    ///
    /// # Safety
    ///
    /// As [`HmmPfn::is_device_private`]; the page may be used only while that holds.
    pub unsafe fn page(self) -> Option<core::ptr::NonNull<kernel::bindings::page>> {
        if !self.is_valid() {
            return None;
        }
        // SAFETY: A valid HMM pfn names a page with a `struct page`.
        core::ptr::NonNull::new(unsafe { ffi::svm_pfn_page(self.pfn()) }.cast())
    }
}

/// Finds (and with `fault` other than [`Fault::None`], faults in) what `notifier`'s mm maps
/// over `pfns.len()` pages from `start`, then takes the driver's lock with `lock` and returns
/// its guard if no invalidation raced with the fault; retries otherwise. `mm` is a user
/// reference on the notifier's mm (`EINVAL` if it is another).
///
/// Device-private pages of `owner` are reported as they are, read-only ones even by a write
/// fault (see [`HmmPfn::needs_migration_for_write`]); those of other owners are migrated to
/// system memory by a fault, or reported not mapped by a snapshot. A page of a PMD-mapped
/// device-private folio is reported as itself even where the core mm reports the folio's
/// head (`hmm_vma_handle_absent_pmd()` in 7.3 forgets the offset of a start inside the PMD).
/// Errors are those of `hmm_range_fault`: `EFAULT` for an inaccessible address, `EPERM` for a
/// write to a read-only mapping; `EBUSY` if invalidations kept racing for a second (or
/// `MAX_RETRIES` times); `EINTR` if the task was killed meanwhile.
///
/// # Safety
///
/// `lock` takes the lock under which `T`'s [`Invalidate::invalidate`] calls
/// [`Notifier::set_seq`] with the invalidation's sequence (before returning `true`), and
/// nothing else calls `set_seq` on `notifier`: only then does a clean `read_retry` under the
/// returned guard prove the answer current, which this function relies on to read the
/// folios of device pages, and the caller on to use the pages.
pub unsafe fn fault_range<T: Invalidate, G>(
    notifier: &Notifier<T>,
    mm: &MmWithUser,
    start: usize,
    pfns: &mut [HmmPfn],
    fault: Fault,
    owner: Option<Owner>,
    lock: impl Fn() -> G,
) -> Result<G> {
    let range = PageRange::with_pages(start, pfns.len())?;
    // The mmap lock taken below must be that of the address space the notifier watches.
    if !core::ptr::eq(mm.as_raw(), notifier.mm().as_raw()) {
        return Err(EINVAL);
    }
    let default_flags = match fault {
        Fault::None => 0,
        Fault::Read => VALID,
        Fault::Write => VALID | WRITE,
    };
    let begun = Instant::<Monotonic>::now();
    let mut retries = 0u32;
    loop {
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        if begun.elapsed().as_millis() > TIMEOUT_MS || retries >= MAX_RETRIES {
            return Err(EBUSY);
        }
        retries += 1;
        let seq = notifier.read_begin();
        let mut range = ffi::hmm_range {
            notifier: notifier.as_raw(),
            notifier_seq: seq,
            start: range.start(),
            end: range.end(),
            hmm_pfns: pfns.as_mut_ptr().cast(),
            default_flags,
            pfn_flags_mask: 0,
            dev_private_owner: owner.map_or(core::ptr::null_mut(), Owner::as_ptr),
        };
        let ret = {
            let _mmap = mm.mmap_read_lock();
            // SAFETY: `range` describes `pfns` (an `HmmPfn` is an `unsigned long`) and the
            // notifier's mm, whose mmap lock is held.
            unsafe { ffi::hmm_range_fault(&mut range) }
        };
        if ret == EBUSY.to_errno() {
            continue;
        }
        kernel::error::to_result(ret)?;
        let guard = lock();
        if notifier.read_retry(seq) {
            drop(guard);
            continue;
        }
        for (i, pfn) in pfns.iter_mut().enumerate() {
            *pfn = pfn.fix_device_pmd(start + i * PAGE_SIZE);
        }
        return Ok(guard);
    }
}

/// A notifier's data for [`snapshot`]: the lock its range faults check under.
#[pin_data]
struct SnapshotLock {
    #[pin]
    lock: kernel::sync::Mutex<()>,
}

impl Invalidate for SnapshotLock {
    fn invalidate(
        notifier: &Notifier<Self>,
        range: &crate::notifier::Invalidation<'_>,
        cur_seq: usize,
    ) -> bool {
        let _guard = match range.blockable() {
            true => notifier.data().lock.lock(),
            false => match notifier.data().lock.try_lock() {
                Some(guard) => guard,
                None => return false,
            },
        };
        notifier.set_seq(cur_seq);
        true
    }
}

/// Pages one [`snapshot`] range fault covers at most.
const SNAPSHOT_BATCH: usize = 4096;

/// Calls `each(what, pages)` for every page of `range` of `mm`, in order, with what the CPU maps
/// there as a device with `owner` sees it (a snapshot: nothing is faulted in or moved): `None`
/// for nothing (no mapping, never touched, another owner's device page), else the page frame
/// and whether it is device-private memory (of `owner`'s group); a hole comes as one call for
/// all its pages, a mapped page as one call for itself. Time in proportion to the mapped part
/// of the range, memory bounded; `EINTR` on a fatal signal. `each` runs under the lock that
/// invalidations of the snapshot's notifier take: it must not allocate or sleep.
pub fn snapshot(
    mm: &MmWithUser,
    range: PageRange,
    owner: Option<Owner>,
    mut each: impl FnMut(Option<(usize, bool)>, usize),
) -> Result {
    let mut pfns = KVVec::from_elem(HmmPfn::default(), SNAPSHOT_BATCH, GFP_KERNEL)?;
    let n = KBox::pin_init(
        Notifier::new(
            mm,
            range.start(),
            range.end() - range.start(),
            try_pin_init!(SnapshotLock {
                lock <- kernel::new_mutex!((), "gpusvm::snapshot"),
            }),
        ),
        GFP_KERNEL,
    )?;
    let mut addr = range.start();
    // Each round covers a hole and a batch of mapped pages, or ends.
    while addr < range.end() {
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        // The next mapping at or after `addr`: what lies before it is a hole.
        let next = {
            let _mmap = mm.mmap_read_lock();
            let mut end = 0usize;
            // SAFETY: The mmap lock of `mm` is held.
            let start = unsafe { ffi::svm_next_vma(mm.as_raw(), addr, &mut end) };
            (start, end)
        };
        let (vstart, vend) = match next {
            (0, 0) => (range.end(), range.end()),
            (s, e) => (s.max(addr).min(range.end()), e.min(range.end())),
        };
        if vstart > addr {
            each(None, (vstart - addr) / PAGE_SIZE);
            addr = vstart;
        }
        if addr >= range.end() {
            break;
        }
        let count = ((vend - addr) / PAGE_SIZE).clamp(1, SNAPSHOT_BATCH);
        let batch = &mut pfns[..count];
        // SAFETY: `SnapshotLock::invalidate` calls `set_seq` under its mutex, and nothing else
        // calls it.
        let guard = unsafe {
            fault_range(&n, mm, addr, batch, Fault::None, owner, || {
                n.data().lock.lock()
            })
        }?;
        for p in batch.iter() {
            if !p.is_valid() {
                each(None, 1);
                continue;
            }
            // SAFETY: The answer was checked current under the lock, still held.
            let device = unsafe { p.is_device_private() };
            each(Some((p.pfn(), device)), 1);
        }
        drop(guard);
        addr += count * PAGE_SIZE;
    }
    Ok(())
}

/// Maps `len` bytes of private anonymous memory, readable and writable, into the address
/// space of the running KUnit test (`kunit_vm_mmap`); unmapped with it. For the KUnit tests of
/// drivers built on this crate, which need a real mm to fault.
#[cfg(CONFIG_KUNIT)]
pub fn kunit_mmap_anon(len: usize) -> Result<usize> {
    // SAFETY: Maps memory into the address space the current KUnit test's kthread gets for
    // it; `0` if there is no test running.
    let addr = unsafe { ffi::svm_kunit_mmap_anon(len) };
    if addr == 0 || addr > usize::MAX - len {
        return Err(ENOMEM);
    }
    Ok(addr)
}

/// A page the CPU maps for exclusive access by a device (for device atomics): until the
/// handle is dropped it is locked; after that, the CPU's next access to it revokes the
/// exclusivity, with an invalidation of the notifiers covering it.
pub struct ExclusivePage {
    folio: core::ptr::NonNull<ffi::folio>,
    pfn: usize,
}

impl ExclusivePage {
    /// Marks the page at `addr` of `mm` for exclusive device access, faulting it in writable
    /// first (`EFAULT`/`EPERM` as a write fault would fail; `EBUSY` if the page could not be
    /// locked). `owner` is passed to the invalidation this raises, so that the caller's
    /// notifier can recognise it. Takes the mmap lock for reading.
    pub fn new(mm: &MmWithUser, addr: usize, owner: Option<Owner>) -> Result<Self> {
        let mut folio = core::ptr::null_mut();
        let _mmap = mm.mmap_read_lock();
        // SAFETY: The mmap lock of `mm` is held; `folio` is written on success.
        let ret = unsafe {
            ffi::svm_make_device_exclusive(
                mm.as_raw(),
                addr,
                owner.map_or(core::ptr::null_mut(), Owner::as_ptr),
                &mut folio,
            )
        };
        if ret < 0 {
            return Err(Error::from_errno(ret as i32));
        }
        let folio = core::ptr::NonNull::new(folio).ok_or(EINVAL)?;
        Ok(Self {
            folio,
            pfn: ret as usize,
        })
    }

    /// The page's frame number.
    pub fn pfn(&self) -> usize {
        self.pfn
    }
}

impl Drop for ExclusivePage {
    fn drop(&mut self) {
        // SAFETY: `make_device_exclusive` returned the folio locked and referenced.
        unsafe { ffi::svm_folio_unlock_put(self.folio.as_ptr()) };
    }
}

#[kunit_tests(gpusvm_hmm)]
mod tests {
    use super::*;
    use crate::notifier::Event;
    use crate::notifier::Invalidation;
    use kernel::sync::atomic::Atomic;
    use kernel::sync::atomic::Relaxed;
    use kernel::sync::Mutex;

    const PAGES: usize = 16;

    /// Counts the invalidations of a notifier.
    #[pin_data]
    struct Seen {
        #[pin]
        lock: Mutex<()>,
        invalidations: Atomic<u32>,
        unmaps: Atomic<u32>,
    }

    impl Invalidate for Seen {
        fn invalidate(notifier: &Notifier<Self>, range: &Invalidation<'_>, cur_seq: usize) -> bool {
            let seen = notifier.data();
            let _guard = match range.blockable() {
                true => seen.lock.lock(),
                false => match seen.lock.try_lock() {
                    Some(guard) => guard,
                    None => return false,
                },
            };
            notifier.set_seq(cur_seq);
            seen.invalidations.fetch_add(1, Relaxed);
            if range.event() == Event::Unmap {
                seen.unmaps.fetch_add(1, Relaxed);
            }
            true
        }
    }

    /// [`fault_range`] on a `Seen` notifier with its lock.
    fn unsafe_fault_range<'a>(
        n: &'a Notifier<Seen>,
        mm: &MmWithUser,
        start: usize,
        pfns: &mut [HmmPfn],
        fault: Fault,
        owner: Option<Owner>,
        lock: impl Fn() -> kernel::sync::MutexGuard<'a, ()>,
    ) -> Result<kernel::sync::MutexGuard<'a, ()>> {
        // SAFETY: `Seen::invalidate` calls `set_seq` under `lock`'s mutex, and nothing else
        // calls it.
        unsafe { fault_range(n, mm, start, pfns, fault, owner, lock) }
    }

    fn seen() -> impl PinInit<Seen, Error> {
        try_pin_init!(Seen {
            lock <- kernel::new_mutex!(()),
            invalidations: Atomic::new(0),
            unmaps: Atomic::new(0),
        })
    }

    /// `PAGES` untouched pages of private anonymous memory in the test's own address space.
    fn mapped() -> Result<usize> {
        // SAFETY: Maps memory into the address space the test's kthread gets for it.
        let addr = unsafe { ffi::svm_kunit_mmap_anon(PAGES * PAGE_SIZE) };
        if addr == 0 || addr > usize::MAX - PAGE_SIZE {
            return Err(ENOMEM);
        }
        Ok(addr)
    }

    #[test]
    fn snapshot_read_write() -> Result {
        let addr = mapped()?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = KBox::pin_init(
            Notifier::new(mm, addr, PAGES * PAGE_SIZE, seen()),
            GFP_KERNEL,
        )?;
        let lock = || n.data().lock.lock();
        let mut pfns = [HmmPfn::default(); PAGES];

        // Untouched memory: a snapshot finds nothing mapped, and faults nothing in.
        drop(unsafe_fault_range(
            &n,
            mm,
            addr,
            &mut pfns,
            Fault::None,
            None,
            lock,
        )?);
        assert!(pfns.iter().all(|p| !p.is_valid() && !p.is_error()));

        // A read fault maps the shared zero page, read-only.
        drop(unsafe_fault_range(
            &n,
            mm,
            addr,
            &mut pfns,
            Fault::Read,
            None,
            lock,
        )?);
        assert!(pfns
            .iter()
            .all(|p| p.is_valid() && !p.is_write() && p.is_zero_page()));
        assert!(pfns
            .iter()
            // SAFETY: The answer of the range fault just done; its pages stay mapped: nothing
            // in this test unmaps them.
            .all(|p| p.map_order() == 0 && !unsafe { p.is_device_private() }));

        // A write fault breaks copy-on-write: private writable pages, one per address.
        drop(unsafe_fault_range(
            &n,
            mm,
            addr,
            &mut pfns,
            Fault::Write,
            None,
            lock,
        )?);
        assert!(pfns
            .iter()
            .all(|p| p.is_valid() && p.is_write() && !p.is_zero_page()));
        for (i, p) in pfns.iter().enumerate() {
            assert!(pfns[i + 1..].iter().all(|q| q.pfn() != p.pfn()));
        }
        // Replacing the zero page invalidated the range.
        assert!(n.data().invalidations.load(Relaxed) > 0);
        Ok(())
    }

    #[test]
    fn invalidation_makes_readers_retry() -> Result {
        let addr = mapped()?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = KBox::pin_init(
            Notifier::new(mm, addr, PAGES * PAGE_SIZE, seen()),
            GFP_KERNEL,
        )?;
        let lock = || n.data().lock.lock();
        let mut pfns = [HmmPfn::default(); PAGES];
        drop(unsafe_fault_range(
            &n,
            mm,
            addr,
            &mut pfns,
            Fault::Write,
            None,
            lock,
        )?);

        let seq = n.read_begin();
        assert!(!n.read_retry(seq));
        // Unmapping the first half invalidates it: a reader that began before must retry.
        let half = PAGES / 2 * PAGE_SIZE;
        // SAFETY: Unmaps memory of the test's own address space that nothing else uses.
        kernel::error::to_result(unsafe { ffi::vm_munmap(addr, half) })?;
        assert!(n.read_retry(seq));
        assert!(n.data().unmaps.load(Relaxed) >= 1);

        // Now the first half has no mapping (an error in a snapshot, EFAULT for a fault) and
        // the second half is still mapped writable.
        drop(unsafe_fault_range(
            &n,
            mm,
            addr,
            &mut pfns,
            Fault::None,
            None,
            lock,
        )?);
        assert!(pfns[..PAGES / 2].iter().all(|p| p.is_error()));
        assert!(pfns[PAGES / 2..]
            .iter()
            .all(|p| p.is_valid() && p.is_write()));
        let err = unsafe_fault_range(&n, mm, addr, &mut pfns, Fault::Read, None, lock).err();
        assert_eq!(err, Some(EFAULT));
        Ok(())
    }

    #[test]
    fn bad_arguments() -> Result {
        let addr = mapped()?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = KBox::pin_init(
            Notifier::new(mm, addr, PAGES * PAGE_SIZE, seen()),
            GFP_KERNEL,
        )?;
        let lock = || n.data().lock.lock();
        let mut pfns = [HmmPfn::default(); PAGES];
        let unaligned =
            unsafe_fault_range(&n, mm, addr + 1, &mut pfns, Fault::None, None, lock).err();
        assert_eq!(unaligned, Some(EINVAL));
        let empty = unsafe_fault_range(&n, mm, addr, &mut [], Fault::None, None, lock).err();
        assert_eq!(empty, Some(EINVAL));
        Ok(())
    }
}
