// SPDX-License-Identifier: GPL-2.0

//! Issue 7 item 9: a provider cannot keep a system page past the copy callback that lent it.
//! Before the fix `SystemPage` was `Copy + 'static`, and the `svm_bad` variant compiled.
//!
//! expect: lifetime may not live long enough

use drm_pagemap::devmem::PageCopy;
use drm_pagemap::devmem::SystemPage;

/// The page of the first copy, for as long as the callback's borrow.
#[cfg(not(svm_bad))]
pub fn keep<'a>(copies: &[PageCopy<'a>]) -> Option<SystemPage<'a>> {
    copies.first().and_then(|c| c.system)
}

/// The page of the first copy, kept for ever: refused.
#[cfg(svm_bad)]
pub fn keep<'a>(copies: &[PageCopy<'a>]) -> Option<SystemPage<'static>> {
    copies.first().and_then(|c| c.system)
}
