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

use drm_pagemap::migrate;
use drm_pagemap::pagemap::Folios;
use drm_pagemap::pagemap::MigrateDetails;
use drm_pagemap::range::PageRange;
use gpusvm::hmm::fatal_signal_pending;
use gpusvm::hmm::Fault;
use gpusvm::hmm::HmmPfn;
use kernel::fs::File;
use kernel::ioctl::_IOWR;
use kernel::miscdevice::MiscDevice;
use kernel::miscdevice::MiscDeviceOptions;
use kernel::miscdevice::MiscDeviceRegistration;
use kernel::mm::virt::VmaNew;
use kernel::mm::MmWithUser;
use kernel::mm::MmapReadGuard;
use kernel::page::Page;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Relaxed;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;

use crate::driver::VgpuDevice;
use crate::uapi::hmm_dmirror_cmd;
use crate::uapi::HMM_DMIRROR_FLAG_FAIL_ALLOC;
use crate::vm::page_in;
use crate::vm::Access;
use crate::vm::GpuVm;
use crate::vram;
use crate::vram::Vram;

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

/// Bytes the kernel buffers per step of a read, write, snapshot or migration read-back: the
/// user's size never sizes an allocation.
const CHUNK: usize = 2 << 20;

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

/// An open `/dev/hmm_dmirror<N>`: one process's address space as the GPU sees it.
#[pin_data]
pub(crate) struct Mirror {
    #[pin]
    vm: GpuVm,
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
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        KBox::try_pin_init(
            try_pin_init!(Self {
                vm <- GpuVm::new(drm, mm),
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
        let range = PageRange::with_pages(
            usize::try_from(cmd.addr).map_err(|_| EINVAL)?,
            usize::try_from(cmd.npages).map_err(|_| EINVAL)?,
        )?;
        let (start, end) = (range.start(), range.end());
        cmd.cpages = 0;
        cmd.faults = 0;
        let out = cmd.ptr as usize;
        match request {
            READ | READ_UNLOCKED => this.access(start, end, out, false, &mut cmd)?,
            WRITE => this.access(start, end, out, true, &mut cmd)?,
            MIGRATE_TO_DEV => this.migrate_to_device(start, end, out, &mut cmd)?,
            MIGRATE_TO_SYS => this.migrate_to_system(start, end, &mut cmd)?,
            SNAPSHOT => this.snapshot(start, end, out, &mut cmd)?,
            RELEASE => {
                this.vram().evict_all(crate::vram::Signals::Any)?;
            }
            FLAGS => this.flags.store(cmd.npages, Relaxed),
            EXCLUSIVE => this.exclusive(start, end, out, &mut cmd)?,
            CHECK_EXCLUSIVE => this.vm.check_exclusive(start, end)?,
            _ => return Err(ENOTTY),
        }
        writer.write(&cmd)?;
        Ok(0)
    }
}

/// Calls `f(start, end)` on each piece of `[start, end)` that one mapping covers, in order;
/// `EINVAL` at a hole or a mapping that cannot be read (as `test_hmm`).
fn each_readable_vma(
    mmap: &MmapReadGuard<'_>,
    start: usize,
    end: usize,
    mut f: impl FnMut(usize, usize) -> Result,
) -> Result {
    let mut addr = start;
    while addr < end {
        let vma = mmap.vma_lookup(addr).ok_or(EINVAL)?;
        if vma.flags() & kernel::mm::virt::flags::READ == 0 {
            return Err(EINVAL);
        }
        let next = end.min(vma.end());
        f(addr, next)?;
        addr = next;
    }
    Ok(())
}

impl Mirror {
    fn mm(&self) -> Result<ARef<MmWithUser>> {
        self.vm.mm()
    }

    fn vram(&self) -> &Vram {
        &self.vm.drm().vram
    }

    /// The GPU reading (or with `write`, writing) the range through the user buffer at
    /// `user`, a `CHUNK` at a time. `test_hmm` uses one bounce buffer for the whole range and
    /// counts the fault rounds over it; the count reported here is that of the chunk that
    /// took the most, which is the same for the ranges the selftest uses (all unmapped or
    /// all mapped). A failed read writes back the chunks before the one that failed.
    fn access(
        &self,
        start: usize,
        end: usize,
        user: usize,
        write: bool,
        cmd: &mut hmm_dmirror_cmd,
    ) -> Result {
        let mut acc = Access::default();
        let res = self
            .vm
            .access_user(start, end, user, write, CHUNK, &mut acc);
        (cmd.cpages, cmd.faults) = (acc.pages, acc.chunk_faults);
        res
    }

    /// Maps the range for exclusive device access, then returns what the GPU reads there.
    fn exclusive(&self, start: usize, end: usize, out: usize, cmd: &mut hmm_dmirror_cmd) -> Result {
        self.vm.make_exclusive(start, end)?;
        self.access(start, end, out, false, cmd)
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
            // `take_fail_alloc` first: the flag is for this migration whatever the policy.
            folios: match self.take_fail_alloc() {
                true => Folios::Base,
                false => vram::folios(self.vm.drm()),
            },
        };
        {
            let mmap = mm.mmap_read_lock();
            let pagemap = self.vm.pagemap();
            each_readable_vma(&mmap, start, end, |addr, next| {
                match pagemap.ops().populate_mm(
                    pagemap,
                    &mm,
                    &mmap,
                    PageRange::new(addr, next)?,
                    &details,
                ) {
                    Err(e) if e == EBUSY || e == EOPNOTSUPP || e == ENOMEM => Ok(()),
                    other => other,
                }
            })?;
        }
        // Read back through the page table, accepting only this GPU's own pages, a chunk at
        // a time.
        let mut bounce = KVVec::from_elem(0u8, CHUNK.min(end - start), GFP_KERNEL)?;
        let mut writer = UserSlice::new(UserPtr::from_addr(out), end - start).writer();
        let mut addr = start;
        while addr < end {
            let n = (end - addr).min(CHUNK);
            let buf = &mut bounce[..n];
            self.vm
                .walk(&mm, addr, addr + n, Fault::None, true, |i, entry| {
                    if !entry.is_valid() || !self.vm.is_local(entry.pfn()) {
                        return Err(ENOENT);
                    }
                    let page = page_in(buf, i * PAGE_SIZE)?;
                    self.vm.access_local(entry.pfn(), page, false)
                })?;
            writer.write_slice(buf)?;
            addr += n;
        }
        cmd.cpages = ((end - start) / PAGE_SIZE) as u64;
        Ok(())
    }

    /// `HMM_DMIRROR_FLAG_FAIL_ALLOC`: the next migration fails to allocate huge pages and
    /// falls back to base pages. Clears it.
    fn take_fail_alloc(&self) -> bool {
        self.flags.xchg(0, Relaxed) & u64::from(HMM_DMIRROR_FLAG_FAIL_ALLOC) != 0
    }

    /// Migrates this GPU's pages of `[start, end)` back to system memory.
    fn migrate_to_system(&self, start: usize, end: usize, cmd: &mut hmm_dmirror_cmd) -> Result {
        let mm = self.mm().map_err(|_| EINVAL)?;
        let folios = match self.take_fail_alloc() {
            true => Folios::Base,
            false => Folios::Huge,
        };
        let mmap = mm.mmap_read_lock();
        each_readable_vma(&mmap, start, end, |mut addr, next| {
            // In `CHUNK`-aligned pieces, so that the migration's arrays stay bounded and a
            // huge page is never cut in two.
            while addr < next {
                if fatal_signal_pending() {
                    return Err(EINTR);
                }
                let stop = next.min((addr / CHUNK + 1) * CHUNK);
                let range = PageRange::new(addr, stop)?;
                let moved = migrate::migrate_to_ram(&mmap, range, self.vram().region(), folios)?;
                cmd.cpages += moved as u64;
                addr = stop;
            }
            Ok(())
        })
    }

    /// What the CPU maps over `[start, end)`, one `HMM_DMIRROR_PROT_*` byte per page, without
    /// faulting anything in.
    fn snapshot(&self, start: usize, end: usize, out: usize, cmd: &mut hmm_dmirror_cmd) -> Result {
        let mm = self.mm().map_err(|_| EINVAL)?;
        let npages = (end - start) / PAGE_SIZE;
        let step = CHUNK / PAGE_SIZE;
        let mut perms = KVVec::from_elem(0u8, step.min(npages), GFP_KERNEL)?;
        let mut writer = UserSlice::new(UserPtr::from_addr(out), npages).writer();
        let mut addr = start;
        while addr < end {
            let n = ((end - addr) / PAGE_SIZE).min(step);
            let part = &mut perms[..n];
            self.vm.walk(
                &mm,
                addr,
                addr + n * PAGE_SIZE,
                Fault::None,
                false,
                |i, entry| {
                    let prot = part.get_mut(i).ok_or(EINVAL)?;
                    // SAFETY: `walk` calls back under the page table's lock that validated
                    // `entry`.
                    *prot = unsafe { self.prot(entry) };
                    Ok(())
                },
            )?;
            writer.write_slice(part)?;
            addr += n * PAGE_SIZE;
        }
        cmd.cpages = npages as u64;
        Ok(())
    }

    /// The snapshot answer for `entry`.
    ///
    /// # Safety
    ///
    /// `entry` is current: a range fault's answer, used under the lock that validated it.
    unsafe fn prot(&self, entry: HmmPfn) -> u8 {
        if entry.is_error() {
            return PROT_ERROR;
        }
        if !entry.is_valid() {
            return PROT_NONE;
        }
        let mut prot = if self.vm.is_local(entry.pfn()) {
            PROT_LOCAL
        // SAFETY: Per this function's contract.
        } else if unsafe { entry.is_device_private() } {
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
