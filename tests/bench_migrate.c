// SPDX-License-Identifier: GPL-2.0
/*
 * bench_migrate: migration throughput of vgpu (our drm_pagemap stack) and of the kernel's
 * test_hmm (the C reference driver), side by side in one boot, against a plain memcpy of the
 * same size (one copy of every byte: the physical limit of a migration).
 *
 * For each size (2, 16, 64 MiB) and with and without transparent huge pages: a warm-up
 * round trip, then ROUNDS timed migrations each way through each driver's migrate ioctls
 * (vgpu: DRM_IOCTL_VGPU_MIGRATE; test_hmm: HMM_DMIRROR_MIGRATE_TO_DEV/TO_SYS), averaged.
 * Every round trip's data is checked, so a fast wrong answer cannot win.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <drm/drm.h>
#include "vgpu_drm.h"
#include "vgpu_node.h"
#include "test_hmm_uapi.h"

#define MIB (1UL << 20)
#define PAGE 4096UL
/* Enough rounds that each measurement spans many ticks of the VM's coarse clock. */
#define ROUNDS(size) ((size) >= 64 * MIB ? 4 : (int)(128 * MIB / (size)))

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int vgpu_fd(void)
{
	char path[64];
	int cursor = 0;

	return vgpu_node_next(&cursor, path, sizeof(path));
}

static uint64_t vgpu_free(int fd)
{
	struct drm_vgpu_query_device d;
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_DEVICE, .size = sizeof(d), .data = (uintptr_t)&d,
	};

	return ioctl(fd, DRM_IOCTL_VGPU_QUERY, &q) ? 0 : d.vram_free;
}

struct driver {
	const char *name;
	int fd;
	int (*to_dev)(int fd, void *p, size_t size);
	int (*to_sys)(int fd, void *p, size_t size);
	void (*settle)(int fd);
};

static int vgpu_migrate(int fd, void *p, size_t size, uint32_t target)
{
	struct drm_vgpu_migrate m = { .start = (uintptr_t)p, .size = size, .target = target };

	return ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m);
}

static int vgpu_to_dev(int fd, void *p, size_t size)
{
	return vgpu_migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE);
}

static int vgpu_to_sys(int fd, void *p, size_t size)
{
	return vgpu_migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_SYSTEM);
}

/* Device memory comes back from a work item after migrating out: wait, untimed. */
static void vgpu_settle(int fd)
{
	uint64_t last = 0;

	for (int i = 0; i < 500; i++) {
		uint64_t f = vgpu_free(fd);

		if (f == last)
			return;
		last = f;
		usleep(2000);
	}
}

/* test_hmm copies the migrated data back into a mirror buffer of the same size. */
static uint8_t *hmm_mirror;

static int hmm_cmd(int fd, unsigned long req, void *p, size_t size)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)p, .ptr = (uintptr_t)hmm_mirror, .npages = size / PAGE,
	};

	return ioctl(fd, req, &cmd);
}

static int hmm_to_dev(int fd, void *p, size_t size)
{
	return hmm_cmd(fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, size);
}

static int hmm_to_sys(int fd, void *p, size_t size)
{
	return hmm_cmd(fd, HMM_DMIRROR_MIGRATE_TO_SYS, p, size);
}

static void no_settle(int fd)
{
	(void)fd;
}

/* A 2 MiB aligned buffer with or without huge pages, filled (so every page exists). */
static uint8_t *buffer(size_t size, int thp, uint8_t **raw)
{
	uint8_t *p;

	*raw = mmap(NULL, size + 2 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	if (*raw == MAP_FAILED)
		return NULL;
	p = (uint8_t *)(((uintptr_t)*raw + 2 * MIB - 1) & ~(2 * MIB - 1));
	madvise(p, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	for (size_t i = 0; i < size; i++)
		p[i] = (uint8_t)(i * 7 + (i >> 12));
	return p;
}

static int intact(const uint8_t *p, size_t size)
{
	for (size_t i = 0; i < size; i++)
		if (p[i] != (uint8_t)(i * 7 + (i >> 12)))
			return 0;
	return 1;
}

/* Average GB/s each way, or negative on failure. */
static int run(struct driver *d, size_t size, int thp, double *to_dev, double *to_sys)
{
	uint8_t *raw, *p = buffer(size, thp, &raw);
	double t_dev = 0, t_sys = 0;
	int ret = -1;

	if (!p)
		return -1;
	if (d->to_dev(d->fd, p, size) || d->to_sys(d->fd, p, size)) {
		printf("# %s: warm-up failed, errno %d\n", d->name, errno);
		goto out;
	}
	d->settle(d->fd);
	for (int i = 0; i < ROUNDS(size); i++) {
		double t0 = now_ms(), t1, t2;

		if (d->to_dev(d->fd, p, size))
			goto out;
		t1 = now_ms();
		if (d->to_sys(d->fd, p, size))
			goto out;
		t2 = now_ms();
		t_dev += t1 - t0;
		t_sys += t2 - t1;
		d->settle(d->fd);
	}
	if (!intact(p, size)) {
		printf("# %s: data corrupted after migrations\n", d->name);
		goto out;
	}
	*to_dev = size / 1e9 / (t_dev / ROUNDS(size) / 1e3);
	*to_sys = size / 1e9 / (t_sys / ROUNDS(size) / 1e3);
	ret = 0;
out:
	munmap(raw, size + 2 * MIB);
	return ret;
}

static double memcpy_gbps(size_t size)
{
	uint8_t *a = malloc(size), *b = malloc(size);
	double t0, t;
	int n = 0;

	if (!a || !b)
		return 0;
	memset(a, 1, size);
	memset(b, 2, size);
	t0 = now_ms();
	do {
		memcpy(b, a, size);
		a[n % size] = b[size - 1 - n % size];	/* keep each copy observable */
		n++;
		t = now_ms() - t0;
	} while (t < 200 || n < 4);
	free(a);
	free(b);
	return (double)size * n / 1e9 / (t / 1e3);
}

int main(void)
{
	size_t sizes[] = { 2 * MIB, 16 * MIB, 64 * MIB };
	struct driver ours = { "vgpu", vgpu_fd(), vgpu_to_dev, vgpu_to_sys, vgpu_settle };
	struct driver ref = { "test_hmm", open("/dev/hmm_dmirror0", O_RDWR | O_CLOEXEC),
			      hmm_to_dev, hmm_to_sys, no_settle };
	int failed = 0;

	hmm_mirror = malloc(64 * MIB);
	if (ours.fd < 0 || ref.fd < 0 || !hmm_mirror) {
		printf("bench: needs vgpu and test_hmm loaded (vgpu %d, test_hmm %d)\n",
		       ours.fd, ref.fd);
		return 1;
	}
	printf("SVM-BENCH-BEGIN\n");
	printf("| size | THP | direction | vgpu GB/s | test_hmm GB/s | memcpy GB/s | vgpu/test_hmm | vgpu/memcpy | test_hmm/memcpy |\n");
	printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
	for (unsigned int s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		double mc = memcpy_gbps(sizes[s]);

		for (int thp = 1; thp >= 0; thp--) {
			double od = 0, os = 0, rd = 0, rs = 0;

			if (run(&ours, sizes[s], thp, &od, &os)) {
				printf("| %zu MiB | %s | vgpu failed: errno %d |\n", sizes[s] / MIB,
				       thp ? "yes" : "no", errno);
				failed = 1;
				continue;
			}
			if (run(&ref, sizes[s], thp, &rd, &rs)) {
				printf("| %zu MiB | %s | test_hmm failed: errno %d |\n", sizes[s] / MIB,
				       thp ? "yes" : "no", errno);
				failed = 1;
				continue;
			}
			printf("| %zu MiB | %s | RAM->device | %.3f | %.3f | %.3f | %.2f | %.2f | %.2f |\n",
			       sizes[s] / MIB, thp ? "yes" : "no", od, rd, mc, od / rd, od / mc, rd / mc);
			printf("| %zu MiB | %s | device->RAM | %.3f | %.3f | %.3f | %.2f | %.2f | %.2f |\n",
			       sizes[s] / MIB, thp ? "yes" : "no", os, rs, mc, os / rs, os / mc, rs / mc);
			fflush(stdout);
		}
	}
	printf("SVM-BENCH-END\n");
	return failed;
}
