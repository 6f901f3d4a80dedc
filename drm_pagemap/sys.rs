// SPDX-License-Identifier: GPL-2.0

//! Safe types over the raw C structures the migration code works with, so that the policy
//! files above them name no `ffi::` item for these. Private to the crate.

pub(crate) mod dma;
pub(crate) mod fault;
pub(crate) mod migrate_vma;
pub(crate) mod page;
