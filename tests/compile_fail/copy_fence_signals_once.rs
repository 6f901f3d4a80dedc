// SPDX-License-Identifier: GPL-2.0

//! A copy completes once: signalling consumes the provider's `CopyFence`, so a second signal
//! (which could report success after a failure) does not compile. This replaces the check
//! that a provider could not keep a `SystemPage` past its copy callback (issue 7 item 9):
//! system memory now reaches providers as DMA addresses, mapped until the fence is signalled.
//!
//! expect: error[E0382]

use drm_pagemap::copy::CopyFence;
use kernel::prelude::*;

/// Reports a copy done.
#[cfg(not(svm_bad))]
pub fn finish(fence: CopyFence, result: Result) {
    fence.signal(result);
}

/// Reports it done twice: refused.
#[cfg(svm_bad)]
pub fn finish(fence: CopyFence, result: Result) {
    fence.signal(result);
    fence.signal(Ok(()));
}
