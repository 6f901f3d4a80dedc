// SPDX-License-Identifier: GPL-2.0

//! Per-open state and ioctl handlers.

use drm_pagemap::migrate;
use drm_pagemap::migrate::MigrateDetails;
use drm_pagemap::pagemap;
use drm_pagemap::pagemap::Pagemap;
use kernel::drm;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Relaxed;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;

use crate::driver::VgpuDevice;
use crate::driver::VgpuDriver;
use crate::uapi;
use crate::vram;
use crate::vram::VRAM_PAGE_SIZE;

/// An open render node.
pub(crate) struct VgpuFile {
    /// Each client uses the device memory, so holds its pagemap: the pagemap lives as long as
    /// some client has the device open or some data lives in the device memory.
    pagemap: ARef<Pagemap>,
}

impl drm::file::DriverFile for VgpuFile {
    type Driver = VgpuDriver;

    fn open(dev: &VgpuDevice) -> Result<Pin<KBox<Self>>> {
        let pagemap = vram::pagemap(dev)?;
        Ok(KBox::new(Self { pagemap }, GFP_KERNEL)?.into())
    }
}

impl VgpuFile {
    /// `DRM_IOCTL_VGPU_QUERY`.
    pub(crate) fn query(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_query,
        _file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.extensions != 0 || req.flags != 0 || req.pad != 0 {
            return Err(EINVAL);
        }
        let answer = match req.query {
            uapi::drm_vgpu_query_kind_DRM_VGPU_QUERY_DEVICE => uapi::drm_vgpu_query_device {
                index: dev.index,
                num_devices: dev.num_devices,
                vram_size: dev.vram.size(),
                vram_free: dev.vram.free(),
                page_size: VRAM_PAGE_SIZE as u64,
            },
            _ => return Err(EINVAL),
        };
        let need = size_of_val(&answer) as u32;
        if req.size == 0 {
            req.size = need;
            return Ok(0);
        }
        if req.size != need {
            return Err(EINVAL);
        }
        let user = UserSlice::new(UserPtr::from_addr(req.data as usize), need as usize);
        user.writer().write(&answer)?;
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_MIGRATE`.
    pub(crate) fn migrate(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_migrate,
        file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.flags != 0 || req.pad != 0 || req.size == 0 {
            return Err(EINVAL);
        }
        let start = usize::try_from(req.start).map_err(|_| EINVAL)?;
        let size = usize::try_from(req.size).map_err(|_| EINVAL)?;
        let end = start.checked_add(size).ok_or(EINVAL)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EFAULT)?;
        match req.target {
            uapi::drm_vgpu_migrate_target_DRM_VGPU_MIGRATE_TO_DEVICE => {
                let details = MigrateDetails {
                    timeslice_ms: req.timeslice_ms,
                    base_pages_only: false,
                };
                pagemap::populate_mm(&file.inner().pagemap, mm, start, end, &details)?
            }
            uapi::drm_vgpu_migrate_target_DRM_VGPU_MIGRATE_TO_SYSTEM => {
                let mmap = mm.mmap_read_lock();
                migrate::migrate_to_ram(&mmap, start, end, dev.vram.owner(), false)?;
            }
            _ => return Err(EINVAL),
        }
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_STATS`.
    pub(crate) fn stats(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_stats,
        _file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.flags != 0 || req.pad != 0 {
            return Err(EINVAL);
        }
        let stats = dev.vram.stats();
        req.pages_to_device = stats.pages_to_device.load(Relaxed);
        req.pages_to_system = stats.pages_to_ram.load(Relaxed);
        req.bytes_copied = dev.vram.bytes_copied();
        req.cpu_faults = stats.cpu_faults.load(Relaxed);
        req.evictions = stats.evictions.load(Relaxed);
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_INJECT`.
    pub(crate) fn inject(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_inject,
        _file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        dev.vram.fail_allocs.store(req.fail_allocs, Relaxed);
        dev.vram.fail_copies.store(req.fail_copies, Relaxed);
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_EVICT`.
    pub(crate) fn evict(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_evict,
        _file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        req.evicted = dev.vram.evict_all()?;
        Ok(0)
    }
}
