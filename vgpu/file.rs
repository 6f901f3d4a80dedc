// SPDX-License-Identifier: GPL-2.0

//! Per-open state and ioctl handlers.

use drm_pagemap::pagemap::Pagemap;
use kernel::drm;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;

use crate::driver::VgpuDevice;
use crate::driver::VgpuDriver;
use crate::uapi;
use crate::vram;
use crate::vram::VRAM_PAGE_SIZE;

/// An open render node.
pub(crate) struct VgpuFile {
    /// Each client uses the device memory, so holds its pagemap: the pagemap lives exactly as
    /// long as some client has the device open.
    _pagemap: ARef<Pagemap>,
}

impl drm::file::DriverFile for VgpuFile {
    type Driver = VgpuDriver;

    fn open(dev: &VgpuDevice) -> Result<Pin<KBox<Self>>> {
        let pagemap = vram::pagemap(dev)?;
        Ok(KBox::new(Self { _pagemap: pagemap }, GFP_KERNEL)?.into())
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
}
