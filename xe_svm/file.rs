// SPDX-License-Identifier: GPL-2.0

//! `/dev/xe_svm`: the uAPI of `uapi/xe_svm_ioctl.h`. A misc device, root's by default (0600):
//! it lets its user fill VRAM. A call acts on the caller's own address space, in pieces whose
//! size does not depend on what it passes.

use drm_pagemap::migrate;
use drm_pagemap::pagemap;
use drm_pagemap::pagemap::Folios;
use drm_pagemap::pagemap::MigrateDetails;
use drm_pagemap::range::PageRange;
use kernel::fs::File;
use kernel::ioctl::_IOW;
use kernel::ioctl::_IOWR;
use kernel::miscdevice::MiscDevice;
use kernel::miscdevice::MiscDeviceRegistration;
use kernel::prelude::*;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;

use crate::driver;
use crate::region::piece_end;
use crate::uapi;

const DEVMEM_OPEN: u32 = _IOWR::<uapi::xe_svm_devmem_open>(uapi::XE_SVM_IOCTL_BASE, 0x00);
const MIGRATE: u32 = _IOW::<uapi::xe_svm_migrate>(uapi::XE_SVM_IOCTL_BASE, 0x01);

/// An open `/dev/xe_svm`: holds nothing.
pub(crate) struct XeSvmFile;

#[vtable]
impl MiscDevice for XeSvmFile {
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<()> {
        Ok(())
    }

    fn ioctl(_this: (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let ptr = UserPtr::from_addr(arg);
        match cmd {
            DEVMEM_OPEN => {
                let len = core::mem::size_of::<uapi::xe_svm_devmem_open>();
                let req: uapi::xe_svm_devmem_open = UserSlice::new(ptr, len).reader().read()?;
                devmem_open(req, ptr)?;
            }
            MIGRATE => {
                let len = core::mem::size_of::<uapi::xe_svm_migrate>();
                let req: uapi::xe_svm_migrate = UserSlice::new(ptr, len).reader().read()?;
                migrate(&req)?;
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

/// `XE_SVM_IOCTL_DEVMEM_OPEN`: the fd is installed only once the caller has its number.
fn devmem_open(mut req: uapi::xe_svm_devmem_open, ptr: UserPtr) -> Result {
    if req.flags != 0 || req.pad != 0 {
        return Err(EINVAL);
    }
    let region = driver::region(req.region).ok_or(ENODEV)?;
    let pagemap = region.pagemap()?;
    let len = core::mem::size_of::<uapi::xe_svm_devmem_open>();
    pagemap_util::fd::export_then(pagemap, &mut |fd| {
        req.pagemap_fd = fd as i32;
        UserSlice::new(ptr, len).writer().write(&req)
    })?;
    Ok(())
}

/// `XE_SVM_IOCTL_MIGRATE`.
fn migrate(req: &uapi::xe_svm_migrate) -> Result {
    if req.pad != 0 {
        return Err(EINVAL);
    }
    let to_system = match req.flags {
        0 => false,
        uapi::XE_SVM_MIGRATE_TO_SYSTEM if req.pagemap_fd == -1 && req.timeslice_ms == 0 => true,
        _ => return Err(EINVAL),
    };
    let start = usize::try_from(req.start).map_err(|_| EINVAL)?;
    let size = usize::try_from(req.size).map_err(|_| EINVAL)?;
    let end = start.checked_add(size).ok_or(EINVAL)?;
    // Refuses empty and unaligned ranges.
    let range = PageRange::new(start, end)?;
    let target = match to_system {
        true => None,
        false => {
            let fd = u32::try_from(req.pagemap_fd).map_err(|_| EBADF)?;
            Some(pagemap_util::fd::import(fd)?)
        }
    };
    let regions = match to_system {
        true => Some(driver::regions()?),
        false => None,
    };
    let task = kernel::current!();
    let mm = task.mm().ok_or(EFAULT)?;
    let details = MigrateDetails {
        timeslice_ms: req.timeslice_ms,
        folios: Folios::Huge,
    };
    let mut at = range.start();
    // Bounded by the range, a piece at a time; a signal stops it between two pieces: the call
    // restarts if nothing moved yet, else reports what did not (`EINTR`).
    while at < range.end() {
        if kernel::current!().signal_pending() {
            return Err(if at == range.start() {
                ERESTARTSYS
            } else {
                EINTR
            });
        }
        let next = piece_end(at, range.end());
        let piece = PageRange::new(at, next)?;
        match (&target, &regions) {
            (Some(target), _) => match pagemap::populate_mm(target, mm, piece, &details) {
                // A signal in the provider: as one between two pieces (restarted only for a
                // signal that is pending, and before anything moved).
                Err(e) if e == EINTR || e == ERESTARTSYS => {
                    let restart = at == range.start() && kernel::current!().signal_pending();
                    return Err(if restart { ERESTARTSYS } else { EINTR });
                }
                r => r?,
            },
            (None, Some(regions)) => {
                let user = mm.mmget_not_zero().ok_or(EFAULT)?;
                let mmap = user.mmap_read_lock();
                // Bounded by the bound regions.
                for region in regions.iter() {
                    migrate::migrate_to_ram(&mmap, piece, region.device_private(), Folios::Huge)?;
                }
            }
            (None, None) => return Err(EINVAL),
        }
        at = next;
    }
    Ok(())
}
