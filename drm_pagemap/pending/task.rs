// SPDX-License-Identifier: GPL-2.0

//! The current task's fatal signals: what every bounded kernel retry loop checks.
//!
//! C header: [`include/linux/sched/signal.h`](srctree/include/linux/sched/signal.h)

use crate::ffi;

/// Whether the current task has a fatal signal pending (it was killed): a kernel retry loop
/// then stops with `EINTR`, so that the task can die.
pub fn fatal_signal_pending() -> bool {
    // SAFETY: Reads the current task's signal state; callable from any task context.
    unsafe { ffi::svm_fatal_signal_pending() }
}
