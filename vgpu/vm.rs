// SPDX-License-Identifier: GPL-2.0

//! A GPU's view of one process's address space: the GPU page table, filled by range faults
//! (HMM) with this GPU as the device-private owner and emptied by an interval notifier over
//! the whole address space, and GPU reads and writes through it. Where the data lives in this
//! GPU's memory the access goes there; anywhere else it goes to system pages (another GPU's
//! pages are first migrated back by the fault). A GPU access never sees stale data: every
//! CPU page-table change drops the affected entries before it takes effect.

use core::ops::Range;

use drm_pagemap::migrate;
use drm_pagemap::owner::Owner;
use drm_pagemap::pagemap::Folios;
use drm_pagemap::pagemap::Pagemap;
use drm_pagemap::range::PageRange;
use gpusvm::hmm::fatal_signal_pending;
use gpusvm::hmm::fault_range;
use gpusvm::hmm::ExclusivePage;
use gpusvm::hmm::Fault;
use gpusvm::hmm::HmmPfn;
use gpusvm::notifier::Event;
use gpusvm::notifier::Invalidate;
use gpusvm::notifier::Invalidation;
use gpusvm::notifier::Notifier;
use kernel::dma::DataDirection;
use kernel::mm::MmWithUser;
use kernel::page::BorrowedPage;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::rbtree::RBTreeNode;
use kernel::rbtree::RBTreeNodeReservation;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Mutex;
use kernel::time::delay::fsleep;
use kernel::time::Delta;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;

use crate::driver::VgpuDevice;
use crate::vram;

/// Pages one range fault covers at most: bounds the memory a fault reserves up front.
const FAULT_BATCH: usize = 512;

/// Entries the GPU page table holds at most (64 MiB of address space in base pages). The table
/// is a cache of CPU mappings: past this, a fault drops the entries outside the range it fills
/// (see [`Table::make_room`]), so a process cannot make it grow with its address space.
const MAX_ENTRIES: usize = 16384;

/// Rounds of migrating read-only pages of this GPU's memory to system memory that one write
/// fault takes at most before it gives up with `EBUSY` (each round moves all it found; a page
/// stays only if it was busy, say locked by a concurrent migration).
const MAX_MIGRATION_ROUNDS: u32 = 16;

/// Retries of making one page exclusive against racing invalidations before `EBUSY`.
const MAX_EXCLUSIVE_RETRIES: u32 = 1000;

/// Fault-and-access rounds of one chunk before `EBUSY`.
const MAX_ACCESS_ROUNDS: u32 = 1000;

/// Bytes of a 2 MiB huge page.
const HUGE_SIZE: usize = PAGE_SIZE << 9;

/// The page at byte offset `off` of `buf`.
pub(crate) fn page_in(buf: &mut [u8], off: usize) -> Result<&mut [u8; PAGE_SIZE]> {
    let end = off.checked_add(PAGE_SIZE).ok_or(EINVAL)?;
    buf.get_mut(off..end)
        .ok_or(EINVAL)?
        .try_into()
        .map_err(|_| EINVAL)
}

/// A GPU access of `[start, end)` (page-aligned) from or into the calling process's buffer at
/// `user`, through a kernel bounce buffer of at most `chunk` bytes (a non-zero multiple of a
/// page), a chunk at a time: the user copies cannot run under a page table's lock.
/// `access(addr, buf)` makes the GPU read the chunk at `addr` into `buf` (or, with `write`,
/// write `buf` there). The bounce buffer lives as long as the access: charged to the caller.
pub(crate) fn through_bounce(
    start: usize,
    end: usize,
    user: usize,
    write: bool,
    chunk: usize,
    mut access: impl FnMut(usize, &mut [u8]) -> Result,
) -> Result {
    let size = end.checked_sub(start).ok_or(EINVAL)?;
    if chunk == 0 || chunk % PAGE_SIZE != 0 {
        return Err(EINVAL);
    }
    let chunk = size.min(chunk);
    let mut bounce = KVVec::from_elem(0u8, chunk, GFP_KERNEL_ACCOUNT)?;
    // Both advance chunk by chunk; only one of them is used.
    let (mut source, mut destination) =
        UserSlice::new(UserPtr::from_addr(user), size).reader_writer();
    let mut addr = start;
    while addr < end {
        if fatal_signal_pending() {
            return Err(EINTR);
        }
        let n = (end - addr).min(chunk);
        let buf = &mut bounce[..n];
        if write {
            source.read_slice(buf)?;
        }
        access(addr, buf)?;
        if !write {
            destination.write_slice(buf)?;
        }
        addr += n;
    }
    Ok(())
}

/// Counters of one GPU access.
#[derive(Default)]
pub(crate) struct Access {
    /// Pages accessed.
    pub(crate) pages: u64,
    /// GPU page faults taken (range faults that filled the page table).
    pub(crate) faults: u64,
    /// The most faults one chunk of the access took (what a GPU that handled the chunks in
    /// parallel would take).
    pub(crate) chunk_faults: u64,
}

/// The GPU page table: virtual page number to what the CPU mapped there when the GPU
/// last faulted it. Holds no page references: the notifier empties entries before the core
/// mm may free or move their pages, under `pt`'s lock.
#[pin_data]
struct PageTable {
    #[pin]
    pt: Mutex<Table>,
    /// This GPU's own cookie (not its interconnect group's owner, which peers share): the
    /// invalidations it raises itself to make a page exclusive to it leave its table alone,
    /// those of a peer do not.
    owner: Owner,
}

/// The entries of a [`PageTable`], at most [`MAX_ENTRIES`] of them (bar the range a fault is
/// filling), each a node accounted to the memory cgroup of the process that faulted it.
struct Table {
    tree: RBTree<usize, Pte>,
    len: usize,
}

impl Table {
    fn new() -> Self {
        Self {
            tree: RBTree::new(),
            len: 0,
        }
    }

    fn get(&self, index: usize) -> Option<&Pte> {
        self.tree.get(&index)
    }

    fn insert(&mut self, node: RBTreeNode<usize, Pte>) {
        if self.tree.insert(node).is_none() {
            self.len += 1;
        }
    }

    /// Drops the entries of pages `[first, end)`. Frees, never allocates.
    fn remove_range(&mut self, first: usize, end: usize) {
        while let Some(cursor) = self.tree.cursor_lower_bound_mut(&first) {
            if *cursor.current().0 >= end {
                break;
            }
            drop(cursor.remove_current());
            self.len -= 1;
        }
    }

    /// Makes room for `n` more entries: if the table would outgrow [`MAX_ENTRIES`], drops
    /// every entry outside `keep` (the pages being filled). Nothing depends on an entry
    /// staying: the next access faults it in again. (A page mapped for exclusive access that
    /// loses its entry stays exclusive in the CPU page table until the CPU touches it; only
    /// `check_exclusive` no longer sees it.)
    fn make_room(&mut self, n: usize, keep: &Range<usize>) {
        if self.len + n <= MAX_ENTRIES {
            return;
        }
        let mut cursor = self.tree.cursor_front_mut();
        while let Some(c) = cursor {
            if keep.contains(c.current().0) {
                cursor = c.move_next();
            } else {
                let (next, node) = c.remove_current();
                drop(node);
                self.len -= 1;
                cursor = next;
            }
        }
    }
}

/// One entry of the GPU page table.
#[derive(Clone, Copy)]
struct Pte {
    /// What the CPU mapped there when the GPU faulted it.
    pfn: HmmPfn,
    /// Mapped for exclusive (atomic) access by this GPU: the CPU's next access revokes it.
    exclusive: bool,
}

impl Invalidate for PageTable {
    fn invalidate(notifier: &Notifier<Self>, range: &Invalidation<'_>, cur_seq: usize) -> bool {
        let table = notifier.data();
        // Our own `make_device_exclusive`: the page stays, now for this GPU alone, and
        // `make_exclusive` maps it (as `nouveau_svm_range_invalidate` does).
        if range.event() == Event::Exclusive && range.is_owned_by(table.owner) {
            return true;
        }
        let mut pt = if range.blockable() {
            table.pt.lock()
        } else {
            match table.pt.try_lock() {
                Some(pt) => pt,
                None => return false,
            }
        };
        notifier.set_seq(cur_seq);
        let (first, end) = (range.start() / PAGE_SIZE, range.end().div_ceil(PAGE_SIZE));
        pt.remove_range(first, end);
        true
    }
}

/// One process's address space as one GPU sees it.
#[pin_data]
pub(crate) struct GpuVm {
    #[pin]
    notifier: Notifier<PageTable>,
    drm: ARef<VgpuDevice>,
    /// The GPU's own memory, reached through its pagemap's `device_map`.
    pagemap: ARef<Pagemap>,
}

impl PageTable {
    fn new(owner: Owner) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            pt <- kernel::new_mutex!(Table::new(), "vgpu::PageTable::pt"),
            owner,
        })
    }
}

/// The cookie a GPU makes pages exclusive to itself with: its DRM device's address, unique to
/// it, where the owner of its memory is shared with its interconnect group.
fn exclusive_owner(drm: &VgpuDevice) -> Owner {
    // SAFETY: The DRM device is this driver's own and outlives every GPU VM using the cookie
    // (they hold a reference on it); it only names invalidations, never pages.
    unsafe { Owner::of(drm) }
}

/// Where a GPU access goes: the GPU's own memory, a linked peer's, or a system page.
enum Target {
    Vram(usize),
    Peer(usize),
    System(core::ptr::NonNull<kernel::bindings::page>),
}

impl GpuVm {
    /// The view of `mm` by the GPU `drm`.
    pub(crate) fn new<'a>(
        drm: ARef<VgpuDevice>,
        mm: &'a MmWithUser,
    ) -> impl PinInit<Self, Error> + 'a {
        try_pin_init!(Self {
            pagemap: vram::pagemap(&drm)?,
            notifier <- Notifier::new(
                mm,
                0,
                usize::MAX & !(PAGE_SIZE - 1),
                PageTable::new(exclusive_owner(&drm)),
            ),
            drm,
        })
    }

    /// The GPU reading (or with `write`, writing) its own page `pfn` from (into) `buf`, at
    /// the address its pagemap maps it at for the GPU.
    pub(crate) fn access_local(
        &self,
        pfn: usize,
        buf: &mut [u8; PAGE_SIZE],
        write: bool,
    ) -> Result {
        let pagemap = &*self.pagemap;
        let dev = pagemap.device();
        // DMA terms: the device reads memory "to device", writes it "from device".
        let dir = match write {
            true => DataDirection::FromDevice,
            false => DataDirection::ToDevice,
        };
        let addr = pagemap.ops().device_map(pagemap, dev, pfn, 0, dir)?;
        let res = match addr.proto {
            vram::LOCAL_VRAM if write => self.drm.vram.write_at(addr.addr, buf),
            vram::LOCAL_VRAM => self.drm.vram.read_at(addr.addr, buf),
            _ => Err(EOPNOTSUPP),
        };
        pagemap.ops().device_unmap(pagemap, dev, addr);
        res
    }

    /// The GPU.
    pub(crate) fn drm(&self) -> &VgpuDevice {
        &self.drm
    }

    /// The pagemap of the GPU's memory: migrations to the GPU go through it, and holding it
    /// keeps the memory alive.
    pub(crate) fn pagemap(&self) -> &Pagemap {
        &self.pagemap
    }

    /// A user reference on the address space; `EFAULT` once it is gone.
    pub(crate) fn mm(&self) -> Result<ARef<MmWithUser>> {
        self.notifier.mm().mmget_not_zero().ok_or(EFAULT)
    }

    fn owner(&self) -> Owner {
        self.drm.vram.owner()
    }

    /// Whether `pfn` is a page of this GPU's memory.
    pub(crate) fn is_local(&self, pfn: usize) -> bool {
        self.pagemap.region().contains_pfn(pfn)
    }
    /// What a mapped entry points at, if this GPU can access it.
    ///
    /// # Safety
    ///
    /// `entry` is current: an entry of the page table read under its lock, which the caller
    /// holds while it uses the result.
    unsafe fn target(&self, entry: HmmPfn) -> Result<Target> {
        if self.is_local(entry.pfn()) {
            return Ok(Target::Vram(entry.pfn()));
        }
        // SAFETY: Per this function's contract: the notifier drops entries under the table's
        // lock before their pages go.
        if unsafe { entry.is_device_private() } {
            // Another GPU's memory: a fault with our owner maps only that of GPUs in our
            // interconnect group, which we reach in place.
            return Ok(Target::Peer(entry.pfn()));
        }
        // SAFETY: As above.
        unsafe { entry.page() }.map(Target::System).ok_or(EFAULT)
    }

    /// Faults `[start, end)` into the mirror's page table, writable if `write`.
    ///
    /// A write fault leaves this GPU's own pages read-only where the CPU maps them so
    /// (`mprotect`, copy-on-write after fork): those move to system memory first and are
    /// faulted again, which breaks the sharing or fails with `EPERM` as a CPU write would.
    fn fault(&self, start: usize, end: usize, write: bool) -> Result {
        let mm = self.mm()?;
        if !write {
            return self.walk(&mm, start, end, Fault::Read, true, |_, _| Ok(()));
        }
        for _ in 0..MAX_MIGRATION_ROUNDS {
            // The first and last read-only own page, as page indices from `start`, and
            // whether one is part of a huge mapping. (Nothing is allocated in the callback:
            // it runs under the table's lock, which the notifier takes in reclaim.)
            let mut stuck: Option<(usize, usize)> = None;
            let mut huge = false;
            self.walk(&mm, start, end, Fault::Write, true, |i, entry| {
                // SAFETY: `walk` calls back under the table's lock with the answer its range
                // fault validated there.
                if unsafe { entry.needs_migration_for_write() } {
                    huge |= entry.map_order() > 0;
                    stuck = Some(stuck.map_or((i, i), |(first, _)| (first, i)));
                }
                Ok(())
            })?;
            let Some((first, last)) = stuck else {
                return Ok(());
            };
            if fatal_signal_pending() {
                return Err(EINTR);
            }
            // Everything between moves too (only this GPU's pages move, and the fault just
            // found the whole range mapped, so no hole lies inside).
            let (mut a, mut b) = (start + first * PAGE_SIZE, start + (last + 1) * PAGE_SIZE);
            let mmap = mm.mmap_read_lock();
            // A PMD-mapped folio moves whole: cover its aligned range, within the mappings.
            if huge {
                let (lo, hi) = (
                    mmap.vma_lookup(a).ok_or(EFAULT)?.start(),
                    mmap.vma_lookup(b - PAGE_SIZE).ok_or(EFAULT)?.end(),
                );
                a = (a & !(HUGE_SIZE - 1)).max(lo);
                b = b.checked_next_multiple_of(HUGE_SIZE).unwrap_or(b).min(hi);
            }
            // A racing munmap leaves a hole (`ENOENT` from the migration): to the GPU that is
            // an unmapped address, as for a CPU access.
            migrate::migrate_to_ram(
                &mmap,
                PageRange::new(a, b)?,
                self.drm.vram.region(),
                Folios::Huge,
            )
            .map_err(|e| if e == ENOENT { EFAULT } else { e })?;
        }
        Err(EBUSY)
    }

    /// Range faults over `[start, end)` of `mm`, at most `FAULT_BATCH` pages each; with
    /// `record`, records every valid page in the page table. Calls `each(index, entry)` for
    /// every page (`index` counted from `start`) under the table's lock.
    pub(crate) fn walk(
        &self,
        mm: &MmWithUser,
        start: usize,
        end: usize,
        fault: Fault,
        record: bool,
        mut each: impl FnMut(usize, HmmPfn) -> Result,
    ) -> Result {
        // The pages this walk fills stay in the table while it makes room (if they fit).
        let walk_pages = start / PAGE_SIZE..end.div_ceil(PAGE_SIZE);
        let mut addr = start;
        while addr < end {
            let n = ((end - addr) / PAGE_SIZE).min(FAULT_BATCH);
            let first = (addr - start) / PAGE_SIZE;
            let keep = if walk_pages.len() <= MAX_ENTRIES {
                walk_pages.clone()
            } else {
                addr / PAGE_SIZE..addr / PAGE_SIZE + n
            };
            self.fault_batch(mm, addr, n, fault, record.then_some(&keep), |i, entry| {
                each(first + i, entry)
            })?;
            addr += n * PAGE_SIZE;
        }
        Ok(())
    }

    /// One range fault of `n` pages from `addr`; with `record` (the pages to keep if the
    /// table must make room), records every valid page in the page table. Calls
    /// `each(index, entry)` for every page under the table's lock.
    fn fault_batch(
        &self,
        mm: &MmWithUser,
        addr: usize,
        n: usize,
        fault: Fault,
        record: Option<&Range<usize>>,
        mut each: impl FnMut(usize, HmmPfn) -> Result,
    ) -> Result {
        let mut pfns = KVec::from_elem(HmmPfn::default(), n, GFP_KERNEL)?;
        // Nodes are allocated before the lock: the notifier takes it in reclaim. They live as
        // long as the process's GPU VM: charged to its memory cgroup.
        let mut nodes = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..if record.is_some() { n } else { 0 } {
            nodes.push(RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?, GFP_KERNEL)?;
        }
        let table = self.notifier.data();
        // SAFETY: `PageTable::invalidate` calls `set_seq` under `table.pt`'s lock, and nothing
        // else calls it.
        let mut pt = unsafe {
            fault_range(
                &self.notifier,
                mm,
                addr,
                &mut pfns,
                fault,
                Some(self.owner()),
                || table.pt.lock(),
            )
        }?;
        if let Some(keep) = record {
            pt.make_room(n, keep);
        }
        for (i, entry) in pfns.iter().enumerate() {
            if entry.is_valid() {
                if let Some(node) = nodes.pop() {
                    let pte = Pte {
                        pfn: *entry,
                        exclusive: false,
                    };
                    pt.insert(node.into_node(addr / PAGE_SIZE + i, pte));
                }
            }
            each(i, *entry)?;
        }
        Ok(())
    }

    /// Copies mapped pages from `start` into `bounce` (which starts at `base`) under the
    /// table's lock; `ENOENT` at the first page not mapped (writable, for `write`).
    fn access(
        &self,
        base: usize,
        start: usize,
        end: usize,
        bounce: &mut [u8],
        pages: &mut u64,
        write: bool,
    ) -> Result {
        let pt = self.notifier.data().pt.lock();
        let mut addr = start;
        while addr < end {
            let entry = pt.get(addr / PAGE_SIZE).ok_or(ENOENT)?.pfn;
            if write && !entry.is_write() {
                return Err(ENOENT);
            }
            // SAFETY: `entry` was read from the table under `pt`, still held.
            unsafe { self.copy_page(entry, page_in(bounce, addr - base)?, write) }?;
            *pages += 1;
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    /// Reads (or with `write`, writes) the page `entry` maps.
    ///
    /// # Safety
    ///
    /// `entry` is an entry of the page table, read under its lock, which the caller holds.
    unsafe fn copy_page(&self, entry: HmmPfn, buf: &mut [u8; PAGE_SIZE], write: bool) -> Result {
        // SAFETY: Per this function's contract.
        match unsafe { self.target(entry) }? {
            Target::Vram(pfn) => self.access_local(pfn, buf, write),
            // The peer's page stays where it is while the table's lock is held: moving it
            // invalidates the entry first.
            Target::Peer(pfn) => self.drm.vram.access_peer(pfn, buf, write),
            Target::System(page) => {
                // SAFETY: The page is mapped by the process and stays so while the table's
                // lock is held: the notifier drops the entry under it before unmapping.
                let page = unsafe { BorrowedPage::from_raw(page) };
                if write {
                    // SAFETY: `buf` is a whole page, distinct from the target page.
                    unsafe { page.write_raw(buf.as_ptr(), 0, PAGE_SIZE) }
                } else {
                    // SAFETY: As above.
                    unsafe { page.read_raw(buf.as_mut_ptr(), 0, PAGE_SIZE) }
                }
            }
        }
    }

    /// Maps `[start, end)` for exclusive access by this GPU (device atomics), page by page:
    /// the CPU mappings become device-exclusive entries, and the GPU page table maps the
    /// pages until the CPU's next access to them revokes it.
    ///
    /// The notifier protocol of a range fault, as `nouveau_atomic_range_fault`: the sequence
    /// is read before the page is made exclusive (with this GPU as the owner, so that the
    /// invalidation this raises is recognised as ours and skipped) and checked under the
    /// table's lock before the entry goes in; a racing `munmap` or migration makes it retry.
    pub(crate) fn make_exclusive(&self, start: usize, end: usize) -> Result {
        let mm = self.mm()?;
        let table = self.notifier.data();
        let mut addr = start;
        while addr < end {
            let node = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
            let mut retries = 0;
            let (page, mut pt) = loop {
                if fatal_signal_pending() {
                    return Err(EINTR);
                }
                if retries >= MAX_EXCLUSIVE_RETRIES {
                    return Err(EBUSY);
                }
                if retries > 0 {
                    // The last try left the page exclusive to us: marking it again would
                    // first restore it, with an invalidation that makes every try retry.
                    // Restore it now, before the sequence is read (as a write fault).
                    self.fault(addr, addr + PAGE_SIZE, true)?;
                }
                retries += 1;
                let seq = self.notifier.read_begin();
                let page = ExclusivePage::new(&mm, addr, Some(exclusive_owner(&self.drm)))?;
                let delay = self.drm().exclusive_delay_ms.load(Relaxed);
                if delay > 0 && retries == 1 {
                    // The test knob's window (on the first try only, so that retries stay
                    // quick), where a racing `munmap` must make us retry.
                    fsleep(Delta::from_millis(delay.into()));
                }
                let pt = table.pt.lock();
                if !self.notifier.read_retry(seq) {
                    break (page, pt);
                }
                drop(pt);
                drop(page);
            };
            // The page stays locked until `page` drops, and no invalidation ran since the
            // sequence was read: the entry goes in before the CPU can take the page back.
            let pte = Pte {
                // SAFETY: The page the CPU maps for us exclusively, locked by `page`; the
                // notifier drops the entry before the page goes.
                pfn: unsafe { HmmPfn::mapped(page.pfn(), true) },
                exclusive: true,
            };
            let index = addr / PAGE_SIZE;
            pt.make_room(1, &(index..index + 1));
            pt.insert(node.into_node(index, pte));
            drop(pt);
            drop(page);
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    /// `EPERM` if some page of `[start, end)` is still mapped for exclusive access.
    pub(crate) fn check_exclusive(&self, start: usize, end: usize) -> Result {
        let pages = start / PAGE_SIZE..end.div_ceil(PAGE_SIZE);
        let pt = self.notifier.data().pt.lock();
        if pt
            .tree
            .iter()
            .any(|(index, pte)| pte.exclusive && pages.contains(index))
        {
            return Err(EPERM);
        }
        Ok(())
    }

    /// The GPU reading `[start, end)` into the calling process's buffer at `user` (or, with
    /// `write`, writing the range from it), through a kernel bounce buffer of at most
    /// `chunk` bytes, a chunk at a time: the user copies cannot run under the page table's
    /// lock. `start` and `end` are page-aligned, `chunk` a non-zero multiple of a page.
    pub(crate) fn access_user(
        &self,
        start: usize,
        end: usize,
        user: usize,
        write: bool,
        chunk: usize,
        acc: &mut Access,
    ) -> Result {
        through_bounce(start, end, user, write, chunk, |addr, buf| {
            let mut part = Access::default();
            let res = self.access_faulting(addr, addr + buf.len(), buf, write, &mut part);
            acc.pages += part.pages;
            acc.faults += part.faults;
            acc.chunk_faults = acc.chunk_faults.max(part.faults);
            res
        })
    }

    /// The GPU reading (or with `write`, writing) `[start, end)` from (into) `bounce`:
    /// faults in what the page table lacks, until every page was accessed. `start` and `end`
    /// are page-aligned and `bounce` is `end - start` bytes.
    fn access_faulting(
        &self,
        start: usize,
        end: usize,
        bounce: &mut [u8],
        write: bool,
        acc: &mut Access,
    ) -> Result {
        if start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 || bounce.len() != end - start {
            return Err(EINVAL);
        }
        let mut addr = start;
        // Pages of this access are counted from here (`acc` may carry earlier ones).
        let done = acc.pages;
        // Each round either accesses every page or faults in what was missing; what a fault
        // maps stays until an invalidation, so rounds end unless invalidations keep racing.
        for _ in 0..MAX_ACCESS_ROUNDS {
            match self.access(start, addr, end, bounce, &mut acc.pages, write) {
                Err(e) if e == ENOENT => {}
                other => return other,
            }
            if fatal_signal_pending() {
                return Err(EINTR);
            }
            addr = start + (acc.pages - done) as usize * PAGE_SIZE;
            self.fault(addr, end, write)?;
            acc.faults += 1;
        }
        Err(EBUSY)
    }
}

#[kunit_tests(vgpu_gpuvm)]
mod tests {
    use super::*;
    use crate::testing::gpu;
    use drm_pagemap::pagemap::MigrateDetails;
    use kernel::uaccess::UserPtr;
    use kernel::uaccess::UserSlice;

    /// A page of marker `m`.
    fn marked(m: u8) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        for (i, b) in page.iter_mut().enumerate() {
            *b = m ^ (i as u8);
        }
        page
    }

    /// A GPU access through the bounce buffer goes a chunk at a time, the last one short: 10
    /// pages in chunks of 3 read and then write every byte, each page once; a chunk that is
    /// not a whole number of pages is refused.
    #[test]
    fn user_access_goes_chunk_by_chunk() -> Result {
        const PAGES: usize = 10;
        const LEN: usize = PAGES * PAGE_SIZE;
        let gpu = gpu()?;
        // The GPU's range and the user buffer, both in the test kthread's address space.
        let range = gpusvm::hmm::kunit_mmap_anon(LEN)?;
        let user = gpusvm::hmm::kunit_mmap_anon(LEN)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let vm = KBox::pin_init(GpuVm::new(gpu.device().into(), mm), GFP_KERNEL)?;
        let mut data = KVVec::from_elem(0u8, LEN, GFP_KERNEL)?;
        for (i, page) in data.chunks_mut(PAGE_SIZE).enumerate() {
            page.copy_from_slice(&marked(i as u8));
        }
        UserSlice::new(UserPtr::from_addr(range), LEN)
            .writer()
            .write_slice(&data)?;

        // Read: the user buffer gets the range's bytes.
        let mut acc = Access::default();
        vm.access_user(range, range + LEN, user, false, 3 * PAGE_SIZE, &mut acc)?;
        assert_eq!(acc.pages, PAGES as u64);
        assert!(acc.faults >= 1 && acc.chunk_faults <= acc.faults);
        let mut back = KVVec::from_elem(0u8, LEN, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(user), LEN)
            .reader()
            .read_slice(&mut back)?;
        assert!(back[..] == data[..]);

        // Write: the range gets the user buffer's bytes, page 9 (the short chunk) included.
        for (i, page) in data.chunks_mut(PAGE_SIZE).enumerate() {
            page.copy_from_slice(&marked(0x80 | i as u8));
        }
        UserSlice::new(UserPtr::from_addr(user), LEN)
            .writer()
            .write_slice(&data)?;
        let mut acc = Access::default();
        vm.access_user(range, range + LEN, user, true, 3 * PAGE_SIZE, &mut acc)?;
        assert_eq!(acc.pages, PAGES as u64);
        UserSlice::new(UserPtr::from_addr(range), LEN)
            .reader()
            .read_slice(&mut back)?;
        assert!(back[..] == data[..]);

        // A chunk of no page, or of part of one, is refused before anything is accessed.
        let mut acc = Access::default();
        assert_eq!(
            vm.access_user(range, range + LEN, user, false, 0, &mut acc),
            Err(EINVAL)
        );
        assert_eq!(
            vm.access_user(range, range + LEN, user, false, PAGE_SIZE + 1, &mut acc),
            Err(EINVAL)
        );
        assert_eq!(acc.pages, 0);
        Ok(())
    }

    /// A GPU fault starting inside a 2 MiB folio in the GPU's memory finds the pages it names
    /// (7.3's `hmm_vma_handle_absent_pmd()` reports the folio's head for each of them), and
    /// reads and writes through them reach those pages, as the CPU sees them.
    #[test]
    fn fault_inside_device_huge_page() -> Result {
        let gpu = gpu()?;
        // The test's kthread gets an address space with its first mapping.
        let raw = gpusvm::hmm::kunit_mmap_anon(2 * HUGE_SIZE)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let addr = raw.next_multiple_of(HUGE_SIZE);
        let vm = KBox::pin_init(GpuVm::new(gpu.device().into(), mm), GFP_KERNEL)?;

        // The untouched aligned 2 MiB (a huge hole) moves to the GPU as one huge folio.
        {
            let mmap = mm.mmap_read_lock();
            let pagemap = vm.pagemap();
            pagemap.ops().populate_mm(
                pagemap,
                mm,
                &mmap,
                PageRange::with_len(addr, HUGE_SIZE)?,
                &MigrateDetails::default(),
            )?;
        }
        // From the aligned start every page is right on any kernel: mark each in VRAM.
        let mut pfns = KVec::with_capacity(FAULT_BATCH, GFP_KERNEL)?;
        vm.walk(
            mm,
            addr,
            addr + HUGE_SIZE,
            Fault::Read,
            false,
            |_, entry| {
                pfns.push(entry, GFP_KERNEL)?;
                Ok(())
            },
        )?;
        assert_eq!(pfns.len(), HUGE_SIZE / PAGE_SIZE);
        assert!(pfns
            .iter()
            .all(|e| e.map_order() == 9 && vm.is_local(e.pfn())));
        for (i, entry) in pfns.iter().enumerate() {
            vm.access_local(entry.pfn(), &mut marked(i as u8), true)?;
        }

        // From an unaligned start: page 1 is page 1, not the head.
        let (first, n) = (5, 3);
        let mut found = KVec::with_capacity(n, GFP_KERNEL)?;
        let start = addr + first * PAGE_SIZE;
        vm.walk(
            mm,
            start,
            start + n * PAGE_SIZE,
            Fault::Read,
            true,
            |_, e| {
                found.push(e, GFP_KERNEL)?;
                Ok(())
            },
        )?;
        for (k, entry) in found.iter().enumerate() {
            assert_eq!(entry.pfn(), pfns[first + k].pfn());
            assert_eq!(entry.map_order(), 9);
        }
        // A GPU access through the page table from there reads and writes the right pages.
        let mut buf = KVVec::from_elem(0u8, n * PAGE_SIZE, GFP_KERNEL)?;
        let mut acc = Access::default();
        vm.access_faulting(start, start + n * PAGE_SIZE, &mut buf, false, &mut acc)?;
        for k in 0..n {
            assert!(buf[k * PAGE_SIZE..(k + 1) * PAGE_SIZE] == marked((first + k) as u8));
        }
        buf[..PAGE_SIZE].copy_from_slice(&marked(0xa5));
        vm.access_faulting(
            start,
            start + PAGE_SIZE,
            &mut buf[..PAGE_SIZE],
            true,
            &mut acc,
        )?;

        // The CPU sees the same: the written page where it was written, the others intact.
        let mut cpu = KVVec::from_elem(0u8, HUGE_SIZE, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(addr), HUGE_SIZE)
            .reader()
            .read_slice(&mut cpu)?;
        for i in 0..HUGE_SIZE / PAGE_SIZE {
            let want = if i == first { 0xa5 } else { i as u8 };
            assert!(cpu[i * PAGE_SIZE..(i + 1) * PAGE_SIZE] == marked(want));
        }
        Ok(())
    }

    /// Exclusive (atomic) access under the notifier protocol: the entries go in (the
    /// invalidation our own `make_device_exclusive` raises is skipped), marking the range
    /// again converges instead of invalidating itself forever, the GPU reads the data through
    /// them, and a CPU write revokes exactly the page it touches.
    #[test]
    fn exclusive_entries_follow_the_cpu() -> Result {
        const PAGES: usize = 8;
        let gpu = gpu()?;
        let addr = gpusvm::hmm::kunit_mmap_anon(PAGES * PAGE_SIZE)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let vm = KBox::pin_init(GpuVm::new(gpu.device().into(), mm), GFP_KERNEL)?;
        let mut data = KVVec::from_elem(0u8, PAGES * PAGE_SIZE, GFP_KERNEL)?;
        for (i, page) in data.chunks_mut(PAGE_SIZE).enumerate() {
            page.copy_from_slice(&marked(i as u8));
        }
        UserSlice::new(UserPtr::from_addr(addr), data.len())
            .writer()
            .write_slice(&data)?;
        let end = addr + PAGES * PAGE_SIZE;

        vm.make_exclusive(addr, end)?;
        assert_eq!(vm.check_exclusive(addr, end).err(), Some(EPERM));
        // Again: each page is exclusive to us already.
        vm.make_exclusive(addr, end)?;
        assert_eq!(vm.check_exclusive(addr, end).err(), Some(EPERM));

        // The GPU reads through the exclusive entries, without a fault.
        let mut buf = KVVec::from_elem(0u8, PAGES * PAGE_SIZE, GFP_KERNEL)?;
        let mut acc = Access::default();
        vm.access_faulting(addr, end, &mut buf, false, &mut acc)?;
        assert_eq!(acc.faults, 0);
        assert!(buf[..] == data[..]);

        // A CPU write to page 3 takes it back: only its entry goes.
        let page3 = addr + 3 * PAGE_SIZE;
        UserSlice::new(UserPtr::from_addr(page3), PAGE_SIZE)
            .writer()
            .write_slice(&marked(0x5a))?;
        assert!(vm.check_exclusive(page3, page3 + PAGE_SIZE).is_ok());
        assert_eq!(vm.check_exclusive(addr, page3).err(), Some(EPERM));
        assert_eq!(
            vm.check_exclusive(page3 + PAGE_SIZE, end).err(),
            Some(EPERM)
        );
        // And the GPU sees the CPU's write.
        vm.access_faulting(
            page3,
            page3 + PAGE_SIZE,
            &mut buf[..PAGE_SIZE],
            false,
            &mut acc,
        )?;
        assert!(buf[..PAGE_SIZE] == marked(0x5a));
        Ok(())
    }
}
