/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers the vgpu test programs share: finding the render nodes, the migrate and stats
 * ioctls, each GPU's debugfs knobs, running a step in a child under a deadline, and byte
 * patterns that show a page copied to the wrong place.
 */
#ifndef VGPU_UTIL_H
#define VGPU_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <drm/drm.h>
#include "vgpu_drm.h"
#include "vgpu_node.h"

/*
 * The uAPI layout the header documents, checked when the tests build (the kernel side checks
 * the same in vgpu/uapi.rs): sizes, offsets, no implicit padding.
 */
#define UAPI_AT(t, f, off) _Static_assert(offsetof(struct t, f) == (off), #t "." #f)
_Static_assert(sizeof(struct drm_vgpu_query_device) == 32, "drm_vgpu_query_device");
UAPI_AT(drm_vgpu_query_device, vram_size, 8);
UAPI_AT(drm_vgpu_query_device, page_size, 24);
_Static_assert(sizeof(struct drm_vgpu_query) == 32, "drm_vgpu_query");
UAPI_AT(drm_vgpu_query, query, 8);
UAPI_AT(drm_vgpu_query, data, 24);
_Static_assert(sizeof(struct drm_vgpu_migrate) == 32, "drm_vgpu_migrate");
UAPI_AT(drm_vgpu_migrate, target, 16);
UAPI_AT(drm_vgpu_migrate, pagemap_fd, 28);
_Static_assert(sizeof(struct drm_vgpu_stats) == 128, "drm_vgpu_stats");
UAPI_AT(drm_vgpu_stats, flags, 40);
UAPI_AT(drm_vgpu_stats, pages_to_peer, 48);
UAPI_AT(drm_vgpu_stats, peer_accesses, 64);
_Static_assert(sizeof(struct drm_vgpu_query_links) == 8, "drm_vgpu_query_links");
_Static_assert(sizeof(struct drm_vgpu_devmem_open) == 8, "drm_vgpu_devmem_open");
UAPI_AT(drm_vgpu_devmem_open, fd, 4);
_Static_assert(sizeof(struct drm_vgpu_evict) == 8, "drm_vgpu_evict");
_Static_assert(sizeof(struct drm_vgpu_vm_create) == 8, "drm_vgpu_vm_create");
_Static_assert(sizeof(struct drm_vgpu_vm_destroy) == 8, "drm_vgpu_vm_destroy");
_Static_assert(sizeof(struct drm_vgpu_vm_access) == 40, "drm_vgpu_vm_access");
UAPI_AT(drm_vgpu_vm_access, start, 8);
UAPI_AT(drm_vgpu_vm_access, faults, 32);

#define MIB (1UL << 20)

static int fd = -1;	/* vgpu0 */
static int fd1 = -1;	/* vgpu1, if there is one */

static inline void open_nodes(void)
{
	char path[64];
	int cursor = 0, f;

	while ((f = vgpu_node_next(&cursor, path, sizeof(path))) >= 0) {
		struct drm_vgpu_query_device d;
		struct drm_vgpu_query q = {
			.query = DRM_VGPU_QUERY_DEVICE, .size = sizeof(d), .data = (uintptr_t)&d,
		};

		if (ioctl(f, DRM_IOCTL_VGPU_QUERY, &q))
			close(f);
		else if (d.index == 0)
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

/* Index of the GPU behind `f` (QUERY's answer), or -1. */
static inline int gpu_index(int f)
{
	struct drm_vgpu_query_device d;
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_DEVICE, .size = sizeof(d), .data = (uintptr_t)&d,
	};

	if (ioctl(f, DRM_IOCTL_VGPU_QUERY, &q))
		return -1;
	return (int)d.index;
}

/* Whether the GPUs behind `a` and `b` are in one interconnect group (QUERY_LINKS). */
static inline int same_group(int a, int b)
{
	struct drm_vgpu_query_links l;
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_LINKS, .size = sizeof(l), .data = (uintptr_t)&l,
	};
	int ib = gpu_index(b);

	if (ib < 0 || ioctl(a, DRM_IOCTL_VGPU_QUERY, &q))
		return 0;
	return (l.group >> ib) & 1;
}

/* Path of the debugfs file `knob` of the GPU behind `f`: /sys/kernel/debug/vgpu<index>/knob. */
static inline void knob_path(int f, const char *knob, char *path, size_t len)
{
	snprintf(path, len, "/sys/kernel/debug/vgpu%d/%s", gpu_index(f), knob);
}

/*
 * Writes `text` to the (debugfs) file `path` in one write. Returns 0, or -1 with errno set
 * (the kernel's refusal of the value, or why the file could not be opened).
 */
static inline int file_write(const char *path, const char *text)
{
	ssize_t n;
	int k, err;

	k = open(path, O_WRONLY | O_CLOEXEC);
	if (k < 0)
		return -1;
	n = write(k, text, strlen(text));
	err = errno;
	close(k);
	errno = err;
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Writes `text` to the debugfs file `knob` of the GPU behind `f`, as file_write(). */
static inline int knob_write(int f, const char *knob, const char *text)
{
	char path[96];

	knob_path(f, knob, path, sizeof(path));
	return file_write(path, text);
}

/* Opens the render node of GPU `index` (QUERY's answer): its fd, or -1. */
static inline int open_gpu(int index)
{
	char path[64];
	int cursor = 0, f;

	while ((f = vgpu_node_next(&cursor, path, sizeof(path))) >= 0) {
		if (gpu_index(f) == index)
			return f;
		close(f);
	}
	return -1;
}

/* Sets the numeric debugfs knob `knob` of the GPU behind `f` to `val`; 0 or -1 (errno). */
static inline int knob_set(int f, const char *knob, unsigned long val)
{
	char text[32];

	snprintf(text, sizeof(text), "%lu\n", val);
	return knob_write(f, knob, text);
}

/* Reads the numeric debugfs knob `knob` of the GPU behind `f`, or -1. */
static inline long knob_get(int f, const char *knob)
{
	char path[96], text[32] = { 0 };
	ssize_t n;
	int k;

	knob_path(f, knob, path, sizeof(path));
	k = open(path, O_RDONLY | O_CLOEXEC);
	if (k < 0)
		return -1;
	n = read(k, text, sizeof(text) - 1);
	close(k);
	if (n <= 0)
		return -1;
	return strtol(text, NULL, 0);
}

/* Milliseconds since `t0` (CLOCK_MONOTONIC). */
static inline long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * Runs `fn` in a child process, which SIGALRM kills after `secs` seconds, and waits at most
 * twice that for it. Returns the child's exit status (128 + signal if killed), or -1 if it
 * did not end in time: it is stuck in the kernel, where even SIGKILL may not reach it. The
 * caller then fails instead of hanging (the child is left behind).
 */
static inline int run_with_deadline(int (*fn)(void), unsigned int secs)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		alarm(secs);
		_exit(fn());
	}
	for (unsigned int i = 0; i < secs * 200; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	printf("# child %d still running after %u s: stuck in the kernel\n", (int)pid, 2 * secs);
	return -1;
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

/* Index of the first byte that is not `b`, or -1. */
static inline long check_byte(const uint8_t *p, size_t size, uint8_t b)
{
	for (size_t i = 0; i < size; i++)
		if (p[i] != b)
			return (long)i;
	return -1;
}

/* Index of the first non-zero byte, or -1. */
static inline long check_zero(const uint8_t *p, size_t size)
{
	return check_byte(p, size, 0);
}

#endif
