// SPDX-License-Identifier: GPL-2.0

//! A GPU VM on the GPU SVM: the GPU page table (one entry per bound SVM range, a 2 MiB range
//! one entry), filled only by the GPU fault handler, emptied by invalidations; the preferred
//! location of ranges (advice); and GPU reads, writes and atomics through the page table.
//!
//! A GPU access that misses in the page table is a GPU page fault, served as Xe serves one
//! (`xe_svm_handle_pagefault`): collect garbage, find or insert the range, place it where the
//! advice says (`populate_mm` on the chosen pagemap), get its pages, bind it under the notifier
//! lock if they are still valid, else retry, a bounded number of times.
//!
//! Locks: the SVM's outer lock, then the mmap lock (taken by migrations and range faults), then
//! the SVM's notifier lock. The advice lock nests in the outer lock and takes no other: advice
//! changes under the outer lock, so a fault sees one advice throughout.

use core::ops::Range as Span;

use drm_pagemap::pagemap;
use drm_pagemap::pagemap::Folios;
use drm_pagemap::pagemap::Interconnect;
use drm_pagemap::pagemap::MigrateDetails;
use drm_pagemap::pagemap::Pagemap;
use drm_pagemap::range::PageRange;
use gpusvm::hmm::fatal_signal_pending;
use gpusvm::notifier::Invalidation;
use gpusvm::pages::Scan;
use gpusvm::svm::Ctx;
use gpusvm::svm::Driver;
use gpusvm::svm::Geometry;
use gpusvm::svm::Gpusvm;
use gpusvm::svm::LockClasses;
use gpusvm::svm::Range;
use gpusvm::svm::Svm;
use kernel::mm::Mm;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::rbtree::RBTreeNodeReservation;
use kernel::sizes::SZ_2M;
use kernel::sizes::SZ_4K;
use kernel::sizes::SZ_64K;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::sync::Mutex;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;

use crate::driver::VgpuDevice;
use crate::uapi;
use crate::vm::page_in;
use crate::vm::through_bounce;
use crate::vm::Access;
use crate::vram;

/// Bytes each notifier of a VM watches.
const NOTIFIER_SIZE: usize = 512 << 20;

/// Pages a VM's ranges cover at most (64 MiB of address space): a cache of CPU mappings, a
/// fault past it drops the other ranges (they fault again when next used).
const MAX_PAGES: usize = 16384;

/// Rounds of one GPU fault (place, get pages, bind) before `EBUSY`: each round fails only when
/// an invalidation raced with it, or the CPU took an atomic's page back.
const MAX_FAULT_ROUNDS: u32 = 64;

/// Faults one access takes at most per page before `EBUSY` (an invalidation between the
/// fault and the access makes it fault again).
const MAX_FAULTS_PER_PAGE: u32 = 64;

/// GPU SVM counters of one GPU (`drm_vgpu_stats`).
pub(crate) struct SvmStats {
    pub(crate) gpu_faults: Atomic<u64>,
    pub(crate) ranges_created: Atomic<u64>,
    pub(crate) ranges_collected: Atomic<u64>,
    pub(crate) invalidations: Atomic<u64>,
    pub(crate) mapped_system: Atomic<u64>,
    pub(crate) mapped_local: Atomic<u64>,
    pub(crate) mapped_peer: Atomic<u64>,
}

impl Default for SvmStats {
    fn default() -> Self {
        Self {
            gpu_faults: Atomic::new(0),
            ranges_created: Atomic::new(0),
            ranges_collected: Atomic::new(0),
            invalidations: Atomic::new(0),
            mapped_system: Atomic::new(0),
            mapped_local: Atomic::new(0),
            mapped_peer: Atomic::new(0),
        }
    }
}

/// One entry of the GPU page table: a bound range.
struct Pte {
    range: Arc<Range>,
    writable: bool,
}

/// The GPU page table, keyed by range start (ranges never overlap).
pub(crate) struct PageTable {
    tree: RBTree<usize, Pte>,
}

impl PageTable {
    /// The entry mapping `addr`.
    fn lookup(&self, addr: usize) -> Option<&Pte> {
        let key = match self.tree.cursor_lower_bound(&(addr + 1)) {
            Some(c) => c.peek_prev().map(|(k, _)| *k),
            None => self.tree.cursor_back().map(|c| *c.current().0),
        }?;
        self.tree
            .get(&key)
            .filter(|p| p.range.start() <= addr && addr < p.range.end())
    }
}

/// The SVM's driver side: unbinding is dropping the page-table entry.
pub(crate) struct VmDriver {
    stats: ARef<VgpuDevice>,
}

impl Driver for VmDriver {
    type Locked = PageTable;

    fn unbind(&self, pt: &mut PageTable, range: &Range, inv: Option<&Invalidation<'_>>) {
        // Frees the node; never allocates.
        if pt.tree.remove(&range.start()).is_some() && inv.is_some() {
            self.stats
                .vram
                .svm_stats
                .invalidations
                .fetch_add(1, Relaxed);
        }
    }
}

/// Where a range should live.
#[derive(Clone)]
enum Location {
    /// This GPU's memory.
    Default,
    /// System memory.
    System,
    /// The memory of a pagemap (this GPU's or a linked GPU's).
    Pagemap(ARef<Pagemap>),
}

impl Location {
    fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Default, Self::Default) | (Self::System, Self::System) => true,
            (Self::Pagemap(a), Self::Pagemap(b)) => core::ptr::eq::<Pagemap>(&**a, &**b),
            _ => false,
        }
    }
}

/// A VM's advice: sorted, non-overlapping spans; none means [`Location::Default`].
struct Advice {
    list: KVec<(Span<usize>, Location)>,
}

impl Advice {
    fn at(&self, addr: usize) -> Location {
        let i = self.list.partition_point(|(s, _)| s.end <= addr);
        match self.list.get(i) {
            Some((s, l)) if s.start <= addr => l.clone(),
            _ => Location::Default,
        }
    }

    /// The span around `addr` that one piece of advice covers: the piece holding it, or the
    /// gap between two (the default advice). A fault's range stays inside it, so that the
    /// whole range has the advice of its fault (Xe's GPU mappings, split by madvise, do this).
    fn piece_at(&self, addr: usize) -> Span<usize> {
        let i = self.list.partition_point(|(s, _)| s.end <= addr);
        match self.list.get(i) {
            Some((s, _)) if s.start <= addr => s.clone(),
            next => {
                let start = match i.checked_sub(1).and_then(|p| self.list.get(p)) {
                    Some((prev, _)) => prev.end,
                    None => 0,
                };
                start..next.map_or(usize::MAX, |(s, _)| s.start)
            }
        }
    }

    /// Sets `span` to `loc`: splits and replaces what it overlaps, merges equal neighbours.
    /// Returns the old pieces (their pagemap references are for the caller to drop outside
    /// its locks). `ENOSPC` past [`uapi::DRM_VGPU_MAX_ADVICE`] pieces; on any error nothing
    /// changes.
    fn set(&mut self, span: Span<usize>, loc: Location) -> Result<KVec<(Span<usize>, Location)>> {
        let mut out = KVec::with_capacity(self.list.len() + 2, GFP_KERNEL_ACCOUNT)?;
        let mut placed = false;
        for (s, l) in self.list.iter() {
            if s.end <= span.start {
                out.push((s.clone(), l.clone()), GFP_KERNEL_ACCOUNT)?;
                continue;
            }
            if s.start >= span.end {
                if !placed {
                    out.push((span.clone(), loc.clone()), GFP_KERNEL_ACCOUNT)?;
                    placed = true;
                }
                out.push((s.clone(), l.clone()), GFP_KERNEL_ACCOUNT)?;
                continue;
            }
            // Overlaps: keep the parts outside `span`.
            if s.start < span.start {
                out.push((s.start..span.start, l.clone()), GFP_KERNEL_ACCOUNT)?;
            }
            if !placed {
                out.push((span.clone(), loc.clone()), GFP_KERNEL_ACCOUNT)?;
                placed = true;
            }
            if s.end > span.end {
                out.push((span.end..s.end, l.clone()), GFP_KERNEL_ACCOUNT)?;
            }
        }
        if !placed {
            out.push((span, loc), GFP_KERNEL_ACCOUNT)?;
        }
        // Merge touching equal neighbours; drop default pieces (the absence of advice).
        let mut merged: KVec<(Span<usize>, Location)> =
            KVec::with_capacity(out.len(), GFP_KERNEL_ACCOUNT)?;
        for (s, l) in out {
            if matches!(l, Location::Default) {
                continue;
            }
            if let Some((ps, pl)) = merged.last_mut() {
                if ps.end == s.start && pl.same(&l) {
                    ps.end = s.end;
                    continue;
                }
            }
            merged.push((s, l), GFP_KERNEL_ACCOUNT)?;
        }
        if merged.len() > uapi::DRM_VGPU_MAX_ADVICE as usize {
            return Err(ENOSPC);
        }
        Ok(core::mem::replace(&mut self.list, merged))
    }

    /// Whether two pieces of advice (or a piece and a gap) meet at `addr`.
    fn is_edge(&self, addr: usize) -> bool {
        addr > 0 && self.piece_at(addr).start == addr
    }
}

/// One process's address space as one GPU sees it, through the GPU SVM.
#[pin_data]
pub(crate) struct SvmVm {
    #[pin]
    svm: Gpusvm<VmDriver>,
    drm: ARef<VgpuDevice>,
    /// This GPU's memory: the default location, kept alive while the VM lives.
    pagemap: ARef<Pagemap>,
    #[pin]
    advice: Mutex<Advice>,
}

impl SvmVm {
    /// The view of `mm` by the GPU `drm`.
    pub(crate) fn new(drm: ARef<VgpuDevice>, mm: &Mm) -> Result<impl PinInit<Self, Error>> {
        let pagemap = vram::pagemap(&drm)?;
        let parent: &kernel::faux::Device = drm.as_ref();
        // The GPU VA window is the process's: its user address space (larger with 5-level
        // paging), less page 0.
        // SAFETY: `mm` is a live address space; `task_size` is set at exec and then constant.
        let task_size = unsafe { (*mm.as_raw()).__bindgen_anon_1.task_size };
        let svm = Gpusvm::new(
            mm,
            parent.as_ref(),
            Geometry {
                va: PAGE_SIZE..task_size & !(PAGE_SIZE - 1),
                notifier_size: NOTIFIER_SIZE,
                chunks: &[SZ_2M, SZ_64K, SZ_4K],
                max_pages: MAX_PAGES,
            },
            LockClasses {
                outer: (c"vgpu::SvmVm::svm", kernel::static_lock_class!()),
                inner: (c"vgpu::SvmVm::notifier_lock", kernel::static_lock_class!()),
            },
            VmDriver { stats: drm.clone() },
            PageTable {
                tree: RBTree::new(),
            },
        )?;
        Ok(try_pin_init!(Self {
            svm <- svm,
            drm,
            pagemap,
            advice <- kernel::new_mutex!(Advice { list: KVec::new() }, "vgpu::SvmVm::advice"),
        }))
    }

    /// A user reference on the address space; `EFAULT` once it is gone.
    pub(crate) fn mm(&self) -> Result<ARef<kernel::mm::MmWithUser>> {
        self.svm.mm().mmget_not_zero().ok_or(EFAULT)
    }

    fn stats(&self) -> &SvmStats {
        &self.drm.vram.svm_stats
    }

    fn ctx(&self, write: bool, atomic: bool) -> Ctx {
        Ctx {
            write,
            devmem_only: atomic,
            allow_mixed: true,
            owner: Some(self.drm.vram.owner()),
        }
    }

    /// `DRM_IOCTL_VGPU_VM_MADVISE`: `span` prefers `loc` from now on.
    pub(crate) fn advise(
        &self,
        span: PageRange,
        loc: u32,
        pagemap: Option<ARef<Pagemap>>,
    ) -> Result {
        let loc = match (loc, pagemap) {
            (uapi::drm_vgpu_location_DRM_VGPU_LOCATION_DEFAULT, None) => Location::Default,
            (uapi::drm_vgpu_location_DRM_VGPU_LOCATION_SYSTEM, None) => Location::System,
            (uapi::drm_vgpu_location_DRM_VGPU_LOCATION_PAGEMAP, Some(p)) => {
                // Memory outside this GPU's interconnect group is not ours to reach.
                if p.region().owner() != self.drm.vram.owner() {
                    return Err(ENOLINK);
                }
                Location::Pagemap(p)
            }
            _ => return Err(EINVAL),
        };
        let span = span.start()..span.end();
        // Under the SVM's lock, as faults read the advice: none sees it change midway, and
        // none binds a range across a new edge before that range goes.
        let mut svm = self.svm.lock();
        let (old, edges) = {
            let mut advice = self.advice.lock();
            let old = advice.set(span.clone(), loc)?;
            (
                old,
                [span.start, span.end].map(|e| advice.is_edge(e).then_some(e)),
            )
        };
        // Ranges across the edges that now exist go (they fault again into ranges on either
        // side; advice merged with its neighbours leaves no edge), and what is bound inside
        // faults again, under the new advice. Data already placed stays until then.
        let mut cut = 0;
        // The two edges.
        for edge in edges.into_iter().flatten() {
            cut += svm.remove_across(edge);
        }
        self.stats().ranges_collected.fetch_add(cut as u64, Relaxed);
        svm.invalidate(span);
        drop(svm);
        // The old advice's pagemap references go after the locks.
        drop(old);
        Ok(())
    }

    /// The memory a fault at `addr` places its range in (`None`: system memory).
    fn target(&self, addr: usize, atomic: bool) -> Option<ARef<Pagemap>> {
        match self.advice.lock().at(addr) {
            Location::Default => Some(self.pagemap.clone()),
            // Atomics need device memory: this GPU's.
            Location::System if atomic => Some(self.pagemap.clone()),
            Location::System => None,
            Location::Pagemap(p) => Some(p),
        }
    }

    /// Moves `range` into `pm`'s memory; pages of a GPU outside the group first go back to
    /// system memory (a range fault with our owner takes them there), then the range moves.
    fn place(&self, svm: &Svm<'_, VmDriver>, range: &Range, pm: &Pagemap, atomic: bool) -> Result {
        let details = MigrateDetails {
            // Atomics get the GPU's timeslice: the CPU waits for it before it takes the
            // page back, so that the GPU makes progress.
            timeslice_ms: if atomic {
                self.drm.vram.timeslice_max_ms.load(Relaxed)
            } else {
                0
            },
            folios: vram::folios(&self.drm),
        };
        let span = PageRange::new(range.start(), range.end())?;
        match pagemap::populate_mm(pm, self.svm.mm(), span, &details) {
            Err(e) if e == EBUSY => {
                svm.get_pages(range, &self.ctx(false, false))?;
                pagemap::populate_mm(pm, self.svm.mm(), span, &details)
            }
            r => r,
        }
    }

    /// Serves a GPU page fault at `addr`: after it the page table maps `addr` (writable with
    /// `write`; in device memory with `atomic`), or an error says why not. A prefetch places
    /// the range as a fault does, except that with system-memory advice it also takes the
    /// range's device pages back to system memory.
    fn fault(&self, addr: usize, write: bool, atomic: bool, prefetch: bool) -> Result {
        let stats = self.stats();
        let mut svm = self.svm.lock();
        let mut evicted = false;
        let mut removed = false;
        for _ in 0..MAX_FAULT_ROUNDS {
            if fatal_signal_pending() {
                return Err(EINTR);
            }
            let collected = svm.collect_garbage();
            stats.ranges_collected.fetch_add(collected as u64, Relaxed);
            // Read under the SVM's lock, as advice changes remove ranges under it.
            let gpuva = self.advice.lock().piece_at(addr);
            let found = svm
                .find_or_insert(addr, gpuva, &self.ctx(write, false))
                // Outside the window is an address no mapping holds.
                .map_err(|e| if e == EINVAL { EFAULT } else { e })?;
            stats
                .ranges_collected
                .fetch_add(found.collected as u64, Relaxed);
            if found.created {
                stats.ranges_created.fetch_add(1, Relaxed);
            }
            let range = found.range;
            if atomic && !range.devmem_possible() {
                return Err(EOPNOTSUPP);
            }
            if prefetch && !evicted && self.target(addr, false).is_none() {
                svm.evict(&range).map_err(timeout_busy)?;
                evicted = true;
            }
            let ctx = self.ctx(found.writable, atomic);
            match self.serve(&svm, &range, &ctx, addr, found.created) {
                Ok(true) => return Ok(()),
                // Raced (an invalidation, a CPU access taking an atomic's page back): again.
                Ok(false) => {}
                // The CPU unmapped part of the range meanwhile: collected next round, and the
                // rest of the mapping faults into new ranges.
                Err(e) if e == EFAULT && range.is_unmapped() => {}
                // A range older than a change of the mappings under it (an `mprotect` split
                // its VMA; that invalidation marks nothing unmapped; a migration then finds
                // the range past its mapping, EINVAL): made again, once.
                Err(e)
                    if (e == EFAULT || e == EPERM || e == EINVAL)
                        && !removed
                        && range.npages() > 1 =>
                {
                    svm.remove(&range);
                    removed = true;
                }
                Err(e) => return Err(timeout_busy(e)),
            }
        }
        Err(EBUSY)
    }

    /// One round of a fault at `addr` on `range`: places it (where the advice at `addr` says),
    /// gets its pages, binds it if they are still valid. `Ok(false)` if the round raced and
    /// should be tried again.
    fn serve(
        &self,
        svm: &Svm<'_, VmDriver>,
        range: &Arc<Range>,
        ctx: &Ctx,
        addr: usize,
        created: bool,
    ) -> Result<bool> {
        let stats = self.stats();
        let atomic = ctx.devmem_only;
        let target = self
            .target(addr, atomic)
            .filter(|_| range.devmem_possible());
        if let Some(pm) = &target {
            // A range just created was never placed. A whole huge one, with huge device folios,
            // migrates at once, without a scan first: where its data is in that memory already
            // the migration moves nothing, but it still locks and unmaps the pages for a moment
            // and invalidates other mirrors of them (as Xe's fault path does for every new
            // range). A smaller new range may lie inside a device huge folio, which that would
            // split; an older one, invalidated, may well be in place: those are scanned first.
            let fresh_huge = created
                && range.npages() == SZ_2M / PAGE_SIZE
                && vram::folios(&self.drm) == Folios::Huge;
            let placed = !fresh_huge && svm.scan(range, ctx.owner, Some(pm))? == Scan::Equal;
            if !placed {
                match self.place(svm, range, pm, atomic) {
                    Ok(()) => {}
                    // Pages busy (a racing CPU fault, migration): again.
                    Err(e) if e == EBUSY && atomic => return Ok(false),
                    // No room, pages busy: the range stays in system memory, unless it must be
                    // in device memory.
                    Err(e) if atomic || e == EINTR => return Err(e),
                    Err(_) => {}
                }
            }
        }
        match svm.get_pages(range, ctx) {
            // A CPU access took an atomic's page back meanwhile: place it again.
            Err(e) if e == EFAULT && atomic && !range.is_unmapped() => return Ok(false),
            // Pages of two device memories (racing migrations) or of another driver's: all
            // back to system memory, then place the range again (as Xe does).
            Err(e) if e == EOPNOTSUPP => {
                svm.evict(range).map_err(timeout_busy)?;
                return Ok(false);
            }
            r => r?,
        };
        let node = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        let mut b = svm.notifier_lock();
        let Some(pages) = b.pages(range) else {
            return Ok(false);
        };
        let (system, device) = pages.counts();
        let local = pages
            .pagemap()
            .is_some_and(|p| core::ptr::eq(p.region(), self.drm.vram.region()));
        let pte = Pte {
            range: range.clone(),
            writable: ctx.write,
        };
        let old = b.driver().tree.insert(node.into_node(range.start(), pte));
        drop(b);
        drop(old);
        stats.gpu_faults.fetch_add(1, Relaxed);
        stats.mapped_system.fetch_add(system as u64, Relaxed);
        match local {
            true => stats.mapped_local.fetch_add(device as u64, Relaxed),
            false => stats.mapped_peer.fetch_add(device as u64, Relaxed),
        };
        Ok(true)
    }

    /// The GPU accessing the page at `addr` through its page table, reading into or writing
    /// from `buf`; `Ok(false)` on a miss (not mapped, or not writable for a write).
    fn access_page(&self, addr: usize, buf: &mut [u8; PAGE_SIZE], write: bool) -> Result<bool> {
        let dev: &kernel::faux::Device = self.drm.as_ref();
        let dev = dev.as_ref();
        let mut b = self.svm.notifier_lock();
        let Some(range) = b
            .driver()
            .lookup(addr)
            .filter(|p| p.writable || !write)
            .map(|p| p.range.clone())
        else {
            return Ok(false);
        };
        let index = (addr - range.start()) / PAGE_SIZE;
        let Some(a) = b.pages(&range).and_then(|p| p.get(index)).copied() else {
            return Ok(false);
        };
        let vram = &self.drm.vram;
        // Under the notifier lock: the page stays where the entry says for the one page this
        // touches (as a TLB invalidation waits for the accesses in flight).
        match a.proto {
            Interconnect::System => {
                let ptr = drm_pagemap::copy::system_ptr(
                    dev,
                    a.addr as kernel::dma::DmaAddress,
                    PAGE_SIZE,
                )?;
                // A bounce buffer (swiotlb) is refreshed from the page first, also for a
                // write, so that the sync after it copies back only what the GPU wrote.
                b.sync_for_device(&range, index);
                if write {
                    // `ptr` is the kernel address of the page the live DMA mapping `a`
                    // covers, mapped by the process until the lock drops; `buf` is distinct.
                    // SAFETY: As above.
                    unsafe {
                        core::ptr::copy_nonoverlapping(buf.as_ptr(), ptr.as_ptr(), PAGE_SIZE)
                    };
                    b.sync_for_cpu(&range, index);
                } else {
                    // SAFETY: As above.
                    unsafe {
                        core::ptr::copy_nonoverlapping(ptr.as_ptr(), buf.as_mut_ptr(), PAGE_SIZE)
                    };
                }
            }
            proto if proto == vram::LOCAL_VRAM && write => vram.write_at(a.addr, buf)?,
            proto if proto == vram::LOCAL_VRAM => vram.read_at(a.addr, buf)?,
            proto => vram.access_link(proto, a.addr, buf, write)?,
        }
        Ok(true)
    }

    /// The GPU's atomic add of `value` to the word at `addr` through its page table: the old
    /// value, or `None` on a miss (not mapped writable, or in system memory).
    fn atomic_page(&self, addr: usize, value: u32) -> Result<Option<u32>> {
        let mut b = self.svm.notifier_lock();
        let Some(range) = b
            .driver()
            .lookup(addr)
            .filter(|p| p.writable)
            .map(|p| p.range.clone())
        else {
            return Ok(None);
        };
        let page = addr & !(PAGE_SIZE - 1);
        let index = (page - range.start()) / PAGE_SIZE;
        let Some(a) = b.pages(&range).and_then(|p| p.get(index)).copied() else {
            return Ok(None);
        };
        if a.proto == Interconnect::System {
            return Ok(None);
        }
        // Under the notifier lock: the page stays in device memory meanwhile.
        self.drm
            .vram
            .fetch_add(a.proto, a.addr, addr - page, value)
            .map(Some)
    }

    /// The GPU reading (or with `write`, writing) `[start, end)` from (into) `bounce`, page by
    /// page, faulting what the page table lacks.
    fn access_faulting(
        &self,
        start: usize,
        end: usize,
        bounce: &mut [u8],
        write: bool,
        acc: &mut Access,
    ) -> Result {
        let mut addr = start;
        while addr < end {
            let page = page_in(bounce, addr - start)?;
            let mut faults = 0;
            while !self.access_page(addr, page, write)? {
                if faults >= MAX_FAULTS_PER_PAGE {
                    return Err(EBUSY);
                }
                if fatal_signal_pending() {
                    return Err(EINTR);
                }
                self.fault(addr, write, false, false)?;
                faults += 1;
                acc.faults += 1;
            }
            acc.pages += 1;
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    /// The GPU reading `[start, end)` into the calling process's buffer at `user` (or, with
    /// `write`, writing the range from it), through a kernel bounce buffer of at most `chunk`
    /// bytes at a time.
    pub(crate) fn access_user(
        &self,
        span: PageRange,
        user: usize,
        write: bool,
        chunk: usize,
        acc: &mut Access,
    ) -> Result {
        through_bounce(span.start(), span.end(), user, write, chunk, |addr, buf| {
            self.access_faulting(addr, addr + buf.len(), buf, write, acc)
        })
    }

    /// `DRM_IOCTL_VGPU_VM_PREFETCH`: serves a fault on every range of `span` now.
    pub(crate) fn prefetch(&self, span: PageRange) -> Result {
        let mut addr = span.start();
        while addr < span.end() {
            if fatal_signal_pending() {
                return Err(EINTR);
            }
            self.fault(addr, false, false, true)?;
            // On to the end of the range just bound (or the next page if it went already).
            let next = {
                let mut b = self.svm.notifier_lock();
                b.driver().lookup(addr).map(|p| p.range.end())
            };
            addr = next.unwrap_or(addr + PAGE_SIZE).max(addr + PAGE_SIZE);
        }
        Ok(())
    }

    /// `DRM_IOCTL_VGPU_VM_ATOMIC`: adds `value` to the 32-bit word at `addr` in device memory;
    /// returns the old value.
    pub(crate) fn atomic_add(&self, addr: usize, value: u32) -> Result<u32> {
        for _ in 0..MAX_FAULTS_PER_PAGE {
            if fatal_signal_pending() {
                return Err(EINTR);
            }
            if let Some(old) = self.atomic_page(addr, value)? {
                return Ok(old);
            }
            self.fault(addr & !(PAGE_SIZE - 1), true, true, false)?;
        }
        Err(EBUSY)
    }
}

/// A range eviction's `ETIME` (invalidations kept racing) as the uAPI's `EBUSY`.
fn timeout_busy(e: Error) -> Error {
    if e == ETIME {
        EBUSY
    } else {
        e
    }
}

/// `DRM_IOCTL_VGPU_RESIDENCY`: where `span`'s pages are, as the GPU `drm` sees them.
pub(crate) fn residency(
    drm: &VgpuDevice,
    mm: &kernel::mm::MmWithUser,
    span: PageRange,
) -> Result<[u64; 4]> {
    let own = drm.vram.region();
    let mut counts = [0u64; 4];
    gpusvm::hmm::snapshot(mm, span, Some(drm.vram.owner()), |pfn, pages| {
        let slot = match pfn {
            None => 3,
            Some((_, false)) => 0,
            Some((pfn, true)) if own.contains_pfn(pfn) => 1,
            Some(_) => 2,
        };
        counts[slot] += pages as u64;
    })?;
    Ok(counts)
}

#[kunit_tests(vgpu_gpusvm)]
mod tests {
    use super::*;
    use crate::testing::gpu;

    /// Device pages through the GPU SVM: a range half in the GPU's memory scans mixed, all of it
    /// equal to the GPU's memory (other to no memory in particular), `get_pages` maps it in
    /// place in the GPU's memory, also for a device-memory-only fault; evicted, it scans system
    /// and a device-memory-only fault there gives `EFAULT`.
    #[test]
    fn device_pages_are_classified_and_mapped() -> Result {
        let gpu = gpu()?;
        let drm: ARef<VgpuDevice> = gpu.device().into();
        let raw = gpusvm::hmm::kunit_mmap_anon(4 * SZ_64K)?;
        let addr = raw.next_multiple_of(SZ_64K);
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let vm = KBox::pin_init(SvmVm::new(drm.clone(), mm)?, GFP_KERNEL)?;
        let pagemap = vram::pagemap(&drm)?;
        let details = MigrateDetails::default();
        let own = Some(drm.vram.owner());
        // Nothing is asserted under the SVM's lock (a failed assertion there would hang).
        let (scans, placed, local, only, evicted) = {
            let mut svm = vm.svm.lock();
            let gpuva = vm.advice.lock().piece_at(addr);
            let range = svm.find_or_insert(addr, gpuva, &vm.ctx(true, false))?.range;
            let (start, n) = (range.start(), range.npages());
            let data = KVVec::from_elem(0x5au8, n * PAGE_SIZE, GFP_KERNEL)?;
            UserSlice::new(UserPtr::from_addr(start), data.len())
                .writer()
                .write_slice(&data)?;
            let system = svm.scan(&range, own, Some(&pagemap))?;
            let half = PageRange::with_pages(start, n.div_ceil(2))?;
            pagemap::populate_mm(&pagemap, mm, half, &details)?;
            let mixed = svm.scan(&range, own, Some(&pagemap))?;
            pagemap::populate_mm(&pagemap, mm, PageRange::new(start, range.end())?, &details)?;
            let equal = svm.scan(&range, own, Some(&pagemap))?;
            let other = svm.scan(&range, own, None)?;
            let placed = svm.get_pages(&range, &vm.ctx(true, false))?;
            let local = {
                let b = svm.notifier_lock();
                let pages = b.pages(&range);
                pages.is_some_and(|p| {
                    (0..n).all(|i| p.get(i).is_some_and(|a| a.proto == vram::LOCAL_VRAM))
                })
            };
            let only = svm.get_pages(&range, &vm.ctx(true, true)).map(|p| p.device);
            svm.evict(&range)?;
            let after = svm.scan(&range, own, Some(&pagemap))?;
            let refused = svm.get_pages(&range, &vm.ctx(true, true)).err();
            (
                [system, mixed, equal, other, after],
                (placed.system, placed.device, n),
                local
                    && placed
                        .pagemap
                        .is_some_and(|p| core::ptr::eq(p.region(), drm.vram.region())),
                only,
                refused,
            )
        };
        assert_eq!(
            scans,
            [
                Scan::System,
                Scan::Mixed,
                Scan::Equal,
                Scan::Other,
                Scan::System
            ]
        );
        assert_eq!(placed.0, 0);
        assert_eq!(placed.1, placed.2);
        assert!(local);
        assert_eq!(only, Ok(placed.2));
        assert_eq!(evicted, Some(EFAULT));
        Ok(())
    }
}
