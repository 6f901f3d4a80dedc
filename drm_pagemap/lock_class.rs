// SPDX-License-Identifier: GPL-2.0

//! Lock classes that keep one name when their lock is initialised from another module.
//!
//! `new_mutex!` and friends put the class key in a static of the defining crate but the name
//! in a string literal of whichever crate compiles the initialiser. A type of ours whose
//! initialiser is instantiated by a user module thus registers one key under two names, which
//! lockdep reports. A [`LockClass`] is a static holding both, read through its symbol.

use kernel::prelude::*;
use kernel::sync::LockClassKey;

/// A lock class name and key, for a `static`.
pub struct LockClass {
    name: &'static CStr,
    key: LockClassKey,
}

impl LockClass {
    /// A class named `name`. Only for initialising a `static`.
    pub const fn new(name: &'static CStr) -> Self {
        Self {
            name,
            // SAFETY: `Self` is only meant for statics (documented above), so the key is in
            // static memory, pinned by `key()`, and never dropped.
            key: unsafe { LockClassKey::new_static() },
        }
    }

    /// The class name.
    pub fn name(&'static self) -> &'static CStr {
        self.name
    }

    /// The class key.
    pub fn key(&'static self) -> Pin<&'static LockClassKey> {
        Pin::static_ref(&self.key)
    }
}
