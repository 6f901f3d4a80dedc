// SPDX-License-Identifier: GPL-2.0

//! Abstractions this project needs that the 7.3 kernel crate does not have yet.
//!
//! Each is written as it would be proposed for `rust/kernel` and is to be replaced by the
//! kernel crate's own when it lands, at which point this module goes. The other crates of
//! this project use them from here.

pub mod module_ref;
pub mod task;
pub mod workqueue;
