// SPDX-License-Identifier: GPL-2.0

//! Pagemap helpers shared by drivers (the Rust counterpart of the C `drm_pagemap_util`): the
//! per-region pagemap cache, interconnect groups and their owners, pagemap file descriptors,
//! and the list of allocations a device memory evicts when it goes.

pub mod allocations;
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
    params: {
        idle_ms: u32 {
            default: 5000,
            description: "How long (ms) a cached pagemap whose last user is gone stays, idle, before it is destroyed (a lookup meanwhile revives it; memory pressure destroys it earlier)",
        },
    },
}

struct PagemapUtilModule;

impl kernel::Module for PagemapUtilModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        cache::idle_init()?;
        Ok(Self)
    }
}

impl Drop for PagemapUtilModule {
    fn drop(&mut self) {
        cache::idle_fini();
    }
}
