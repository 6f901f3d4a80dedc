// SPDX-License-Identifier: GPL-2.0

//! A GPU's view of one process's address space: the GPU page table, filled by range faults
//! (HMM) with this GPU as the device-private owner and emptied by an interval notifier over
//! the whole address space, and GPU reads and writes through it. Where the data lives in this
//! GPU's memory the access goes there; anywhere else it goes to system pages (another GPU's
//! pages are first migrated back by the fault). A GPU access never sees stale data: every
//! CPU page-table change drops the affected entries before it takes effect.

use drm_pagemap::devmem::PAGE_SIZE;
use drm_pagemap::pagemap::Pagemap;
use gpusvm::hmm::fault_range;
use gpusvm::hmm::ExclusivePage;
use gpusvm::hmm::Fault;
use gpusvm::hmm::HmmPfn;
use gpusvm::notifier::Invalidate;
use gpusvm::notifier::Invalidation;
use gpusvm::notifier::Notifier;
use kernel::dma::DataDirection;
use kernel::mm::Mm;
use kernel::mm::MmWithUser;
use kernel::page::BorrowedPage;
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::rbtree::RBTreeNodeReservation;
use kernel::sync::aref::ARef;
use kernel::sync::Mutex;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;

use crate::driver::VgpuDevice;
use crate::vram;

/// Pages one range fault covers at most: bounds the memory a fault reserves up front.
const FAULT_BATCH: usize = 512;

/// The page at byte offset `off` of `buf`.
pub(crate) fn page_in(buf: &mut [u8], off: usize) -> Result<&mut [u8; PAGE_SIZE]> {
    let end = off.checked_add(PAGE_SIZE).ok_or(EINVAL)?;
    buf.get_mut(off..end)
        .ok_or(EINVAL)?
        .try_into()
        .map_err(|_| EINVAL)
}

/// Counters of one GPU access.
#[derive(Default)]
pub(crate) struct Access {
    /// Pages accessed.
    pub(crate) pages: u64,
    /// GPU page faults taken (range faults that filled the page table).
    pub(crate) faults: u64,
}

/// The GPU page table: virtual page number to what the CPU mapped there when the GPU
/// last faulted it. Holds no page references: the notifier empties entries before the core
/// mm may free or move their pages, under `pt`'s lock.
#[pin_data]
struct PageTable {
    #[pin]
    pt: Mutex<RBTree<usize, Pte>>,
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
        while let Some(cursor) = pt.cursor_lower_bound_mut(&first) {
            if *cursor.current().0 >= end {
                break;
            }
            // Dropping the node frees it; no allocation happens here.
            drop(cursor.remove_current());
        }
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
    fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            pt <- kernel::new_mutex!(RBTree::new(), "vgpu::PageTable::pt"),
        })
    }
}

/// Where a GPU access goes: the GPU's own memory or a system page.
enum Target {
    Vram(usize),
    System(core::ptr::NonNull<kernel::bindings::page>),
}

impl GpuVm {
    /// The view of `mm` by the GPU `drm`.
    pub(crate) fn new<'a>(drm: ARef<VgpuDevice>, mm: &'a Mm) -> impl PinInit<Self, Error> + 'a {
        try_pin_init!(Self {
            pagemap: vram::pagemap(&drm)?,
            notifier <- Notifier::new(mm, 0, usize::MAX & !(PAGE_SIZE - 1), PageTable::new()),
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

    fn owner(&self) -> usize {
        self.drm.vram.owner()
    }

    /// Whether `pfn` is a page of this GPU's memory.
    pub(crate) fn is_local(&self, pfn: usize) -> bool {
        self.pagemap.region().contains_pfn(pfn)
    }
    /// What a mapped entry points at, if this GPU can access it.
    fn target(&self, entry: HmmPfn) -> Result<Target> {
        if self.is_local(entry.pfn()) {
            return Ok(Target::Vram(entry.pfn()));
        }
        if entry.is_device_private() {
            // Another GPU's memory: a fault with our owner never maps that.
            return Err(EFAULT);
        }
        entry.page().map(Target::System).ok_or(EFAULT)
    }

    /// Faults `[start, end)` into the mirror's page table, writable if `write`.
    fn fault(&self, start: usize, end: usize, write: bool) -> Result {
        let mm = self.mm()?;
        let fault = if write { Fault::Write } else { Fault::Read };
        self.walk(&mm, start, end, fault, true, |_, _| Ok(()))
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
        let mut addr = start;
        while addr < end {
            let n = ((end - addr) / PAGE_SIZE).min(FAULT_BATCH);
            let first = (addr - start) / PAGE_SIZE;
            self.fault_batch(mm, addr, n, fault, record, |i, entry| {
                each(first + i, entry)
            })?;
            addr += n * PAGE_SIZE;
        }
        Ok(())
    }

    /// One range fault of `n` pages from `addr`; with `record`, records every valid page in
    /// the page table. Calls `each(index, entry)` for every page under the table's lock.
    fn fault_batch(
        &self,
        mm: &MmWithUser,
        addr: usize,
        n: usize,
        fault: Fault,
        record: bool,
        mut each: impl FnMut(usize, HmmPfn) -> Result,
    ) -> Result {
        let mut pfns = KVec::from_elem(HmmPfn::default(), n, GFP_KERNEL)?;
        // Nodes are allocated before the lock: the notifier takes it in reclaim.
        let mut nodes = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..if record { n } else { 0 } {
            nodes.push(RBTreeNodeReservation::new(GFP_KERNEL)?, GFP_KERNEL)?;
        }
        let table = self.notifier.data();
        let mut pt = fault_range(
            &self.notifier,
            mm,
            addr,
            &mut pfns,
            fault,
            self.owner(),
            || table.pt.lock(),
        )?;
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
            let entry = pt.get(&(addr / PAGE_SIZE)).ok_or(ENOENT)?.pfn;
            if write && !entry.is_write() {
                return Err(ENOENT);
            }
            self.copy_page(entry, page_in(bounce, addr - base)?, write)?;
            *pages += 1;
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    /// Reads (or with `write`, writes) the page `entry` maps, which the caller keeps mapped
    /// by holding the table's lock.
    fn copy_page(&self, entry: HmmPfn, buf: &mut [u8; PAGE_SIZE], write: bool) -> Result {
        match self.target(entry)? {
            Target::Vram(pfn) => self.access_local(pfn, buf, write),
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
    pub(crate) fn make_exclusive(&self, start: usize, end: usize) -> Result {
        let mm = self.mm()?;
        let table = self.notifier.data();
        let mut addr = start;
        while addr < end {
            let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
            let page = ExclusivePage::new(&mm, addr, 0)?;
            // The page stays locked until `page` drops, so the CPU cannot take it back (and
            // invalidate the entry) before the entry is in.
            let pte = Pte {
                pfn: HmmPfn::mapped(page.pfn(), true),
                exclusive: true,
            };
            table
                .pt
                .lock()
                .insert(node.into_node(addr / PAGE_SIZE, pte));
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
        let size = end.checked_sub(start).ok_or(EINVAL)?;
        if chunk == 0 || chunk % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        let chunk = size.min(chunk);
        let mut bounce = KVVec::from_elem(0u8, chunk, GFP_KERNEL)?;
        // Both advance chunk by chunk; only one of them is used.
        let (mut source, mut destination) =
            UserSlice::new(UserPtr::from_addr(user), size).reader_writer();
        let mut addr = start;
        while addr < end {
            let n = (end - addr).min(chunk);
            let buf = &mut bounce[..n];
            if write {
                source.read_slice(buf)?;
            }
            let mut part = Access::default();
            let res = self.access_faulting(addr, addr + n, buf, write, &mut part);
            acc.pages += part.pages;
            acc.faults += part.faults;
            res?;
            if !write {
                destination.write_slice(buf)?;
            }
            addr += n;
        }
        Ok(())
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
        loop {
            match self.access(start, addr, end, bounce, &mut acc.pages, write) {
                Err(e) if e == ENOENT => {}
                other => return other,
            }
            addr = start + acc.pages as usize * PAGE_SIZE;
            self.fault(addr, end, write)?;
            acc.faults += 1;
        }
    }
}
