// SPDX-License-Identifier: GPL-2.0

//! Issue 7 item 10: the pfns a provider hands out are trusted by `unsafe` code, so
//! implementing `DevmemOps` takes an `unsafe impl` (with the contract its `# Safety` states).
//! Before the fix it was a safe trait, and the `svm_bad` variant compiled.
//!
//! expect: error[E0200]

use drm_pagemap::copy::CopyFence;
use drm_pagemap::copy::CopyRun;
use drm_pagemap::devmem::DevmemOps;
use drm_pagemap::devmem::Direction;
use kernel::prelude::*;

/// A provider with no memory.
pub struct Empty;

/// Stands for the module this file would be built into; the file is only type-checked,
/// never built into a module or run.
// SAFETY: Never used: nothing here runs.
static NOT_LOADED: ThisModule = unsafe { ThisModule::from_ptr(core::ptr::null_mut()) };

/// The same methods for both variants: only the `unsafe` of the `impl` differs.
macro_rules! empty_ops {
    () => {
        fn module(&self) -> &'static ThisModule {
            &NOT_LOADED
        }
        fn populate_devmem_pfn(&self, _pfns: &mut [usize]) -> Result {
            Err(ENOMEM)
        }
        unsafe fn copy_to_devmem(&self, _runs: &[CopyRun], _fence: CopyFence) -> Result {
            Err(EIO)
        }
        unsafe fn copy_to_ram(
            &self,
            _runs: &[CopyRun],
            _dir: Direction,
            _fence: CopyFence,
        ) -> Result {
            Err(EIO)
        }
    };
}

#[cfg(not(svm_bad))]
// SAFETY: `populate_devmem_pfn` hands out no pfn at all.
unsafe impl DevmemOps for Empty {
    empty_ops!();
}

#[cfg(svm_bad)]
impl DevmemOps for Empty {
    empty_ops!();
}
