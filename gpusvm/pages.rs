// SPDX-License-Identifier: GPL-2.0

//! The pages of an SVM range, mapped for the device: system pages DMA-mapped, device pages
//! (the device's own or a peer's) through their pagemap's `device_map`; faulted in with
//! `hmm_range_fault_unlocked_timeout` and checked current under the notifier lock (the C
//! `drm_gpusvm_get_pages` family).
//!
//! C header: [`include/drm/drm_gpusvm.h`](srctree/include/drm/drm_gpusvm.h)

use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::dma::DmaAddress;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::time::Instant;
use kernel::time::Monotonic;

use drm_pagemap::pagemap::Interconnect;
use drm_pagemap::pagemap::Pagemap;
use drm_pagemap::pagemap::PagemapAddr;

use crate::ffi;
use crate::hmm::fatal_signal_pending;
use crate::hmm::HmmPfn;
use crate::svm::Ctx;
use crate::svm::Driver;
use crate::svm::Range;
use crate::svm::Svm;

/// How long [`Svm::get_pages`] retries against invalidations before `EBUSY` (the C
/// `HMM_RANGE_DEFAULT_TIMEOUT`).
const TIMEOUT_MS: i64 = 1000;

/// Rounds of [`Svm::get_pages`] at most, however fast they come.
const MAX_ROUNDS: u32 = 1000;

const VALID: usize = ffi::hmm_pfn_flags_HMM_PFN_VALID;
const WRITE: usize = ffi::hmm_pfn_flags_HMM_PFN_WRITE;

/// How one page of a range is mapped for the device.
#[derive(Clone, Copy, Debug)]
pub struct PageAddr {
    /// The page's address for the device: a DMA address of system memory, or what the
    /// page's pagemap's `device_map` gave (plus the page's offset in a larger mapping).
    pub addr: u64,
    /// How the device reaches it.
    pub proto: Interconnect,
    /// Order of the mapping the page is part of.
    pub order: u32,
    /// Whether the page is the first of that mapping.
    head: bool,
    /// Whether the device may write it.
    pub writable: bool,
}

/// Where a range's pages were found, by [`Svm::get_pages`].
pub struct Placement {
    /// Pages in system memory.
    pub system: usize,
    /// Pages in device memory, all of `pagemap`.
    pub device: usize,
    /// The pagemap of the device pages.
    pub pagemap: Option<ARef<Pagemap>>,
}

/// The mapped pages of a range.
///
/// # Invariants
///
/// While `valid`, `addrs` holds one entry per page of the range, each head entry a live
/// mapping for the SVM's device (a DMA mapping of direction `dir`, or a `device_map` of
/// `pagemap`), undone by [`Pages::unmap`] under the notifier lock before the pages may go.
pub struct Pages {
    addrs: KVVec<PageAddr>,
    valid: bool,
    dir: DataDirection,
    /// The pagemap of the device pages. Kept after an unmap (dropping it may destroy the
    /// pagemap, which never happens under the notifier lock): replaced by the next mapping, or
    /// dropped with the range.
    pagemap: Option<ARef<Pagemap>>,
    system: usize,
    device: usize,
}

// SAFETY: The DMA addresses and pagemap references are usable from any thread.
unsafe impl Send for Pages {}

impl Pages {
    /// Room for the `npages` pages of a range (allocated up front: mapping runs under the
    /// notifier lock, which does not allocate).
    pub(crate) fn new(npages: usize) -> Result<Self> {
        Ok(Self {
            addrs: KVVec::with_capacity(npages, GFP_KERNEL_ACCOUNT)?,
            valid: false,
            dir: DataDirection::ToDevice,
            pagemap: None,
            system: 0,
            device: 0,
        })
    }

    /// Whether the pages are mapped (no invalidation since).
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// How page `index` of the range is mapped.
    pub fn get(&self, index: usize) -> Option<&PageAddr> {
        self.addrs.get(index).filter(|_| self.valid)
    }

    /// The pagemap of the range's device pages, if any.
    pub fn pagemap(&self) -> Option<&Pagemap> {
        self.pagemap.as_deref()
    }

    /// Pages mapped in system memory and in device memory.
    pub fn counts(&self) -> (usize, usize) {
        (self.system, self.device)
    }

    /// For a software device reading page `index` of system memory through its DMA mapping:
    /// makes what the CPU wrote visible to the device (a bounce buffer is refreshed).
    pub(crate) fn sync_for_device(&self, dev: &Device, index: usize) {
        self.sync(dev, index, true)
    }

    /// After a software device wrote page `index` of system memory through its DMA mapping:
    /// makes it visible to the CPU (a bounce buffer is copied back). Unmapping does not copy a
    /// bounce buffer back (the CPU may have written the page since), so a device that writes
    /// through these mappings calls this after its writes.
    pub(crate) fn sync_for_cpu(&self, dev: &Device, index: usize) {
        self.sync(dev, index, false)
    }

    /// `dev` is the device the pages are mapped for (the SVM's: see [`Bindings::sync_for_cpu`]).
    ///
    /// [`Bindings::sync_for_cpu`]: crate::svm::Bindings::sync_for_cpu
    fn sync(&self, dev: &Device, index: usize, for_device: bool) {
        let Some(a) = self.get(index) else {
            return;
        };
        if a.proto != Interconnect::System {
            return;
        }
        // SAFETY: A live DMA mapping of `dev` covers the page (type invariant, `valid`; `dev`
        // is the SVM's device, the only one its pages are mapped for).
        unsafe {
            ffi::svm_gpusvm_dma_sync(
                raw(dev),
                a.addr as DmaAddress,
                PAGE_SIZE,
                self.dir.into(),
                for_device,
            )
        };
    }

    /// Undoes every mapping. Never drops the pagemap reference.
    pub(crate) fn unmap(&mut self, dev: &Device) {
        if self.valid {
            self.valid = false;
            for a in self.addrs.iter().filter(|a| a.head) {
                undo(dev, self.pagemap.as_deref(), a, self.dir);
            }
        }
        self.addrs.clear();
        self.system = 0;
        self.device = 0;
    }

    /// Maps the pages `pfns` reports for `dev` (under the notifier lock, with `pfns` checked
    /// current). Returns the pagemap reference it replaced, to drop outside the lock.
    ///
    /// # Safety
    ///
    /// `pfns` is the answer of a range fault over the range, checked current
    /// (`read_retry`) under the notifier lock, which the caller holds.
    unsafe fn map(
        &mut self,
        dev: &Device,
        pfns: &[HmmPfn],
        ctx: &Ctx,
    ) -> (Result, Option<ARef<Pagemap>>) {
        self.unmap(dev);
        let old = self.pagemap.take();
        self.dir = match ctx.write {
            true => DataDirection::Bidirectional,
            false => DataDirection::ToDevice,
        };
        // SAFETY: Per this function's contract.
        let res = unsafe { self.map_all(dev, pfns, ctx) };
        match res {
            Ok(()) => self.valid = true,
            Err(_) => {
                // Undo what was mapped.
                self.valid = true;
                self.unmap(dev);
            }
        }
        (res, old)
    }

    /// # Safety
    ///
    /// As [`Self::map`].
    unsafe fn map_all(&mut self, dev: &Device, pfns: &[HmmPfn], ctx: &Ctx) -> Result {
        let n = pfns.len();
        if self.addrs.capacity() < n {
            return Err(EINVAL);
        }
        // SAFETY: Reads a property of the device.
        let max_map = unsafe { ffi::svm_dma_max_mapping_size(raw(dev)) };
        let mut i = 0;
        // Bounded by `n`: each round advances by at least one page.
        while i < n {
            let p = pfns[i];
            if !p.is_valid() {
                return Err(EFAULT);
            }
            // A larger mapping only where the range holds it whole.
            let mut order = p.map_order();
            let span = 1usize << order;
            if order > 0 && (i % span != 0 || i + span > n) {
                order = 0;
            }
            let writable = p.is_write();
            // SAFETY: `p` is current (contract).
            let addr = if unsafe { p.is_device_private() } {
                if self.system > 0 && !ctx.allow_mixed {
                    return Err(EOPNOTSUPP);
                }
                // SAFETY: As above: the page stays while the lock is held.
                let pm =
                    unsafe { drm_pagemap::devmem::pagemap_of_page(p.pfn()) }.ok_or(EOPNOTSUPP)?;
                match &self.pagemap {
                    // At most one device memory per range (as the C version).
                    Some(cur) if !core::ptr::eq(cur.region(), pm.region()) => {
                        return Err(EOPNOTSUPP)
                    }
                    Some(_) => {}
                    None => self.pagemap = Some(pm),
                }
                let pm = self.pagemap.as_deref().ok_or(EINVAL)?;
                let a = pm
                    .ops()
                    .device_map(pm, dev, p.pfn(), order, self.dir)
                    .map_err(|_| EFAULT)?;
                if a.order != order {
                    pm.ops().device_unmap(pm, dev, a);
                    return Err(EFAULT);
                }
                self.device += 1 << order;
                (a.addr, a.proto)
            } else {
                // Other zone-device memory (fsdax, P2PDMA, device-coherent) is not ours to
                // DMA-map as system memory (the C version refuses it too).
                // SAFETY: `p` is current (contract).
                if unsafe { ffi::svm_pfn_is_zone_device(p.pfn()) } {
                    return Err(EOPNOTSUPP);
                }
                if ctx.devmem_only {
                    return Err(EFAULT);
                }
                if self.device > 0 && !ctx.allow_mixed {
                    return Err(EOPNOTSUPP);
                }
                if order > 0 && (PAGE_SIZE << order) > max_map {
                    order = 0;
                }
                let mut addr: DmaAddress = 0;
                // SAFETY: The page is mapped by the process and stays (contract); `dev` is a
                // valid device.
                let ret = unsafe {
                    ffi::svm_dma_map_page(
                        raw(dev),
                        ffi::svm_pfn_page(p.pfn()),
                        PAGE_SIZE << order,
                        self.dir.into(),
                        &mut addr,
                    )
                };
                if ret != 0 {
                    return Err(EFAULT);
                }
                self.system += 1 << order;
                (addr as u64, Interconnect::System)
            };
            for k in 0..1usize << order {
                let entry = PageAddr {
                    addr: addr.0 + (k * PAGE_SIZE) as u64,
                    proto: addr.1,
                    order,
                    head: k == 0,
                    writable,
                };
                if self.addrs.push_within_capacity(entry).is_err() {
                    // Cannot happen (capacity checked): undo this one mapping.
                    if k == 0 {
                        undo(dev, self.pagemap.as_deref(), &entry, self.dir);
                    }
                    return Err(ENOMEM);
                }
            }
            i += 1 << order;
        }
        Ok(())
    }
}

/// The C device of `dev`.
fn raw(dev: &Device) -> *mut ffi::device {
    // `Device` is a `#[repr(transparent)]` wrapper around `Opaque<struct device>`.
    core::ptr::from_ref(dev).cast_mut().cast()
}

/// Undoes the mapping `a` heads.
fn undo(dev: &Device, pagemap: Option<&Pagemap>, a: &PageAddr, dir: DataDirection) {
    match a.proto {
        Interconnect::System => {
            // SAFETY: A live DMA mapping of `dev` of that size and direction (the `Pages`
            // invariant), undone once.
            unsafe {
                ffi::svm_gpusvm_dma_unmap(
                    raw(dev),
                    a.addr as DmaAddress,
                    PAGE_SIZE << a.order,
                    dir.into(),
                )
            }
        }
        Interconnect::Driver(_) => {
            if let Some(pm) = pagemap {
                pm.ops().device_unmap(
                    pm,
                    dev,
                    PagemapAddr {
                        addr: a.addr,
                        proto: a.proto,
                        order: a.order,
                        dir,
                    },
                );
            }
        }
    }
}

/// How a range's pages are spread (the C `drm_gpusvm_scan_mm`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scan {
    /// No page is there yet (or none the device can see).
    Unpopulated,
    /// Every page in the given pagemap's memory (its region).
    Equal,
    /// Every page in the memory of one other pagemap.
    Other,
    /// Every page in system memory.
    System,
    /// Pages in the memory of several pagemaps.
    MixedDevice,
    /// Pages in system and device memory, or some not there.
    Mixed,
}

impl<D: Driver> Svm<'_, D> {
    /// One range fault over `range` (without holding the mmap lock: the fault may drop it):
    /// `flags` as `hmm_range::default_flags`. Returns the notifier sequence it saw.
    ///
    /// A fault goes in two steps. `hmm_range_fault` faults every page from the first one that
    /// needs it to the end of its page-table walk, and a device page of our owner in there is
    /// taken back to system memory by that CPU fault: a range with a hole before device pages
    /// would lose them (the C `drm_gpusvm` avoids ranges over unfaulted pages instead). So a
    /// snapshot finds the pages that need a fault first, each run of them is faulted alone,
    /// and the last pass over the whole range then faults nothing that was in place.
    fn range_fault(
        &self,
        range: &Range,
        pfns: &mut [HmmPfn],
        flags: usize,
        owner: Option<drm_pagemap::owner::Owner>,
        timeout_ms: i64,
    ) -> Result<usize> {
        if flags != 0 {
            self.hmm_fault(range, range.start(), pfns, 0, owner, timeout_ms)?;
            let write = flags & WRITE != 0;
            let needs = |p: &HmmPfn| !p.is_valid() || (write && !p.is_write());
            let mut i = 0;
            // Bounded by the range's pages: each round moves past one run.
            while i < pfns.len() {
                if !needs(&pfns[i]) {
                    i += 1;
                    continue;
                }
                let run = pfns[i..].iter().take_while(|p| needs(p)).count();
                let start = range.start() + i * PAGE_SIZE;
                self.hmm_fault(
                    range,
                    start,
                    &mut pfns[i..i + run],
                    flags,
                    owner,
                    timeout_ms,
                )?;
                i += run;
            }
        }
        self.hmm_fault(range, range.start(), pfns, flags, owner, timeout_ms)
    }

    /// `hmm_range_fault_unlocked_timeout` over `pfns.len()` pages of `range` from `start`.
    fn hmm_fault(
        &self,
        range: &Range,
        start: usize,
        pfns: &mut [HmmPfn],
        flags: usize,
        owner: Option<drm_pagemap::owner::Owner>,
        timeout_ms: i64,
    ) -> Result<usize> {
        let (notifier, svm) = self.parts(range)?;
        let end = start + pfns.len() * PAGE_SIZE;
        if start < range.start() || end > range.end() {
            return Err(EINVAL);
        }
        // A range no longer in the SVM (collected, dropped as a cache): its notifier may be
        // the spare, or serve newer ranges; nothing to look at for it (`ENOENT`, as when its
        // notifier is gone).
        if self.notifier_lock().entry(range).is_none() {
            return Err(ENOENT);
        }
        let user = svm.mm().mmget_not_zero().ok_or(EFAULT)?;
        let mut hmm = ffi::hmm_range {
            notifier: notifier.as_raw(),
            notifier_seq: notifier.read_begin(),
            start,
            end,
            hmm_pfns: pfns.as_mut_ptr().cast(),
            default_flags: flags,
            pfn_flags_mask: 0,
            dev_private_owner: owner.map_or(core::ptr::null_mut(), |o| o.as_ptr()),
        };
        let timeout = kernel::time::msecs_to_jiffies(timeout_ms.max(1) as u32);
        // `hmm` describes `pfns` (an `HmmPfn` is an `unsigned long`), one per page of
        // `[start, end)`, inside the range its live notifier watches, of an mm with users
        // (`user`); the mmap lock is not held.
        // SAFETY: As above.
        let ret = unsafe { ffi::hmm_range_fault_unlocked_timeout(&mut hmm, timeout) };
        drop(user);
        kernel::error::to_result(ret)?;
        Ok(hmm.notifier_seq)
    }

    /// Faults in `range`'s pages (writable with `ctx.write`) with `ctx.owner`'s device pages
    /// left in place, and maps them for the device (the C `drm_gpusvm_get_pages`). Mapped
    /// already and still valid: nothing to do. The caller then checks
    /// [`crate::svm::Bindings::pages_valid`] under the notifier lock before it binds.
    ///
    /// Errors: `EFAULT` for a page that cannot be faulted in (no mapping) or a range the CPU
    /// unmapped, `EPERM` for a write to a read-only mapping, `EFAULT` with `ctx.devmem_only`
    /// when a page is in system memory, `EOPNOTSUPP` for pages of two device pagemaps, of
    /// another driver's, or (without `ctx.allow_mixed`) of system and device memory together;
    /// `EBUSY` if invalidations kept racing for a second; `EINTR` on a fatal signal.
    pub fn get_pages(&self, range: &Range, ctx: &Ctx) -> Result<Placement> {
        let mut pfns = KVVec::from_elem(HmmPfn::default(), range.npages(), GFP_KERNEL)?;
        let flags = VALID | if ctx.write { WRITE } else { 0 };
        let begun = Instant::<Monotonic>::now();
        for _ in 0..MAX_ROUNDS {
            if fatal_signal_pending() {
                return Err(EINTR);
            }
            let left = TIMEOUT_MS - begun.elapsed().as_millis();
            if left <= 0 {
                return Err(EBUSY);
            }
            {
                let b = self.notifier_lock();
                // Removed (collected, dropped as a cache): nothing to fault for.
                if b.entry(range).is_none() {
                    return Err(EFAULT);
                }
                if let Some(pages) = b.pages(range) {
                    if !ctx.write || pages.dir == DataDirection::Bidirectional {
                        if !ctx.devmem_only || pages.system == 0 {
                            return Ok(Placement {
                                system: pages.system,
                                device: pages.device,
                                pagemap: pages.pagemap.clone(),
                            });
                        }
                    }
                }
            }
            let seq = self.range_fault(range, &mut pfns, flags, ctx.owner, left)?;
            let (notifier, svm) = self.parts(range)?;
            let mut b = self.notifier_lock();
            if range.is_unmapped() {
                return Err(EFAULT);
            }
            if notifier.read_retry(seq) {
                continue;
            }
            fix_device_pmds(range, &mut pfns);
            // The device's own pages that a write fault left read-only (copy-on-write after
            // fork, mprotect): `hmm_range_fault` never write-faults them. Back to system
            // memory with them, then fault again.
            let stuck = |p: &HmmPfn| {
                // SAFETY: `pfns` was checked current under the notifier lock, still held.
                unsafe { p.needs_migration_for_write() }
            };
            if ctx.write && pfns.iter().any(stuck) {
                drop(b);
                self.evict(range)?;
                continue;
            }
            let dev = svm.device();
            let Some((entry, driver)) = b.entry_mut(range) else {
                return Err(EFAULT);
            };
            // Mapped already (read-only for a write, or in system memory for a device-only
            // fault): the driver drops what it bound before those mappings go.
            if entry.pages.is_valid() {
                svm.driver().unbind(driver, &entry.range, None);
            }
            // SAFETY: `pfns` was checked current under the notifier lock, still held.
            let (res, old) = unsafe { entry.pages.map(dev, &pfns, ctx) };
            let placement = Placement {
                system: entry.pages.system,
                device: entry.pages.device,
                pagemap: entry.pages.pagemap.clone(),
            };
            drop(b);
            drop(old);
            res?;
            return Ok(placement);
        }
        Err(EBUSY)
    }

    /// Moves `range`'s device pages back to system memory, as CPU faults would (the C
    /// `drm_gpusvm_range_evict`): `ETIME` if invalidations kept racing for a second.
    pub fn evict(&self, range: &Range) -> Result {
        let mut pfns = KVVec::from_elem(HmmPfn::default(), range.npages(), GFP_KERNEL)?;
        match self.range_fault(range, &mut pfns, VALID, None, TIMEOUT_MS) {
            Err(e) if e == EBUSY => Err(ETIME),
            other => other.map(|_| ()),
        }
    }

    /// Where `range`'s pages are, as the device with `owner` sees them, compared with
    /// `pagemap` (a snapshot: faults nothing in).
    pub fn scan(
        &self,
        range: &Range,
        owner: Option<drm_pagemap::owner::Owner>,
        pagemap: Option<&Pagemap>,
    ) -> Result<Scan> {
        let mut pfns = KVVec::from_elem(HmmPfn::default(), range.npages(), GFP_KERNEL)?;
        let begun = Instant::<Monotonic>::now();
        for _ in 0..MAX_ROUNDS {
            if fatal_signal_pending() {
                return Err(EINTR);
            }
            let left = TIMEOUT_MS - begun.elapsed().as_millis();
            if left <= 0 {
                return Err(EBUSY);
            }
            let seq = match self.range_fault(range, &mut pfns, 0, owner, left) {
                // A hole or an inaccessible page: not (all) there.
                Err(e) if e == EFAULT => return Ok(Scan::Mixed),
                other => other?,
            };
            let (notifier, _) = self.parts(range)?;
            let b = self.notifier_lock();
            if notifier.read_retry(seq) {
                continue;
            }
            fix_device_pmds(range, &mut pfns);
            // SAFETY: `pfns` was checked current under the notifier lock, still held.
            let scan = unsafe { classify(&pfns, pagemap) };
            drop(b);
            return Ok(scan);
        }
        Err(EBUSY)
    }
}

/// Corrects the entries of PMD-mapped device folios in a range fault's answer for `range` (see
/// [`crate::hmm::fault_range`]); under the notifier lock, with the answer checked current.
fn fix_device_pmds(range: &Range, pfns: &mut [HmmPfn]) {
    for (i, p) in pfns.iter_mut().enumerate() {
        *p = p.fix_device_pmd(range.start() + i * PAGE_SIZE);
    }
}

/// Classifies a range fault's answer.
///
/// # Safety
///
/// `pfns` is current: checked under the notifier lock, which the caller holds.
unsafe fn classify(pfns: &[HmmPfn], pagemap: Option<&Pagemap>) -> Scan {
    let (mut none, mut system, mut equal, mut other) = (0, 0, 0, 0);
    let mut first_other: Option<ARef<Pagemap>> = None;
    let mut several = false;
    for p in pfns {
        if !p.is_valid() {
            none += 1;
            continue;
        }
        // SAFETY: Per this function's contract.
        if !unsafe { p.is_device_private() } {
            system += 1;
            continue;
        }
        // SAFETY: As above.
        match unsafe { drm_pagemap::devmem::pagemap_of_page(p.pfn()) } {
            // Same memory (a cache may have made a new pagemap of it since the pages moved).
            Some(pm) if pagemap.is_some_and(|want| core::ptr::eq(want.region(), pm.region())) => {
                equal += 1
            }
            Some(pm) => {
                other += 1;
                match &first_other {
                    Some(f) if !core::ptr::eq::<Pagemap>(&**f, &*pm) => several = true,
                    Some(_) => {}
                    None => first_other = Some(pm),
                }
            }
            None => other += 1,
        }
    }
    let n = pfns.len();
    // The reference taken is dropped here, under the caller's lock: the pagemap's pages are
    // mapped (current answer), so their allocation holds it too and this is never the last.
    drop(first_other);
    if none == n {
        Scan::Unpopulated
    } else if equal == n {
        Scan::Equal
    } else if system == n {
        Scan::System
    } else if other == n && !several {
        Scan::Other
    } else if other + equal == n {
        Scan::MixedDevice
    } else {
        Scan::Mixed
    }
}
