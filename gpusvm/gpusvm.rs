// SPDX-License-Identifier: GPL-2.0

//! GPU shared virtual memory over a process address space (the Rust counterpart of the C
//! `drm_gpusvm`). So far: interval notifiers, range faults through HMM, and choosing the size
//! of a new range around a GPU fault.

pub mod chunk;
mod ffi;
pub mod hmm;
pub mod notifier;

use kernel::prelude::*;

module! {
    type: GpusvmModule,
    name: "gpusvm",
    authors: ["The rust-svm developers"],
    description: "GPU shared virtual memory ranges",
    license: "GPL",
}

struct GpusvmModule;

impl kernel::Module for GpusvmModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Self)
    }
}
