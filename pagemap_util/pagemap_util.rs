// SPDX-License-Identifier: GPL-2.0

//! Pagemap helpers shared by drivers: the per-region pagemap cache (the Rust counterpart of
//! the C `drm_pagemap_util`).

pub mod cache;

use kernel::prelude::*;

module! {
    type: PagemapUtilModule,
    name: "pagemap_util",
    authors: ["The rust-svm developers"],
    description: "Pagemap cache for GPU shared virtual memory",
    license: "GPL",
}

struct PagemapUtilModule;

impl kernel::Module for PagemapUtilModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Self)
    }
}
