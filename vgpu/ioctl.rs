// SPDX-License-Identifier: GPL-2.0

//! The ioctl table macro for vgpu, a driver with its own uAPI header.
//!
//! `kernel::declare_drm_ioctls!` resolves argument types in `kernel::uapi` only; this is the
//! same dispatch over types from this crate's `uapi` module, with ioctl numbers given as
//! `DRM_COMMAND_BASE`-relative indices (checked to be dense and in order). It keeps the kernel
//! macro's checks: the argument size is the command's (`IOWR::<T>` builds both from the same
//! type), the handler takes any lifetimes, the device must still be registered. It names the
//! C types by their public paths (`DrmIoctlDescriptor`, `kernel::bindings`), not through the
//! kernel macro's `internal` module. What the kernel macro cannot check either (that `dev`
//! and `file` are this driver's) holds here because the table is declared in `VgpuDriver`'s
//! own `Driver` impl.

/// Declares `const IOCTLS` for a [`kernel::drm::Driver`] whose argument types live in
/// `crate::uapi`. Entries are `(index, argument type, flags, handler)`, all `_IOWR`, or
/// `(index, reserved)` for a number that is not (or no longer) in use: the DRM core refuses it
/// with `EINVAL`, as an ioctl without a handler.
macro_rules! declare_vgpu_ioctls {
    ( $($entry:tt),* $(,)? ) => {
        const IOCTLS: &'static [kernel::drm::ioctl::DrmIoctlDescriptor] = {
            const _: () = {
                let i: u32 = 0;
                $(
                    ::core::assert!(i == crate::ioctl::vgpu_ioctl_nr!($entry));
                    let i: u32 = i + 1;
                )*
                let _ = i;
            };

            let ioctls = &[$( crate::ioctl::vgpu_ioctl_desc!($entry) ),*];
            ioctls
        };
    };
}

/// The index of one entry of [`declare_vgpu_ioctls`].
macro_rules! vgpu_ioctl_nr {
    (($nr:expr, $($rest:tt)*)) => {
        $nr
    };
}

/// The descriptor of one entry of [`declare_vgpu_ioctls`].
macro_rules! vgpu_ioctl_desc {
    (($nr:expr, reserved)) => {
        kernel::drm::ioctl::DrmIoctlDescriptor {
            cmd: 0,
            func: None,
            flags: 0,
            name: kernel::str::as_char_ptr_in_const_context(c"DRM_VGPU_RESERVED"),
        }
    };
    (($nr:expr, $struct:ident, $flags:expr, $func:expr)) => {
        kernel::drm::ioctl::DrmIoctlDescriptor {
            cmd: kernel::drm::ioctl::IOWR::<crate::uapi::$struct>(
                kernel::uapi::DRM_COMMAND_BASE + $nr,
            ),
            func: {
                /// The ioctl's entry point from `drm_ioctl`.
                ///
                /// # Safety
                ///
                /// Only `drm_ioctl` calls this, with a registered vgpu device, the
                /// argument copied into a kernel buffer and the file it came through.
                #[allow(non_snake_case)]
                unsafe extern "C" fn $struct(
                    raw_dev: *mut kernel::bindings::drm_device,
                    raw_data: *mut ::core::ffi::c_void,
                    raw_file: *mut kernel::bindings::drm_file,
                ) -> ::core::ffi::c_int {
                    type Dev = kernel::drm::Device<crate::driver::VgpuDriver, kernel::drm::Ioctl>;
                    // SAFETY: The DRM core calls ioctl handlers only for a registered
                    // device of this driver, alive for the duration of the call.
                    let dev: &Dev = unsafe { Dev::from_raw(raw_dev) };
                    // As the kernel's macro: the handler must take any lifetimes, so that no
                    // reference it is given can escape the call.
                    let _: for<'a> fn(&'a _, &'a _, &'a mut _, &'a _) -> _ = $func;
                    let Some(guard) = dev.registration_guard() else {
                        return kernel::error::code::ENODEV.to_errno();
                    };
                    // `drm_ioctl` copied the argument, sized by the command number
                    // built from this very type, into a kernel buffer ours for the call.
                    // SAFETY: Hence valid and unaliased; any bit pattern is a valid uAPI
                    // struct.
                    let data = unsafe { &mut *raw_data.cast::<crate::uapi::$struct>() };
                    // SAFETY: `raw_file` is the DRM file the ioctl came through.
                    let file = unsafe { kernel::drm::File::from_raw(raw_file) };
                    match guard
                        .registration_data_with(|reg_data| $func(&*guard, reg_data, data, file))
                    {
                        Err(e) => e.to_errno(),
                        Ok(i) => i
                            .try_into()
                            .unwrap_or(kernel::error::code::ERANGE.to_errno()),
                    }
                }
                Some($struct)
            },
            flags: $flags,
            name: kernel::str::as_char_ptr_in_const_context(kernel::c_str!(::core::stringify!(
                $struct
            ))),
        }
    };
}

pub(crate) use declare_vgpu_ioctls;
pub(crate) use vgpu_ioctl_desc;
pub(crate) use vgpu_ioctl_nr;
