// SPDX-License-Identifier: GPL-2.0

//! Issue 7 item 15: a lock class whose key is not in a static cannot be made without `unsafe`.
//! Before the fix `LockClass::new` was a safe `const fn`, and the `svm_bad` variant compiled.
//!
//! expect: error[E0133]

use drm_pagemap::lock_class::LockClass;

/// A class in a static of its own.
#[cfg(not(svm_bad))]
pub fn class() -> usize {
    let c: &'static LockClass = drm_pagemap::lock_class!(c"svm_compile_fail");
    core::mem::size_of_val(c)
}

/// A class on the stack: refused.
#[cfg(svm_bad)]
pub fn class() -> usize {
    let c = LockClass::new(c"svm_compile_fail");
    core::mem::size_of_val(&c)
}
