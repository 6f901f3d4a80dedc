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

/// Checks at compile time that a uAPI struct has the layout its header documents: its size,
/// each field's type and offset, and no implicit padding (the fields' sizes add up to the
/// size). The `AsBytes`/`FromBytes` impls below rely on it.
macro_rules! uapi_layout {
    ($t:ident, $size:literal, { $($field:ident: $fty:ty = $off:literal),+ $(,)? }) => {
        const _: () = {
            assert!(core::mem::size_of::<$t>() == $size);
            $(assert!(core::mem::offset_of!($t, $field) == $off);)+
            assert!(0 $(+ core::mem::size_of::<$fty>())+ == $size);
        };
        $(const _: fn(&$t) -> &$fty = |s| &s.$field;)+
    };
}

uapi_layout!(drm_vgpu_query_device, 32, {
    index: u32 = 0, num_devices: u32 = 4, vram_size: u64 = 8, vram_free: u64 = 16,
    page_size: u64 = 24,
});
uapi_layout!(drm_vgpu_query_links, 8, { links: u32 = 0, group: u32 = 4 });
uapi_layout!(drm_vgpu_query, 32, {
    extensions: u64 = 0, query: u32 = 8, size: u32 = 12, flags: u32 = 16, pad: u32 = 20,
    data: u64 = 24,
});
uapi_layout!(drm_vgpu_migrate, 32, {
    start: u64 = 0, size: u64 = 8, target: u32 = 16, timeslice_ms: u32 = 20, flags: u32 = 24,
    pagemap_fd: i32 = 28,
});
uapi_layout!(drm_vgpu_stats, 128, {
    pages_to_device: u64 = 0, pages_to_system: u64 = 8, bytes_copied: u64 = 16,
    cpu_faults: u64 = 24, evictions: u64 = 32, flags: u32 = 40, pad: u32 = 44,
    pages_to_peer: u64 = 48, pages_from_peer: u64 = 56, peer_accesses: u64 = 64,
    gpu_faults: u64 = 72, ranges_created: u64 = 80, ranges_collected: u64 = 88,
    invalidations: u64 = 96, pages_mapped_system: u64 = 104, pages_mapped_local: u64 = 112,
    pages_mapped_peer: u64 = 120,
});
uapi_layout!(drm_vgpu_vm_madvise, 32, {
    vm_id: u32 = 0, location: u32 = 4, start: u64 = 8, size: u64 = 16, pagemap_fd: i32 = 24,
    flags: u32 = 28,
});
uapi_layout!(drm_vgpu_vm_prefetch, 24, { vm_id: u32 = 0, flags: u32 = 4, start: u64 = 8, size: u64 = 16 });
uapi_layout!(drm_vgpu_vm_atomic, 32, {
    vm_id: u32 = 0, op: u32 = 4, addr: u64 = 8, value: u32 = 16, pad: u32 = 20, old: u64 = 24,
});
uapi_layout!(drm_vgpu_residency, 56, {
    start: u64 = 0, size: u64 = 8, flags: u32 = 16, pad: u32 = 20, system: u64 = 24,
    local: u64 = 32, peer: u64 = 40, none: u64 = 48,
});
uapi_layout!(drm_vgpu_devmem_open, 8, { flags: u32 = 0, fd: i32 = 4 });
uapi_layout!(drm_vgpu_evict, 8, { flags: u32 = 0, evicted: u32 = 4 });
uapi_layout!(drm_vgpu_vm_create, 8, { flags: u32 = 0, vm_id: u32 = 4 });
uapi_layout!(drm_vgpu_vm_destroy, 8, { vm_id: u32 = 0, pad: u32 = 4 });
uapi_layout!(drm_vgpu_vm_access, 40, {
    vm_id: u32 = 0, op: u32 = 4, start: u64 = 8, size: u64 = 16, data: u64 = 24,
    faults: u64 = 32,
});
uapi_layout!(hmm_dmirror_cmd, 40, {
    addr: u64 = 0, ptr: u64 = 8, npages: u64 = 16, cpages: u64 = 24, faults: u64 = 32,
});

// SAFETY: uAPI structs are plain integers with no implicit padding (checked above by
// `uapi_layout!`), so every bit pattern is valid and no byte is uninitialised.
unsafe impl AsBytes for drm_vgpu_query_device {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_query_device {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_query_links {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_query_links {}
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
unsafe impl AsBytes for drm_vgpu_devmem_open {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_devmem_open {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_evict {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_evict {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_vm_madvise {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_vm_madvise {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_vm_prefetch {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_vm_prefetch {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_vm_atomic {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_vm_atomic {}
// SAFETY: As above.
unsafe impl AsBytes for drm_vgpu_residency {}
// SAFETY: As above.
unsafe impl FromBytes for drm_vgpu_residency {}
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
