// SPDX-License-Identifier: GPL-2.0

//! The copy engine: moves pages between system memory and VRAM asynchronously, one job at a
//! time in submission order on the GPU's own ordered workqueue, like a DMA engine would.

use core::ptr::NonNull;

use drm_pagemap::devmem::PageCopy;
use drm_pagemap::devmem::SystemPage;
use drm_pagemap::pending::workqueue::Order;
use drm_pagemap::pending::workqueue::OwnedQueue;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::sync::Completion;
use kernel::time::delay::fsleep;
use kernel::time::Delta;
use kernel::workqueue::Work;
use kernel::workqueue::WorkItem;

/// VRAM contents: real memory standing in for the device's.
///
/// # Invariants
///
/// `ptr` is a `VVec<u8>`'s buffer of `len` bytes, owned by this object.
pub(crate) struct Backing {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: The buffer is plain memory owned by `Backing`; jobs touching it are serialised per
// page by the migration protocol (a device page is locked while being copied).
unsafe impl Send for Backing {}
// SAFETY: As above.
unsafe impl Sync for Backing {}

impl Backing {
    /// `len` bytes of zeroed memory.
    pub(crate) fn new(len: usize) -> Result<Self> {
        let v = KVVec::from_elem(0u8, len, GFP_KERNEL)?;
        let (ptr, len, _cap) = v.into_raw_parts();
        // INVARIANT: Taken from a `VVec` of `len` bytes.
        Ok(Self {
            ptr: NonNull::new(ptr).ok_or(ENOMEM)?,
            len,
        })
    }

    /// The page at index `index`, if inside the buffer.
    fn page(&self, index: usize) -> Result<*mut [u8; PAGE_SIZE]> {
        let offset = index.checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
        if offset + PAGE_SIZE > self.len {
            return Err(EINVAL);
        }
        // SAFETY: `offset + PAGE_SIZE <= len`, inside the buffer.
        Ok(unsafe { self.ptr.as_ptr().add(offset) }.cast())
    }

    /// Copies VRAM page `index` into `dst`.
    pub(crate) fn read_page(&self, index: usize, dst: &mut [u8; PAGE_SIZE]) -> Result {
        let src = self.page(index)?;
        // SAFETY: `src` is a page of our buffer; `dst` is a distinct buffer.
        unsafe { core::ptr::copy_nonoverlapping(src.cast::<u8>(), dst.as_mut_ptr(), PAGE_SIZE) };
        Ok(())
    }

    /// Copies system page `sys` straight into VRAM page `index` (no bounce).
    fn fill_from(&self, index: usize, sys: &SystemPage<'_>) -> Result {
        let dst = self.page(index)?;
        // `dst` is the destination of a migration: its device page is locked and mapped
        // nowhere, so nothing else touches it meanwhile.
        // SAFETY: `dst` is a whole page of our buffer, distinct from any system page.
        unsafe { sys.read_raw(dst.cast()) };
        Ok(())
    }

    /// Copies VRAM page `index` straight into system page `sys` (no bounce).
    fn drain_to(&self, index: usize, sys: &SystemPage<'_>) -> Result {
        let src = self.page(index)?;
        // `src` is the source of a migration: its device page is locked and unmapped (GPU
        // mappings were invalidated first), so nothing writes it meanwhile.
        // SAFETY: `src` is a whole page of our buffer, distinct from any system page.
        unsafe { sys.write_raw(src.cast()) };
        Ok(())
    }

    /// Overwrites VRAM page `index` with `src`, or zeroes.
    pub(crate) fn write_page(&self, index: usize, src: Option<&[u8; PAGE_SIZE]>) -> Result {
        let dst = self.page(index)?.cast::<u8>();
        match src {
            // SAFETY: `dst` is a page of our buffer; `src` is a distinct buffer.
            Some(src) => unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, PAGE_SIZE) },
            // SAFETY: As above.
            None => unsafe { core::ptr::write_bytes(dst, 0, PAGE_SIZE) },
        }
        Ok(())
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // SAFETY: By the type invariant this is the buffer of a `VVec` of `len` bytes.
        drop(unsafe { KVVec::from_raw_parts(self.ptr.as_ptr(), self.len, self.len) });
    }
}

/// Which way a job copies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyDir {
    ToVram,
    ToRam,
}

/// One submitted copy.
/// A [`PageCopy`] handed to the engine's worker: the system page as a raw pointer, valid
/// because [`CopyEngine::copy`] waits for the job before its caller's borrow ends.
#[derive(Clone, Copy)]
struct RawCopy {
    device_pfn: usize,
    system: Option<NonNull<kernel::bindings::page>>,
}

// SAFETY: The page is locked by the migration until the job has finished.
unsafe impl Send for RawCopy {}
// SAFETY: As above.
unsafe impl Sync for RawCopy {}

#[pin_data]
struct CopyJob {
    #[pin]
    work: Work<CopyJob>,
    #[pin]
    done: Completion,
    copies: KVVec<RawCopy>,
    dir: CopyDir,
    vram: Arc<VramPages>,
    result: Atomic<i32>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for CopyJob { self.work }
}

/// What a job needs to address VRAM by device page frame number.
pub(crate) struct VramPages {
    pub(crate) backing: Backing,
    pub(crate) pfn_first: usize,
    pub(crate) bytes_copied: Atomic<u64>,
    /// Race widener (debugfs `vgpu<N>/copy_delay_ms`): how long each job waits before it
    /// copies, as a slow or busy engine would. Tests use it to hold a migration inside its copy.
    pub(crate) copy_delay_ms: Atomic<u32>,
}

impl VramPages {
    fn index(&self, pfn: usize) -> Result<usize> {
        pfn.checked_sub(self.pfn_first).ok_or(EINVAL)
    }

    /// Runs the copies of one job.
    ///
    /// # Safety
    ///
    /// The system pages of `copies` are valid and locked by a migration (as in the
    /// [`PageCopy`]s they came from) until this returns.
    unsafe fn run(&self, copies: &[RawCopy], dir: CopyDir) -> Result {
        for c in copies {
            let index = self.index(c.device_pfn)?;
            // SAFETY: Per this function's contract, for its duration.
            let system = c.system.map(|p| unsafe { SystemPage::from_raw(p) });
            match (dir, system) {
                (CopyDir::ToVram, Some(sys)) => self.backing.fill_from(index, &sys)?,
                (CopyDir::ToVram, None) => self.backing.write_page(index, None)?,
                (CopyDir::ToRam, Some(sys)) => self.backing.drain_to(index, &sys)?,
                (CopyDir::ToRam, None) => return Err(EINVAL),
            }
            self.bytes_copied.fetch_add(PAGE_SIZE as u64, Relaxed);
        }
        Ok(())
    }
}

impl WorkItem for CopyJob {
    type Pointer = Arc<CopyJob>;

    fn run(this: Arc<CopyJob>) {
        let delay = this.vram.copy_delay_ms.load(Relaxed);
        if delay > 0 {
            // Bounded by the knob's maximum; the submitter waits for the job anyway.
            fsleep(Delta::from_millis(delay.into()));
        }
        // SAFETY: `CopyEngine::copy` queued the job with pages its caller's migration holds
        // locked, and waits for the job to finish before returning.
        let ret = match unsafe { this.vram.run(&this.copies, this.dir) } {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        };
        this.result.store(ret, Relaxed);
        this.done.complete_all();
    }
}

/// A GPU's copy engine.
pub(crate) struct CopyEngine {
    queue: OwnedQueue,
    vram: Arc<VramPages>,
}

impl CopyEngine {
    pub(crate) fn new(name: &CStr, vram: Arc<VramPages>) -> Result<Self> {
        Ok(Self {
            queue: OwnedQueue::new(name, Order::Ordered)?,
            vram,
        })
    }

    /// The VRAM this engine copies to and from.
    pub(crate) fn vram(&self) -> &VramPages {
        &self.vram
    }

    /// Runs `copies` as one job and waits for it: migration needs the data in place before it
    /// remaps the pages, and the caller holds the pages locked meanwhile.
    pub(crate) fn copy(&self, copies: &[PageCopy<'_>], dir: CopyDir) -> Result {
        if copies.is_empty() {
            return Ok(());
        }
        // As long as the migration's batch: virtually contiguous if need be.
        let mut list = KVVec::with_capacity(copies.len(), GFP_KERNEL)?;
        for c in copies {
            list.push(
                RawCopy {
                    device_pfn: c.device_pfn,
                    system: c.system.map(|s| s.as_raw()),
                },
                GFP_KERNEL,
            )?;
        }
        let job = Arc::pin_init(
            try_pin_init!(CopyJob {
                work <- kernel::new_work!("CopyJob::work"),
                done <- Completion::new(),
                copies: list,
                dir,
                vram: self.vram.clone(),
                result: Atomic::new(0),
            }),
            GFP_KERNEL,
        )?;
        // A new job cannot be queued already.
        let _ = self.queue.enqueue(job.clone());
        job.done.wait_for_completion();
        match job.result.load(Relaxed) {
            0 => Ok(()),
            e => Err(Error::from_errno(e)),
        }
    }
}
