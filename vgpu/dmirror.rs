// SPDX-License-Identifier: GPL-2.0

//! The HMM conformance interface: each GPU as `/dev/hmm_dmirror<N>`, speaking the ioctls of
//! the kernel's `lib/test_hmm_uapi.h` (same numbers, same structs), so that the kernel's own
//! `hmm-tests` selftest runs unmodified against this stack instead of `test_hmm`.
//!
//! An open file mirrors the opener's address space the way a GPU would: a page table filled
//! by range faults and emptied by an interval notifier over the whole address space, reads
//! and writes through it that reach the GPU's own memory where the data lives there and
//! system pages otherwise, and migrations through the drm_pagemap core.

use core::pin::Pin;

use drm_pagemap::devmem::PAGE_SIZE;
use drm_pagemap::migrate;
use drm_pagemap::migrate::MigrateDetails;
use drm_pagemap::pagemap::Pagemap;
use gpusvm::hmm::fault_range;
use gpusvm::hmm::Fault;
use gpusvm::hmm::HmmPfn;
use gpusvm::notifier::Invalidate;
use gpusvm::notifier::Invalidation;
use gpusvm::notifier::Notifier;
use kernel::fs::File;
use kernel::ioctl::_IOWR;
use kernel::miscdevice::MiscDevice;
use kernel::miscdevice::MiscDeviceOptions;
use kernel::miscdevice::MiscDeviceRegistration;
use kernel::mm::virt::VmaNew;
use kernel::mm::MmWithUser;
use kernel::page::BorrowedPage;
use kernel::page::Page;
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::rbtree::RBTreeNodeReservation;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Mutex;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;

use crate::driver::VgpuDevice;
use crate::uapi::hmm_dmirror_cmd;
use crate::uapi::HMM_DMIRROR_FLAG_FAIL_ALLOC;
use crate::vram;

/// Device node names, one per GPU.
const NAMES: [&CStr; crate::MAX_DEVICES as usize] = [
    c"hmm_dmirror0",
    c"hmm_dmirror1",
    c"hmm_dmirror2",
    c"hmm_dmirror3",
    c"hmm_dmirror4",
    c"hmm_dmirror5",
    c"hmm_dmirror6",
    c"hmm_dmirror7",
];

const fn cmd(nr: u32) -> u32 {
    _IOWR::<hmm_dmirror_cmd>(b'H' as u32, nr)
}

const READ: u32 = cmd(0x00);
const WRITE: u32 = cmd(0x01);
const MIGRATE_TO_DEV: u32 = cmd(0x02);
const MIGRATE_TO_SYS: u32 = cmd(0x03);
const SNAPSHOT: u32 = cmd(0x04);
const EXCLUSIVE: u32 = cmd(0x05);
const CHECK_EXCLUSIVE: u32 = cmd(0x06);
const RELEASE: u32 = cmd(0x07);
const FLAGS: u32 = cmd(0x08);
const READ_UNLOCKED: u32 = cmd(0x09);

// Snapshot answers, per page (`HMM_DMIRROR_PROT_*`).
const PROT_ERROR: u8 = crate::uapi::HMM_DMIRROR_PROT_ERROR as u8;
const PROT_NONE: u8 = crate::uapi::HMM_DMIRROR_PROT_NONE as u8;
const PROT_READ: u8 = crate::uapi::HMM_DMIRROR_PROT_READ as u8;
const PROT_WRITE: u8 = crate::uapi::HMM_DMIRROR_PROT_WRITE as u8;
const PROT_PMD: u8 = crate::uapi::HMM_DMIRROR_PROT_PMD as u8;
const PROT_PUD: u8 = crate::uapi::HMM_DMIRROR_PROT_PUD as u8;
const PROT_ZERO: u8 = crate::uapi::HMM_DMIRROR_PROT_ZERO as u8;
const PROT_LOCAL: u8 = crate::uapi::HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL as u8;
const PROT_REMOTE: u8 = crate::uapi::HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE as u8;

/// Pages one range fault covers at most: bounds the memory a fault reserves up front.
const FAULT_BATCH: usize = 512;

/// Page orders of a PMD and a PUD mapping.
const PMD_ORDER: u32 = 9;
const PUD_ORDER: u32 = 18;

/// The node of one GPU.
#[pin_data]
pub(crate) struct DmirrorNode {
    #[pin]
    reg: MiscDeviceRegistration<Mirror>,
    drm: ARef<VgpuDevice>,
}

impl DmirrorNode {
    /// Registers `/dev/hmm_dmirror<index>` for `drm`.
    pub(crate) fn new(index: u32, drm: ARef<VgpuDevice>) -> Result<impl PinInit<Self, Error>> {
        let name = NAMES.get(index as usize).ok_or(EINVAL)?;
        Ok(try_pin_init!(Self {
            reg <- MiscDeviceRegistration::register(MiscDeviceOptions { name }),
            drm,
        }))
    }
}

/// The mirror's page table: virtual page number to what the CPU mapped there when the GPU
/// last faulted it. Holds no page references: the notifier empties entries before the core
/// mm may free or move their pages, under `pt`'s lock.
#[pin_data]
struct MirrorTable {
    #[pin]
    pt: Mutex<RBTree<usize, HmmPfn>>,
}

impl Invalidate for MirrorTable {
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

/// An open `/dev/hmm_dmirror<N>`: one process's address space as the GPU sees it.
#[pin_data]
pub(crate) struct Mirror {
    #[pin]
    notifier: Notifier<MirrorTable>,
    drm: ARef<VgpuDevice>,
    /// Migrations to this GPU go through its pagemap; holding it keeps the memory alive.
    pagemap: ARef<Pagemap>,
    /// `HMM_DMIRROR_FLAGS`.
    flags: Atomic<u64>,
}

#[vtable]
impl MiscDevice for Mirror {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        // SAFETY: Every registration of this type is the `reg` field of a `DmirrorNode`.
        let node = unsafe { &*kernel::container_of!(core::ptr::from_ref(misc), DmirrorNode, reg) };
        let drm = node.drm.clone();
        let pagemap = vram::pagemap(&drm)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        KBox::try_pin_init(
            try_pin_init!(Self {
                notifier <- Notifier::new(
                    mm,
                    0,
                    usize::MAX & !(PAGE_SIZE - 1),
                    MirrorTable::new_table()?,
                ),
                drm,
                pagemap,
                flags: Atomic::new(0),
            }),
            GFP_KERNEL,
        )
    }

    fn mmap(_this: Pin<&Self>, _file: &File, vma: &VmaNew) -> Result {
        // Zeroed kernel pages inserted into the mapping: a mixed map that is neither
        // anonymous nor file-backed memory (what `mixedmap` snapshots).
        let vma = vma.set_mixedmap();
        let mut addr = vma.start();
        while addr < vma.end() {
            let page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
            vma.vm_insert_page(addr, &page)?;
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    fn ioctl(this: Pin<&Self>, _file: &File, request: u32, arg: usize) -> Result<isize> {
        let user = UserSlice::new(UserPtr::from_addr(arg), size_of::<hmm_dmirror_cmd>());
        let (mut reader, mut writer) = user.reader_writer();
        let mut cmd: hmm_dmirror_cmd = reader.read()?;
        let start = usize::try_from(cmd.addr).map_err(|_| EINVAL)?;
        let size = usize::try_from(cmd.npages)
            .ok()
            .and_then(|n| n.checked_mul(PAGE_SIZE))
            .ok_or(EINVAL)?;
        let end = start.checked_add(size).ok_or(EINVAL)?;
        if start % PAGE_SIZE != 0 || start >= end {
            return Err(EINVAL);
        }
        cmd.cpages = 0;
        cmd.faults = 0;
        let out = cmd.ptr as usize;
        match request {
            READ | READ_UNLOCKED => this.read(start, end, out, &mut cmd)?,
            WRITE => this.write(start, end, out, &mut cmd)?,
            MIGRATE_TO_DEV => this.migrate_to_device(start, end, out, &mut cmd)?,
            MIGRATE_TO_SYS => this.migrate_to_system(start, end, &mut cmd)?,
            SNAPSHOT => this.snapshot(start, end, out, &mut cmd)?,
            RELEASE => {
                this.drm.vram.evict_all()?;
            }
            FLAGS => this.flags.store(cmd.npages, Relaxed),
            // Device-exclusive access is not implemented yet.
            EXCLUSIVE | CHECK_EXCLUSIVE => return Err(EOPNOTSUPP),
            _ => return Err(ENOTTY),
        }
        writer.write(&cmd)?;
        Ok(0)
    }
}

impl MirrorTable {
    fn new_table() -> Result<impl PinInit<Self, Error>> {
        Ok(try_pin_init!(Self {
            pt <- kernel::new_mutex!(RBTree::new(), "MirrorTable::pt"),
        }))
    }
}

/// Where a GPU access goes: the GPU's own memory or a system page.
enum Target {
    Vram(usize),
    System(core::ptr::NonNull<kernel::bindings::page>),
}

impl Mirror {
    fn mm(&self) -> Result<ARef<MmWithUser>> {
        self.notifier.mm().mmget_not_zero().ok_or(EFAULT)
    }

    fn owner(&self) -> usize {
        self.drm.vram.owner()
    }

    /// What a mapped entry points at, if this GPU can access it.
    fn target(&self, entry: HmmPfn) -> Result<Target> {
        if self.drm.vram.is_local_pfn(entry.pfn()) {
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
        let mut addr = start;
        while addr < end {
            let n = ((end - addr) / PAGE_SIZE).min(FAULT_BATCH);
            self.fault_batch(&mm, addr, n, fault, true, |_, _| Ok(()))?;
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
                    pt.insert(node.into_node(addr / PAGE_SIZE + i, *entry));
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
        cpages: &mut u64,
        write: bool,
    ) -> Result {
        let pt = self.notifier.data().pt.lock();
        let mut addr = start;
        while addr < end {
            let entry = *pt.get(&(addr / PAGE_SIZE)).ok_or(ENOENT)?;
            if write && !entry.is_write() {
                return Err(ENOENT);
            }
            let off = addr - base;
            let buf: &mut [u8; PAGE_SIZE] = (&mut bounce[off..off + PAGE_SIZE])
                .try_into()
                .map_err(|_| EINVAL)?;
            self.copy_page(entry, buf, write)?;
            *cpages += 1;
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    /// Reads (or with `write`, writes) the page `entry` maps, which the caller keeps mapped
    /// by holding the table's lock.
    fn copy_page(&self, entry: HmmPfn, buf: &mut [u8; PAGE_SIZE], write: bool) -> Result {
        match self.target(entry)? {
            Target::Vram(pfn) if write => self.drm.vram.write_device_page(pfn, buf),
            Target::Vram(pfn) => self.drm.vram.read_device_page(pfn, buf),
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

    /// The GPU reading or writing `[start, end)`: faults in what the page table lacks, until
    /// every page was accessed.
    fn access_faulting(
        &self,
        start: usize,
        end: usize,
        bounce: &mut [u8],
        cmd: &mut hmm_dmirror_cmd,
        write: bool,
    ) -> Result {
        let mut addr = start;
        loop {
            match self.access(start, addr, end, bounce, &mut cmd.cpages, write) {
                Err(e) if e == ENOENT => {}
                other => return other,
            }
            addr = start + cmd.cpages as usize * PAGE_SIZE;
            self.fault(addr, end, write)?;
            cmd.faults += 1;
        }
    }

    fn read(&self, start: usize, end: usize, out: usize, cmd: &mut hmm_dmirror_cmd) -> Result {
        let mut bounce = KVVec::from_elem(0u8, end - start, GFP_KERNEL)?;
        self.access_faulting(start, end, &mut bounce, cmd, false)?;
        UserSlice::new(UserPtr::from_addr(out), bounce.len())
            .writer()
            .write_slice(&bounce)
    }

    fn write(&self, start: usize, end: usize, out: usize, cmd: &mut hmm_dmirror_cmd) -> Result {
        let mut bounce = KVVec::from_elem(0u8, end - start, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(out), bounce.len())
            .reader()
            .read_slice(&mut bounce)?;
        self.access_faulting(start, end, &mut bounce, cmd, true)
    }

    /// Migrates `[start, end)` to this GPU, one VMA at a time, then returns what the GPU now
    /// holds there. Pages that could not move (another GPU's, shared or file pages, no
    /// memory) are not an error of the migration itself: the read-back then fails with
    /// `ENOENT`, as with `test_hmm`.
    fn migrate_to_device(
        &self,
        start: usize,
        end: usize,
        out: usize,
        cmd: &mut hmm_dmirror_cmd,
    ) -> Result {
        let mm = self.mm().map_err(|_| EINVAL)?;
        let details = MigrateDetails {
            timeslice_ms: 0,
            base_pages_only: self.take_fail_alloc(),
        };
        {
            let mmap = mm.mmap_read_lock();
            let mut addr = start;
            while addr < end {
                let vma = mmap.vma_lookup(addr).ok_or(EINVAL)?;
                if vma.flags() & kernel::mm::virt::flags::READ == 0 {
                    return Err(EINVAL);
                }
                let next = end.min(vma.end());
                let ops = self.pagemap.ops();
                match ops.populate_mm(&self.pagemap, &mm, &mmap, addr, next, &details) {
                    Ok(()) => {}
                    Err(e) if e == EBUSY || e == EOPNOTSUPP || e == ENOMEM => {}
                    Err(e) => return Err(e),
                }
                addr = next;
            }
        }
        // Read back through the page table, accepting only this GPU's own pages.
        let mut bounce = KVVec::from_elem(0u8, end - start, GFP_KERNEL)?;
        let mut addr = start;
        while addr < end {
            let n = ((end - addr) / PAGE_SIZE).min(FAULT_BATCH);
            self.fault_batch(&mm, addr, n, Fault::None, true, |i, entry| {
                if !entry.is_valid() || !self.drm.vram.is_local_pfn(entry.pfn()) {
                    return Err(ENOENT);
                }
                let off = addr - start + i * PAGE_SIZE;
                let buf: &mut [u8; PAGE_SIZE] = (&mut bounce[off..off + PAGE_SIZE])
                    .try_into()
                    .map_err(|_| EINVAL)?;
                self.drm.vram.read_device_page(entry.pfn(), buf)
            })?;
            addr += n * PAGE_SIZE;
        }
        cmd.cpages = ((end - start) / PAGE_SIZE) as u64;
        UserSlice::new(UserPtr::from_addr(out), bounce.len())
            .writer()
            .write_slice(&bounce)
    }

    /// `HMM_DMIRROR_FLAG_FAIL_ALLOC`: the next migration fails to allocate huge pages and
    /// falls back to base pages. Clears it.
    fn take_fail_alloc(&self) -> bool {
        self.flags.xchg(0, Relaxed) & u64::from(HMM_DMIRROR_FLAG_FAIL_ALLOC) != 0
    }

    /// Migrates this GPU's pages of `[start, end)` back to system memory.
    fn migrate_to_system(&self, start: usize, end: usize, cmd: &mut hmm_dmirror_cmd) -> Result {
        let mm = self.mm().map_err(|_| EINVAL)?;
        let base_pages_only = self.take_fail_alloc();
        let mmap = mm.mmap_read_lock();
        let mut addr = start;
        while addr < end {
            let vma = mmap.vma_lookup(addr).ok_or(EINVAL)?;
            if vma.flags() & kernel::mm::virt::flags::READ == 0 {
                return Err(EINVAL);
            }
            let next = end.min(vma.end());
            cmd.cpages +=
                migrate::migrate_to_ram(&mmap, addr, next, self.owner(), base_pages_only)? as u64;
            addr = next;
        }
        Ok(())
    }

    /// What the CPU maps over `[start, end)`, one `HMM_DMIRROR_PROT_*` byte per page, without
    /// faulting anything in.
    fn snapshot(&self, start: usize, end: usize, out: usize, cmd: &mut hmm_dmirror_cmd) -> Result {
        let mm = self.mm().map_err(|_| EINVAL)?;
        let mut perms = KVVec::from_elem(0u8, (end - start) / PAGE_SIZE, GFP_KERNEL)?;
        let mut addr = start;
        while addr < end {
            let n = ((end - addr) / PAGE_SIZE).min(FAULT_BATCH);
            let first = (addr - start) / PAGE_SIZE;
            self.fault_batch(&mm, addr, n, Fault::None, false, |i, entry| {
                perms[first + i] = self.prot(entry);
                Ok(())
            })?;
            addr += n * PAGE_SIZE;
        }
        cmd.cpages = perms.len() as u64;
        UserSlice::new(UserPtr::from_addr(out), perms.len())
            .writer()
            .write_slice(&perms)
    }

    fn prot(&self, entry: HmmPfn) -> u8 {
        if entry.is_error() {
            return PROT_ERROR;
        }
        if !entry.is_valid() {
            return PROT_NONE;
        }
        let mut prot = if self.drm.vram.is_local_pfn(entry.pfn()) {
            PROT_LOCAL
        } else if entry.is_device_private() {
            PROT_REMOTE
        } else if entry.is_zero_page() {
            PROT_ZERO
        } else {
            PROT_NONE
        };
        prot |= if entry.is_write() {
            PROT_WRITE
        } else {
            PROT_READ
        };
        match entry.map_order() {
            PMD_ORDER => prot | PROT_PMD,
            PUD_ORDER => prot | PROT_PUD,
            _ => prot,
        }
    }
}
