// SPDX-License-Identifier: GPL-2.0

//! GPU shared virtual memory over a process address space (the Rust counterpart of the C
//! `drm_gpusvm`): interval notifiers, range faults through HMM, and the GPU SVM proper: ranges
//! created around GPU faults, their pages mapped for the device, garbage collection.

pub mod chunk;
mod ffi;
pub mod hmm;
pub mod notifier;
pub mod pages;
pub mod svm;
#[cfg(CONFIG_KUNIT)]
mod svm_kunit;

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
