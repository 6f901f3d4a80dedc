// SPDX-License-Identifier: GPL-2.0

//! A virtual GPU's device memory: a device-private region, its allocator and its pagemap.

use drm_pagemap::device_private::DevicePrivateRegion;
use drm_pagemap::pagemap::Pagemap;
use drm_pagemap::pagemap::PagemapOps;
use kernel::drm;
use kernel::gpu::buddy::GpuBuddy;
use kernel::gpu::buddy::GpuBuddyParams;
use kernel::prelude::*;
use kernel::ptr::Alignment;
use kernel::sizes::SZ_4K;
use kernel::sync::aref::ARef;
use pagemap_util::cache::PagemapCache;

use crate::driver::VgpuDriver;

/// Smallest allocation unit of device memory.
pub(crate) const VRAM_PAGE_SIZE: usize = SZ_4K;

/// The device memory of one virtual GPU.
#[pin_data]
pub(crate) struct Vram {
    #[pin]
    region: DevicePrivateRegion,
    allocator: GpuBuddy,
    #[pin]
    pagemaps: PagemapCache,
}

impl Vram {
    /// Creates `size` bytes of device memory whose pages carry the device-private `owner`.
    pub(crate) fn new(size: usize, owner: usize) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            region <- DevicePrivateRegion::new(size, c"vgpu", owner),
            allocator: GpuBuddy::new(GpuBuddyParams {
                base_offset: 0,
                size: size as u64,
                chunk_size: Alignment::new::<VRAM_PAGE_SIZE>(),
            })?,
            pagemaps <- PagemapCache::new(),
        })
    }

    /// Size in bytes. The device-private region behind it may be larger: the core mm hands
    /// out physical address space in whole memory sections.
    pub(crate) fn size(&self) -> u64 {
        self.allocator.size()
    }

    /// Bytes not allocated.
    pub(crate) fn free(&self) -> u64 {
        self.allocator.avail()
    }
}

/// Returns a reference to the pagemap of `drm`'s device memory, created on first use.
pub(crate) fn pagemap(drm: &drm::Device<VgpuDriver>) -> Result<ARef<Pagemap>> {
    drm.vram.pagemaps.get_or_create(|| {
        let parent: &kernel::faux::Device = drm.as_ref();
        Pagemap::new(
            parent.as_ref(),
            kernel::module::this_module::<crate::LocalModule>(),
            VramPagemap { drm: drm.into() },
        )
    })
}

/// The pagemap ops of a virtual GPU's device memory.
struct VramPagemap {
    drm: ARef<drm::Device<VgpuDriver>>,
}

impl PagemapOps for VramPagemap {
    // `destroy` takes the cache's mutex, so never in the last put's (maybe atomic) context.
    fn destroy_in_work(&self) -> bool {
        true
    }

    fn destroy(&self, pagemap: &Pagemap) {
        self.drm.vram.pagemaps.unlink(pagemap);
    }
}
