// SPDX-License-Identifier: GPL-2.0

//! A device-private owner names whose pages a pagemap treats as its own, and C drivers trust
//! it: making one is `unsafe` (review of issue 8's `Owner`: it was a safe constructor, and the
//! `svm_bad` variant compiled).
//!
//! expect: error[E0133]

use drm_pagemap::owner::Owner;

static COOKIE: u8 = 0;

/// An owner from a static of this crate.
#[cfg(not(svm_bad))]
pub fn owner() -> Owner {
    // SAFETY: `COOKIE` is this crate's own static, no other driver's owner.
    unsafe { Owner::of(&COOKIE) }
}

/// The same without `unsafe`: refused.
#[cfg(svm_bad)]
pub fn owner() -> Owner {
    Owner::of(&COOKIE)
}
