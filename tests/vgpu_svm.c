// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu_svm: GPU shared virtual memory through GPU page faults, modelled on Xe's IGT
 * xe_exec_system_allocator and xe_multigpu_svm. A GPU access (VM_ACCESS) that misses in the
 * GPU page table faults: the fault finds or creates the SVM range around the address (2 MiB,
 * 64 KiB or 4 KiB), places it where the VM's advice says (by default this GPU's own memory,
 * for private anonymous memory) and binds it. Checked for every kind of CPU memory (malloc,
 * mmap, the stack, transparent huge pages, shared and file mappings) and every change of the
 * CPU mapping under the GPU (free and re-allocation, partial munmap, mremap, mprotect, fork),
 * with threads and processes racing, the CPU and the GPU taking turns on one page, GPU atomics
 * against CPU writes, preferred locations (system, own memory, a linked GPU's), prefetch, and
 * hostile input to the new ioctls. Each subtest checks the data (every byte, by the CPU and
 * by the GPU) and the state: where the pages live (RESIDENCY) and what the counters say
 * (STATS deltas).
 *
 * Each subtest opens the render nodes it uses itself (after the harness's fork), so that its
 * VMs go with it. Multi-GPU subtests need vgpu loaded with several GPUs, some linked and some
 * not (num_devices=4 links=0-1,2-3), and skip otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "igt.h"
#include "vgpu_util.h"
#include "vgpu_svm_util.h"

#define GPU_READ DRM_VGPU_VM_READ
#define GPU_WRITE DRM_VGPU_VM_WRITE
#define ADD DRM_VGPU_ATOMIC_ADD

/* Addresses no process can map: the kernel's half, and the page above the user half. */
#define KERNEL_ADDR ((void *)0xffff800000000000UL)
#define ABOVE_USER ((void *)0x7ffffffff000UL)

#define OPEN_GPU0(g)                                    \
	do {                                            \
		(g) = open_gpu(0);                      \
		if ((g) < 0)                            \
			igt_skip("no vgpu0");           \
	} while (0)

#define NEED_LINKED(o, g)                                                                   \
	do {                                                                                \
		(o) = svm_other_gpu((g), 1);                                                \
		if ((o) < 0)                                                                \
			igt_skip("needs a GPU linked to vgpu%d (num_devices=4 links=0-1,2-3)", \
				 gpu_index(g));                                             \
	} while (0)

#define NEED_UNLINKED(o, g)                                                                 \
	do {                                                                                \
		(o) = svm_other_gpu((g), 0);                                                \
		if ((o) < 0)                                                                \
			igt_skip("needs a GPU outside vgpu%d's group (num_devices=4 "        \
				 "links=0-1,2-3)", gpu_index(g));                            \
	} while (0)

/* The mapping (/proc/self/maps) that holds `addr`: 0, or -1 if none does. */
static int vma_of(const void *addr, uintptr_t *start, uintptr_t *end)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	int ret = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s <= (uintptr_t)addr &&
		    (uintptr_t)addr < e) {
			*start = s;
			*end = e;
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* AnonHugePages of the mapping at `addr` in kB (/proc/self/smaps), or -1. */
static long anon_huge_kb(const void *addr)
{
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "r");
	long kb = -1;
	int in = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = s <= (uintptr_t)addr && (uintptr_t)addr < e;
		else if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/*
 * The common life of a buffer the GPU shares with the CPU: the CPU fills it (system memory);
 * the GPU writes over it (GPU faults create ranges, move them into its own memory: private
 * anonymous memory by default, and bind them); the GPU reads its write back without a fault;
 * the CPU reads the GPU's write (CPU faults bring the pages back, which unbinds them); the CPU
 * writes, and the GPU's next read faults on the same ranges and sees the new data.
 * `exclusive`: no other process uses the GPU meanwhile, so counter deltas are exact.
 * `want_faults`: how many GPU faults the first access must take (one per range), or -1.
 */
static enum igt_result roundtrip(int g, uint8_t *p, size_t size, unsigned int seed, int exclusive,
				 long long want_faults)
{
	size_t n = size / PAGE;
	uint8_t *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int peer = svm_other_gpu(g, 1);

	igt_assert(buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);

	fill(p, size, seed);
	assert_residency(g, p, size, n, 0, 0, 0);

	fill(buf, size, seed + 1);
	s0 = stats(g);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p, size, buf, &faults), 0);
	s1 = stats(g);
	igt_info("first GPU access: %llu faults\n", (unsigned long long)faults);
	igt_assert(faults >= 1);
	if (want_faults >= 0)
		igt_assert_eq(faults, want_faults);
	if (exclusive) {
		igt_assert_eq(DELTA(s0, s1, gpu_faults), faults);
		igt_assert_eq(DELTA(s0, s1, ranges_created), faults);
	} else {
		igt_assert(DELTA(s0, s1, gpu_faults) >= (long long)faults);
		igt_assert(DELTA(s0, s1, ranges_created) >= (long long)faults);
	}
	igt_assert(DELTA(s0, s1, pages_to_device) >= (long long)n);
	igt_assert(DELTA(s0, s1, pages_mapped_local) >= (long long)n);
	/* Private anonymous memory moved into the GPU's memory; a linked GPU sees it as peer. */
	assert_residency(g, p, size, 0, n, 0, 0);
	if (peer >= 0)
		assert_residency(peer, p, size, 0, 0, n, 0);

	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert_eq(faults, 0);
	igt_assert_eq(check(buf, size, seed + 1), -1);

	s0 = stats(g);
	igt_assert_eq(check(p, size, seed + 1), -1);
	s1 = stats(g);
	igt_assert(DELTA(s0, s1, cpu_faults) >= 1);
	igt_assert(DELTA(s0, s1, pages_to_system) >= (long long)n);
	igt_assert(DELTA(s0, s1, invalidations) >= 1);
	assert_residency(g, p, size, n, 0, 0, 0);

	fill(p, size, seed + 2);
	memset(buf, 0, size);
	s0 = stats(g);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	s1 = stats(g);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, seed + 2), -1);
	if (exclusive) {
		/* The ranges outlive the migrations: found again, none created or collected. */
		igt_assert_eq(DELTA(s0, s1, ranges_created), 0);
		igt_assert_eq(DELTA(s0, s1, ranges_collected), 0);
	}
	assert_residency(g, p, size, 0, n, 0, 0);

	igt_assert_eq(svm_vm_destroy(g, id), 0);
	munmap(buf, size);
	if (peer >= 0)
		close(peer);
	return IGT_PASS;
}

static enum igt_result malloc_buffer(void)
{
	size_t size = MIB + 4 * PAGE;
	uint8_t *raw, *p;
	int g;

	OPEN_GPU0(g);
	/* An odd size, through the allocator; the page-aligned part of it. */
	raw = malloc(size + PAGE);
	igt_assert(raw);
	p = (uint8_t *)(((uintptr_t)raw + PAGE - 1) & ~(PAGE - 1));
	return roundtrip(g, p, size, 1, 1, -1);
}

static enum igt_result mmap_buffer(void)
{
	size_t size = SZ_2M + 3 * PAGE;
	uint8_t *p = map_anon(size);
	int g;

	OPEN_GPU0(g);
	igt_assert(p);
	return roundtrip(g, p, size, 5, 1, -1);
}

/*
 * A local array: 64 KiB aligned and a multiple of 64 KiB, so that the ranges around it (64 KiB:
 * the stack mapping is far smaller than 2 MiB) hold only its own pages, never the frames the
 * CPU keeps using above and below it (a CPU fault there would pull its range back).
 */
static enum igt_result stack_buffer(void)
{
	uint8_t arr[4 * SZ_64K] __attribute__((aligned(SZ_64K)));
	uintptr_t s, e, w = (uintptr_t)arr & ~(SZ_2M - 1);
	int g;

	OPEN_GPU0(g);
	fill(arr, sizeof(arr), 9);
	igt_assert_eq(vma_of(arr, &s, &e), 0);
	if (s <= w && w + SZ_2M <= e)
		igt_skip("the stack mapping [%#lx, %#lx) holds a whole 2 MiB range around the array",
			 (unsigned long)s, (unsigned long)e);
	return roundtrip(g, arr, sizeof(arr), 9, 1, (long long)(sizeof(arr) / SZ_64K));
}

/* 2 MiB aligned, hinted for a transparent huge page: one 2 MiB range, one fault. */
static enum igt_result mmap_huge(void)
{
	uint8_t *p = svm_map(SZ_2M, SZ_2M, 0, MAP_PRIVATE);
	int g;

	OPEN_GPU0(g);
	igt_assert(p);
	igt_assert_eq(madvise(p, SZ_2M, MADV_HUGEPAGE), 0);
	memset(p, 1, SZ_2M);
	igt_info("AnonHugePages: %ld kB\n", anon_huge_kb(p));
	return roundtrip(g, p, SZ_2M, 13, 1, 1);
}

/* Memory the CPU never touched: the GPU reads zeros; its writes reach the CPU. */
static enum igt_result mmap_nomemset(void)
{
	size_t size = 4 * SZ_64K, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE);
	uint8_t *q = svm_map(size, SZ_64K, 0, MAP_PRIVATE);
	uint8_t *buf = svm_buf(size);
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && q && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	assert_residency(g, p, size, 0, 0, 0, n);
	memset(buf, 0xa5, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check_zero(buf, size), -1);
	/* Something backs every page now. */
	assert_residency(g, p, size, RES_ANY, RES_ANY, 0, 0);
	fill(buf, size, 17);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p, size, buf, NULL), 0);
	igt_assert_eq(check(p, size, 17), -1);
	assert_residency(g, p, size, n, 0, 0, 0);

	/* A GPU write first. */
	fill(buf, size, 18);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, q, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	assert_residency(g, q, size, RES_ANY, RES_ANY, 0, 0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, q, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 18), -1);
	igt_assert_eq(check(q, size, 18), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/*
 * Range sizes follow the mapping: the largest aligned chunk (2 MiB, 64 KiB, 4 KiB) inside it.
 * One fault per range; a fault on one page places its whole range.
 */
static enum igt_result range_sizes(void)
{
	static const struct {
		const char *what;
		size_t size, align, offset;
		uint64_t faults;
	} c[] = {
		{ "2 MiB aligned", SZ_2M, SZ_2M, 0, 1 },
		{ "2 MiB + 64 KiB + 4 KiB", SZ_2M + SZ_64K + PAGE, SZ_2M, 0, 3 },
		{ "128 KiB", 2 * SZ_64K, SZ_64K, 0, 2 },
		{ "3 pages off 64 KiB alignment", 3 * PAGE, SZ_64K, PAGE, 3 },
	};
	uint8_t *buf = svm_buf(SZ_2M + SZ_64K + PAGE);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint8_t *p = svm_map(c[i].size, c[i].align, c[i].offset, MAP_PRIVATE);
		size_t n = c[i].size / PAGE;

		igt_assert(p);
		igt_info("%s at %p\n", c[i].what, p);
		fill(p, c[i].size, 20 + i);
		s0 = stats(g);
		if (i == 0) {
			/* One page faults the whole 2 MiB range in. */
			igt_assert_eq(svm_access(g, id, GPU_READ, p + 5 * PAGE, PAGE, buf, &faults), 0);
			igt_assert_eq(faults, 1);
			igt_assert_eq(check_at(buf, 5 * PAGE, PAGE, 20 + i), -1);
			assert_residency(g, p, c[i].size, 0, n, 0, 0);
		}
		igt_assert_eq(svm_access(g, id, GPU_READ, p, c[i].size, buf, &faults), 0);
		s1 = stats(g);
		igt_assert_eq(check(buf, c[i].size, 20 + i), -1);
		if (i == 0)
			igt_assert_eq(faults, 0);
		else
			igt_assert_eq(faults, c[i].faults);
		igt_assert_eq(DELTA(s0, s1, ranges_created), c[i].faults);
		igt_assert_eq(DELTA(s0, s1, gpu_faults), c[i].faults);
		assert_residency(g, p, c[i].size, 0, n, 0, 0);
	}
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/*
 * Free and re-allocate at the same address between GPU accesses: the GPU sees the new
 * memory, never the old; the old range is collected when the GPU next faults.
 */
static enum igt_result mmap_free(void)
{
	size_t size = SZ_2M, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_2M, 0, MAP_PRIVATE), *q;
	uint8_t *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 30);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 30), -1);
	assert_residency(g, p, size, 0, n, 0, 0);

	s0 = stats(g);
	igt_assert_eq(munmap(p, size), 0);
	s1 = stats(g);
	igt_assert(DELTA(s0, s1, invalidations) >= 1);
	assert_residency(g, p, size, 0, 0, 0, n);
	igt_assert_errno(svm_access(g, id, GPU_READ, p, size, buf, NULL), EFAULT);
	q = mmap(p, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	igt_assert(q == p);
	fill(p, size, 31);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	s1 = stats(g);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 31), -1);
	igt_assert(DELTA(s0, s1, ranges_collected) >= 1);
	igt_assert(DELTA(s0, s1, ranges_created) >= 1);
	assert_residency(g, p, size, 0, n, 0, 0);

	/* Again and again, 64 KiB: munmap then mmap, or mmap over (an implicit munmap). */
	p = svm_map(SZ_64K, SZ_64K, 0, MAP_PRIVATE);
	igt_assert(p);
	fill(p, SZ_64K, 32);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, SZ_64K, buf, NULL), 0);
	for (unsigned int r = 0; r < 20; r++) {
		s0 = stats(g);
		if (r % 2 == 0)
			igt_assert_eq(munmap(p, SZ_64K), 0);
		q = mmap(p, SZ_64K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			 -1, 0);
		igt_assert(q == p);
		fill(p, SZ_64K, 40 + r);
		if (r % 4 < 2) {
			memset(buf, 0, SZ_64K);
			igt_assert_eq(svm_access(g, id, GPU_READ, p, SZ_64K, buf, &faults), 0);
			igt_assert_eq(check(buf, SZ_64K, 40 + r), -1);
		} else {
			fill(buf, SZ_64K, 80 + r);
			igt_assert_eq(svm_access(g, id, GPU_WRITE, p, SZ_64K, buf, &faults), 0);
			igt_assert_eq(check(p, SZ_64K, 80 + r), -1);
			/* Bound again (the CPU took the pages back), so the next munmap hits a
			 * bound range too. */
			memset(buf, 0, SZ_64K);
			igt_assert_eq(svm_access(g, id, GPU_READ, p, SZ_64K, buf, NULL), 0);
			igt_assert_eq(check(buf, SZ_64K, 80 + r), -1);
		}
		s1 = stats(g);
		igt_assert(faults >= 1);
		igt_assert(DELTA(s0, s1, invalidations) >= 1);
		igt_assert(DELTA(s0, s1, ranges_collected) >= 1);
		assert_residency(g, p, SZ_64K, 0, SZ_64K / PAGE, 0, 0);
	}
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* munmap of the middle 64 KiB of a 2 MiB range in use. */
static enum igt_result partial_middle_munmap(void)
{
	size_t size = SZ_2M, n = size / PAGE, lo = MIB, hi = MIB + SZ_64K;
	uint8_t *p = svm_map(size, SZ_2M, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 50);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert_eq(faults, 1);
	assert_residency(g, p, size, 0, n, 0, 0);

	s0 = stats(g);
	igt_assert_eq(munmap(p + lo, hi - lo), 0);
	s1 = stats(g);
	igt_assert(DELTA(s0, s1, invalidations) >= 1);
	assert_residency(g, p, size, RES_ANY, RES_ANY, 0, (hi - lo) / PAGE);
	assert_residency(g, p + lo, hi - lo, 0, 0, 0, (hi - lo) / PAGE);

	/* The rest reads right, on both sides of the hole. */
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, lo, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check_at(buf, 0, lo, 50), -1);
	igt_assert_eq(svm_access(g, id, GPU_READ, p + hi, size - hi, buf + hi, NULL), 0);
	igt_assert_eq(check_at(buf + hi, hi, size - hi, 50), -1);
	s1 = stats(g);
	igt_assert(DELTA(s0, s1, ranges_collected) >= 1);
	assert_residency(g, p, lo, 0, lo / PAGE, 0, 0);
	assert_residency(g, p + hi, size - hi, 0, (size - hi) / PAGE, 0, 0);

	/* The hole faults, cleanly, alone or inside a larger access. */
	alarm(30);
	igt_assert_errno(svm_access(g, id, GPU_READ, p + lo, hi - lo, buf, NULL), EFAULT);
	igt_assert_errno(svm_access(g, id, GPU_WRITE, p + lo, hi - lo, buf, NULL), EFAULT);
	igt_assert_errno(svm_access(g, id, GPU_READ, p, size, buf, NULL), EFAULT);
	igt_assert_errno(svm_prefetch(g, id, p + lo, hi - lo), EFAULT);
	alarm(0);

	/* The GPU writes both sides; the CPU reads them. */
	fill(buf, size, 51);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p, lo, buf, NULL), 0);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p + hi, size - hi, buf + hi, NULL), 0);
	igt_assert_eq(check_at(p, 0, lo, 51), -1);
	igt_assert_eq(check_at(p + hi, hi, size - hi, 51), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* mremap of a range in use: the data is at the new address, EFAULT at the old. */
static enum igt_result mmap_remap(void)
{
	size_t size = SZ_2M, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_2M, 0, MAP_PRIVATE), *dst = svm_map(size, SZ_2M, 0, MAP_PRIVATE);
	uint8_t *buf = svm_buf(size), *q;
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && dst && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 52);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	assert_residency(g, p, size, 0, n, 0, 0);

	s0 = stats(g);
	q = mremap(p, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	igt_assert(q == dst);
	s1 = stats(g);
	igt_assert(DELTA(s0, s1, invalidations) >= 1);
	assert_residency(g, p, size, 0, 0, 0, n);
	assert_residency(g, q, size, RES_ANY, RES_ANY, 0, 0);

	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, q, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 52), -1);
	s1 = stats(g);
	igt_assert(DELTA(s0, s1, ranges_collected) >= 1);
	assert_residency(g, q, size, 0, n, 0, 0);
	alarm(30);
	igt_assert_errno(svm_access(g, id, GPU_READ, p, size, buf, NULL), EFAULT);
	igt_assert_errno(svm_access(g, id, GPU_WRITE, p, PAGE, buf, NULL), EFAULT);
	alarm(0);

	fill(buf, size, 53);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, q, size, buf, NULL), 0);
	igt_assert_eq(check(q, size, 53), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* mremap leaving the old mapping in place, empty: it reads zeros, the new one the data. */
static enum igt_result mmap_remap_dontunmap(void)
{
	size_t size = 4 * SZ_64K, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *dst = svm_map(size, SZ_64K, 0, MAP_PRIVATE);
	uint8_t *buf = svm_buf(size), *q;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && dst && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 54);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	assert_residency(g, p, size, 0, n, 0, 0);
	q = mremap(p, size, size, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
	if (q == MAP_FAILED && errno == EINVAL)
		igt_skip("no MREMAP_DONTUNMAP");
	igt_assert(q == dst);
	assert_residency(g, p, size, 0, 0, 0, n);

	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, q, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 54), -1);
	memset(buf, 0xa5, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check_zero(buf, size), -1);
	assert_residency(g, p, size, RES_ANY, RES_ANY, 0, 0);
	assert_residency(g, q, size, 0, n, 0, 0);
	igt_assert_eq(check(q, size, 54), -1);
	igt_assert_eq(check_zero(p, size), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* Read-only memory: the GPU reads it, its writes are refused (EPERM) and change nothing. */
static enum igt_result mmap_read_only(void)
{
	size_t size = 4 * SZ_64K, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *z = svm_map(SZ_64K, SZ_64K, 0, MAP_PRIVATE);
	uint8_t *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && z && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	/* Filled, then made read-only. */
	fill(p, size, 55);
	igt_assert_eq(mprotect(p, size, PROT_READ), 0);
	s0 = stats(g);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	s1 = stats(g);
	igt_assert(faults >= 1);
	igt_assert(DELTA(s0, s1, gpu_faults) >= 1);
	igt_assert_eq(check(buf, size, 55), -1);
	assert_residency(g, p, size, RES_ANY, RES_ANY, 0, 0);
	fill(buf, size, 56);
	alarm(30);
	igt_assert_errno(svm_access(g, id, GPU_WRITE, p, size, buf, NULL), EPERM);
	igt_assert_errno(svm_access(g, id, GPU_WRITE, p + size - PAGE, PAGE, buf, NULL), EPERM);
	alarm(0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 55), -1);
	igt_assert_eq(check(p, size, 55), -1);
	/* Writable again: the GPU page table follows the protection both ways. */
	igt_assert_eq(mprotect(p, size, PROT_READ | PROT_WRITE), 0);
	fill(buf, size, 57);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p, size, buf, NULL), 0);
	igt_assert_eq(check(p, size, 57), -1);
	assert_residency(g, p, size, n, 0, 0, 0);

	/* Read-only from the start, never written: zeros. */
	igt_assert_eq(mprotect(z, SZ_64K, PROT_READ), 0);
	memset(buf, 0xa5, SZ_64K);
	igt_assert_eq(svm_access(g, id, GPU_READ, z, SZ_64K, buf, NULL), 0);
	igt_assert_eq(check_zero(buf, SZ_64K), -1);
	assert_residency(g, z, SZ_64K, RES_ANY, RES_ANY, 0, 0);
	alarm(30);
	igt_assert_errno(svm_access(g, id, GPU_WRITE, z, SZ_64K, buf, NULL), EPERM);
	alarm(0);
	igt_assert_eq(check_zero(z, SZ_64K), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* Shared and file mappings stay in system memory; atomics there are refused. */
static enum igt_result mmap_shared_file(void)
{
	size_t size = 4 * SZ_64K, n = size / PAGE;
	uint8_t *s = svm_map(size, SZ_64K, 0, MAP_SHARED), *buf = svm_buf(size), *f;
	struct drm_vgpu_stats s0, s1;
	uint32_t id;
	int g, mfd;

	OPEN_GPU0(g);
	igt_assert(s && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(s, size, 58);
	fill(buf, size, 59);
	s0 = stats(g);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, s, size, buf, NULL), 0);
	igt_assert_eq(check(s, size, 59), -1);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, s, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 59), -1);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
	igt_assert_eq(DELTA(s0, s1, pages_mapped_local), 0);
	igt_assert(DELTA(s0, s1, pages_mapped_system) >= (long long)n);
	assert_residency(g, s, size, n, 0, 0, 0);
	igt_assert_errno(svm_atomic(g, id, ADD, s, 1, NULL), EOPNOTSUPP);
	igt_assert_eq(check(s, size, 59), -1);

	/* A private mapping of a file, not written: the file's own pages. */
	mfd = memfd_create("vgpu_svm", MFD_CLOEXEC);
	igt_assert(mfd >= 0);
	fill(buf, size, 60);
	igt_assert_eq(write(mfd, buf, size), (long)size);
	f = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
	igt_assert(f != MAP_FAILED);
	s0 = stats(g);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, f, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 60), -1);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
	assert_residency(g, f, size, n, 0, 0, 0);
	igt_assert_errno(svm_atomic(g, id, ADD, f, 1, NULL), EOPNOTSUPP);
	/* And shared. */
	munmap(f, size);
	f = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	igt_assert(f != MAP_FAILED);
	fill(buf, size, 61);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, f, size, buf, NULL), 0);
	igt_assert_eq(check(f, size, 61), -1);
	igt_assert_eq(pread(mfd, buf, size, 0), (long)size);
	igt_assert_eq(check(buf, size, 61), -1);
	assert_residency(g, f, size, n, 0, 0, 0);
	igt_assert_errno(svm_atomic(g, id, ADD, f + 8, 1, NULL), EOPNOTSUPP);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	close(mfd);
	return IGT_PASS;
}

/* fork_cow's child; its exit status says which step failed. */
static int fork_cow_child(int g, uint32_t id, uint8_t *p, size_t size, int ready, int go)
{
	uint8_t page[PAGE];
	char c;

	/* The parent's VM is not the child's. */
	if (svm_access(g, id, GPU_READ, p, PAGE, page, NULL) != -1 || errno != EACCES)
		return 2;
	if (svm_access(g, id, GPU_WRITE, p, PAGE, page, NULL) != -1 || errno != EACCES)
		return 3;
	if (svm_prefetch(g, id, p, size) != -1 || errno != EACCES)
		return 4;
	if (svm_atomic(g, id, ADD, p, 1, NULL) != -1 || errno != EACCES)
		return 5;
	/* What the GPU wrote before the fork, then the child's own copy. */
	if (check(p, size, 71) != -1)
		return 6;
	fill(p, size, 72);
	if (check(p, size, 72) != -1)
		return 7;
	if (write(ready, "r", 1) != 1 || read(go, &c, 1) != 1)
		return 8;
	/* The parent's GPU write after that never reached the child. */
	if (check(p, size, 72) != -1)
		return 9;
	return 0;
}

/*
 * fork while the GPU maps the memory: the child writes its copy (copy-on-write), the parent's
 * GPU keeps seeing the parent's data; the child may not use the parent's VM (EACCES).
 */
static enum igt_result fork_cow(void)
{
	size_t size = 4 * SZ_64K, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	int g, ready[2], go[2], status;
	uint32_t id;
	pid_t pid;
	char c;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	igt_assert_eq(pipe(ready), 0);
	igt_assert_eq(pipe(go), 0);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 70);
	fill(buf, size, 71);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p, size, buf, NULL), 0);
	assert_residency(g, p, size, 0, n, 0, 0);

	s0 = stats(g);
	fflush(stdout);
	pid = fork();
	igt_assert(pid >= 0);
	if (pid == 0) {
		int r;

		alarm(60);
		close(ready[0]);
		close(go[1]);
		r = fork_cow_child(g, id, p, size, ready[1], go[0]);
		fflush(stdout);
		_exit(r);
	}
	close(ready[1]);
	close(go[0]);
	alarm(50);
	igt_assert_eq(read(ready[0], &c, 1), 1);
	s1 = stats(g);
	/* The fork write-protected the parent's pages: the GPU's mappings of them went. */
	igt_assert(DELTA(s0, s1, invalidations) >= 1);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 71), -1);
	igt_assert_eq(check(p, size, 71), -1);
	assert_residency(g, p, size, RES_ANY, RES_ANY, 0, 0);
	/* The parent's GPU writes its own copy, with the child alive. */
	fill(buf, size, 73);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p, size, buf, NULL), 0);
	igt_assert_eq(check(p, size, 73), -1);
	igt_assert_eq(write(go[1], "g", 1), 1);
	igt_assert_eq(waitpid(pid, &status, 0), pid);
	alarm(0);
	igt_assert(WIFEXITED(status));
	igt_assert_eq(WEXITSTATUS(status), 0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 73), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/*
 * Threads faulting concurrently: 4 MiB (two 2 MiB ranges) in 64 KiB stripes, stripe k
 * written by thread k % NT, each writing and reading back its stripes, then all reading the
 * whole buffer at once (overlapping). One VM shared by all, or one VM per thread.
 */
#define NT 4
#define T_SIZE (2 * SZ_2M)
#define T_STRIPE SZ_64K
#define T_ROUNDS 3

struct tctx {
	int g, t, own_vm;
	uint32_t id;
	uint8_t *p, *buf, *all;
	pthread_barrier_t *bar;
	long errors;
	char why[160];
};

static unsigned int tseed(int t, int r)
{
	return 100 + t * 8 + r;
}

static void tfail(struct tctx *c, const char *what, size_t off)
{
	if (!c->errors++)
		snprintf(c->why, sizeof(c->why), "thread %d: %s at offset %#zx (errno %d)", c->t, what,
			 off, errno);
}

static void *tmain(void *arg)
{
	struct tctx *c = arg;

	if (c->own_vm && svm_vm_create(c->g, &c->id))
		tfail(c, "VM_CREATE", 0);
	pthread_barrier_wait(c->bar);
	if (c->errors)
		return NULL;
	for (int r = 0; r < T_ROUNDS; r++) {
		for (size_t k = c->t; k < T_SIZE / T_STRIPE; k += NT) {
			size_t off = k * T_STRIPE;

			fill_at(c->buf, off, T_STRIPE, tseed(c->t, r));
			if (svm_access(c->g, c->id, GPU_WRITE, c->p + off, T_STRIPE, c->buf, NULL))
				tfail(c, "GPU write", off);
			memset(c->buf, 0, T_STRIPE);
			if (svm_access(c->g, c->id, GPU_READ, c->p + off, T_STRIPE, c->buf, NULL))
				tfail(c, "GPU read", off);
			if (check_at(c->buf, off, T_STRIPE, tseed(c->t, r)) != -1)
				tfail(c, "wrong data read back", off);
		}
	}
	if (svm_access(c->g, c->id, GPU_READ, c->p, T_SIZE, c->all, NULL))
		tfail(c, "GPU read of the whole buffer", 0);
	for (size_t k = c->t; k < T_SIZE / T_STRIPE; k += NT)
		if (check_at(c->all + k * T_STRIPE, k * T_STRIPE, T_STRIPE,
			     tseed(c->t, T_ROUNDS - 1)) != -1)
			tfail(c, "wrong data in the whole read", k * T_STRIPE);
	return NULL;
}

static enum igt_result threads(int own_vm)
{
	size_t n = T_SIZE / PAGE;
	uint8_t *p = svm_map(T_SIZE, SZ_2M, 0, MAP_PRIVATE), *all = svm_buf(T_SIZE);
	struct tctx c[NT];
	pthread_t th[NT];
	pthread_barrier_t bar;
	struct drm_vgpu_residency r;
	struct drm_vgpu_stats s0, s1;
	uint32_t id = 0;
	long errors = 0;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && all);
	if (!own_vm)
		igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, T_SIZE, 99);
	igt_assert_eq(pthread_barrier_init(&bar, NULL, NT), 0);
	s0 = stats(g);
	alarm(50);
	for (int t = 0; t < NT; t++) {
		c[t] = (struct tctx){
			.g = g, .t = t, .own_vm = own_vm, .id = id, .p = p, .bar = &bar,
			.buf = svm_buf(T_STRIPE), .all = svm_buf(T_SIZE),
		};
		igt_assert(c[t].buf && c[t].all);
	}
	for (int t = 0; t < NT; t++)
		igt_assert_eq(pthread_create(&th[t], NULL, tmain, &c[t]), 0);
	for (int t = 0; t < NT; t++) {
		pthread_join(th[t], NULL);
		if (c[t].errors)
			printf("# %s (%ld errors)\n", c[t].why, c[t].errors);
		errors += c[t].errors;
	}
	alarm(0);
	s1 = stats(g);
	igt_assert_eq(errors, 0);
	/* Racing faults on one range created it once (per VM). */
	igt_assert_eq(DELTA(s0, s1, ranges_created), (own_vm ? NT : 1) * (T_SIZE / SZ_2M));
	igt_assert_eq(svm_residency(g, p, T_SIZE, &r), 0);
	igt_info("after the race: system %llu local %llu\n", (unsigned long long)r.system,
		 (unsigned long long)r.local);
	assert_residency(g, p, T_SIZE, RES_ANY, RES_ANY, 0, 0);

	if (!own_vm)
		igt_assert_eq(svm_access(g, id, GPU_READ, p, T_SIZE, all, NULL), 0);
	else
		igt_assert_eq(svm_access(g, c[0].id, GPU_READ, p, T_SIZE, all, NULL), 0);
	for (size_t k = 0; k < T_SIZE / T_STRIPE; k++) {
		unsigned int seed = tseed(k % NT, T_ROUNDS - 1);

		igt_assert_eq(check_at(all + k * T_STRIPE, k * T_STRIPE, T_STRIPE, seed), -1);
		igt_assert_eq(check_at(p + k * T_STRIPE, k * T_STRIPE, T_STRIPE, seed), -1);
	}
	assert_residency(g, p, T_SIZE, n, 0, 0, 0);
	return IGT_PASS;
}

static enum igt_result threads_shared_vm(void)
{
	return threads(0);
}

static enum igt_result threads_own_vm(void)
{
	return threads(1);
}

/* Several processes, each with its own file and VM on one GPU, at once. */
#define NP 4

static enum igt_result processes(void)
{
	pid_t pid[NP];
	int go[2], g, failed = 0;

	OPEN_GPU0(g);
	close(g);
	igt_assert_eq(pipe(go), 0);
	fflush(stdout);
	for (int i = 0; i < NP; i++) {
		pid[i] = fork();
		igt_assert(pid[i] >= 0);
		if (pid[i] == 0) {
			uint8_t *p = svm_map(MIB, SZ_64K, 0, MAP_PRIVATE);
			enum igt_result r = IGT_FAIL;
			char c;
			int f;

			alarm(50);
			close(go[1]);
			/* All start when the parent closes the pipe. */
			if (read(go[0], &c, 1) == 0 && p && (f = open_gpu(0)) >= 0)
				r = roundtrip(f, p, MIB, 120 + 3 * i, 0, -1);
			fflush(stdout);
			_exit(r == IGT_PASS ? 0 : 1);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < NP; i++) {
		int status;

		igt_assert_eq(waitpid(pid[i], &status, 0), pid[i]);
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			printf("# process %d failed (status %#x)\n", i, status);
			failed++;
		}
	}
	igt_assert_eq(failed, 0);
	return IGT_PASS;
}

/* Two VMs of one process on one GPU map the same memory: each sees the other's writes. */
static enum igt_result two_vms_one_buffer(void)
{
	size_t size = 4 * SZ_64K, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t a, b;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g, &a), 0);
	igt_assert_eq(svm_vm_create(g, &b), 0);
	fill(p, size, 130);
	fill(buf, size, 131);
	igt_assert_eq(svm_access(g, a, GPU_WRITE, p, size, buf, NULL), 0);
	assert_residency(g, p, size, 0, n, 0, 0);
	s0 = stats(g);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, b, GPU_READ, p, size, buf, &faults), 0);
	s1 = stats(g);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 131), -1);
	/* B maps A's pages where they are: nothing moves. */
	igt_assert_eq(DELTA(s0, s1, pages_to_system), 0);
	igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
	/* B writes, A reads B's write; still nothing moves. */
	fill(buf, size, 132);
	igt_assert_eq(svm_access(g, b, GPU_WRITE, p, size, buf, NULL), 0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, a, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 132), -1);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, pages_to_system), 0);
	igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
	assert_residency(g, p, size, 0, n, 0, 0);
	/* The CPU writes: both VMs lose their mappings and fault the new data in. */
	fill(p, size, 133);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, a, GPU_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 133), -1);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, b, GPU_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 133), -1);
	igt_assert_eq(svm_vm_destroy(g, a), 0);
	igt_assert_eq(svm_vm_destroy(g, b), 0);
	return IGT_PASS;
}

/*
 * The CPU and the GPU take turns on one page (a 4 KiB range of its own), 200 times: every
 * byte right, the loop finishes. With the default advice the page moves each turn; with
 * system advice it never moves and the GPU faults once.
 */
#define PINGPONG 200

static enum igt_result ping_pong(int system)
{
	uint8_t *p = svm_map(PAGE, PAGE, 0, MAP_PRIVATE), *buf = svm_buf(PAGE);
	struct drm_vgpu_stats s0, s1;
	struct timespec t0;
	uint64_t faults, total = 0;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	if (system)
		igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, PAGE, 0), 0);
	s0 = stats(g);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	alarm(55);
	for (unsigned int i = 0; i < PINGPONG; i++) {
		fill(p, PAGE, i);
		memset(buf, 0, PAGE);
		igt_assert_eq(svm_access(g, id, GPU_READ, p, PAGE, buf, &faults), 0);
		total += faults;
		igt_assert_eq(check(buf, PAGE, i), -1);
		fill(buf, PAGE, i + 100);
		igt_assert_eq(svm_access(g, id, GPU_WRITE, p, PAGE, buf, &faults), 0);
		total += faults;
		igt_assert_eq(check(p, PAGE, i + 100), -1);
	}
	alarm(0);
	s1 = stats(g);
	igt_info("%d turns in %ld ms, %llu GPU faults, %lld CPU faults\n", PINGPONG, ms_since(&t0),
		 (unsigned long long)total, DELTA(s0, s1, cpu_faults));
	igt_assert(ms_since(&t0) < 40000);
	if (system) {
		/* CPU writes in place do not unbind: one fault (two if the first, a read,
		 * bound the page read-only), nothing moved. */
		igt_assert(total >= 1 && total <= 2);
		igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
		igt_assert_eq(DELTA(s0, s1, cpu_faults), 0);
		assert_residency(g, p, PAGE, 1, 0, 0, 0);
	} else {
		igt_assert(total >= PINGPONG);
		igt_assert(DELTA(s0, s1, gpu_faults) >= PINGPONG);
		igt_assert(DELTA(s0, s1, cpu_faults) >= PINGPONG);
		igt_assert(DELTA(s0, s1, invalidations) >= PINGPONG);
		assert_residency(g, p, PAGE, 1, 0, 0, 0);
	}
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

static enum igt_result cpu_gpu_ping_pong(void)
{
	return ping_pong(0);
}

static enum igt_result cpu_gpu_ping_pong_system(void)
{
	return ping_pong(1);
}

/* GPU atomics on device memory: old values in sequence, wrap-around, the page local after. */
static enum igt_result atomic_basic(void)
{
	uint8_t *p = svm_map(SZ_64K, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(PAGE);
	volatile uint32_t *w = (volatile uint32_t *)p;
	struct drm_vgpu_stats s0, s1;
	uint64_t old;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	memset(p, 0, SZ_64K);
	w[3] = 1000;
	s0 = stats(g);
	igt_assert_eq(svm_atomic(g, id, ADD, p + 12, 5, &old), 0);
	igt_assert_eq(old, 1000);
	s1 = stats(g);
	igt_assert(DELTA(s0, s1, pages_to_device) >= 1);
	assert_residency(g, p, PAGE, 0, 1, 0, 0);
	igt_assert_eq(svm_atomic(g, id, ADD, p + 12, 7, &old), 0);
	igt_assert_eq(old, 1005);
	for (uint32_t i = 0; i < 10; i++) {
		igt_assert_eq(svm_atomic(g, id, ADD, p + 12, 1, &old), 0);
		igt_assert_eq(old, 1012 + i);
	}
	/* 32-bit wrap-around: adding 0xffffffff subtracts one. */
	igt_assert_eq(svm_atomic(g, id, ADD, p + 12, 0xffffffffu, &old), 0);
	igt_assert_eq(old, 1022);
	/* Another word, 4-byte aligned only. */
	igt_assert_eq(svm_atomic(g, id, ADD, p + 4, 0x80000000u, &old), 0);
	igt_assert_eq(old, 0);
	assert_residency(g, p, PAGE, 0, 1, 0, 0);
	/* The GPU reads the page as it is, then the CPU. */
	igt_assert_eq(svm_access(g, id, GPU_READ, p, PAGE, buf, NULL), 0);
	igt_assert_eq(((uint32_t *)buf)[3], 1021);
	igt_assert_eq(((uint32_t *)buf)[1], 0x80000000u);
	igt_assert_eq(((uint32_t *)buf)[2], 0);
	igt_assert_eq(w[3], 1021);
	igt_assert_eq(w[1], 0x80000000u);
	igt_assert_eq(w[0], 0);
	igt_assert_eq(w[2], 0);
	igt_assert_eq(w[4], 0);
	assert_residency(g, p, PAGE, 1, 0, 0, 0);

	/* Advice for system memory: an atomic still needs device memory, its own GPU's. */
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, SZ_64K, 0), 0);
	igt_assert_eq(svm_atomic(g, id, ADD, p + 12, 1, &old), 0);
	igt_assert_eq(old, 1021);
	assert_residency(g, p, PAGE, 0, 1, 0, 0);
	igt_assert_eq(w[3], 1022);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* Bad atomics: each refused with its error, the word unchanged. */
static enum igt_result atomic_bad(void)
{
	uint8_t *p = svm_map(SZ_64K, SZ_64K, 0, MAP_PRIVATE), *s = svm_map(PAGE, PAGE, 0, MAP_SHARED);
	uint8_t *ro = svm_map(PAGE, PAGE, 0, MAP_PRIVATE), *hole = svm_map(PAGE, PAGE, 0, MAP_PRIVATE);
	struct drm_vgpu_vm_atomic a;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && s && ro && hole);
	igt_assert_eq(munmap(hole, PAGE), 0);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	memset(p, 0, SZ_64K);
	memset(s, 0, PAGE);
	memset(ro, 0, PAGE);
	igt_assert_eq(mprotect(ro, PAGE, PROT_READ), 0);
	alarm(50);
	igt_assert_errno(svm_atomic(g, id, ADD, p + 2, 1, NULL), EINVAL);
	igt_assert_errno(svm_atomic(g, id, ADD, p + 1, 1, NULL), EINVAL);
	igt_assert_errno(svm_atomic(g, id, ADD, p + PAGE - 2, 1, NULL), EINVAL);
	igt_assert_errno(svm_atomic(g, id, 1, p, 1, NULL), EINVAL);
	igt_assert_errno(svm_atomic(g, id, 0xffffffffu, p, 1, NULL), EINVAL);
	a = (struct drm_vgpu_vm_atomic){ .vm_id = id, .addr = (uintptr_t)p, .value = 1, .pad = 1 };
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_ATOMIC, &a), EINVAL);
	igt_assert_errno(svm_atomic(g, id + 1000, ADD, p, 1, NULL), ENOENT);
	igt_assert_errno(svm_atomic(g, id, ADD, s, 1, NULL), EOPNOTSUPP);
	igt_assert_errno(svm_atomic(g, id, ADD, ro, 1, NULL), EPERM);
	igt_assert_errno(svm_atomic(g, id, ADD, hole, 1, NULL), EFAULT);
	igt_assert_errno(svm_atomic(g, id, ADD, NULL, 1, NULL), EFAULT);
	igt_assert_errno(svm_atomic(g, id, ADD, KERNEL_ADDR, 1, NULL), EFAULT);
	igt_assert_errno(svm_atomic(g, id, ADD, ABOVE_USER, 1, NULL), EFAULT);
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_ATOMIC, (void *)16), EFAULT);
	alarm(0);
	/* Refused before any fault: nothing moved, nothing changed. */
	assert_residency(g, p, SZ_64K, SZ_64K / PAGE, 0, 0, 0);
	assert_residency(g, s, PAGE, 1, 0, 0, 0);
	igt_assert_eq(check_zero(p, SZ_64K), -1);
	igt_assert_eq(check_zero(s, PAGE), -1);
	igt_assert_eq(check_zero(ro, PAGE), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/*
 * A thread does N GPU atomic adds of 1 while another writes a different word of the same page
 * with the CPU: every add counts (the final counter is exactly N, the old values run 0..N-1)
 * and the loop ends.
 */
#define ATOMIC_N 100

struct cpu_writer {
	volatile uint32_t *w;
	atomic_int stop;
	uint32_t last;
	long writes;
};

static void *cpu_writer_main(void *arg)
{
	struct cpu_writer *c = arg;

	for (uint32_t k = 1; !atomic_load(&c->stop); k++) {
		c->w[512] = k;
		c->last = k;
		c->writes++;
		usleep(200);
	}
	return NULL;
}

static enum igt_result atomic_vs_cpu_writes(void)
{
	uint8_t *p = svm_map(PAGE, PAGE, 0, MAP_PRIVATE);
	struct cpu_writer c = { .w = (volatile uint32_t *)p };
	struct drm_vgpu_stats s0, s1;
	struct timespec t0;
	uint64_t old;
	long bad = 0, firstbad = -1;
	pthread_t th;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	memset(p, 0, PAGE);
	s0 = stats(g);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	alarm(55);
	igt_assert_eq(pthread_create(&th, NULL, cpu_writer_main, &c), 0);
	for (uint32_t i = 0; i < ATOMIC_N; i++) {
		int r = svm_atomic(g, id, ADD, p, 1, &old);

		if (r || old != i) {
			if (!bad++) {
				firstbad = i;
				printf("# atomic %u: returned %d (errno %d), old %llu\n", i, r, errno,
				       (unsigned long long)old);
			}
		}
	}
	atomic_store(&c.stop, 1);
	pthread_join(th, NULL);
	alarm(0);
	s1 = stats(g);
	igt_info("%d atomics and %ld CPU writes in %ld ms; %lld CPU faults\n", ATOMIC_N, c.writes,
		 ms_since(&t0), DELTA(s0, s1, cpu_faults));
	igt_assert_eq(bad, 0);
	igt_assert_eq(firstbad, -1);
	igt_assert(ms_since(&t0) < 40000);
	igt_assert(c.writes > 0);
	igt_assert_eq(svm_atomic(g, id, ADD, p, 0, &old), 0);
	igt_assert_eq(old, ATOMIC_N);
	assert_residency(g, p, PAGE, 0, 1, 0, 0);
	igt_assert_eq(c.w[0], ATOMIC_N);
	igt_assert_eq(c.w[512], c.last);
	for (int i = 1; i < 1024; i++)
		if (i != 512)
			igt_assert_eq(c.w[i], 0);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* System advice: faults map the data where it is, in system memory; nothing moves. */
static enum igt_result advice_system(void)
{
	size_t size = MIB, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 140);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	fill(buf, size, 141);
	s0 = stats(g);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p, size, buf, &faults), 0);
	s1 = stats(g);
	igt_assert(faults >= 1);
	igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
	igt_assert_eq(DELTA(s0, s1, pages_mapped_local), 0);
	igt_assert(DELTA(s0, s1, pages_mapped_system) >= (long long)n);
	assert_residency(g, p, size, n, 0, 0, 0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert_eq(faults, 0);
	igt_assert_eq(check(buf, size, 141), -1);
	s0 = stats(g);
	igt_assert_eq(check(p, size, 141), -1);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, cpu_faults), 0);

	/* Back to the default: advice unbinds, the next access faults and moves the data. */
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_DEFAULT, p, size, 0), 0);
	assert_residency(g, p, size, n, 0, 0, 0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 141), -1);
	assert_residency(g, p, size, 0, n, 0, 0);

	/* Half system, half default: each half where its advice says. */
	igt_assert_eq(check(p, size, 141), -1);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, size / 2, 0), 0);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 141), -1);
	assert_residency(g, p, size / 2, n / 2, 0, 0, 0);
	assert_residency(g, p + size / 2, size / 2, 0, n / 2, 0, 0);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/*
 * System advice over data already in this GPU's memory: the advice moves nothing; later
 * faults map this GPU's pages where they are (the uAPI: "pages in this GPU's memory or a
 * linked GPU's stay there"); a prefetch brings them back to system memory, and there they
 * stay.
 */
static enum igt_result advice_system_after_local(void)
{
	size_t size = 4 * SZ_64K, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 145);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	assert_residency(g, p, size, 0, n, 0, 0);
	s0 = stats(g);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	assert_residency(g, p, size, 0, n, 0, 0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 145), -1);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, pages_to_system), 0);
	assert_residency(g, p, size, 0, n, 0, 0);
	igt_assert_eq(svm_prefetch(g, id, p, size), 0);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, pages_to_system), n);
	assert_residency(g, p, size, n, 0, 0, 0);

	/* The CPU reads them there; the GPU keeps them in system memory. */
	igt_assert_eq(check(p, size, 145), -1);
	s0 = stats(g);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert_eq(svm_prefetch(g, id, p, size), 0);
	s1 = stats(g);
	igt_assert_eq(check(buf, size, 145), -1);
	igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
	assert_residency(g, p, size, n, 0, 0, 0);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/*
 * Own memory named by a pagemap fd; prefetch applies the advice at once (no GPU access), and
 * binds: the next access does not fault. The advice holds the pagemap after its fd is closed.
 */
static enum igt_result advice_own_pagemap(void)
{
	size_t size = MIB, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int g, pfd;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	pfd = svm_devmem_open(g);
	igt_assert(pfd >= 0);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 150);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_PAGEMAP, p, size, pfd), 0);
	igt_assert_eq(close(pfd), 0);
	assert_residency(g, p, size, n, 0, 0, 0);
	s0 = stats(g);
	igt_assert_eq(svm_prefetch(g, id, p, size), 0);
	s1 = stats(g);
	igt_assert(DELTA(s0, s1, pages_to_device) >= (long long)n);
	igt_assert(DELTA(s0, s1, ranges_created) >= 1);
	assert_residency(g, p, size, 0, n, 0, 0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert_eq(faults, 0);
	igt_assert_eq(check(buf, size, 150), -1);
	/* The CPU takes it back; a prefetch moves it again. */
	igt_assert_eq(check(p, size, 150), -1);
	assert_residency(g, p, size, n, 0, 0, 0);
	igt_assert_eq(svm_prefetch(g, id, p, size), 0);
	assert_residency(g, p, size, 0, n, 0, 0);
	igt_assert_eq(check(p, size, 150), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/*
 * Advice over part of a 2 MiB chunk: the ranges of faults next to it stop at its edge, so each
 * part goes where its own advice says; advice over part of a range already placed splits the
 * range, and each part is placed by its own advice again.
 */
static enum igt_result advice_splits_ranges(void)
{
	size_t size = SZ_2M, half = SZ_2M / 2, n = half / PAGE;
	uint8_t *p = svm_map(size, SZ_2M, 0, MAP_PRIVATE), *buf = svm_buf(size);
	uint8_t *q = svm_map(size, SZ_2M, 0, MAP_PRIVATE);
	struct drm_vgpu_stats s0, s1;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && q && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);

	/* System advice over the first half; the GPU reads the second half, then the first. */
	fill(p, size, 170);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, half, 0), 0);
	igt_assert_eq(svm_access(g, id, GPU_READ, p + half, half, buf, NULL), 0);
	igt_assert_eq(check_at(buf, half, half, 170), -1);
	assert_residency(g, p, half, n, 0, 0, 0);
	assert_residency(g, p + half, half, 0, n, 0, 0);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, half, buf, NULL), 0);
	igt_assert_eq(check_at(buf, 0, half, 170), -1);
	assert_residency(g, p, half, n, 0, 0, 0);
	assert_residency(g, p + half, half, 0, n, 0, 0);

	/* One 2 MiB range in this GPU's memory; system advice over its second half. */
	fill(q, size, 171);
	s0 = stats(g);
	igt_assert_eq(svm_access(g, id, GPU_READ, q, PAGE, buf, NULL), 0);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, ranges_created), 1);
	assert_residency(g, q, size, 0, 2 * n, 0, 0);
	/* Advice that merges with its neighbours makes no edge: the range stays. */
	s0 = stats(g);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_DEFAULT, q + half, half, 0), 0);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, ranges_collected), 0);
	s0 = stats(g);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, q + half, half, 0), 0);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, ranges_collected), 1);
	igt_assert_eq(svm_prefetch(g, id, q + half, half), 0);
	assert_residency(g, q + half, half, n, 0, 0, 0);
	/*
	 * The first half may have come along (taking pages back moves those of their allocation
	 * around them); its next fault makes a range of its own, in this GPU's memory.
	 */
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, q, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 171), -1);
	assert_residency(g, q, half, 0, n, 0, 0);
	assert_residency(g, q + half, half, n, 0, 0, 0);
	igt_assert_eq(check(q, size, 171), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* Prefetch: ranges placed and bound with no access; a hole stops it, what came before stays. */
static enum igt_result prefetch(void)
{
	size_t size = SZ_2M + SZ_64K, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_2M, 0, MAP_PRIVATE), *buf = svm_buf(size);
	uint8_t *q = svm_map(2 * SZ_64K, SZ_64K, 0, MAP_PRIVATE);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p && q && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 160);
	s0 = stats(g);
	igt_assert_eq(svm_prefetch(g, id, p, size), 0);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, ranges_created), 2);
	igt_assert(DELTA(s0, s1, pages_to_device) >= (long long)n);
	igt_assert(DELTA(s0, s1, pages_mapped_local) >= (long long)n);
	assert_residency(g, p, size, 0, n, 0, 0);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert_eq(faults, 0);
	igt_assert_eq(check(buf, size, 160), -1);
	/* Again: already placed, nothing moves. */
	s0 = stats(g);
	igt_assert_eq(svm_prefetch(g, id, p, size), 0);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
	igt_assert_eq(DELTA(s0, s1, ranges_created), 0);

	/* [mapped 64 KiB][hole]: EFAULT, and the first half stays placed. */
	fill(q, 2 * SZ_64K, 161);
	igt_assert_eq(munmap(q + SZ_64K, SZ_64K), 0);
	alarm(30);
	igt_assert_errno(svm_prefetch(g, id, q, 2 * SZ_64K), EFAULT);
	alarm(0);
	assert_residency(g, q, SZ_64K, 0, SZ_64K / PAGE, 0, 0);
	assert_residency(g, q + SZ_64K, SZ_64K, 0, 0, 0, SZ_64K / PAGE);
	igt_assert_eq(svm_access(g, id, GPU_READ, q, SZ_64K, buf, NULL), 0);
	igt_assert_eq(check(buf, SZ_64K, 161), -1);

	/* System advice: prefetch binds in place. */
	igt_assert_eq(check(p, size, 160), -1);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	s0 = stats(g);
	igt_assert_eq(svm_prefetch(g, id, p, size), 0);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
	assert_residency(g, p, size, n, 0, 0, 0);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert_eq(faults, 0);
	igt_assert_eq(check(buf, size, 160), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

static enum igt_result prefetch_bad(void)
{
	uint8_t *p = svm_map(4 * PAGE, PAGE, 0, MAP_PRIVATE);
	struct drm_vgpu_vm_prefetch f;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(p);
	memset(p, 1, 4 * PAGE);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	f = (struct drm_vgpu_vm_prefetch){ .vm_id = id, .flags = 1, .start = (uintptr_t)p,
					   .size = PAGE };
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_PREFETCH, &f), EINVAL);
	f.flags = 0x80000000u;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_PREFETCH, &f), EINVAL);
	igt_assert_errno(svm_prefetch(g, id, p + 1, PAGE), EINVAL);
	igt_assert_errno(svm_prefetch(g, id, p + 2048, PAGE), EINVAL);
	igt_assert_errno(svm_prefetch(g, id, p, 0), EINVAL);
	igt_assert_errno(svm_prefetch(g, id, p, PAGE + 1), EINVAL);
	igt_assert_errno(svm_prefetch(g, id, p, PAGE - 1), EINVAL);
	igt_assert_errno(svm_prefetch(g, id, (void *)0xfffffffffffff000UL, 2 * PAGE), EINVAL);
	igt_assert_errno(svm_prefetch(g, id, p, ~0UL & ~(PAGE - 1)), EINVAL);
	igt_assert_errno(svm_prefetch(g, id + 1000, p, PAGE), ENOENT);
	alarm(30);
	igt_assert_errno(svm_prefetch(g, id, NULL, PAGE), EFAULT);
	igt_assert_errno(svm_prefetch(g, id, KERNEL_ADDR, PAGE), EFAULT);
	igt_assert_errno(svm_prefetch(g, id, ABOVE_USER, PAGE), EFAULT);
	alarm(0);
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_PREFETCH, (void *)16), EFAULT);
	/* After all that, a good one. */
	igt_assert_eq(svm_prefetch(g, id, p, 4 * PAGE), 0);
	assert_residency(g, p, 4 * PAGE, 0, 4, 0, 0);
	igt_assert_eq(check_byte(p, 4 * PAGE, 1), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* Bad advice: each refused with its error; the advice in force stays what it was. */
static enum igt_result madvise_bad(void)
{
	size_t size = 4 * PAGE;
	uint8_t *p = svm_map(size, PAGE, 0, MAP_PRIVATE);
	struct drm_vgpu_vm_madvise m, good;
	uint32_t id;
	int g, pfd, closed, mfd, pipefd[2];

	OPEN_GPU0(g);
	igt_assert(p);
	memset(p, 2, size);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	pfd = svm_devmem_open(g);
	closed = svm_devmem_open(g);
	mfd = memfd_create("vgpu_svm", MFD_CLOEXEC);
	igt_assert(pfd >= 0 && closed >= 0 && mfd >= 0);
	igt_assert_eq(pipe(pipefd), 0);
	/* Closed last: nothing opened after it may reuse its number. */
	igt_assert_eq(close(closed), 0);
	/* System advice in force; none of the refused calls below may change it. */
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	good = (struct drm_vgpu_vm_madvise){
		.vm_id = id, .location = DRM_VGPU_LOCATION_DEFAULT, .start = (uintptr_t)p,
		.size = size,
	};
#define MADV_ERR(field, value, err)                                             \
	do {                                                                    \
		m = good;                                                       \
		m.field = (value);                                              \
		igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), err); \
	} while (0)
	MADV_ERR(flags, 1, EINVAL);
	MADV_ERR(flags, 0x80000000u, EINVAL);
	MADV_ERR(location, 3, EINVAL);
	MADV_ERR(location, 0xffffffffu, EINVAL);
	MADV_ERR(pagemap_fd, pfd, EINVAL);
	MADV_ERR(pagemap_fd, -1, EINVAL);
	MADV_ERR(start, (uintptr_t)p + 1, EINVAL);
	MADV_ERR(start, (uintptr_t)p + 2048, EINVAL);
	MADV_ERR(size, 0, EINVAL);
	MADV_ERR(size, PAGE + 1, EINVAL);
	MADV_ERR(size, ~0ull & ~(PAGE - 1), EINVAL);
	MADV_ERR(vm_id, id + 1000, ENOENT);
	m = good;
	m.location = DRM_VGPU_LOCATION_SYSTEM;
	m.pagemap_fd = 1;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), EINVAL);
	m = good;
	m.start = 0xfffffffffffff000ull;
	m.size = 2 * PAGE;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), EINVAL);
	/* Pagemap descriptors that are not. */
	m = good;
	m.location = DRM_VGPU_LOCATION_PAGEMAP;
	m.pagemap_fd = -1;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), EBADF);
	m.pagemap_fd = closed;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), EBADF);
	m.pagemap_fd = 100000;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), EBADF);
	m.pagemap_fd = g;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), EINVAL);
	m.pagemap_fd = mfd;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), EINVAL);
	m.pagemap_fd = pipefd[0];
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), EINVAL);
	m.pagemap_fd = pfd;
	m.flags = 1;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), EINVAL);
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, (void *)16), EFAULT);
#undef MADV_ERR
	/* Still system advice: a prefetch leaves the data in system memory. */
	igt_assert_eq(svm_prefetch(g, id, p, size), 0);
	assert_residency(g, p, size, size / PAGE, 0, 0, 0);
	/* The good ones. */
	m = good;
	m.location = DRM_VGPU_LOCATION_PAGEMAP;
	m.pagemap_fd = pfd;
	igt_assert_eq(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &m), 0);
	igt_assert_eq(svm_prefetch(g, id, p, size), 0);
	assert_residency(g, p, size, 0, size / PAGE, 0, 0);
	igt_assert_eq(ioctl(g, DRM_IOCTL_VGPU_VM_MADVISE, &good), 0);
	igt_assert_eq(check_byte(p, size, 2), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/*
 * A VM holds at most DRM_VGPU_MAX_ADVICE pieces of advice: alternating advice runs into
 * ENOSPC; adjacent equal advice merges and never does; advice over everything replaces it all.
 */
static enum igt_result madvise_too_many(void)
{
	size_t pages = 2 * (DRM_VGPU_MAX_ADVICE + 1), i;
	uint8_t *p = svm_map(pages * PAGE, PAGE, 0, MAP_PRIVATE);
	uint32_t id;
	int g, r = 0;

	OPEN_GPU0(g);
	igt_assert(p);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	/* Adjacent, equal: one piece however many calls. */
	for (i = 0; i < pages; i++)
		igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p + i * PAGE, PAGE, 0), 0);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_DEFAULT, p, pages * PAGE, 0), 0);
	/* Every other page: a piece each (and maybe one for each gap). */
	for (i = 0; i <= DRM_VGPU_MAX_ADVICE; i++) {
		r = svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p + 2 * i * PAGE, PAGE, 0);
		if (r)
			break;
	}
	igt_info("ENOSPC at call %zu\n", i);
	igt_assert_eq(r, -1);
	igt_assert_eq(errno, ENOSPC);
	igt_assert(i >= DRM_VGPU_MAX_ADVICE / 2 - 1);
	/* One call over all of it replaces every piece, and there is room again. */
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_DEFAULT, p, pages * PAGE, 0), 0);
	for (i = 0; i < 8; i++)
		igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p + 2 * i * PAGE, PAGE, 0),
			      0);
	/* The advice does what it says (all of it system, whatever ranges the prefetch makes). */
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, pages * PAGE, 0), 0);
	memset(p, 3, 4 * PAGE);
	igt_assert_eq(svm_prefetch(g, id, p, 4 * PAGE), 0);
	assert_residency(g, p, 4 * PAGE, 4, 0, 0, 0);
	igt_assert_eq(check_byte(p, 4 * PAGE, 3), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

static enum igt_result residency_bad(void)
{
	uint8_t *p = svm_map(4 * PAGE, PAGE, 0, MAP_PRIVATE);
	struct drm_vgpu_residency r, good;
	int g;

	OPEN_GPU0(g);
	igt_assert(p);
	good = (struct drm_vgpu_residency){ .start = (uintptr_t)p, .size = 4 * PAGE };
#define RES_ERR(field, value)                                                          \
	do {                                                                           \
		r = good;                                                              \
		r.field = (value);                                                     \
		igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_RESIDENCY, &r), EINVAL);      \
	} while (0)
	RES_ERR(flags, 1);
	RES_ERR(flags, 0x80000000u);
	RES_ERR(pad, 1);
	RES_ERR(start, (uintptr_t)p + 1);
	RES_ERR(start, (uintptr_t)p + 2048);
	RES_ERR(size, 0);
	RES_ERR(size, PAGE + 1);
	RES_ERR(size, ~0ull & ~(PAGE - 1));
	r = good;
	r.start = 0xfffffffffffff000ull;
	r.size = 2 * PAGE;
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_RESIDENCY, &r), EINVAL);
#undef RES_ERR
	igt_assert_errno(ioctl(g, DRM_IOCTL_VGPU_RESIDENCY, (void *)16), EFAULT);
	/* Outputs are outputs: garbage in them is ignored. */
	r = good;
	r.system = r.local = r.peer = r.none = 12345;
	igt_assert_eq(ioctl(g, DRM_IOCTL_VGPU_RESIDENCY, &r), 0);
	igt_assert_eq(r.none, 4);
	igt_assert_eq(r.system + r.local + r.peer, 0);
	/* A snapshot: it faulted nothing in. */
	assert_residency(g, p, 4 * PAGE, 0, 0, 0, 4);
	/* The zero page of the address space: nothing there. */
	assert_residency(g, NULL, PAGE, 0, 0, 0, 1);
	return IGT_PASS;
}

/* RESIDENCY over huge ranges returns in bounded time, counting what is there. */
static enum igt_result residency_huge(void)
{
	size_t tib = 1UL << 40, big = 64UL << 30;
	struct timespec t0;
	uint8_t *r, *q, *mid;
	long ms;
	int g;

	OPEN_GPU0(g);
	alarm(58);
	/* 1 TiB of address space known to be unmapped. */
	r = mmap(NULL, tib, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		igt_skip("cannot reserve 1 TiB of address space");
	igt_assert_eq(munmap(r, tib), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_residency(g, r, tib, 0, 0, 0, tib / PAGE);
	ms = ms_since(&t0);
	igt_info("1 TiB unmapped: %ld ms\n", ms);
	igt_assert(ms < 20000);
	/* 64 GiB mapped PROT_NONE (nothing visible) with 64 KiB of data in the middle. */
	q = mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	igt_assert(q != MAP_FAILED);
	mid = q + big / 2;
	igt_assert(mmap(mid, SZ_64K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			-1, 0) == mid);
	memset(mid, 4, SZ_64K);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_residency(g, q, big, SZ_64K / PAGE, 0, 0, (big - SZ_64K) / PAGE);
	ms = ms_since(&t0);
	igt_info("64 GiB PROT_NONE with 64 KiB of data: %ld ms\n", ms);
	igt_assert(ms < 20000);
	alarm(0);
	return IGT_PASS;
}

/*
 * One range, every kind of page: system (system advice), local (prefetched), peer (a linked
 * GPU's memory, if there is one; else local), none (never touched). RESIDENCY moves nothing.
 */
static enum igt_result residency_mixed(void)
{
	size_t q4 = 4 * SZ_64K, size = 4 * q4, nq = q4 / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats s0, s1;
	uint32_t id;
	int g, peer, pfd = -1;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	peer = svm_other_gpu(g, 1);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, q4, 170);
	fill(p + q4, q4, 171);
	fill(p + 3 * q4, q4, 173);
	igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_SYSTEM, p, q4, 0), 0);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, q4, buf, NULL), 0);
	igt_assert_eq(svm_prefetch(g, id, p + q4, q4), 0);
	if (peer >= 0) {
		pfd = svm_devmem_open(peer);
		igt_assert(pfd >= 0);
		igt_assert_eq(svm_madvise(g, id, DRM_VGPU_LOCATION_PAGEMAP, p + 3 * q4, q4, pfd), 0);
	}
	igt_assert_eq(svm_prefetch(g, id, p + 3 * q4, q4), 0);
	s0 = stats(g);
	if (peer >= 0)
		assert_residency(g, p, size, nq, nq, nq, nq);
	else
		assert_residency(g, p, size, nq, 2 * nq, 0, nq);
	assert_residency(g, p + 2 * q4, q4, 0, 0, 0, nq);
	s1 = stats(g);
	igt_assert_eq(DELTA(s0, s1, pages_to_device), 0);
	igt_assert_eq(DELTA(s0, s1, pages_to_system), 0);
	igt_assert_eq(DELTA(s0, s1, gpu_faults), 0);
	if (peer >= 0)
		/* From the linked GPU: A system, B (GPU0's) peer, C none, D its own. */
		assert_residency(peer, p, size, nq, nq, nq, nq);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check_at(buf, 0, q4, 170), -1);
	igt_assert_eq(check_at(buf + q4, 0, q4, 171), -1);
	igt_assert_eq(check_zero(buf + 2 * q4, q4), -1);
	igt_assert_eq(check_at(buf + 3 * q4, 0, q4, 173), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* GPU access to addresses with nothing mapped: a clean EFAULT, never a hang, never stale. */
static enum igt_result unmapped_access(void)
{
	uint8_t *hole = svm_map(SZ_64K, SZ_64K, 0, MAP_PRIVATE);
	uint8_t *gone = svm_map(SZ_64K, SZ_64K, 0, MAP_PRIVATE);
	uint8_t *none = svm_map(SZ_64K, SZ_64K, 0, MAP_PRIVATE);
	uint8_t *buf = svm_buf(SZ_64K);
	struct timespec t0;
	uint64_t faults;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	igt_assert(hole && gone && none && buf);
	igt_assert_eq(munmap(hole, SZ_64K), 0);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	/* Mapped by the GPU, then munmapped. */
	fill(gone, SZ_64K, 180);
	igt_assert_eq(svm_access(g, id, GPU_READ, gone, SZ_64K, buf, NULL), 0);
	igt_assert_eq(munmap(gone, SZ_64K), 0);
	/* Mapped by the GPU, then made inaccessible. */
	fill(none, SZ_64K, 181);
	igt_assert_eq(svm_access(g, id, GPU_READ, none, SZ_64K, buf, NULL), 0);
	igt_assert_eq(mprotect(none, SZ_64K, PROT_NONE), 0);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	alarm(55);
	{
		void *const addrs[] = { hole, gone, none, NULL, KERNEL_ADDR, ABOVE_USER };

		for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
			igt_info("address %p\n", addrs[i]);
			memset(buf, 0, SZ_64K);
			igt_assert_errno(svm_access(g, id, GPU_READ, addrs[i], PAGE, buf, &faults),
					 EFAULT);
			/* The output is set on failure too. */
			igt_assert(faults != ~0ull);
			igt_assert_eq(check_zero(buf, SZ_64K), -1);
			igt_assert_errno(svm_access(g, id, GPU_WRITE, addrs[i], PAGE, buf, NULL),
					 EFAULT);
			igt_assert_errno(svm_access(g, id, GPU_READ, addrs[i], SZ_64K, buf, NULL),
					 EFAULT);
			igt_assert_errno(svm_prefetch(g, id, addrs[i], PAGE), EFAULT);
			igt_assert_errno(svm_atomic(g, id, ADD, addrs[i], 1, NULL), EFAULT);
		}
	}
	alarm(0);
	igt_info("all refused in %ld ms\n", ms_since(&t0));
	assert_residency(g, hole, SZ_64K, 0, 0, 0, SZ_64K / PAGE);
	assert_residency(g, gone, SZ_64K, 0, 0, 0, SZ_64K / PAGE);
	/* Accessible again: the data is there. */
	igt_assert_eq(mprotect(none, SZ_64K, PROT_READ | PROT_WRITE), 0);
	igt_assert_eq(svm_access(g, id, GPU_READ, none, SZ_64K, buf, NULL), 0);
	igt_assert_eq(check(buf, SZ_64K, 181), -1);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* More than the GPU's memory: what does not fit stays in system memory; every byte right. */
static enum igt_result vram_full_fallback(void)
{
	size_t size, n, vram_pages;
	uint8_t *p, *buf;
	struct drm_vgpu_residency r;
	uint32_t id;
	int g;

	OPEN_GPU0(g);
	size = (vram_size(g) + 4 * MIB + SZ_2M - 1) & ~(SZ_2M - 1);
	if (size > 160 * MIB)
		igt_skip("the GPU's memory is too large for this test (%zu MiB)", size / MIB);
	n = size / PAGE;
	vram_pages = vram_size(g) / PAGE;
	p = svm_map(size, SZ_2M, 0, MAP_PRIVATE);
	buf = svm_buf(size);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 190);
	fill(buf, size, 191);
	alarm(55);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p, size, buf, NULL), 0);
	igt_assert_eq(svm_residency(g, p, size, &r), 0);
	igt_info("%zu pages, %zu of VRAM: system %llu local %llu\n", n, vram_pages,
		 (unsigned long long)r.system, (unsigned long long)r.local);
	assert_residency(g, p, size, RES_ANY, RES_ANY, 0, 0);
	igt_assert(r.local <= vram_pages);
	igt_assert(r.system >= n - vram_pages);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 191), -1);
	igt_assert_eq(check(p, size, 191), -1);
	alarm(0);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	return IGT_PASS;
}

/* Destroying the VM, or closing its file, leaves the data where it is, with the process. */
static enum igt_result vm_destroy_keeps_data(void)
{
	size_t size = 4 * SZ_64K, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	uint64_t faults;
	uint32_t id;
	int g, f;

	OPEN_GPU0(g);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g, &id), 0);
	fill(p, size, 200);
	fill(buf, size, 201);
	igt_assert_eq(svm_access(g, id, GPU_WRITE, p, size, buf, NULL), 0);
	igt_assert_eq(svm_vm_destroy(g, id), 0);
	assert_residency(g, p, size, 0, n, 0, 0);
	/* A new VM starts with an empty page table. */
	igt_assert_eq(svm_vm_create(g, &id), 0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 201), -1);
	/* A file of its own, closed with its VM: the data stays in the GPU's memory. */
	f = open_gpu(0);
	igt_assert(f >= 0);
	igt_assert_eq(svm_vm_create(f, &id), 0);
	fill(buf, size, 202);
	igt_assert_eq(svm_access(f, id, GPU_WRITE, p, size, buf, NULL), 0);
	igt_assert_eq(close(f), 0);
	assert_residency(g, p, size, 0, n, 0, 0);
	igt_assert_eq(check(p, size, 202), -1);
	assert_residency(g, p, size, n, 0, 0, 0);
	return IGT_PASS;
}

/*
 * Preferred location: a linked GPU's memory. This GPU sees the pages as peer and reaches them
 * in place; the linked GPU sees them as its own; a GPU outside the group sees nothing. Back
 * to own memory: the pages come straight over the link.
 */
static enum igt_result mgpu_peer_advice(void)
{
	size_t size = MIB, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats a0, a1, b0, b1;
	uint64_t faults;
	uint32_t id;
	int g0, g1, g2, pfd1;

	OPEN_GPU0(g0);
	NEED_LINKED(g1, g0);
	g2 = svm_other_gpu(g0, 0);
	igt_assert(p && buf);
	pfd1 = svm_devmem_open(g1);
	igt_assert(pfd1 >= 0);
	igt_assert_eq(svm_vm_create(g0, &id), 0);
	fill(p, size, 210);
	igt_assert_eq(svm_madvise(g0, id, DRM_VGPU_LOCATION_PAGEMAP, p, size, pfd1), 0);
	a0 = stats(g0);
	a1 = stats(g1);
	igt_assert_eq(svm_prefetch(g0, id, p, size), 0);
	assert_residency(g1, p, size, 0, n, 0, 0);
	assert_residency(g0, p, size, 0, 0, n, 0);
	if (g2 >= 0)
		assert_residency(g2, p, size, 0, 0, 0, n);
	b1 = stats(g1);
	igt_assert(DELTA(a1, b1, pages_to_device) >= (long long)n);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g0, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert_eq(faults, 0);
	igt_assert_eq(check(buf, size, 210), -1);
	fill(buf, size, 211);
	igt_assert_eq(svm_access(g0, id, GPU_WRITE, p, size, buf, NULL), 0);
	b0 = stats(g0);
	igt_assert(DELTA(a0, b0, peer_accesses) >= (long long)(2 * n));
	igt_assert(DELTA(a0, b0, pages_mapped_peer) >= (long long)n);
	igt_assert_eq(DELTA(a0, b0, pages_to_device), 0);
	assert_residency(g1, p, size, 0, n, 0, 0);

	/* Back to this GPU's own memory, straight from the linked GPU's. */
	igt_assert_eq(svm_madvise(g0, id, DRM_VGPU_LOCATION_DEFAULT, p, size, 0), 0);
	a0 = stats(g0);
	a1 = stats(g1);
	igt_assert_eq(svm_prefetch(g0, id, p, size), 0);
	b0 = stats(g0);
	b1 = stats(g1);
	assert_residency(g0, p, size, 0, n, 0, 0);
	assert_residency(g1, p, size, 0, 0, n, 0);
	igt_assert(DELTA(a0, b0, pages_from_peer) >= (long long)n);
	igt_assert(DELTA(a1, b1, pages_to_peer) >= (long long)n);
	igt_assert_eq(DELTA(a1, b1, pages_to_system), 0);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g0, id, GPU_READ, p, size, buf, &faults), 0);
	igt_assert_eq(faults, 0);
	igt_assert_eq(check(buf, size, 211), -1);
	igt_assert_eq(check(p, size, 211), -1);
	assert_residency(g0, p, size, n, 0, 0, 0);
	assert_residency(g1, p, size, n, 0, 0, 0);
	igt_assert_eq(svm_vm_destroy(g0, id), 0);
	close(pfd1);
	return IGT_PASS;
}

/*
 * One buffer used by three GPUs in turn, each with default advice: GPU0 -> GPU1 (linked:
 * straight over the link) -> GPU2 (another group: through system memory) -> GPU0 -> CPU.
 */
static enum igt_result mgpu_migration(void)
{
	size_t size = MIB, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats a0, a1, a2, b0, b1, b2;
	uint32_t v0, v1, v2;
	int g0, g1, g2;

	OPEN_GPU0(g0);
	NEED_LINKED(g1, g0);
	NEED_UNLINKED(g2, g0);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g0, &v0), 0);
	igt_assert_eq(svm_vm_create(g1, &v1), 0);
	igt_assert_eq(svm_vm_create(g2, &v2), 0);
	fill(p, size, 220);
	fill(buf, size, 221);
	igt_assert_eq(svm_access(g0, v0, GPU_WRITE, p, size, buf, NULL), 0);
	assert_residency(g0, p, size, 0, n, 0, 0);
	assert_residency(g1, p, size, 0, 0, n, 0);
	assert_residency(g2, p, size, 0, 0, 0, n);

	a0 = stats(g0);
	a1 = stats(g1);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g1, v1, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 221), -1);
	b0 = stats(g0);
	b1 = stats(g1);
	assert_residency(g1, p, size, 0, n, 0, 0);
	assert_residency(g0, p, size, 0, 0, n, 0);
	igt_assert(DELTA(a1, b1, pages_from_peer) >= (long long)n);
	igt_assert(DELTA(a0, b0, pages_to_peer) >= (long long)n);
	igt_assert_eq(DELTA(a0, b0, pages_to_system), 0);

	a1 = stats(g1);
	a2 = stats(g2);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g2, v2, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 221), -1);
	b1 = stats(g1);
	b2 = stats(g2);
	assert_residency(g2, p, size, 0, n, 0, 0);
	assert_residency(g1, p, size, 0, 0, 0, n);
	assert_residency(g0, p, size, 0, 0, 0, n);
	igt_assert(DELTA(a1, b1, pages_to_system) >= (long long)n);
	igt_assert(DELTA(a2, b2, pages_to_device) >= (long long)n);
	igt_assert_eq(DELTA(a2, b2, pages_from_peer), 0);

	a2 = stats(g2);
	fill(buf, size, 222);
	igt_assert_eq(svm_access(g0, v0, GPU_WRITE, p, size, buf, NULL), 0);
	b2 = stats(g2);
	igt_assert(DELTA(a2, b2, pages_to_system) >= (long long)n);
	assert_residency(g0, p, size, 0, n, 0, 0);
	assert_residency(g2, p, size, 0, 0, 0, n);
	igt_assert_eq(check(p, size, 222), -1);
	assert_residency(g0, p, size, n, 0, 0, 0);
	assert_residency(g2, p, size, n, 0, 0, 0);
	return IGT_PASS;
}

/* GPU atomics from two linked GPUs on one page: alternating, then concurrently. */
#define MGPU_ATOMICS 50

struct mgpu_atomic {
	int g;
	uint32_t id;
	uint8_t *addr;
	uint64_t olds[MGPU_ATOMICS];
	long errors, busy;
};

static void *mgpu_atomic_main(void *arg)
{
	struct mgpu_atomic *a = arg;

	for (int i = 0; i < MGPU_ATOMICS; i++) {
		int r, tries = 0;

		/* EBUSY: racing past the kernel's bound; nothing was added, try again. */
		while ((r = svm_atomic(a->g, a->id, ADD, a->addr, 1, &a->olds[i])) && errno == EBUSY &&
		       ++tries < 50)
			a->busy++;
		if (r) {
			a->errors++;
			a->olds[i] = ~0ull;
		}
	}
	return NULL;
}

static enum igt_result mgpu_atomic(void)
{
	uint8_t *p = svm_map(PAGE, PAGE, 0, MAP_PRIVATE), seen[2 * MGPU_ATOMICS] = { 0 };
	volatile uint32_t *w = (volatile uint32_t *)p;
	struct mgpu_atomic a[2];
	pthread_t th[2];
	uint64_t old;
	uint32_t v[2];
	int g[2], pfd1;

	OPEN_GPU0(g[0]);
	NEED_LINKED(g[1], g[0]);
	igt_assert(p);
	memset(p, 0, PAGE);
	igt_assert_eq(svm_vm_create(g[0], &v[0]), 0);
	igt_assert_eq(svm_vm_create(g[1], &v[1]), 0);
	alarm(55);
	/* Alternating: the page moves to whichever GPU does the atomic. */
	for (uint32_t i = 0; i < 2 * MGPU_ATOMICS; i++) {
		igt_assert_eq(svm_atomic(g[i % 2], v[i % 2], ADD, p, 1, &old), 0);
		igt_assert_eq(old, i);
	}
	assert_residency(g[1], p, PAGE, 0, 1, 0, 0);
	assert_residency(g[0], p, PAGE, 0, 0, 1, 0);

	/* Concurrently, on another word: every add counts, each old value once. */
	for (int i = 0; i < 2; i++) {
		a[i] = (struct mgpu_atomic){ .g = g[i], .id = v[i], .addr = p + 4 };
		igt_assert_eq(pthread_create(&th[i], NULL, mgpu_atomic_main, &a[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	igt_info("EBUSY retries: %ld, %ld\n", a[0].busy, a[1].busy);
	igt_assert_eq(a[0].errors + a[1].errors, 0);
	for (int i = 0; i < 2; i++) {
		for (int j = 0; j < MGPU_ATOMICS; j++) {
			igt_assert(a[i].olds[j] < 2 * MGPU_ATOMICS);
			igt_assert_eq(seen[a[i].olds[j]]++, 0);
		}
	}

	/* GPU0 with advice for GPU1's memory: the atomic runs there, over the link. */
	pfd1 = svm_devmem_open(g[1]);
	igt_assert(pfd1 >= 0);
	igt_assert_eq(svm_madvise(g[0], v[0], DRM_VGPU_LOCATION_PAGEMAP, p, PAGE, pfd1), 0);
	igt_assert_eq(svm_atomic(g[0], v[0], ADD, p + 8, 1, &old), 0);
	igt_assert_eq(old, 0);
	assert_residency(g[1], p, PAGE, 0, 1, 0, 0);
	assert_residency(g[0], p, PAGE, 0, 0, 1, 0);
	alarm(0);
	igt_assert_eq(w[0], 2 * MGPU_ATOMICS);
	igt_assert_eq(w[1], 2 * MGPU_ATOMICS);
	igt_assert_eq(w[2], 1);
	igt_assert_eq(w[3], 0);
	close(pfd1);
	return IGT_PASS;
}

/*
 * System advice on data in the memory of a GPU outside the group: the fault brings it back to
 * system memory first (the GPU cannot reach it in place).
 */
static enum igt_result mgpu_unlinked_system(void)
{
	size_t size = 4 * SZ_64K, n = size / PAGE;
	uint8_t *p = svm_map(size, SZ_64K, 0, MAP_PRIVATE), *buf = svm_buf(size);
	struct drm_vgpu_stats a2, b2;
	uint32_t v0, v2;
	int g0, g2;

	OPEN_GPU0(g0);
	NEED_UNLINKED(g2, g0);
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(g0, &v0), 0);
	igt_assert_eq(svm_vm_create(g2, &v2), 0);
	fill(p, size, 230);
	fill(buf, size, 231);
	igt_assert_eq(svm_access(g2, v2, GPU_WRITE, p, size, buf, NULL), 0);
	assert_residency(g2, p, size, 0, n, 0, 0);
	assert_residency(g0, p, size, 0, 0, 0, n);

	igt_assert_eq(svm_madvise(g0, v0, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	a2 = stats(g2);
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g0, v0, GPU_READ, p, size, buf, NULL), 0);
	b2 = stats(g2);
	igt_assert_eq(check(buf, size, 231), -1);
	igt_assert(DELTA(a2, b2, pages_to_system) >= (long long)n);
	assert_residency(g0, p, size, n, 0, 0, 0);
	assert_residency(g2, p, size, n, 0, 0, 0);

	/* The default advice then moves it into GPU0's memory, invisible to GPU2. */
	igt_assert_eq(svm_madvise(g0, v0, DRM_VGPU_LOCATION_DEFAULT, p, size, 0), 0);
	igt_assert_eq(svm_prefetch(g0, v0, p, size), 0);
	assert_residency(g0, p, size, 0, n, 0, 0);
	assert_residency(g2, p, size, 0, 0, 0, n);
	/* GPU2 reads it: back through system memory, into its own. */
	memset(buf, 0, size);
	igt_assert_eq(svm_access(g2, v2, GPU_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 231), -1);
	assert_residency(g2, p, size, 0, n, 0, 0);
	igt_assert_eq(check(p, size, 231), -1);
	return IGT_PASS;
}

/* Advice naming memory outside the group (ENOLINK) changes nothing. */
static enum igt_result mgpu_madvise_refusals(void)
{
	size_t size = 4 * PAGE;
	uint8_t *p = svm_map(size, PAGE, 0, MAP_PRIVATE);
	uint32_t id;
	int g0, g1, g2, pfd1, pfd2;

	OPEN_GPU0(g0);
	NEED_LINKED(g1, g0);
	NEED_UNLINKED(g2, g0);
	igt_assert(p);
	memset(p, 5, size);
	pfd1 = svm_devmem_open(g1);
	pfd2 = svm_devmem_open(g2);
	igt_assert(pfd1 >= 0 && pfd2 >= 0);
	igt_assert_eq(svm_vm_create(g0, &id), 0);
	igt_assert_errno(svm_madvise(g0, id, DRM_VGPU_LOCATION_PAGEMAP, p, size, pfd2), ENOLINK);
	/* The default still holds: own memory. */
	igt_assert_eq(svm_prefetch(g0, id, p, size), 0);
	assert_residency(g0, p, size, 0, size / PAGE, 0, 0);
	/* The linked GPU's memory is accepted, and the refusal did not stick. */
	igt_assert_eq(svm_madvise(g0, id, DRM_VGPU_LOCATION_PAGEMAP, p, size, pfd1), 0);
	igt_assert_errno(svm_madvise(g0, id, DRM_VGPU_LOCATION_PAGEMAP, p, PAGE, pfd2), ENOLINK);
	igt_assert_eq(svm_prefetch(g0, id, p, size), 0);
	assert_residency(g0, p, size, 0, 0, size / PAGE, 0);
	assert_residency(g1, p, size, 0, size / PAGE, 0, 0);
	igt_assert_eq(check_byte(p, size, 5), -1);
	igt_assert_eq(svm_vm_destroy(g0, id), 0);
	close(pfd1);
	close(pfd2);
	return IGT_PASS;
}

static const struct igt_subtest tests[] = {
	{ "malloc", malloc_buffer },
	{ "mmap", mmap_buffer },
	{ "stack", stack_buffer },
	{ "mmap-huge", mmap_huge },
	{ "mmap-nomemset", mmap_nomemset },
	{ "range-sizes", range_sizes },
	{ "mmap-free", mmap_free },
	{ "partial-middle-munmap", partial_middle_munmap },
	{ "mmap-remap", mmap_remap },
	{ "mmap-remap-dontunmap", mmap_remap_dontunmap },
	{ "mmap-read-only", mmap_read_only },
	{ "mmap-shared-file", mmap_shared_file },
	{ "fork-cow", fork_cow },
	{ "threads-shared-vm", threads_shared_vm },
	{ "threads-own-vm", threads_own_vm },
	{ "processes", processes },
	{ "two-vms-one-buffer", two_vms_one_buffer },
	{ "cpu-gpu-ping-pong", cpu_gpu_ping_pong },
	{ "cpu-gpu-ping-pong-system", cpu_gpu_ping_pong_system },
	{ "atomic", atomic_basic },
	{ "atomic-bad", atomic_bad },
	{ "atomic-vs-cpu-writes", atomic_vs_cpu_writes },
	{ "advice-system", advice_system },
	{ "advice-system-after-local", advice_system_after_local },
	{ "advice-own-pagemap", advice_own_pagemap },
	{ "advice-splits-ranges", advice_splits_ranges },
	{ "prefetch", prefetch },
	{ "prefetch-bad", prefetch_bad },
	{ "madvise-bad", madvise_bad },
	{ "madvise-too-many", madvise_too_many },
	{ "residency-bad", residency_bad },
	{ "residency-huge", residency_huge },
	{ "residency-mixed", residency_mixed },
	{ "unmapped-access", unmapped_access },
	{ "vram-full-fallback", vram_full_fallback },
	{ "vm-destroy-keeps-data", vm_destroy_keeps_data },
	{ "mgpu-peer-advice", mgpu_peer_advice },
	{ "mgpu-migration", mgpu_migration },
	{ "mgpu-atomic", mgpu_atomic },
	{ "mgpu-unlinked-system", mgpu_unlinked_system },
	{ "mgpu-madvise-refusals", mgpu_madvise_refusals },
};

IGT_MAIN(tests)
