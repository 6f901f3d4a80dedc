// SPDX-License-Identifier: GPL-2.0

//! One virtual GPU: a faux device with a DRM device registered on it.

use kernel::device::Bound;
use kernel::drm;
use kernel::faux;
use kernel::prelude::*;
use kernel::str::CString;

use crate::dmirror::DmirrorNode;
use crate::driver::GpuData;
use crate::driver::VgpuDriver;
use crate::vram::Vram;

/// A registered virtual GPU; dropping it unregisters the render node, then the device.
pub(crate) struct Gpu {
    // Dropped first: its open files hold the DRM device, not the registration.
    _dmirror: Option<Pin<KBox<DmirrorNode>>>,
    // Declared (so dropped) before `faux`: it borrows the faux device.
    _drm: drm::Registration<'static, VgpuDriver>,
    _faux: faux::Registration,
}

impl Gpu {
    /// Creates GPU `index` of `num_devices`, with `vram_size` bytes of device memory, and its
    /// `/dev/hmm_dmirror<index>` node if `dmirror`.
    pub(crate) fn new(
        index: u32,
        num_devices: u32,
        vram_size: usize,
        dmirror: bool,
    ) -> Result<Self> {
        let name = CString::try_from_fmt(fmt!("vgpu{index}"))?;
        let faux = faux::Registration::new(&name, None)?;
        // The faux device stays registered and bound until `faux` is dropped, which `Gpu`'s
        // field order puts after the DRM registration that borrows it; `Gpu` is never forgotten.
        // SAFETY: So the device outlives every use of this reference.
        let fdev: &'static faux::Device<Bound> = unsafe { &*core::ptr::from_ref(faux.as_ref()) };
        // The device's own address is a unique device-private owner cookie for its pages.
        let owner = core::ptr::from_ref(fdev) as usize;
        let engine = CString::try_from_fmt(fmt!("vgpu{index}_copy"))?;
        let data = try_pin_init!(GpuData {
            index,
            num_devices,
            vram <- Vram::new(vram_size, owner, &engine)?,
        });
        let unregistered = drm::UnregisteredDevice::<VgpuDriver>::new(fdev, data)?;
        // SAFETY: The registration is stored in `Gpu` and dropped, never forgotten, before the
        // faux device it borrows.
        let reg = unsafe { drm::Registration::new(fdev.as_ref(), unregistered, (), 0)? };
        let dmirror = if dmirror {
            let node = DmirrorNode::new(index, reg.device().into())?;
            Some(KBox::pin_init(node, GFP_KERNEL)?)
        } else {
            None
        };
        Ok(Self {
            _dmirror: dmirror,
            _drm: reg,
            _faux: faux,
        })
    }
}
