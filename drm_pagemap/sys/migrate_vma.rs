// SPDX-License-Identifier: GPL-2.0

//! A `migrate_vma` operation from setup to finalize, as a guard, and the pfn arrays it works
//! on.
//!
//! C header: [`include/linux/migrate.h`](srctree/include/linux/migrate.h)

use core::marker::PhantomData;
use core::mem::ManuallyDrop;

use kernel::error::to_result;
use kernel::prelude::*;

use core::ptr::NonNull;

use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::dma::DmaAddress;
use kernel::mm::virt::VmaRef;
use kernel::page::PAGE_SIZE;
use kernel::sync::Arc;

use crate::copy::copy_and_wait;
use crate::copy::CopyRun;
use crate::copy::CopyRuns;
use crate::copy::Counterpart;
use crate::device_private::DevicePrivateRegion;
use crate::devmem::DevicePages;
use crate::devmem::Devmem;
use crate::devmem::Direction;
use crate::devmem::Zdd;
use crate::ffi;
use crate::owner::Owner;
use crate::pagemap::PagemapAddr;
use crate::range::PageRange;
use crate::sys::dma::DmaMappings;
use crate::sys::fault::VmFault;
use crate::sys::page::huge_nr;
use crate::sys::page::huge_order;
use crate::sys::page::migrate_pfn_of;
use crate::sys::page::migrate_pfn_to_page;
use crate::sys::page::page_to_pfn;
use crate::sys::page::pfn_to_page;
use crate::sys::page::NewPage;
use crate::sys::page::COMPOUND;
use crate::sys::page::MIGRATE;
use crate::sys::page::WRITE;

/// The `src`/`dst` arrays of `migrate_vma` or `migrate_device` operations, reused from one
/// operation to the next. While an operation runs, its guard holds them and hands out a
/// [`Pfns`] view that cannot move, resize or rewrite them.
///
/// # Invariants
///
/// Both arrays have the same length. Every non-zero `dst` entry is the migrate pfn of a
/// destination page the running operation allocated (or initialised) and locked, referenced
/// by nothing else yet; between operations `dst` is all zero.
pub(crate) struct PfnArrays {
    src: KVVec<usize>,
    dst: KVVec<usize>,
    /// DMA mappings of the running operation's pages for a copy: undone by the guard before
    /// `migrate_*_pages` (so before a page can be freed or mapped to a process).
    maps: DmaMappings,
}

impl PfnArrays {
    pub(crate) fn new(npages: usize) -> Result<Self> {
        // INVARIANT: Same length, `dst` zero.
        Ok(Self {
            src: KVVec::from_elem(0, npages, GFP_KERNEL)?,
            dst: KVVec::from_elem(0, npages, GFP_KERNEL)?,
            // At most one mapping per entry.
            maps: DmaMappings::new(npages)?,
        })
    }

    /// Makes both arrays `npages` long and zero, for the next operation, without allocating
    /// if they were that long before.
    pub(crate) fn reset(&mut self, npages: usize) -> Result {
        self.src.clear();
        self.dst.clear();
        // INVARIANT: Same length, `dst` zero again (on error both are empty).
        self.src.resize(npages, 0, GFP_KERNEL)?;
        if let Err(e) = self.dst.resize(npages, 0, GFP_KERNEL) {
            self.src.clear();
            return Err(e.into());
        }
        if let Err(e) = self.maps.reserve(npages) {
            self.src.clear();
            self.dst.clear();
            return Err(e);
        }
        Ok(())
    }

    /// The source entries, to be filled with plain frame numbers before
    /// [`MigrateDevice::collect`].
    pub(crate) fn plain_pfns(&mut self) -> &mut [usize] {
        &mut self.src
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.src.len()
    }

    /// Abandons the destinations of every huge source entry whose group of entries the core
    /// could not take as it is: a huge destination with tail destinations set, or base
    /// destinations for only part of the group (the core would dereference the missing
    /// ones). The source then stays.
    fn drop_incomplete_groups(&mut self) {
        let mut i = 0;
        // One pass over the arrays (an operation's size, bounded by its caller).
        while i < self.src.len() {
            let s = self.src[i];
            let n = span_of(s).min(self.src.len() - i);
            if s & COMPOUND != 0 {
                let group = &self.dst[i..i + n];
                let ok = match group[0] {
                    0 => group.iter().all(|d| *d == 0),
                    d if d & COMPOUND != 0 => group[1..].iter().all(|d| *d == 0),
                    _ => group.iter().all(|d| *d != 0),
                };
                if !ok {
                    // One folio's entries.
                    for d in &mut self.dst[i..i + n] {
                        free_dst(d);
                    }
                }
            }
            i += n;
        }
    }

    /// Unlocks and frees every destination page set so far, so that nothing moves.
    fn abandon_dst(&mut self) {
        self.dst.iter_mut().for_each(free_dst);
    }

    /// Zeroes both arrays once an operation has been finalized (its destinations now belong
    /// to the page tables or are freed).
    fn clear(&mut self) {
        self.src.iter_mut().for_each(|s| *s = 0);
        // INVARIANT: `dst` is zero between operations.
        self.dst.iter_mut().for_each(|d| *d = 0);
    }
}

/// Pages the entry `mpfn` of a `src` or `dst` array stands for: a huge folio (or a huge
/// hole) is one entry followed by zeroes.
pub(crate) fn span_of(mpfn: usize) -> usize {
    if mpfn & COMPOUND != 0 {
        huge_nr()
    } else {
        1
    }
}

/// The side of an operation's arrays an entry index names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The collected source pages.
    Src,
    /// The destination pages set up for them.
    Dst,
}

/// Which pages a `migrate_vma` operation collects (`enum migrate_vma_direction`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Select(u32);

impl Select {
    /// System pages (and holes).
    pub(crate) const SYSTEM: Self = Self(ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM);
    /// Device-private pages whose owner is not the operation's.
    pub(crate) const DEVICE_PRIVATE: Self =
        Self(ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_PRIVATE);
    /// Huge folios whole (else they are split).
    pub(crate) const COMPOUND: Self = Self(ffi::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND);
}

impl core::ops::BitOr for Select {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl core::ops::BitOrAssign for Select {
    fn bitor_assign(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

/// Unlocks and frees the destination page `*d` names, if any, and clears the entry.
fn free_dst(d: &mut usize) {
    // By the `PfnArrays` invariant a non-zero entry is a page we set up and hold alone.
    let page = migrate_pfn_to_page(*d);
    if !page.is_null() {
        // SAFETY: As above: we hold its only reference and its lock.
        unsafe { ffi::svm_unlock_put_page(page) };
    }
    *d = 0;
}

/// Marks the device folios of ours whose data `migrate_*_pages` has just moved as retired,
/// before finalize unlocks them: an eviction must not take them up again.
fn retire_moved(pfns: &Pfns<'_>) {
    let mut i = 0;
    // One pass over the arrays, as above.
    while i < pfns.len() {
        let s = pfns.src()[i];
        if s & MIGRATE != 0 && pfns.dst()[i] != 0 {
            pfns.retire(i);
        }
        i += span_of(s);
    }
}

/// What a page collected by a running operation is, as far as this crate is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No page (a hole), or a system page.
    System,
    /// A device page of the given region.
    Own,
    /// A device page of another region with this crate's ops: its zone-device data is ours.
    Ours,
    /// A device page of some other driver's pagemap.
    Foreign,
}

/// The arrays of a running operation, as its guard lends them: the sources to read (and to
/// leave in place), the destinations to set up.
pub(crate) struct Pfns<'a> {
    arrays: &'a mut PfnArrays,
}

impl Pfns<'_> {
    /// Number of entries (pages) of the operation.
    pub(crate) fn len(&self) -> usize {
        self.arrays.src.len()
    }

    /// The source entries, as the core collected them.
    pub(crate) fn src(&self) -> &[usize] {
        &self.arrays.src
    }

    /// The destination entries set up so far.
    pub(crate) fn dst(&self) -> &[usize] {
        &self.arrays.dst
    }

    /// What the page of source `i` is, relative to `region`.
    pub(crate) fn kind(&self, i: usize, region: Option<&DevicePrivateRegion>) -> Kind {
        let page = migrate_pfn_to_page(self.arrays.src[i]);
        // A page in `src` of a running operation is locked and referenced by it until finalize,
        // and a guard lends `self` only while the operation runs.
        // SAFETY: As above.
        if page.is_null() || !unsafe { ffi::svm_is_device_private_page(page) } {
            return Kind::System;
        }
        // SAFETY: As above; a device-private page has a live pagemap.
        let pgmap = unsafe { ffi::svm_page_pgmap(page) };
        if region.is_some_and(|r| r.as_raw() == pgmap) {
            return Kind::Own;
        }
        // SAFETY: `pgmap` is the live pagemap of a held page.
        match unsafe { crate::device_private::has_our_ops(pgmap) } {
            true => Kind::Ours,
            false => Kind::Foreign,
        }
    }

    /// Leaves source `i` where it is: clears its `MIGRATE_PFN_MIGRATE` bit.
    pub(crate) fn keep(&mut self, i: usize) {
        self.arrays.src[i] &= !MIGRATE;
    }

    /// The page of source `i`, if any: valid (locked and referenced by the operation) while
    /// `self` is lent.
    fn src_page(&self, i: usize) -> Option<NonNull<ffi::page>> {
        NonNull::new(migrate_pfn_to_page(self.arrays.src[i]))
    }

    /// The frame number of source `i`'s page (0 for a hole).
    pub(crate) fn src_pfn(&self, i: usize) -> usize {
        self.src_page(i).map_or(0, |p| page_to_pfn(p.as_ptr()))
    }

    /// Whether source `i` has no page (never touched, or the zero page).
    pub(crate) fn src_is_hole(&self, i: usize) -> bool {
        self.src_page(i).is_none()
    }

    /// Whether source `i` is a page of anonymous memory (not a file's own page).
    pub(crate) fn is_anon(&self, i: usize) -> bool {
        // SAFETY: A source page is valid while `self` is lent (`src_page`).
        self.src_page(i)
            .is_some_and(|p| unsafe { ffi::svm_page_is_anon(p.as_ptr()) })
    }

    /// The allocation whose device page source `i` is, for a page of [`Kind::Ours`]; borrowed
    /// while `self` is (clone it to keep it).
    pub(crate) fn devmem_of(&self, i: usize) -> Option<&Arc<Devmem>> {
        if self.kind(i, None) != Kind::Ours {
            return None;
        }
        let page = self.src_page(i)?;
        // A collected device page of a region with our ops, kept alive by the operation while
        // `self` is lent; its zone-device data was set by `Zdd::attach` before the page was
        // handed to the core.
        // SAFETY: As above.
        Some(unsafe { Zdd::devmem_of_page(page.as_ptr()) })
    }

    /// Marks the device folio of source `i`, a page of ours whose data has just moved, so
    /// that an eviction leaves it alone.
    fn retire(&self, i: usize) {
        if self.kind(i, None) != Kind::Ours {
            return;
        }
        if let Some(page) = self.src_page(i) {
            // SAFETY: A device page of ours (its data set by `attach`), locked by this
            // operation, which the caller says has moved its data.
            unsafe { Zdd::retire(page.as_ptr()) };
        }
    }

    /// Whether the device folio of source `i`, a page of ours, was retired.
    pub(crate) fn is_retired(&self, i: usize) -> bool {
        if self.kind(i, None) != Kind::Ours {
            return false;
        }
        // SAFETY: A device page of ours, held by the operation.
        self.src_page(i)
            .is_some_and(|page| unsafe { Zdd::is_retired(page.as_ptr()) })
    }

    /// Whether destination `i` may be set: in range and not set yet, a huge one only for a
    /// huge source entry (`EINVAL` otherwise).
    fn check_dst_slot(&self, i: usize, huge: bool) -> Result {
        let s = *self.arrays.src.get(i).ok_or(EINVAL)?;
        if self.arrays.dst[i] != 0 || (huge && s & COMPOUND == 0) {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Sets destination `i` to `page`, a system page (huge or not) for a migration back to
    /// system memory; `EINVAL` (and `page` freed) if [`Pfns::check_dst_slot`] refuses.
    pub(crate) fn set_new_dst(&mut self, i: usize, page: NewPage) -> Result {
        self.check_dst_slot(i, page.is_huge())?;
        let compound = if page.is_huge() { COMPOUND } else { 0 };
        // INVARIANT: A page allocated and locked for this operation, now owned by `dst`
        // (freed by `abandon_dst` or by the core).
        self.arrays.dst[i] = migrate_pfn_of(page.into_raw()) | compound;
        Ok(())
    }

    /// Sets destination `i` to the device page `pages[index]` (with `huge`, the 512 pages from
    /// there, contiguous and aligned, as one folio), initialised for this migration with
    /// `zdd`, the zone-device data of the allocation `pages` came from, mapped writable if
    /// `write`. `EINVAL` if a page was taken before, is in use, or does not fit.
    pub(crate) fn set_device_dst(
        &mut self,
        i: usize,
        pages: &mut DevicePages<'_>,
        index: usize,
        zdd: &Arc<Zdd>,
        huge: bool,
        write: bool,
    ) -> Result {
        self.check_dst_slot(i, huge)?;
        if !core::ptr::eq(&**zdd.devmem(), pages.devmem()) {
            return Err(EINVAL);
        }
        let n = if huge { huge_nr() } else { 1 };
        let region = pages.region().as_raw();
        let run = pages.take(index, n)?;
        let first = run[0];
        if first % n != 0 || run.iter().enumerate().any(|(k, &pfn)| pfn != first + k) {
            return Err(EINVAL);
        }
        // A page in use (handed out twice, or still live): refuse rather than re-initialise
        // it. `DevmemOps`' contract covers what this cannot see.
        if let Some(pfn) = run.iter().find(|&&pfn| {
            // SAFETY: A page of the region (`DevicePages` checked), so a valid `struct page`.
            let refs = unsafe { ffi::svm_page_ref_count(pfn_to_page(pfn)) };
            refs != 0
        }) {
            pr_err!("device pfn {pfn:#x} is in use\n");
            return Err(EINVAL);
        }
        let page = pfn_to_page(first);
        let order = if huge { huge_order() } else { 0 };
        // Free device pages of the region, contiguous and aligned for `order`, owned by the
        // allocation `pages` came from (`DevmemOps`' contract) and taken for this destination
        // alone: initialise the folio (reference 1, locked), point it at the allocation's data.
        // SAFETY: As above.
        unsafe {
            ffi::zone_device_page_init(page, region, order);
            Zdd::attach(zdd, page);
        }
        let mut mpfn = migrate_pfn_of(page);
        if huge {
            mpfn |= COMPOUND;
        }
        if write {
            mpfn |= WRITE;
        }
        // INVARIANT: Initialised and locked for this operation just above.
        self.arrays.dst[i] = mpfn;
        Ok(())
    }

    /// Maps the system folio of entry `i` on `side` (a huge one whole: see
    /// [`crate::sys::dma::maps_whole`]) for `dev`: a source to read from, a destination (set
    /// by [`Pfns::set_new_dst`]) to write to. The guard undoes the mapping before the pages
    /// move, or earlier by [`Pfns::unmap_all`].
    pub(crate) fn map(&mut self, side: Side, i: usize, dev: &Device) -> Result<DmaAddress> {
        let entry = self.entry(side, i)?;
        let order = if entry & COMPOUND != 0 {
            huge_order()
        } else {
            0
        };
        self.map_part(side, i, dev, 0, order)
    }

    /// Maps page `k` of entry `i`'s folio on `side` alone, as [`Pfns::map`].
    pub(crate) fn map_page(
        &mut self,
        side: Side,
        i: usize,
        k: usize,
        dev: &Device,
    ) -> Result<DmaAddress> {
        self.map_part(side, i, dev, k, 0)
    }

    fn entry(&self, side: Side, i: usize) -> Result<usize> {
        let entries = match side {
            Side::Src => &self.arrays.src,
            Side::Dst => &self.arrays.dst,
        };
        entries.get(i).copied().ok_or(EINVAL)
    }

    fn map_part(
        &mut self,
        side: Side,
        i: usize,
        dev: &Device,
        k: usize,
        order: u32,
    ) -> Result<DmaAddress> {
        let entry = self.entry(side, i)?;
        let page = migrate_pfn_to_page(entry);
        if page.is_null() || k >= span_of(entry) {
            return Err(EINVAL);
        }
        // A collected source is a system page if its kind says so; a destination device page
        // would be one set up for the core, a system one is only set by `set_new_dst`.
        // SAFETY: A page of the running operation, held by it until finalize.
        let device = unsafe { ffi::svm_is_device_private_page(page) };
        if device {
            return Err(EINVAL);
        }
        let dir = match side {
            Side::Src => DataDirection::ToDevice,
            Side::Dst => DataDirection::FromDevice,
        };
        // SAFETY: `page` heads a folio of `span_of(entry)` pages (`k` inside it).
        let page = unsafe { ffi::svm_folio_nth_page(page, k) };
        // A system page (or the head of a folio of that order) held by the operation until
        // finalize; the guard unmaps before letting it go.
        // SAFETY: As above.
        unsafe { self.arrays.maps.map(dev, page, order, dir) }
    }

    /// Adds a run of `1 << order` pages from device page `device_pfn` to `runs`; its system
    /// address, if any, must lie inside a live mapping of this operation (`EINVAL`
    /// otherwise), made with [`Pfns::map`] or [`Pfns::map_page`].
    pub(crate) fn add_run(
        &self,
        runs: &mut CopyRuns,
        device_pfn: usize,
        system: Option<DmaAddress>,
        order: u32,
    ) -> Result {
        let counterpart = match system {
            Some(addr) => Counterpart::System(addr),
            None => Counterpart::Zeroes,
        };
        let run = CopyRun {
            device_pfn,
            counterpart,
            order,
        };
        let maps = &self.arrays.maps;
        if system.is_some_and(|addr| !maps.covers(addr, run.bytes())) {
            return Err(EINVAL);
        }
        runs.push(run, maps.generation())
    }

    /// Maps source `i`, a page of a peer's pagemap (its allocation is [`Pfns::devmem_of`]), for
    /// `dev` through the peer's pagemap: its whole folio, or only page `k` of it. The guard
    /// undoes the mapping with the DMA mappings.
    pub(crate) fn map_peer(
        &mut self,
        i: usize,
        part: Option<usize>,
        dev: &Device,
    ) -> Result<PagemapAddr> {
        let peer = self.devmem_of(i).ok_or(EINVAL)?.clone();
        let entry = self.entry(Side::Src, i)?;
        let head = self.src_pfn(i);
        let (pfn, order) = match part {
            None if entry & COMPOUND != 0 => (head, huge_order()),
            None => (head, 0),
            Some(k) if k < span_of(entry) => (head + k, 0),
            Some(_) => return Err(EINVAL),
        };
        self.arrays.maps.map_peer(dev, peer.pagemap(), pfn, order)
    }

    /// Adds a run of `1 << addr.order` pages into device page `device_pfn` from a peer's
    /// memory at `addr`, which must lie inside a live peer mapping of this operation
    /// ([`Pfns::map_peer`]); `EINVAL` otherwise.
    pub(crate) fn add_peer_run(
        &self,
        runs: &mut CopyRuns,
        device_pfn: usize,
        addr: PagemapAddr,
    ) -> Result {
        let maps = &self.arrays.maps;
        if !maps.covers_peer(&addr) {
            return Err(EINVAL);
        }
        let run = CopyRun {
            device_pfn,
            counterpart: Counterpart::Peer(addr),
            order: addr.order,
        };
        runs.push(run, maps.generation())
    }

    /// Checks that `runs` belong to this operation's live mappings, for `devmem`'s device.
    fn check_runs(&self, devmem: &Devmem, runs: &CopyRuns) -> Result {
        let maps = &self.arrays.maps;
        if runs.generation().is_some_and(|g| g != maps.generation()) {
            return Err(EINVAL);
        }
        if maps
            .device()
            .is_some_and(|dev| !core::ptr::eq(dev, devmem.pagemap().device()))
        {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Has `devmem`'s engine copy `runs` (built by [`Pfns::add_run`]) into device memory, and
    /// waits for it.
    pub(crate) fn copy_to_devmem(&self, devmem: &Devmem, runs: &CopyRuns) -> Result {
        self.check_runs(devmem, runs)?;
        copy_and_wait(|fence| {
            // Every address of `runs` lies in a live mapping of this operation for `devmem`'s
            // device (`add_run`, `check_runs`), kept while `self` is borrowed; `copy_and_wait`
            // returns only once the fence is signalled.
            // SAFETY: As above.
            unsafe { devmem.ops().copy_to_devmem(runs.as_slice(), fence) }
        })
    }

    /// Has `devmem`'s engine copy `runs` (built by [`Pfns::add_run`]) back to system memory,
    /// and waits for it.
    pub(crate) fn copy_to_ram(&self, devmem: &Devmem, runs: &CopyRuns, dir: Direction) -> Result {
        self.check_runs(devmem, runs)?;
        copy_and_wait(|fence| {
            // SAFETY: As in `copy_to_devmem`.
            unsafe { devmem.ops().copy_to_ram(runs.as_slice(), dir, fence) }
        })
    }

    /// Undoes every DMA mapping of the operation: the device must be done with them.
    pub(crate) fn unmap_all(&mut self) {
        self.arrays.maps.unmap_all();
    }
}

/// A `migrate_vma` operation between `migrate_vma_setup` and `migrate_vma_finalize`: the
/// collected source pages are locked and unmapped. [`MigrateVma::commit`] moves what the
/// destinations were set up for; dropping the guard instead abandons every destination, so
/// that nothing moves. Either way the operation ends with `migrate_vma_pages` and
/// `migrate_vma_finalize`, which unlock every page, as the core mm requires.
///
/// # Invariants
///
/// `args` was set up by `migrate_vma_setup` over `pfns`' arrays (valid while `'a` borrows
/// them) on a VMA locked for `'a`; the operation has not been finalized.
pub(crate) struct MigrateVma<'a> {
    args: ffi::migrate_vma,
    pfns: &'a mut PfnArrays,
    _vma: PhantomData<&'a ffi::vm_area_struct>,
}

impl<'a> MigrateVma<'a> {
    /// Collects and unmaps the pages of `range` of `vma` that `select` selects and that are not
    /// `owner`'s, into `pfns.src` (sized for the range by the caller: `EINVAL` otherwise, or
    /// if the range is not inside `vma`). `fault` is the CPU fault this serves, if any: its
    /// page, already locked, must be inside the range (`EINVAL`).
    pub(crate) fn setup(
        vma: &'a VmaRef,
        range: PageRange,
        owner: Owner,
        select: Select,
        fault: Option<&'a VmFault<'_>>,
        pfns: &'a mut PfnArrays,
    ) -> Result<Self> {
        let (start, end) = (range.start(), range.end());
        if start < vma.start() || end > vma.end() || pfns.src.len() != range.size() / PAGE_SIZE {
            return Err(EINVAL);
        }
        if fault.is_some_and(|f| f.address() < start || f.address() >= end) {
            return Err(EINVAL);
        }
        // A forgotten guard leaves destinations behind: never hand them to a new operation.
        if pfns.dst.iter().any(|d| *d != 0) {
            return Err(EINVAL);
        }
        // SAFETY: `migrate_vma` is plain data; zero is its documented initial state.
        let mut args: ffi::migrate_vma = unsafe { core::mem::zeroed() };
        args.vma = vma.as_ptr();
        args.start = start;
        args.end = end;
        args.src = pfns.src.as_mut_ptr();
        args.dst = pfns.dst.as_mut_ptr();
        args.pgmap_owner = owner.as_ptr();
        args.flags = select.0 as usize;
        args.fault_page = fault.map_or(core::ptr::null_mut(), |f| f.page());
        // SAFETY: `args` describes a range (page-aligned: `PageRange`) inside a VMA locked
        // for `'a`, arrays of its size, and a faulting page, locked by the fault, inside it.
        to_result(unsafe { ffi::migrate_vma_setup(&mut args) })?;
        // INVARIANT: Set up just above over `pfns`, which `'a` borrows.
        Ok(Self {
            args,
            pfns,
            _vma: PhantomData,
        })
    }

    /// The collected sources and the destinations being set up.
    pub(crate) fn pfns(&mut self) -> Pfns<'_> {
        Pfns { arrays: self.pfns }
    }

    /// Moves the pages whose destinations were set up; `after_pages` sees the arrays between
    /// `migrate_vma_pages` and `migrate_vma_finalize` (the sources still locked). Returns
    /// what it returns.
    pub(crate) fn commit<R>(self, after_pages: impl FnOnce(&Pfns<'_>) -> R) -> R {
        let mut this = ManuallyDrop::new(self);
        this.pfns.maps.unmap_all();
        this.pfns.drop_incomplete_groups();
        // By the type invariant the operation is set up and not finalized; `dst` holds zero
        // or locked, filled destinations (`PfnArrays` invariant), in groups the core takes.
        // SAFETY: As above.
        unsafe { ffi::migrate_vma_pages(&mut this.args) };
        retire_moved(&this.pfns());
        let ret = after_pages(&this.pfns());
        this.finalize();
        ret
    }

    fn finalize(&mut self) {
        // SAFETY: By the type invariant the operation is set up and not finalized; this ends
        // it (the callers forget or drop `self` right after) and unlocks every page.
        unsafe { ffi::migrate_vma_finalize(&mut self.args) };
        self.pfns.clear();
    }
}

impl Drop for MigrateVma<'_> {
    fn drop(&mut self) {
        self.pfns.maps.unmap_all();
        self.pfns.abandon_dst();
        // SAFETY: By the type invariant the operation is set up and not finalized; with no
        // destination nothing moves.
        unsafe { ffi::migrate_vma_pages(&mut self.args) };
        self.finalize();
    }
}

/// A `migrate_device_pfns` operation (device pages found by frame number, no VMA) between
/// collection and `migrate_device_finalize`, as [`MigrateVma`] is for a VMA: [`commit`]
/// moves what the destinations were set up for, dropping the guard abandons them.
///
/// [`commit`]: MigrateDevice::commit
///
/// # Invariants
///
/// `migrate_device_pfns` collected `pfns.src`, and the operation has not been finalized.
pub(crate) struct MigrateDevice<'a> {
    pfns: &'a mut PfnArrays,
}

impl<'a> MigrateDevice<'a> {
    /// Locks and unmaps the device pages whose plain frame numbers `pfns.src` holds (those it
    /// can lock: the others are left, without `MIGRATE_PFN_MIGRATE`).
    ///
    /// # Safety
    ///
    /// Every entry of `pfns.src` is the frame number of a device-private page whose folios'
    /// zone-device data and ops stay valid while the operation runs.
    pub(crate) unsafe fn collect(pfns: &'a mut PfnArrays) -> Result<Self> {
        let npages = pfns.src.len();
        // As for `MigrateVma::setup`.
        if pfns.dst.iter().any(|d| *d != 0) {
            return Err(EINVAL);
        }
        // SAFETY: Per this function's contract; `src` holds `npages` entries.
        to_result(unsafe { ffi::migrate_device_pfns(pfns.src.as_mut_ptr(), npages) })?;
        // INVARIANT: Collected just above.
        Ok(Self { pfns })
    }

    /// The collected sources and the destinations being set up.
    pub(crate) fn pfns(&mut self) -> Pfns<'_> {
        Pfns { arrays: self.pfns }
    }

    /// Moves the pages whose destinations were set up; `after_pages` sees the arrays between
    /// `migrate_device_pages` and `migrate_device_finalize`. Returns what it returns.
    pub(crate) fn commit<R>(self, after_pages: impl FnOnce(&Pfns<'_>) -> R) -> R {
        let mut this = ManuallyDrop::new(self);
        this.pfns.maps.unmap_all();
        this.pfns.drop_incomplete_groups();
        this.pages();
        retire_moved(&this.pfns());
        let ret = after_pages(&this.pfns());
        this.finalize();
        ret
    }

    fn pages(&mut self) {
        self.pfns.maps.unmap_all();
        let npages = self.pfns.src.len();
        // SAFETY: By the type invariant the sources were collected and not finalized; `dst`
        // holds zero or locked, filled destinations (`PfnArrays` invariant).
        unsafe {
            ffi::migrate_device_pages(
                self.pfns.src.as_mut_ptr(),
                self.pfns.dst.as_mut_ptr(),
                npages,
            )
        };
    }

    fn finalize(&mut self) {
        let npages = self.pfns.src.len();
        // SAFETY: As in `pages`; this ends the operation (the callers forget or drop `self`
        // right after) and unlocks every page.
        unsafe {
            ffi::migrate_device_finalize(
                self.pfns.src.as_mut_ptr(),
                self.pfns.dst.as_mut_ptr(),
                npages,
            )
        };
        self.pfns.clear();
    }
}

impl Drop for MigrateDevice<'_> {
    fn drop(&mut self) {
        self.pfns.maps.unmap_all();
        self.pfns.abandon_dst();
        self.pages();
        self.finalize();
    }
}
