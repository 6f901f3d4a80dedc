// SPDX-License-Identifier: GPL-2.0

//! Pagemap helpers shared by drivers (the Rust counterpart of the C `drm_pagemap_util`): the
//! per-region pagemap cache, interconnect groups and their owners, pagemap file descriptors.

pub mod cache;
pub mod fd;
mod ffi;
pub mod owner;

use kernel::prelude::*;

module! {
    type: PagemapUtilModule,
    name: "pagemap_util",
    authors: ["The rust-svm developers"],
    description: "Pagemap cache, interconnect owners and pagemap fds for GPU shared virtual memory",
    license: "GPL",
}

struct PagemapUtilModule;

impl kernel::Module for PagemapUtilModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Self)
    }
}
