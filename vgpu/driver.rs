// SPDX-License-Identifier: GPL-2.0

//! The DRM driver: device data, driver description and ioctl table.

use kernel::device::DeviceContext;
use kernel::drm;
use kernel::drm::gem;
use kernel::drm::ioctl::RENDER_ALLOW;
use kernel::faux;
use kernel::prelude::*;
use kernel::sync::atomic::Atomic;
use kernel::sync::Arc;

use crate::fabric::Fabric;
use crate::file::VgpuFile;
use crate::ioctl::declare_vgpu_ioctls;
use crate::uapi;
use crate::vram::Vram;

/// The vgpu DRM driver.
pub(crate) struct VgpuDriver;

/// A vgpu DRM device in context `Ctx`.
pub(crate) type VgpuDevice<Ctx = drm::Normal> = drm::Device<VgpuDriver, Ctx>;

/// Per-device data.
#[pin_data]
pub(crate) struct GpuData {
    /// Index of this GPU among those the module created.
    pub(crate) index: u32,
    /// Number of GPUs the module created.
    pub(crate) num_devices: u32,
    /// Device policy: 1 if transparent huge pages move into 2 MiB device folios, 0 if into
    /// base pages. Off by default (7.3's core mm is not safe with them under fork, README).
    pub(crate) huge_folios: Atomic<u32>,
    /// Race widener (debugfs `vgpu<N>/exclusive_delay_ms`): how long a GPU VM waits between
    /// making a page exclusive and committing its entry. Tests use it to land a `munmap` there.
    pub(crate) exclusive_delay_ms: Atomic<u32>,
    /// Device memory, shared with the allocations and the pagemap made of it.
    pub(crate) vram: Arc<Vram>,
    /// The interconnect this GPU is on, shared by every GPU of the load.
    pub(crate) fabric: Arc<Fabric>,
}

/// A GEM object; vgpu has no buffer objects of its own yet, the DRM core needs the type.
#[pin_data]
pub(crate) struct VgpuObject {}

impl gem::DriverObject for VgpuObject {
    type Driver = VgpuDriver;
    type Args = ();

    fn new(_dev: &VgpuDevice, _size: usize, _args: ()) -> impl PinInit<Self, Error> {
        try_pin_init!(VgpuObject {})
    }
}

/// The ioctl number `DRM_VGPU_INJECT` had: reserved, refused with `EINVAL` like any unknown
/// ioctl, never given another meaning (old userspace may still send it).
const DRM_VGPU_RESERVED_03: u32 = 0x03;

const INFO: drm::DriverInfo = drm::DriverInfo {
    major: 0,
    minor: 1,
    patchlevel: 0,
    name: c"vgpu",
    desc: c"Virtual GPU with device-private memory",
};

#[vtable]
impl drm::Driver for VgpuDriver {
    type Data = GpuData;
    type RegistrationData<'a> = ();
    type File = VgpuFile;
    type Object = gem::Object<VgpuObject>;
    type ParentDevice<Ctx: DeviceContext> = faux::Device<Ctx>;

    const INFO: drm::DriverInfo = INFO;
    const FEAT_RENDER: bool = true;

    declare_vgpu_ioctls! {
        (uapi::DRM_VGPU_QUERY, drm_vgpu_query, RENDER_ALLOW, VgpuFile::query),
        (uapi::DRM_VGPU_MIGRATE, drm_vgpu_migrate, RENDER_ALLOW, VgpuFile::migrate),
        (uapi::DRM_VGPU_STATS, drm_vgpu_stats, RENDER_ALLOW, VgpuFile::stats),
        // Was `DRM_VGPU_INJECT`; error injection is in debugfs now, the number stays unused.
        (DRM_VGPU_RESERVED_03, reserved),
        (uapi::DRM_VGPU_EVICT, drm_vgpu_evict, RENDER_ALLOW, VgpuFile::evict),
        (uapi::DRM_VGPU_VM_CREATE, drm_vgpu_vm_create, RENDER_ALLOW, VgpuFile::vm_create),
        (uapi::DRM_VGPU_VM_DESTROY, drm_vgpu_vm_destroy, RENDER_ALLOW, VgpuFile::vm_destroy),
        (uapi::DRM_VGPU_VM_ACCESS, drm_vgpu_vm_access, RENDER_ALLOW, VgpuFile::vm_access),
        (uapi::DRM_VGPU_DEVMEM_OPEN, drm_vgpu_devmem_open, RENDER_ALLOW, VgpuFile::devmem_open),
        (uapi::DRM_VGPU_VM_MADVISE, drm_vgpu_vm_madvise, RENDER_ALLOW, VgpuFile::vm_madvise),
        (uapi::DRM_VGPU_VM_PREFETCH, drm_vgpu_vm_prefetch, RENDER_ALLOW, VgpuFile::vm_prefetch),
        (uapi::DRM_VGPU_VM_ATOMIC, drm_vgpu_vm_atomic, RENDER_ALLOW, VgpuFile::vm_atomic),
        (uapi::DRM_VGPU_RESIDENCY, drm_vgpu_residency, RENDER_ALLOW, VgpuFile::residency),
    }
}
