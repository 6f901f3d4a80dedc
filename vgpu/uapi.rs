// SPDX-License-Identifier: GPL-2.0

//! vgpu's uAPI structures, generated from `uapi/vgpu_drm.h` and `lib/test_hmm_uapi.h`.

#![allow(
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]

use kernel::bindings::*;
use kernel::transmute::AsBytes;
use kernel::transmute::FromBytes;

include!("bindings_generated.rs");

// SAFETY: uAPI structs are plain integers with no implicit padding (checked by the header's
// layout rules), so every bit pattern is valid and no byte is uninitialised.
unsafe impl AsBytes for drm_vgpu_query_device {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_query_device {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_query {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_query {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_migrate {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_migrate {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_stats {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_stats {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_evict {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_evict {}
// SAFETY: As above (`lib/test_hmm_uapi.h`: five `__u64`).
unsafe impl AsBytes for hmm_dmirror_cmd {}
// SAFETY: As above.
unsafe impl FromBytes for hmm_dmirror_cmd {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_vm_create {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_vm_create {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_vm_destroy {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_vm_destroy {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_vm_access {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_vm_access {}
