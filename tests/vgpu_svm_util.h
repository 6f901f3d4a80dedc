/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers for the GPU SVM tests (vgpu_svm.c): the VM, advice, prefetch, atomic and residency
 * ioctls, mappings of their own (between PROT_NONE guards, so that no neighbour merges into
 * them and the SVM ranges a GPU fault creates there are predictable), data buffers that never
 * move to a GPU, and an assertion on where a range's pages live.
 */
#ifndef VGPU_SVM_UTIL_H
#define VGPU_SVM_UTIL_H

#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "igt.h"
#include "vgpu_util.h"

/* The layout of the SVM uAPI (the kernel side checks the same in vgpu/uapi.rs). */
_Static_assert(sizeof(struct drm_vgpu_stats) == 128, "drm_vgpu_stats");
UAPI_AT(drm_vgpu_stats, gpu_faults, 72);
UAPI_AT(drm_vgpu_stats, ranges_created, 80);
UAPI_AT(drm_vgpu_stats, ranges_collected, 88);
UAPI_AT(drm_vgpu_stats, invalidations, 96);
UAPI_AT(drm_vgpu_stats, pages_mapped_system, 104);
UAPI_AT(drm_vgpu_stats, pages_mapped_local, 112);
UAPI_AT(drm_vgpu_stats, pages_mapped_peer, 120);
_Static_assert(sizeof(struct drm_vgpu_vm_madvise) == 32, "drm_vgpu_vm_madvise");
UAPI_AT(drm_vgpu_vm_madvise, location, 4);
UAPI_AT(drm_vgpu_vm_madvise, start, 8);
UAPI_AT(drm_vgpu_vm_madvise, size, 16);
UAPI_AT(drm_vgpu_vm_madvise, pagemap_fd, 24);
UAPI_AT(drm_vgpu_vm_madvise, flags, 28);
_Static_assert(sizeof(struct drm_vgpu_vm_prefetch) == 24, "drm_vgpu_vm_prefetch");
UAPI_AT(drm_vgpu_vm_prefetch, flags, 4);
UAPI_AT(drm_vgpu_vm_prefetch, start, 8);
UAPI_AT(drm_vgpu_vm_prefetch, size, 16);
_Static_assert(sizeof(struct drm_vgpu_vm_atomic) == 32, "drm_vgpu_vm_atomic");
UAPI_AT(drm_vgpu_vm_atomic, addr, 8);
UAPI_AT(drm_vgpu_vm_atomic, value, 16);
UAPI_AT(drm_vgpu_vm_atomic, pad, 20);
UAPI_AT(drm_vgpu_vm_atomic, old, 24);
_Static_assert(sizeof(struct drm_vgpu_residency) == 56, "drm_vgpu_residency");
UAPI_AT(drm_vgpu_residency, flags, 16);
UAPI_AT(drm_vgpu_residency, pad, 20);
UAPI_AT(drm_vgpu_residency, system, 24);
UAPI_AT(drm_vgpu_residency, local, 32);
UAPI_AT(drm_vgpu_residency, peer, 40);
UAPI_AT(drm_vgpu_residency, none, 48);

#define SZ_64K (64UL * 1024)
#define SZ_2M (2 * MIB)

static inline int svm_vm_create(int f, uint32_t *id)
{
	struct drm_vgpu_vm_create c = { 0 };
	int ret = ioctl(f, DRM_IOCTL_VGPU_VM_CREATE, &c);

	*id = c.vm_id;
	return ret;
}

static inline int svm_vm_destroy(int f, uint32_t id)
{
	struct drm_vgpu_vm_destroy d = { .vm_id = id };

	return ioctl(f, DRM_IOCTL_VGPU_VM_DESTROY, &d);
}

/* A GPU access (VM_ACCESS); stores the GPU faults it took in *faults if not NULL. */
static inline int svm_access(int f, uint32_t id, uint32_t op, const void *start, size_t size,
			     void *data, uint64_t *faults)
{
	struct drm_vgpu_vm_access a = {
		.vm_id = id, .op = op, .start = (uintptr_t)start, .size = size,
		.data = (uintptr_t)data, .faults = ~0ull,
	};
	int ret = ioctl(f, DRM_IOCTL_VGPU_VM_ACCESS, &a);

	if (faults)
		*faults = a.faults;
	return ret;
}

static inline int svm_madvise(int f, uint32_t id, uint32_t location, const void *start,
			      size_t size, int pagemap_fd)
{
	struct drm_vgpu_vm_madvise m = {
		.vm_id = id, .location = location, .start = (uintptr_t)start, .size = size,
		.pagemap_fd = pagemap_fd,
	};

	return ioctl(f, DRM_IOCTL_VGPU_VM_MADVISE, &m);
}

static inline int svm_prefetch(int f, uint32_t id, const void *start, size_t size)
{
	struct drm_vgpu_vm_prefetch p = { .vm_id = id, .start = (uintptr_t)start, .size = size };

	return ioctl(f, DRM_IOCTL_VGPU_VM_PREFETCH, &p);
}

/* A GPU atomic; stores the word's old value (the whole 64-bit field) in *old if not NULL. */
static inline int svm_atomic(int f, uint32_t id, uint32_t op, const void *addr, uint32_t value,
			     uint64_t *old)
{
	struct drm_vgpu_vm_atomic a = {
		.vm_id = id, .op = op, .addr = (uintptr_t)addr, .value = value, .old = ~0ull,
	};
	int ret = ioctl(f, DRM_IOCTL_VGPU_VM_ATOMIC, &a);

	if (old)
		*old = a.old;
	return ret;
}

static inline int svm_residency(int f, const void *start, size_t size, struct drm_vgpu_residency *r)
{
	memset(r, 0, sizeof(*r));
	r->start = (uintptr_t)start;
	r->size = size;
	return ioctl(f, DRM_IOCTL_VGPU_RESIDENCY, r);
}

/* The memory of the GPU behind `f` as a pagemap fd (DEVMEM_OPEN), or -1. */
static inline int svm_devmem_open(int f)
{
	struct drm_vgpu_devmem_open o = { 0 };

	if (ioctl(f, DRM_IOCTL_VGPU_DEVMEM_OPEN, &o))
		return -1;
	return o.fd;
}

/*
 * Another GPU than the one behind `f`: one in its interconnect group if `linked`, else one
 * outside it. Its render node's fd (a file of its own), or -1 if there is none.
 */
static inline int svm_other_gpu(int f, int linked)
{
	int self = gpu_index(f);

	for (int i = 0; i < 8; i++) {
		int o;

		if (i == self)
			continue;
		o = open_gpu(i);
		if (o < 0)
			continue;
		if (same_group(f, o) == !!linked)
			return o;
		close(o);
	}
	return -1;
}

/*
 * `size` bytes of anonymous memory (`flags`: MAP_PRIVATE or MAP_SHARED) at `offset` past an
 * `align`-aligned address, as a mapping of its own: PROT_NONE guards on both sides keep any
 * other mapping from merging with it, so the mapping is exactly [p, p + size) and the SVM
 * ranges a GPU fault creates in it follow from its size and alignment alone. The guards stay
 * for the life of the (subtest) process. NULL on failure.
 */
static inline uint8_t *svm_map(size_t size, size_t align, size_t offset, int flags)
{
	size_t guard = align > PAGE ? align : PAGE;
	size_t total = size + offset + 3 * guard;
	uint8_t *raw = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			    -1, 0);
	uintptr_t p;
	void *q;

	if (raw == MAP_FAILED)
		return NULL;
	p = (((uintptr_t)raw + guard + align - 1) & ~(uintptr_t)(align - 1)) + offset;
	q = mmap((void *)p, size, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	return q == MAP_FAILED ? NULL : q;
}

/*
 * A data buffer for VM_ACCESS (source or destination): shared memory, which never moves to a
 * GPU and never shares an SVM range with the memory under test, so that the kernel copying
 * into it never pulls a range under test back to system memory. NULL on failure.
 */
static inline uint8_t *svm_buf(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* `len` bytes at `p` get the pattern of bytes [off, off + len) of a fill(seed). */
static inline void fill_at(uint8_t *p, size_t off, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern(off + i, seed);
}

/* Index of the first of `len` bytes at `p` that is not bytes [off, off + len) of a
 * fill(seed), or -1. */
static inline long check_at(const uint8_t *p, size_t off, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern(off + i, seed))
			return (long)i;
	return -1;
}

/* A count assert_residency() does not check. */
#define RES_ANY (-1LL)

/*
 * Asserts where the pages of [p, p + size) live, as the GPU behind `f` sees them (RESIDENCY):
 * `sys` pages in system memory, `loc` in this GPU's, `peer` in a linked GPU's, `none`
 * nowhere it can see (RES_ANY: any count). The four always add up to the range's pages.
 * Prints all four when it fails.
 */
#define assert_residency(f_, p_, size_, sys_, loc_, peer_, none_)                                  \
	do {                                                                                \
		struct drm_vgpu_residency _r;                                               \
		long long _want[4] = { (sys_), (loc_), (peer_), (none_) };                      \
		unsigned long long _got[4];                                                 \
		int _bad = 0;                                                               \
		igt_assert_eq(svm_residency((f_), (p_), (size_), &_r), 0);                     \
		_got[0] = _r.system;                                                        \
		_got[1] = _r.local;                                                         \
		_got[2] = _r.peer;                                                          \
		_got[3] = _r.none;                                                          \
		for (int _i = 0; _i < 4; _i++)                                              \
			_bad |= _want[_i] >= 0 && (unsigned long long)_want[_i] != _got[_i]; \
		_bad |= _got[0] + _got[1] + _got[2] + _got[3] != (size_) / PAGE;             \
		if (_bad) {                                                                 \
			printf("# %s:%d: residency of %s (%zu pages) on %s: system %llu "   \
			       "local %llu peer %llu none %llu; want %lld %lld %lld %lld "  \
			       "(-1: any)\n", __FILE__, __LINE__, #p_, (size_t)(size_) / PAGE, \
			       #f_, _got[0], _got[1], _got[2], _got[3], _want[0], _want[1],  \
			       _want[2], _want[3]);                                         \
			return IGT_FAIL;                                                    \
		}                                                                           \
	} while (0)

/* How much counter `field` of struct drm_vgpu_stats grew from `a` to `b`. */
#define DELTA(a, b, field) ((long long)((b).field - (a).field))

#endif
