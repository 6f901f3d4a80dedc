// SPDX-License-Identifier: GPL-2.0

//! A GPU for the KUnit tests of the modules that need one (a faux device with a DRM device and
//! 4 MiB of memory, as `Gpu::new` makes one, outside the module's own list of GPUs).

use drm_pagemap::owner::Owner;
use kernel::device::Bound;
use kernel::drm;
use kernel::faux;
use kernel::prelude::*;

use crate::driver::GpuData;
use crate::driver::VgpuDevice;
use crate::driver::VgpuDriver;
use crate::vram::Vram;

/// A GPU of the test's own.
pub(crate) struct TestGpu {
    // Dropped before the faux device it borrows.
    reg: drm::Registration<'static, VgpuDriver>,
    _faux: faux::Registration,
}

impl TestGpu {
    /// Its DRM device.
    pub(crate) fn device(&self) -> &VgpuDevice {
        self.reg.device()
    }
}

/// A new GPU of the test's own with 4 MiB of memory, alone on its interconnect.
pub(crate) fn gpu() -> Result<TestGpu> {
    let faux = faux::Registration::new(c"vgpu_kunit", None)?;
    // SAFETY: `TestGpu` drops the DRM registration borrowing the device before `faux`, and is
    // never forgotten.
    let fdev: &'static faux::Device<Bound> = unsafe { &*core::ptr::from_ref(faux.as_ref()) };
    // SAFETY: The device is new: nothing maps for it yet.
    unsafe {
        drm_pagemap::copy::set_software_dma_mask(fdev.as_ref(), kernel::dma::DmaMask::new::<64>())
    }?;
    // SAFETY: The test's own faux device, which outlives the region.
    let owner = unsafe { drm_pagemap::owner::RegionOwner::unique(Owner::of(fdev)) };
    let fabric = crate::fabric::Fabric::new(Some(c"none"), 1)?;
    let data = try_pin_init!(GpuData {
        index: 0,
        num_devices: 1,
        huge_folios: kernel::sync::atomic::Atomic::new(1),
        exclusive_delay_ms: kernel::sync::atomic::Atomic::new(0),
        vram: kernel::sync::Arc::pin_init(
            Vram::new(0, fabric.clone(), 4 << 20, owner, 0, c"vgpu_kunit_copy")?,
            GFP_KERNEL,
        )?,
        fabric,
    });
    let unregistered = drm::UnregisteredDevice::<VgpuDriver>::new(fdev, data)?;
    // SAFETY: As above: the registration is dropped, never forgotten, before `faux`.
    let reg = unsafe { drm::Registration::new(fdev.as_ref(), unregistered, (), 0)? };
    Ok(TestGpu { reg, _faux: faux })
}
