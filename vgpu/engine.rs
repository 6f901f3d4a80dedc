// SPDX-License-Identifier: GPL-2.0

//! The copy engine: moves runs of pages between system memory (by DMA address) and VRAM and
//! signals each copy's fence when done, like a DMA engine would. A CPU stands in for the
//! engine: the submitter's when the engine is idle, else a worker of the GPU's own ordered
//! workqueue, queued jobs one at a time in submission order (the asynchronous path the core
//! must also handle; the `copy_delay_ms` race widener always takes it). An inline copy may
//! overtake a queued one: copies need no order, as each migration's pages are locked by it.

use core::ptr::NonNull;

use kernel::device::Device;
use kernel::sync::aref::ARef;

use drm_pagemap::copy;
use drm_pagemap::copy::CopyFence;
use drm_pagemap::copy::CopyRun;
use drm_pagemap::copy::Counterpart;
use drm_pagemap::copy::Signalling;
use drm_pagemap::pending::task::cond_resched;
use drm_pagemap::pending::workqueue::Order;
use drm_pagemap::pending::workqueue::OwnedQueue;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::time::delay::fsleep;
use kernel::time::Delta;
use kernel::workqueue::Work;
use kernel::workqueue::WorkItem;

use crate::vram::peer_of_link;

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

    /// The `bytes` of VRAM from page `index` on, if inside the buffer.
    fn span(&self, index: usize, bytes: usize) -> Result<*mut u8> {
        let offset = index.checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
        if offset.checked_add(bytes).is_none_or(|end| end > self.len) {
            return Err(EINVAL);
        }
        // SAFETY: `offset + bytes <= len`, inside the buffer.
        Ok(unsafe { self.ptr.as_ptr().add(offset) })
    }

    /// Adds `value` to the 32-bit word at byte `offset` of VRAM page `index`, atomically;
    /// returns the word's old value. `EINVAL` outside the buffer or for an unaligned offset.
    pub(crate) fn fetch_add_u32(&self, index: usize, offset: usize, value: u32) -> Result<u32> {
        if offset % 4 != 0 || offset > PAGE_SIZE - 4 {
            return Err(EINVAL);
        }
        let page = self.page(index)?.cast::<u8>();
        // SAFETY: `offset + 4 <= PAGE_SIZE`, inside the page.
        let word = unsafe { page.add(offset) }.cast::<u32>();
        if !word.is_aligned() {
            return Err(EINVAL);
        }
        // An aligned word of our buffer, which lives as long as `self`. Other accesses to it
        // are this function's, copies of the page by a migration (serialised against GPU
        // accesses by the SVM's notifier lock: a page is unbound before it moves) and GPU
        // accesses to the page through another VM, which race with this one only as a
        // program's own GPU contexts racing on one word would.
        // SAFETY: As above.
        Ok(unsafe { kernel::sync::atomic::Atomic::from_ptr(word) }
            .fetch_add(value, kernel::sync::atomic::Full))
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

/// The memory of the linked peers one copy reads from, by memory id.
#[derive(Default)]
pub(crate) struct Peers {
    by_id: KVec<(u32, Arc<VramPages>)>,
}

impl Peers {
    /// Memory `id`, if looked up.
    pub(crate) fn get(&self, id: u32) -> Option<&Arc<VramPages>> {
        self.by_id.iter().find(|(i, _)| *i == id).map(|(_, p)| p)
    }

    /// Records memory `id`.
    pub(crate) fn add(&mut self, id: u32, pages: Arc<VramPages>) -> Result {
        self.by_id.push((id, pages), GFP_KERNEL)?;
        Ok(())
    }
}

/// Which way a job copies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyDir {
    ToVram,
    ToRam,
}

/// One submitted copy: the runs, and the fence that reports it done.
///
/// # Invariants
///
/// The system memory of `runs` is mapped for `dev` until `fence` is signalled (or dropped).
#[pin_data]
struct CopyJob {
    #[pin]
    work: Work<CopyJob>,
    runs: KVVec<CopyRun>,
    dir: CopyDir,
    vram: Arc<VramPages>,
    peers: Peers,
    /// The device the runs' DMA addresses are for.
    dev: ARef<Device>,
    fence: Option<CopyFence>,
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
    /// Jobs queued and not finished.
    pub(crate) queued: Atomic<u32>,
}

impl VramPages {
    fn index(&self, pfn: usize) -> Result<usize> {
        pfn.checked_sub(self.pfn_first).ok_or(EINVAL)
    }

    /// Runs the copies of one job: `runs`' system memory is at DMA addresses of `dev`.
    ///
    /// # Safety
    ///
    /// The system memory of `runs` stays mapped for `dev` (the fence of the copy is not
    /// signalled) until this returns.
    unsafe fn run(&self, dev: &Device, runs: &[CopyRun], dir: CopyDir, peers: &Peers) -> Result {
        for run in runs {
            let bytes = run.bytes();
            let vram = self.backing.span(self.index(run.device_pfn)?, bytes)?;
            // `vram` belongs to the migration's device pages, locked and mapped nowhere (GPU
            // mappings were invalidated first), so nothing else touches them meanwhile.
            match (dir, run.counterpart) {
                (CopyDir::ToVram, Counterpart::System(addr)) => {
                    let sys = copy::system_ptr(dev, addr, bytes)?;
                    // SAFETY: `sys` is the run's system memory, valid per the contract;
                    // `vram` is `bytes` of our buffer, distinct from any system page.
                    unsafe { core::ptr::copy_nonoverlapping(sys.as_ptr(), vram, bytes) }
                }
                (CopyDir::ToRam, Counterpart::System(addr)) => {
                    let sys = copy::system_ptr(dev, addr, bytes)?;
                    // SAFETY: As above.
                    unsafe { core::ptr::copy_nonoverlapping(vram, sys.as_ptr(), bytes) }
                }
                // SAFETY: As above.
                (CopyDir::ToVram, Counterpart::Zeroes) => unsafe {
                    core::ptr::write_bytes(vram, 0, bytes)
                },
                (CopyDir::ToVram, Counterpart::Peer(addr)) => {
                    // From a linked peer's memory, over the link: its page is locked by the
                    // migration and mapped nowhere, so it does not change meanwhile.
                    let peer = peer_of_link(addr.proto)
                        .and_then(|i| peers.get(i))
                        .ok_or(EIO)?;
                    if core::ptr::eq(peer.as_ref(), self) {
                        return Err(EINVAL);
                    }
                    let index = usize::try_from(addr.addr).map_err(|_| EIO)? / PAGE_SIZE;
                    let src = peer.backing.span(index, bytes)?;
                    // SAFETY: `src` and `vram` are `bytes` of two different GPUs' buffers.
                    unsafe { core::ptr::copy_nonoverlapping(src, vram, bytes) };
                }
                (CopyDir::ToRam, Counterpart::Zeroes | Counterpart::Peer(_)) => return Err(EINVAL),
            }
            self.bytes_copied.fetch_add(bytes as u64, Relaxed);
            // A batch may be as large as the GPU's memory.
            cond_resched();
        }
        Ok(())
    }
}

impl WorkItem for CopyJob {
    type Pointer = Pin<KBox<CopyJob>>;

    fn run(mut this: Pin<KBox<CopyJob>>) {
        let _signalling = Signalling::begin();
        let delay = this.vram.copy_delay_ms.load(Relaxed);
        if delay > 0 {
            // Bounded by the knob's maximum.
            fsleep(Delta::from_millis(delay.into()));
        }
        // SAFETY: By the type invariant the runs' memory stays mapped until the job's fence is
        // signalled, below.
        let result = unsafe { this.vram.run(&this.dev, &this.runs, this.dir, &this.peers) };
        this.vram.queued.fetch_sub(1, Relaxed);
        if let Some(fence) = this.as_mut().project().fence.take() {
            fence.signal(result);
        }
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

    /// Copies `runs`, whose system memory is at DMA addresses of `dev`, and signals `fence`
    /// when done: at once if the engine is idle, else as a queued job (returning before it
    /// ran).
    ///
    /// # Safety
    ///
    /// The system memory of `runs` stays mapped for `dev` until `fence` is signalled: they
    /// came together from one [`drm_pagemap::devmem::DevmemOps`] copy call on `dev`'s pagemap.
    pub(crate) unsafe fn copy(
        &self,
        dev: &Device,
        runs: &[CopyRun],
        dir: CopyDir,
        peers: Peers,
        fence: CopyFence,
    ) -> Result {
        // An idle engine copies in the submitter's context: the submitter waits for the copy
        // anyway, and handing it to another CPU costs a cross-CPU wake-up each way, which
        // dominated small migrations (measured: 2 MiB THP back to RAM 0.39 -> 0.62 GB/s under
        // TCG). With jobs queued, or a race widener set, it queues, in submission order.
        if self.vram.copy_delay_ms.load(Relaxed) == 0 && self.vram.queued.load(Relaxed) == 0 {
            let _signalling = Signalling::begin();
            // SAFETY: Per this function's contract, the runs stay mapped until `fence` is
            // signalled, after the copy.
            let result = unsafe { self.vram.run(dev, runs, dir, &peers) };
            fence.signal(result);
            return Ok(());
        }
        // As long as the migration's batch: virtually contiguous if need be.
        let mut list = KVVec::with_capacity(runs.len(), GFP_KERNEL)?;
        list.extend_from_slice(runs, GFP_KERNEL)?;
        // INVARIANT: Per this function's contract.
        let job = KBox::pin_init(
            try_pin_init!(CopyJob {
                work <- kernel::new_work!("CopyJob::work"),
                runs: list,
                dir,
                vram: self.vram.clone(),
                peers,
                dev: dev.into(),
                fence: Some(fence),
            }),
            GFP_KERNEL,
        )?;
        self.vram.queued.fetch_add(1, Relaxed);
        // A boxed job is never queued already: enqueueing it cannot fail.
        self.queue.enqueue(job);
        Ok(())
    }
}
