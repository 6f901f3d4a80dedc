// SPDX-License-Identifier: GPL-2.0

//! A counted reference on a kernel module.
//!
//! C header: [`include/linux/module.h`](srctree/include/linux/module.h)

use kernel::prelude::*;

use crate::ffi;

/// A reference that keeps a module loaded.
///
/// # Invariants
///
/// `self.0` is a module (or null, for built-in code) on which this object holds a reference
/// taken with `try_module_get`.
pub struct ModuleRef(*mut ffi::module);

impl ModuleRef {
    /// Takes a reference on `module`.
    ///
    /// Fails with `ENODEV` if the module is already on its way out.
    pub fn new(module: &'static ThisModule) -> Result<Self> {
        let ptr = module.as_ptr();
        // SAFETY: `ptr` is the module of a `ThisModule`, valid while that module's code runs,
        // which it does since the caller holds a `&'static ThisModule` of a live module.
        if unsafe { ffi::try_module_get(ptr) } {
            // INVARIANT: The reference was just taken.
            Ok(Self(ptr))
        } else {
            Err(ENODEV)
        }
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, a reference on `self.0` is held and given back here.
        unsafe { ffi::module_put(self.0) };
    }
}

// SAFETY: A module reference may be taken and dropped on any thread.
unsafe impl Send for ModuleRef {}
// SAFETY: `ModuleRef` has no methods through a shared reference.
unsafe impl Sync for ModuleRef {}
