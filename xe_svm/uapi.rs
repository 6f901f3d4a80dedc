// SPDX-License-Identifier: GPL-2.0

//! The uAPI of `/dev/xe_svm` (`uapi/xe_svm_ioctl.h`), as the crate's bindgen step reads it.

use core::mem::offset_of;
use core::mem::size_of;

use kernel::transmute::AsBytes;
use kernel::transmute::FromBytes;

pub(crate) use crate::ffi::xe_svm_devmem_open;
pub(crate) use crate::ffi::xe_svm_migrate;
pub(crate) use crate::ffi::XE_SVM_MIGRATE_TO_SYSTEM;

/// The ioctls' type number (`_IOC_TYPE`).
pub(crate) const XE_SVM_IOCTL_BASE: u32 = crate::ffi::XE_SVM_IOCTL_BASE;

// The layouts the header documents: sizes, offsets, and no implicit padding (the fields add
// up to the size), which the impls below rely on.
const _: () = {
    assert!(size_of::<xe_svm_devmem_open>() == 16);
    assert!(offset_of!(xe_svm_devmem_open, region) == 0);
    assert!(offset_of!(xe_svm_devmem_open, flags) == 4);
    assert!(offset_of!(xe_svm_devmem_open, pagemap_fd) == 8);
    assert!(offset_of!(xe_svm_devmem_open, pad) == 12);
    assert!(size_of::<xe_svm_migrate>() == 32);
    assert!(offset_of!(xe_svm_migrate, start) == 0);
    assert!(offset_of!(xe_svm_migrate, size) == 8);
    assert!(offset_of!(xe_svm_migrate, pagemap_fd) == 16);
    assert!(offset_of!(xe_svm_migrate, flags) == 20);
    assert!(offset_of!(xe_svm_migrate, timeslice_ms) == 24);
    assert!(offset_of!(xe_svm_migrate, pad) == 28);
};

// SAFETY: Plain integers with no implicit padding (checked above): every bit pattern is valid
// and no byte is uninitialised.
unsafe impl AsBytes for xe_svm_devmem_open {}
// SAFETY: As above.
unsafe impl FromBytes for xe_svm_devmem_open {}
// SAFETY: As above.
unsafe impl FromBytes for xe_svm_migrate {}
