/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * uAPI of vgpu, the software GPU of the rust-svm project.
 *
 * Each virtual GPU is a DRM render node (/dev/dri/renderD*) whose driver name is "vgpu".
 * Every ioctl is allowed on render nodes. Structures are 64-bit aligned and carry no
 * implicit padding; every field marked "must be 0" is checked, so that it can get a meaning
 * later without breaking old userspace.
 */
#ifndef _UAPI_VGPU_DRM_H_
#define _UAPI_VGPU_DRM_H_

#include <drm/drm.h>

#if defined(__cplusplus)
extern "C" {
#endif

#define DRM_VGPU_QUERY 0x00

/**
 * enum drm_vgpu_query_kind - What &drm_vgpu_query.query asks for.
 *
 * @DRM_VGPU_QUERY_DEVICE: The device, answered as &struct drm_vgpu_query_device.
 */
enum drm_vgpu_query_kind {
	DRM_VGPU_QUERY_DEVICE = 0,
};

/**
 * struct drm_vgpu_query_device - Answer to %DRM_VGPU_QUERY_DEVICE.
 *
 * @index: Index of this virtual GPU, 0 to @num_devices - 1, in creation order.
 * @num_devices: Number of virtual GPUs the driver created.
 * @vram_size: Size in bytes of the device-private memory ("VRAM").
 * @vram_free: Bytes of that memory not allocated at the time of the query.
 * @page_size: Smallest allocation unit of that memory, in bytes.
 */
struct drm_vgpu_query_device {
	__u32 index;
	__u32 num_devices;
	__u64 vram_size;
	__u64 vram_free;
	__u64 page_size;
};

/**
 * struct drm_vgpu_query - Argument of %DRM_IOCTL_VGPU_QUERY.
 *
 * @extensions: Must be 0.
 * @query: One of &enum drm_vgpu_query_kind; anything else is refused with EINVAL.
 * @size: In: size of the buffer at @data. If 0, the kernel writes nothing to @data and only
 *        sets @size to the size the answer needs. Otherwise it must equal that size exactly
 *        (EINVAL if not). Out: the size of the answer.
 * @flags: Must be 0 (EINVAL otherwise).
 * @pad: Must be 0 (EINVAL otherwise).
 * @data: User pointer to the answer buffer; EFAULT if it cannot be written.
 */
struct drm_vgpu_query {
	__u64 extensions;
	__u32 query;
	__u32 size;
	__u32 flags;
	__u32 pad;
	__u64 data;
};

#define DRM_IOCTL_VGPU_QUERY \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_QUERY, struct drm_vgpu_query)

#if defined(__cplusplus)
}
#endif

#endif /* _UAPI_VGPU_DRM_H_ */
