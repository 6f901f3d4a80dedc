// SPDX-License-Identifier: GPL-2.0

//! Lock classes that keep one name when their lock is initialised from another module.
//!
//! `new_mutex!` and friends put the class key in a static of the defining crate but the name
//! in a string literal of whichever crate compiles the initialiser. A type of ours whose
//! initialiser is instantiated by a user module thus registers one key under two names, which
//! lockdep reports. A [`LockClass`] is a static holding both, made by [`lock_class!`] (like
//! the kernel's `static_lock_class!`) and read through its symbol.
//!
//! [`lock_class!`]: crate::lock_class!

use kernel::prelude::*;
use kernel::sync::LockClassKey;

/// A lock class name and key, living in a `static` made by [`lock_class!`](crate::lock_class!).
pub struct LockClass {
    name: &'static CStr,
    key: LockClassKey,
}

impl LockClass {
    /// A class named `name`.
    ///
    /// # Safety
    ///
    /// The value is only used to initialise a `static` (as [`lock_class!`](crate::lock_class!)
    /// does): lockdep needs the key at a fixed address, forever.
    pub const unsafe fn new(name: &'static CStr) -> Self {
        Self {
            name,
            // SAFETY: Per this function's contract the key is in static memory, pinned by
            // `key()`, and never dropped.
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

/// A `&'static LockClass` named by the given C string literal, in a static of its own.
#[macro_export]
macro_rules! lock_class {
    ($name:expr) => {{
        static CLASS: $crate::lock_class::LockClass =
            // SAFETY: `CLASS` is a static, never moved or dropped.
            unsafe { $crate::lock_class::LockClass::new($name) };
        &CLASS
    }};
}
