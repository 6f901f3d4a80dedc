/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers the vgpu test programs share: finding the render nodes, the migrate and stats
 * ioctls, and byte patterns that show a page copied to the wrong place.
 */
#ifndef VGPU_UTIL_H
#define VGPU_UTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <drm/drm.h>
#include "vgpu_drm.h"

#define PAGE 4096UL
#define MIB (1UL << 20)

static int fd = -1;	/* vgpu0 */
static int fd1 = -1;	/* vgpu1, if there is one */

static inline void open_nodes(void)
{
	for (int minor = 128; minor < 192; minor++) {
		char path[64], name[32] = { 0 };
		struct drm_version v = { .name = name, .name_len = sizeof(name) - 1 };
		struct drm_vgpu_query_device d;
		struct drm_vgpu_query q = {
			.query = DRM_VGPU_QUERY_DEVICE, .size = sizeof(d), .data = (uintptr_t)&d,
		};
		int f;

		snprintf(path, sizeof(path), "/dev/dri/renderD%d", minor);
		f = open(path, O_RDWR | O_CLOEXEC);
		if (f < 0)
			continue;
		if (ioctl(f, DRM_IOCTL_VERSION, &v) || strcmp(name, "vgpu") ||
		    ioctl(f, DRM_IOCTL_VGPU_QUERY, &q)) {
			close(f);
			continue;
		}
		if (d.index == 0)
			fd = f;
		else if (d.index == 1)
			fd1 = f;
		else
			close(f);
	}
}

static inline int migrate(int f, void *p, size_t size, uint32_t target)
{
	struct drm_vgpu_migrate m = {
		.start = (uintptr_t)p, .size = size, .target = target,
	};

	return ioctl(f, DRM_IOCTL_VGPU_MIGRATE, &m);
}

static inline struct drm_vgpu_stats stats(int f)
{
	struct drm_vgpu_stats s = { 0 };

	if (ioctl(f, DRM_IOCTL_VGPU_STATS, &s))
		memset(&s, 0xff, sizeof(s));
	return s;
}

static inline uint64_t vram_free(int f)
{
	struct drm_vgpu_query_device d;
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_DEVICE, .size = sizeof(d), .data = (uintptr_t)&d,
	};

	if (ioctl(f, DRM_IOCTL_VGPU_QUERY, &q))
		return ~0ull;
	return d.vram_free;
}

static inline uint64_t vram_size(int f)
{
	struct drm_vgpu_query_device d;
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_DEVICE, .size = sizeof(d), .data = (uintptr_t)&d,
	};

	if (ioctl(f, DRM_IOCTL_VGPU_QUERY, &q))
		return 0;
	return d.vram_size;
}

static inline void *map_anon(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* A pattern that differs per byte and per seed, so a page copied to the wrong place shows. */
static inline uint8_t pattern(size_t i, unsigned int seed)
{
	return (uint8_t)((i * 2654435761u) >> 13) ^ (uint8_t)(i / PAGE) ^ (uint8_t)seed;
}

static inline void fill(uint8_t *p, size_t size, unsigned int seed)
{
	for (size_t i = 0; i < size; i++)
		p[i] = pattern(i, seed);
}

/* Index of the first wrong byte, or -1. */
static inline long check(const uint8_t *p, size_t size, unsigned int seed)
{
	for (size_t i = 0; i < size; i++)
		if (p[i] != pattern(i, seed))
			return (long)i;
	return -1;
}

/* Index of the first non-zero byte, or -1. */
static inline long check_zero(const uint8_t *p, size_t size)
{
	for (size_t i = 0; i < size; i++)
		if (p[i])
			return (long)i;
	return -1;
}

#endif
