// SPDX-License-Identifier: GPL-2.0

//! The copy interface between the migration core and a provider's copy engine.
//!
//! The core maps the system memory of a copy for the pagemap's device (and unmaps it
//! afterwards) and hands the provider runs of DMA addresses: a transparent huge page is one
//! run of order 9, as in the C `struct drm_pagemap_addr`. The provider starts its engine and
//! returns; the engine signals the call's [`CopyFence`] when it has finished, from any context.
//! The core waits for that fence before it unmaps the memory and lets the pages go.
//!
//! A provider whose engine is the CPU (a software device such as vgpu, or a test) reaches the
//! memory through [`system_ptr`], after giving its device a DMA mask with
//! [`set_software_dma_mask`].
//!
//! C header: [`include/drm/drm_pagemap.h`](srctree/include/drm/drm_pagemap.h)

use core::ptr::NonNull;

use kernel::device::Device;
use kernel::dma::DmaAddress;
use kernel::dma::DmaMask;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::atomic::Acquire;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Release;
use kernel::sync::Arc;
use kernel::sync::Completion;

use crate::pagemap::PagemapAddr;
use crate::sys::dma;

/// What a run's device memory is copied from or to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Counterpart {
    /// Nothing (only towards device memory): the source has no page yet (never touched, or
    /// the zero page), so the device pages are filled with zeroes.
    Zeroes,
    /// System memory at this DMA address, mapped for the pagemap's device.
    System(DmaAddress),
    /// Only towards device memory: a peer's device memory (a pagemap of the same provider
    /// sharing this one's owner), at this address the peer's pagemap's `device_map` gave for
    /// this pagemap's device. The copy goes over the interconnect, never through system
    /// memory.
    Peer(PagemapAddr),
}

/// One run of a copy between device memory and its counterpart: `1 << order` pages,
/// contiguous both in device memory and in the counterpart's address space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CopyRun {
    /// Device-private frame number of the run's first device page.
    pub device_pfn: usize,
    /// The memory the run copies from (towards device memory) or to (back).
    pub counterpart: Counterpart,
    /// Log2 of the run's pages.
    pub order: u32,
}

impl CopyRun {
    /// Pages in the run.
    pub fn pages(&self) -> usize {
        1 << self.order
    }

    /// Bytes in the run.
    pub fn bytes(&self) -> usize {
        PAGE_SIZE << self.order
    }
}

/// The runs of one copy call as the core builds them: only from addresses inside live
/// mappings of the running migration (`Pfns::add_run`), all of one generation of them.
pub(crate) struct CopyRuns {
    runs: KVVec<CopyRun>,
    /// The generation of the migration's mappings the addresses belong to.
    generation: u64,
}

impl CopyRuns {
    /// Room for `capacity` runs, allocated now.
    pub(crate) fn new(capacity: usize) -> Result<Self> {
        Ok(Self {
            runs: KVVec::with_capacity(capacity, GFP_KERNEL)?,
            generation: 0,
        })
    }

    /// Adds `run`, whose address (if any) the caller checked against the mappings of
    /// `generation`: `EINVAL` if the runs so far are of another one, `ENOMEM` past capacity.
    pub(crate) fn push(&mut self, run: CopyRun, generation: u64) -> Result {
        if self.runs.is_empty() {
            self.generation = generation;
        } else if self.generation != generation {
            return Err(EINVAL);
        }
        self.runs.push_within_capacity(run).map_err(|_| ENOMEM)
    }

    /// The generation of mappings the runs belong to, if there are runs.
    pub(crate) fn generation(&self) -> Option<u64> {
        (!self.runs.is_empty()).then_some(self.generation)
    }

    /// The runs.
    pub(crate) fn as_slice(&self) -> &[CopyRun] {
        &self.runs
    }

    /// Drops every run.
    pub(crate) fn clear(&mut self) {
        self.runs.clear();
    }
}

#[pin_data]
struct FenceState {
    #[pin]
    done: Completion,
    /// The copy's result as an errno, 0 for success; `EIO` until signalled.
    result: Atomic<i32>,
}

/// The completion of one copy call: the provider's engine signals it, once, when it has
/// finished with the call's runs. Dropping it unsignalled reports the copy as failed (`EIO`).
pub struct CopyFence(Arc<FenceState>);

impl CopyFence {
    /// Reports the copy finished with `result`: its engine does not access the call's memory
    /// any more.
    pub fn signal(self, result: Result) {
        let errno = match result {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        };
        self.0.result.store(errno, Release);
        // Dropping completes the fence.
    }
}

impl Drop for CopyFence {
    fn drop(&mut self) {
        self.0.done.complete_all();
    }
}

/// A provider's path to signalling copy fences, as lockdep sees it: open one around the work
/// an engine does before it signals (a worker's whole job; an inline copy included). Lockdep
/// then reports a lock taken there that a waiting migration may hold (the mmap lock, this
/// crate's locks), which would deadlock. Not `Send`: it ends on the thread that began it.
#[must_use = "the section ends when this is dropped"]
pub struct Signalling {
    cookie: bool,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl Signalling {
    /// Opens the section (nesting is allowed).
    pub fn begin() -> Self {
        Self {
            cookie: dma::signalling_begin(),
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for Signalling {
    fn drop(&mut self) {
        dma::signalling_end(self.cookie);
    }
}

/// Runs one copy call: `submit` hands the fence to the provider, and this waits for it. The
/// result is `submit`'s error, else the one the fence was signalled with.
///
/// The wait is uninterruptible and has no timeout of its own: the memory stays mapped for the
/// device until the engine is done, whatever happens to the caller. It is bounded by the
/// provider's contract ([`crate::devmem::DevmemOps`]: a fence signals in bounded time, as a
/// `dma_fence` must).
pub(crate) fn copy_and_wait(submit: impl FnOnce(CopyFence) -> Result) -> Result {
    let state = Arc::pin_init(
        try_pin_init!(FenceState {
            done <- Completion::new(),
            result: Atomic::new(EIO.to_errno()),
        }),
        GFP_KERNEL,
    )?;
    let submitted = submit(CopyFence(state.clone()));
    // Also after an error: the engine may hold the fence.
    dma::fence_might_wait();
    state.done.wait_for_completion();
    submitted?;
    match state.result.load(Acquire) {
        0 => Ok(()),
        errno => Err(Error::from_errno(errno)),
    }
}

/// Gives `dev`, a device on a bus that sets no DMA mask (a faux device standing in for a copy
/// engine), the mask `mask`, so that the core can map system memory for it, and makes it
/// cache-coherent: its "DMA" is the CPU's own accesses through [`system_ptr`].
///
/// # Safety
///
/// `dev` does no DMA of its own (no hardware masters the bus through it: the mask and
/// coherency would be lies to it), and no DMA allocation or mapping of `dev` runs
/// concurrently (set it before the device's first pagemap exists).
pub unsafe fn set_software_dma_mask(dev: &Device, mask: DmaMask) -> Result {
    // SAFETY: Per this function's contract.
    unsafe { dma::coerce_mask(dev, mask) }
}

/// For a copy engine that is the CPU: the kernel address of the `len` bytes at `addr`, a DMA
/// address of `dev` from a [`CopyRun`]. `EIO` if `dev` does not map system memory directly
/// (it sits behind an IOMMU) or the bytes are not in the kernel's linear map.
///
/// The pointer is valid for the run's bytes until the run's fence is signalled.
pub fn system_ptr(dev: &Device, addr: DmaAddress, len: usize) -> Result<NonNull<u8>> {
    dma::direct_virt(dev, addr, len)
        .and_then(NonNull::new)
        .ok_or(EIO)
}
