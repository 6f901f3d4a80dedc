// SPDX-License-Identifier: GPL-2.0

//! Pagemap file descriptors: a pagemap exported as a file that holds a reference on it, which
//! any driver built on this stack imports back. A process names another device's memory (as a
//! migration target, a preferred location) by passing its fd; the fd keeps the pagemap, and
//! so its provider module, alive until closed.
//!
//! C header: [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use core::ptr::NonNull;

use drm_pagemap::pagemap::Pagemap;
use kernel::error::from_err_ptr;
use kernel::ffi::c_void;
use kernel::fs::file::flags::O_CLOEXEC;
use kernel::fs::file::FileDescriptorReservation;
use kernel::fs::File;
use kernel::fs::LocalFile;
use kernel::prelude::*;
use kernel::sync::aref::ARef;

use crate::ffi;

/// Exports `pagemap` as a new file descriptor of the calling process (`O_CLOEXEC`), holding
/// the reference given; returns the descriptor.
pub fn export(pagemap: ARef<Pagemap>) -> Result<u32> {
    export_then(pagemap, &mut |_| Ok(()))
}

/// As [`export`], but the descriptor is installed only if `commit(fd)` succeeds (it tells the
/// caller the number, say): otherwise it is never visible to the process, and the reference
/// is given back.
// Not generic, and never inlined: it calls this module's own C glue, which is not exported.
#[inline(never)]
pub fn export_then(pagemap: ARef<Pagemap>, commit: &mut dyn FnMut(u32) -> Result) -> Result<u32> {
    let reservation = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
    let raw = ARef::into_raw(pagemap);
    // SAFETY: `raw` is a counted reference, which the file takes over on success and gives
    // back through `svm_pagemap_file_put` on its last close.
    let file = from_err_ptr(unsafe { ffi::svm_pagemap_file_create(raw.as_ptr().cast()) });
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            // SAFETY: The file was not created: the reference is still ours.
            drop(unsafe { ARef::from_raw(raw) });
            return Err(e);
        }
    };
    // SAFETY: `anon_inode_getfile` returned a new file with one reference, which we own; a
    // `File` is a transparent wrapper of `struct file`.
    let file: ARef<File> = unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) };
    let fd = reservation.reserved_fd();
    // On failure the file and the reservation go: the file's release gives the reference back.
    commit(fd)?;
    reservation.fd_install(file);
    Ok(fd)
}

/// The pagemap that file descriptor `fd` of the calling process holds, with a new reference:
/// `EBADF` if `fd` is not open, `EINVAL` if it is not a pagemap file.
pub fn import(fd: u32) -> Result<ARef<Pagemap>> {
    let file = LocalFile::fget(fd).map_err(|_| EBADF)?;
    // SAFETY: `file` is a valid file, referenced for the call.
    let data = unsafe { ffi::svm_pagemap_file_data(file.as_ptr()) };
    let pagemap = NonNull::new(data.cast::<Pagemap>()).ok_or(EINVAL)?;
    // SAFETY: A pagemap file holds a reference on its pagemap until its last close, which
    // cannot happen while `file` is referenced.
    let pagemap = unsafe { pagemap.as_ref() };
    Ok(pagemap.into())
}

/// The release of a pagemap file (`helpers.c`): gives back the reference it held.
///
/// # Safety
///
/// `pagemap` is the reference [`export`] gave the file, given back once, on its last close.
#[no_mangle]
unsafe extern "C" fn svm_pagemap_file_put(pagemap: *mut c_void) {
    if let Some(ptr) = NonNull::new(pagemap.cast::<Pagemap>()) {
        // SAFETY: Per this function's contract, this is a counted reference we now own.
        drop(unsafe { ARef::from_raw(ptr) });
    }
}

#[kunit_tests(pagemap_util_fd)]
mod tests {
    use super::*;
    use drm_pagemap::device_private::DevicePrivateRegion;
    use drm_pagemap::owner::SharedOwner;
    use drm_pagemap::pagemap::PagemapOps;
    use kernel::faux;
    use kernel::sync::atomic::Atomic;
    use kernel::sync::atomic::Full;
    use kernel::sync::atomic::Relaxed;
    use kernel::sync::Arc;

    struct CountingOps {
        destroyed: Arc<Atomic<u32>>,
    }

    // SAFETY: A test type of this module.
    unsafe impl PagemapOps for CountingOps {
        fn module(&self) -> &'static ThisModule {
            kernel::module::this_module::<crate::LocalModule>()
        }

        fn destroy(&self, _pagemap: &Pagemap) {
            self.destroyed.fetch_add(1, Full);
        }
    }

    fn close(fd: u32) -> i32 {
        // SAFETY: Closes a descriptor of the test's own task.
        unsafe { ffi::svm_close_fd(fd) }
    }

    #[test]
    fn round_trip_holds_a_reference() -> Result {
        let fdev = faux::Registration::new(c"pagemap_util_kunit_fd", None)?;
        let region = Arc::pin_init(
            DevicePrivateRegion::new(1 << 21, c"pagemap_util_kunit", SharedOwner::new()?),
            GFP_KERNEL,
        )?;
        let destroyed = Arc::new(Atomic::new(0u32), GFP_KERNEL)?;
        let ops = CountingOps {
            destroyed: destroyed.clone(),
        };
        let pagemap = Pagemap::new(fdev.as_ref().as_ref(), region, ops)?;
        let fd = export(pagemap.clone())?;
        assert_eq!(pagemap.refcount(), 2);
        let back = import(fd)?;
        assert!(core::ptr::eq(&*back, &*pagemap));
        assert_eq!(pagemap.refcount(), 3);
        drop(back);
        // Not open, or out of range: EBADF.
        assert_eq!(import(fd + 1000).err(), Some(EBADF));
        assert_eq!(import(u32::MAX).err(), Some(EBADF));
        assert_eq!(close(fd), 0);
        // The last close gives the file's reference back (`fput` of a kthread's file may be
        // deferred to a work item: wait for it, bounded).
        let mut tries = 0;
        while pagemap.refcount() != 1 && tries < 1000 {
            kernel::time::delay::fsleep(kernel::time::Delta::from_millis(1));
            tries += 1;
        }
        assert_eq!(pagemap.refcount(), 1);
        assert_eq!(import(fd).err(), Some(EBADF));
        assert_eq!(destroyed.load(Relaxed), 0);
        drop(pagemap);
        assert_eq!(destroyed.load(Relaxed), 1);
        Ok(())
    }
}
