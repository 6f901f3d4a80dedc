// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu_stress: threads racing migrations (to either GPU and back), CPU faults, GPU reads
 * and writes through GPU VMs, and evictions over one shared buffer with huge and base
 * pages. Each thread owns a block of the buffer and is its only writer, so it always knows
 * what every byte of its block must hold; migrations and evictions cross the blocks, which
 * is what races. Every read, by CPU or GPU, is checked; at the end the device memory must
 * be back to free.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "igt.h"
#include "vgpu_util.h"

#define THREADS 4
#define BLOCK (1 * MIB)			/* per thread */
#define SIZE (THREADS * BLOCK)
/* How long the threads race; VGPU_STRESS_SECONDS overrides (`make stress`). */
static int seconds = 4;

static uint8_t *buf;
static uint32_t vm0, vm1;

struct worker {
	int id;
	unsigned int seed;
	uint8_t version;		/* what the block's pattern is seeded with now */
	long ops, errors;
	char why[160];
};

static uint8_t *block(struct worker *w)
{
	return buf + (size_t)w->id * BLOCK;
}

static unsigned int rnd(struct worker *w, unsigned int n)
{
	return (unsigned int)rand_r(&w->seed) % n;
}

static int vm_access(int f, uint32_t id, uint32_t op, void *start, size_t size, void *data)
{
	struct drm_vgpu_vm_access a = {
		.vm_id = id, .op = op, .start = (uintptr_t)start, .size = size,
		.data = (uintptr_t)data,
	};

	return ioctl(f, DRM_IOCTL_VGPU_VM_ACCESS, &a);
}

static void fail(struct worker *w, const char *what, long detail)
{
	if (!w->errors++)
		snprintf(w->why, sizeof(w->why), "thread %d: %s (%ld, errno %d)", w->id, what,
			 detail, errno);
}

/* A random page-aligned range anywhere in the buffer, up to 2 MiB. */
static void any_range(struct worker *w, uint8_t **p, size_t *len)
{
	size_t pages = 1 + rnd(w, 512);
	size_t first = rnd(w, SIZE / PAGE);

	if (first + pages > SIZE / PAGE)
		pages = SIZE / PAGE - first;
	*p = buf + first * PAGE;
	*len = pages * PAGE;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	uint8_t *mine = block(w), *tmp = malloc(BLOCK);
	time_t end = time(NULL) + seconds;
	struct drm_vgpu_evict ev = { 0 };
	long bad;

	if (!tmp) {
		fail(w, "malloc", 0);
		return NULL;
	}
	while (time(NULL) < end && !w->errors) {
		uint8_t *p;
		size_t len;
		int f = rnd(w, 2) && fd1 >= 0 ? fd1 : fd;

		w->ops++;
		switch (rnd(w, 8)) {
		case 0: /* to a GPU: racing is fine, losing data is not */
			any_range(w, &p, &len);
			if (migrate(f, p, len, DRM_VGPU_MIGRATE_TO_DEVICE) &&
			    errno != EBUSY && errno != ENOMEM)
				fail(w, "migrate to device", (long)len);
			break;
		case 1: /* back */
			any_range(w, &p, &len);
			if (migrate(f, p, len, DRM_VGPU_MIGRATE_TO_SYSTEM) && errno != EBUSY)
				fail(w, "migrate to system", (long)len);
			break;
		case 2: /* CPU reads the block (faulting pages home) */
			bad = check(mine, BLOCK, w->version);
			if (bad != -1)
				fail(w, "CPU read", bad);
			break;
		case 3: /* CPU rewrites the block */
			w->version++;
			fill(mine, BLOCK, w->version);
			break;
		case 4: /* a GPU reads the block */
			if (vm_access(f, f == fd ? vm0 : vm1, DRM_VGPU_VM_READ, mine, BLOCK, tmp)) {
				if (errno != EBUSY)
					fail(w, "GPU read", 0);
				break;
			}
			bad = check(tmp, BLOCK, w->version);
			if (bad != -1)
				fail(w, "GPU read data", bad);
			break;
		case 5: /* a GPU rewrites the block */
			fill(tmp, BLOCK, (uint8_t)(w->version + 1));
			if (vm_access(f, f == fd ? vm0 : vm1, DRM_VGPU_VM_WRITE, mine, BLOCK, tmp)) {
				if (errno != EBUSY)
					fail(w, "GPU write", 0);
				/* Part of it may have been written: rewrite it all by CPU. */
				fill(mine, BLOCK, w->version);
				break;
			}
			w->version++;
			break;
		case 6: /* the driver wants its memory back */
			if (rnd(w, 4) == 0 && ioctl(f, DRM_IOCTL_VGPU_EVICT, &ev) && errno != EBUSY)
				fail(w, "evict", 0);
			break;
		default: /* a single CPU byte write in the middle, then put it back */
			len = rnd(w, BLOCK);
			mine[len] ^= 0x5a;
			mine[len] ^= 0x5a;
			break;
		}
	}
	if (!w->errors) {
		bad = check(mine, BLOCK, w->version);
		if (bad != -1)
			fail(w, "final CPU read", bad);
	}
	free(tmp);
	return NULL;
}

static enum igt_result race(void)
{
	struct drm_vgpu_vm_create c = { 0 };
	struct worker w[THREADS];
	pthread_t t[THREADS];
	uint64_t free0, free1 = 0;
	uint8_t *raw;
	long ops = 0;

	if (fd < 0)
		igt_skip("no vgpu0");
	free0 = vram_free(fd);
	if (fd1 >= 0)
		free1 = vram_free(fd1);
	/* 2 MiB aligned, huge pages where the kernel gives them. */
	raw = map_anon(SIZE + 2 * MIB);
	igt_assert(raw);
	buf = (uint8_t *)(((uintptr_t)raw + 2 * MIB - 1) & ~(2 * MIB - 1));
	igt_assert_eq(madvise(buf, SIZE, MADV_HUGEPAGE), 0);
	igt_assert_eq(ioctl(fd, DRM_IOCTL_VGPU_VM_CREATE, &c), 0);
	vm0 = c.vm_id;
	if (fd1 >= 0) {
		igt_assert_eq(ioctl(fd1, DRM_IOCTL_VGPU_VM_CREATE, &c), 0);
		vm1 = c.vm_id;
	}
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .id = i, .seed = 1234u + i, .version = (uint8_t)(40 + i) };
		fill(block(&w[i]), BLOCK, w[i].version);
	}
	for (int i = 0; i < THREADS; i++)
		igt_assert_eq(pthread_create(&t[i], NULL, run, &w[i]), 0);
	for (int i = 0; i < THREADS; i++)
		igt_assert_eq(pthread_join(t[i], NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		if (w[i].errors)
			igt_info("%s\n", w[i].why);
		igt_assert_eq(w[i].errors, 0);
		ops += w[i].ops;
	}
	igt_info("%ld operations by %d threads in %d s\n", ops, THREADS, seconds);
	munmap(raw, SIZE + 2 * MIB);
	/* Nothing leaked: every allocation was released. */
	for (int i = 0; i < 200 && vram_free(fd) != free0; i++)
		usleep(10000);
	igt_assert_eq(vram_free(fd), free0);
	if (fd1 >= 0) {
		for (int i = 0; i < 200 && vram_free(fd1) != free1; i++)
			usleep(10000);
		igt_assert_eq(vram_free(fd1), free1);
	}
	return IGT_PASS;
}

static const struct igt_subtest tests[] = {
	{ "race", race },
};

int main(int argc, char **argv)
{
	const char *env = getenv("VGPU_STRESS_SECONDS");

	if (env && atoi(env) > 0)
		seconds = atoi(env);
	open_nodes();
	return igt_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
