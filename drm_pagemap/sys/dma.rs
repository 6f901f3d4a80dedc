// SPDX-License-Identifier: GPL-2.0

//! Streaming DMA mappings of the system folios a migration copies, for the copying device.
//!
//! C header: [`include/linux/dma-mapping.h`](srctree/include/linux/dma-mapping.h)

use kernel::device::Device;
use kernel::dma::DataDirection;
use kernel::dma::DmaAddress;
use kernel::dma::DmaMask;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::aref::ARef;

use crate::ffi;
use crate::pagemap::Pagemap;
use crate::pagemap::PagemapAddr;

/// The C device behind `dev` (`Device::as_raw` is private to the kernel crate).
fn raw(dev: &Device) -> *mut ffi::device {
    // `Device` is a `#[repr(transparent)]` wrapper around `Opaque<struct device>`.
    core::ptr::from_ref(dev).cast_mut().cast()
}

/// Streaming DMA mappings of pages for one device, undone together by
/// [`DmaMappings::unmap_all`] or on drop.
///
/// # Invariants
///
/// Every entry of `maps` is a live mapping of `dev`, of the given size and direction; `dev`
/// is `Some` whenever `maps` is not empty.
pub(crate) struct DmaMappings {
    dev: Option<ARef<Device>>,
    maps: KVVec<(DmaAddress, usize, DataDirection)>,
    /// Pages of peers' pagemaps mapped for `dev` by their pagemaps' `device_map`.
    peers: KVVec<(ARef<Pagemap>, PagemapAddr)>,
    /// Bumped by every [`DmaMappings::unmap_all`]: addresses of an older generation are dead.
    generation: u64,
}

impl DmaMappings {
    /// Room for `capacity` mappings, allocated now so that mapping never allocates.
    pub(crate) fn new(capacity: usize) -> Result<Self> {
        Ok(Self {
            dev: None,
            maps: KVVec::with_capacity(capacity, GFP_KERNEL)?,
            peers: KVVec::new(),
            generation: 0,
        })
    }

    /// Makes room for `capacity` mappings in all, unmapping what is mapped.
    pub(crate) fn reserve(&mut self, capacity: usize) -> Result {
        self.unmap_all();
        self.maps.reserve(capacity, GFP_KERNEL)?;
        Ok(())
    }

    /// Maps the `PAGE_SIZE << order` bytes of the folio headed by `page` for `dev`, for
    /// transfers in direction `dir`.
    ///
    /// `EINVAL` if `dev` never set a DMA mask, `ENOMEM` if the mapping failed, `EINVAL` for a
    /// second device before [`Self::unmap_all`], `ENOMEM` past the capacity.
    ///
    /// # Safety
    ///
    /// `page` heads a system folio of at least that order that stays allocated until the
    /// mapping is undone.
    pub(crate) unsafe fn map(
        &mut self,
        dev: &Device,
        page: *mut ffi::page,
        order: u32,
        dir: DataDirection,
    ) -> Result<DmaAddress> {
        if self.maps.len() == self.maps.capacity() {
            return Err(ENOMEM);
        }
        match &self.dev {
            Some(d) if !core::ptr::eq(raw(d), raw(dev)) => return Err(EINVAL),
            _ => {}
        }
        let size = PAGE_SIZE << order;
        let mut addr: DmaAddress = 0;
        // SAFETY: `dev` is a valid device; `page` heads `size` bytes per the contract.
        kernel::error::to_result(unsafe {
            ffi::svm_dma_map_page(raw(dev), page, size, dir.into(), &mut addr)
        })?;
        if self.dev.is_none() {
            self.dev = Some(dev.into());
        }
        // INVARIANT: A live mapping of `dev` (now `self.dev`), recorded (room checked above).
        if self.maps.push_within_capacity((addr, size, dir)).is_err() {
            // SAFETY: The mapping made just above, unrecorded: undone at once.
            unsafe { ffi::svm_dma_unmap_page(raw(dev), addr, size, dir.into()) };
            return Err(ENOMEM);
        }
        Ok(addr)
    }

    /// Maps the `PAGE_SIZE << order` bytes at device page `pfn` of `pagemap`, a peer's, for
    /// `dev` through the peer's [`PagemapOps::device_map`]: the address `dev` reads them at
    /// over the interconnect. `EINVAL` for a second device, or an answer of another order.
    ///
    /// [`PagemapOps::device_map`]: crate::pagemap::PagemapOps::device_map
    pub(crate) fn map_peer(
        &mut self,
        dev: &Device,
        pagemap: &Pagemap,
        pfn: usize,
        order: u32,
    ) -> Result<PagemapAddr> {
        match &self.dev {
            Some(d) if !core::ptr::eq(raw(d), raw(dev)) => return Err(EINVAL),
            _ => {}
        }
        self.peers.reserve(1, GFP_KERNEL)?;
        let ops = pagemap.ops();
        let addr = ops.device_map(pagemap, dev, pfn, order, DataDirection::ToDevice)?;
        if addr.order != order {
            ops.device_unmap(pagemap, dev, addr);
            return Err(EINVAL);
        }
        if self.dev.is_none() {
            self.dev = Some(dev.into());
        }
        // Room reserved above.
        if let Err(e) = self.peers.push_within_capacity((pagemap.into(), addr)) {
            ops.device_unmap(pagemap, dev, e.0 .1);
            return Err(ENOMEM);
        }
        Ok(addr)
    }

    /// Whether `addr` lies inside one live peer mapping (searched from the latest).
    pub(crate) fn covers_peer(&self, addr: &PagemapAddr) -> bool {
        let bytes = (PAGE_SIZE as u64) << addr.order;
        let Some(end) = addr.addr.checked_add(bytes) else {
            return false;
        };
        self.peers.iter().rev().any(|(_, m)| {
            m.proto == addr.proto
                && m.addr <= addr.addr
                && end <= m.addr.saturating_add((PAGE_SIZE as u64) << m.order)
        })
    }

    /// Undoes every mapping: the device must not access them any more.
    pub(crate) fn unmap_all(&mut self) {
        if let Some(dev) = &self.dev {
            for &(addr, size, dir) in self.maps.iter() {
                // SAFETY: By the type invariant, a live mapping of `dev`.
                unsafe { ffi::svm_dma_unmap_page(raw(dev), addr, size, dir.into()) };
            }
            for (pagemap, addr) in self.peers.iter() {
                pagemap.ops().device_unmap(pagemap, dev, *addr);
            }
        }
        self.maps.clear();
        self.peers.clear();
        self.dev = None;
        self.generation = self.generation.wrapping_add(1);
    }

    /// The generation of the live mappings.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The device the live mappings are for, if any.
    pub(crate) fn device(&self) -> Option<&Device> {
        self.dev.as_deref()
    }

    /// Whether `[addr, addr + len)` lies inside one live mapping (searched from the latest:
    /// runs are added right after their mapping).
    pub(crate) fn covers(&self, addr: DmaAddress, len: usize) -> bool {
        let Some(end) = addr.checked_add(len as DmaAddress) else {
            return false;
        };
        self.maps
            .iter()
            .rev()
            .any(|&(a, size, _)| a <= addr && end <= a.saturating_add(size as DmaAddress))
    }
}

impl Drop for DmaMappings {
    fn drop(&mut self) {
        self.unmap_all();
    }
}

/// Whether `dev` can map `PAGE_SIZE << order` bytes in one mapping (a bounce buffer, as with
/// `swiotlb=force` or in a confidential guest, takes at most 256 KiB).
pub(crate) fn maps_whole(dev: &Device, order: u32) -> bool {
    // SAFETY: `dev` is valid; the helper reads its DMA configuration.
    (PAGE_SIZE << order) <= unsafe { ffi::svm_dma_max_mapping_size(raw(dev)) }
}

/// Gives `dev`, a device on a bus that sets no DMA mask (a faux device standing in for a
/// copy engine), the mask `mask` for streaming and coherent mappings.
///
/// # Safety
///
/// No DMA allocation or mapping of `dev` runs concurrently.
pub(crate) unsafe fn coerce_mask(dev: &Device, mask: DmaMask) -> Result {
    // SAFETY: `dev` is valid; no concurrent mapping per the contract.
    kernel::error::to_result(unsafe { ffi::svm_dma_coerce_mask(raw(dev), mask.value()) })
}

/// The kernel address of `len` bytes at `addr`, a DMA address of `dev`, if `dev` maps system
/// memory directly (no IOMMU) and the bytes are in the linear map (not dereferenced).
pub(crate) fn direct_virt(dev: &Device, addr: DmaAddress, len: usize) -> Option<*mut u8> {
    // SAFETY: `dev` is valid; the helper only converts numbers and reads the memory map.
    let ptr = unsafe { ffi::svm_dma_direct_virt(raw(dev), addr, len) };
    (!ptr.is_null()).then_some(ptr.cast())
}

/// Opens a copy-fence signalling section for lockdep; the result is for [`signalling_end`].
pub(crate) fn signalling_begin() -> bool {
    // SAFETY: A lockdep annotation of the current context; no memory is involved.
    unsafe { ffi::svm_copy_signalling_begin() }
}

/// Closes the section [`signalling_begin`] opened, given what it returned.
pub(crate) fn signalling_end(cookie: bool) {
    // SAFETY: As above; `cookie` tells whether the section was really opened.
    unsafe { ffi::svm_copy_signalling_end(cookie) }
}

/// Tells lockdep that the current context waits for a copy fence.
pub(crate) fn fence_might_wait() {
    // SAFETY: A lockdep annotation of the current context.
    unsafe { ffi::svm_copy_might_wait() }
}
