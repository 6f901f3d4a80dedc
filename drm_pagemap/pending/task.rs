// SPDX-License-Identifier: GPL-2.0

//! The current task's fatal signals, sleeps and scheduling points: what every bounded kernel
//! retry loop and long loop uses.
//!
//! C header: [`include/linux/sched/signal.h`](srctree/include/linux/sched/signal.h)

use crate::ffi;

/// Whether the current task has a fatal signal pending (it was killed): a kernel retry loop
/// then stops with `EINTR`, so that the task can die.
pub fn fatal_signal_pending() -> bool {
    // SAFETY: Reads the current task's signal state; callable from any task context.
    unsafe { ffi::svm_fatal_signal_pending() }
}

/// Sleeps `ms` milliseconds, or less if a fatal signal arrives. Process context only, like
/// every sleeping function.
pub fn sleep_killable(ms: u32) {
    // SAFETY: `msleep_killable` accepts any duration; sleeping is a context rule, not a
    // memory-safety one (as for `kernel::time::delay::fsleep`).
    unsafe { ffi::svm_sleep_killable(ms) }
}

/// Gives the CPU to another task if one should run: long loops in process context call it
/// between steps, so that a kernel without preemption does not report a soft lockup.
pub fn cond_resched() {
    // SAFETY: A scheduling point; process context only, like every sleeping function.
    unsafe { ffi::svm_cond_resched() }
}
