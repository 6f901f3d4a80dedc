// SPDX-License-Identifier: GPL-2.0

//! Issue 7 item 10: the pfns a provider hands out are trusted by `unsafe` code, so
//! implementing `DevmemOps` takes an `unsafe impl` (with the contract its `# Safety` states).
//! Before the fix it was a safe trait, and the `svm_bad` variant compiled.
//!
//! expect: error[E0200]

use drm_pagemap::devmem::DevmemOps;
use drm_pagemap::devmem::Direction;
use drm_pagemap::devmem::PageCopy;
use kernel::prelude::*;

/// A provider with no memory.
pub struct Empty;

#[cfg(not(svm_bad))]
// SAFETY: `populate_devmem_pfn` hands out no pfn at all.
unsafe impl DevmemOps for Empty {
    fn module(&self) -> &'static ThisModule {
        unimplemented!()
    }
    fn populate_devmem_pfn(&self, _pfns: &mut [usize]) -> Result {
        Err(ENOMEM)
    }
    fn copy_to_devmem(&self, _copies: &[PageCopy<'_>]) -> Result {
        Err(EIO)
    }
    fn copy_to_ram(&self, _copies: &[PageCopy<'_>], _dir: Direction) -> Result {
        Err(EIO)
    }
}

#[cfg(svm_bad)]
impl DevmemOps for Empty {
    fn module(&self) -> &'static ThisModule {
        unimplemented!()
    }
    fn populate_devmem_pfn(&self, _pfns: &mut [usize]) -> Result {
        Err(ENOMEM)
    }
    fn copy_to_devmem(&self, _copies: &[PageCopy<'_>]) -> Result {
        Err(EIO)
    }
    fn copy_to_ram(&self, _copies: &[PageCopy<'_>], _dir: Direction) -> Result {
        Err(EIO)
    }
}
