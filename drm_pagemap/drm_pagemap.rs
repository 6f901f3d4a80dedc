// SPDX-License-Identifier: GPL-2.0

//! Refcounted device-memory pagemaps and device-private regions: the base every SVM layer
//! and driver in this project builds on (the Rust counterpart of the C `drm_pagemap`).

use kernel::prelude::*;

pub mod copy;
mod deferred;
pub mod device_private;
pub mod devmem;
mod ffi;
pub mod migrate;
pub mod owner;
pub mod pagemap;
pub mod pending;
pub mod range;
mod sys;

module! {
    type: DrmPagemapModule,
    name: "drm_pagemap",
    authors: ["The rust-svm developers"],
    description: "Refcounted device-memory pagemaps for GPU shared virtual memory",
    license: "GPL",
}

struct DrmPagemapModule;

impl kernel::Module for DrmPagemapModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        deferred::init()?;
        Ok(Self)
    }
}

impl Drop for DrmPagemapModule {
    fn drop(&mut self) {
        deferred::fini();
    }
}
