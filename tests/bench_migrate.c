// SPDX-License-Identifier: GPL-2.0
/*
 * bench_migrate: migration throughput of vgpu (our drm_pagemap stack) and of the kernel's
 * test_hmm (the C reference driver), side by side in one boot, against a plain memcpy of the
 * same size into pages already faulted in (one copy of every byte: the real ceiling of a
 * migration).
 *
 * For each size (2, 16, 64, 256 MiB) and with and without transparent huge pages, after a
 * warm-up round trip: REPS samples, vgpu's and test_hmm's interleaved so that both see the
 * same state of the host. A sample times ROUNDS migrations each way through each driver's
 * migrate ioctls (vgpu: DRM_IOCTL_VGPU_MIGRATE; test_hmm: HMM_DMIRROR_MIGRATE_TO_DEV/TO_SYS)
 * and ROUNDS migrations back by CPU faults (every page touched after a migration to the
 * device). Each row shows the median and the range of the samples; ratios are of medians.
 * Every round trip's data is checked, so a fast wrong answer cannot win.
 *
 * Then device to device (vgpu loaded with 3 GPUs, 0 and 1 linked): 2, 16 and 64 MiB moved
 * GPU0 -> GPU1 straight over the link and GPU0 -> GPU2 through system memory.
 *
 * First, GPU fault service time: a GPU read of one page that misses in the GPU page table, less
 * the same read once it hits, for a 4 KiB and a 2 MiB SVM range, with the data left in system
 * memory (advice: system; the fault maps it) and moved into the GPU's memory (the default
 * advice), beside one memcpy of the range's size into pages already faulted in. Each sample
 * checks where its range ended up, so a fault that left the data elsewhere fails the table.
 *
 * `make bench` runs this on the bench kernel: the test kernel without its detectors (KASAN,
 * kmemleak, lockdep), which would otherwise be most of what is timed.
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
/* Samples per row, and migrations per sample (at least 64 MiB moved each way per sample). */
#define REPS 5
#define ROUNDS(size) ((size) >= 64 * MIB ? 1 : (int)(64 * MIB / (size)))
#define MAX_SIZE (256 * MIB)

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

static struct drm_vgpu_query_device vgpu_query(int fd)
{
	struct drm_vgpu_query_device d = { 0 };
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_DEVICE, .size = sizeof(d), .data = (uintptr_t)&d,
	};

	ioctl(fd, DRM_IOCTL_VGPU_QUERY, &q);
	return d;
}

static uint64_t vgpu_free(int fd)
{
	return vgpu_query(fd).vram_free;
}

static uint64_t vgpu_size(int fd)
{
	return vgpu_query(fd).vram_size;
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

/*
 * Device memory comes back from a work item after migrating out: wait, untimed and bounded
 * (5 s), until all of it is free again (the bench is the GPU's only user).
 */
static void vgpu_settle(int fd)
{
	for (int i = 0; i < 2500 && vgpu_free(fd) != vgpu_size(fd); i++)
		usleep(2000);
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

/* One sample of a driver: GB/s to the device, back by ioctl, back by CPU faults. */
struct sample {
	double to_dev, to_sys, fault;
};

/* Reads one byte of every page: each read of a device page migrates it back. */
static void touch(const uint8_t *p, size_t size)
{
	volatile uint8_t sink = 0;

	for (size_t i = 0; i < size; i += PAGE)
		sink ^= p[i];
	(void)sink;
}

/* Times one sample over the buffer `p`; 0, or -1 on failure. */
static int sample(struct driver *d, uint8_t *p, size_t size, struct sample *s)
{
	double t_dev = 0, t_sys = 0, t_fault = 0;
	int rounds = ROUNDS(size);

	for (int i = 0; i < rounds; i++) {
		double t0 = now_ms(), t1, t2, t3;

		if (d->to_dev(d->fd, p, size))
			return -1;
		t1 = now_ms();
		if (d->to_sys(d->fd, p, size))
			return -1;
		t2 = now_ms();
		d->settle(d->fd);
		if (d->to_dev(d->fd, p, size))
			return -1;
		t3 = now_ms();
		touch(p, size);
		t_fault += now_ms() - t3;
		t_dev += t1 - t0;
		t_sys += t2 - t1;
		d->settle(d->fd);
	}
	if (!intact(p, size)) {
		printf("# %s: data corrupted after migrations\n", d->name);
		return -1;
	}
	s->to_dev = size / 1e9 * rounds / (t_dev / 1e3);
	s->to_sys = size / 1e9 * rounds / (t_sys / 1e3);
	s->fault = size / 1e9 * rounds / (t_fault / 1e3);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median, min and max of `n` values (sorted in place). */
struct stat3 {
	double med, min, max;
};

static struct stat3 stat3(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return (struct stat3){ n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0], v[n - 1] };
}

/* A copy of `size` bytes into pages already faulted in: the ceiling of a migration. */
static double memcpy_gbps(size_t size)
{
	uint8_t *a = malloc(size), *b = malloc(size);
	double t0, t;
	int n = 0;

	if (!a || !b) {
		free(a);
		free(b);
		return 0;
	}
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

/* The vgpu node of GPU `index`, or -1. */
static int vgpu_fd_of(int index)
{
	char path[64];
	int cursor = 0, f;

	while ((f = vgpu_node_next(&cursor, path, sizeof(path))) >= 0) {
		if ((int)vgpu_query(f).index == index)
			return f;
		close(f);
	}
	return -1;
}

/*
 * One device-to-device sample: ROUNDS moves of the buffer (resident on `src`) into `dst` by
 * `dst`'s own migrate ioctl, timed; moved back untimed. GB/s into `out`; 0 or -1.
 */
static int d2d_sample(int src, int dst, uint8_t *p, size_t size, double *out)
{
	int rounds = ROUNDS(size);
	double t = 0;

	for (int i = 0; i < rounds; i++) {
		double t0;

		if (vgpu_to_dev(src, p, size))
			return -1;
		vgpu_settle(dst);
		t0 = now_ms();
		if (vgpu_to_dev(dst, p, size))
			return -1;
		t += now_ms() - t0;
		if (vgpu_to_sys(dst, p, size))
			return -1;
		vgpu_settle(src);
		vgpu_settle(dst);
	}
	if (!intact(p, size)) {
		printf("# device to device: data corrupted\n");
		return -1;
	}
	*out = size / 1e9 * rounds / (t / 1e3);
	return 0;
}

/*
 * Device to device, with vgpu loaded as num_devices=3 links=0-1: GPU0 -> GPU1 straight over
 * their link, GPU0 -> GPU2 (no link) through system memory, samples interleaved.
 */
static int d2d_table(void)
{
	size_t sizes[] = { 2 * MIB, 16 * MIB, 64 * MIB };
	int g0 = vgpu_fd_of(0), g1 = vgpu_fd_of(1), g2 = vgpu_fd_of(2), failed = 0;

	if (g0 < 0 || g1 < 0 || g2 < 0) {
		printf("device to device: needs 3 GPUs (num_devices=3 links=0-1)\n");
		return 1;
	}
	printf("\nDevice to device (GPU0 -> GPU1 linked: direct; GPU0 -> GPU2 not linked: through "
	       "system memory). GB/s: median (min-max) of %d samples, interleaved.\n\n", REPS);
	printf("| size | THP | direct GB/s | through RAM GB/s | direct/through RAM |\n");
	printf("| --- | --- | --- | --- | --- |\n");
	for (unsigned int s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (int thp = 1; thp >= 0; thp--) {
			size_t size = sizes[s];
			uint8_t *raw, *p = buffer(size, thp, &raw);
			double direct[REPS], bounce[REPS];
			int i;

			if (!p) {
				failed = 1;
				continue;
			}
			for (i = 0; i < REPS; i++)
				if (d2d_sample(g0, g1, p, size, &direct[i]) ||
				    d2d_sample(g0, g2, p, size, &bounce[i]))
					break;
			if (i < REPS) {
				printf("| %zu MiB | %s | failed: errno %d |\n", size / MIB,
				       thp ? "yes" : "no", errno);
				failed = 1;
			} else {
				struct stat3 d = stat3(direct, REPS), b = stat3(bounce, REPS);

				printf("| %zu MiB | %s | %.3f (%.3f-%.3f) | %.3f (%.3f-%.3f) | %.2f |\n",
				       size / MIB, thp ? "yes" : "no", d.med, d.min, d.max, b.med,
				       b.min, b.max, d.med / b.med);
			}
			fflush(stdout);
			munmap(raw, size + 2 * MIB);
		}
	}
	return failed;
}

/* Samples of the fault table, interleaved across its rows. */
#define FAULT_REPS 9

/* One GPU read of the page at `p` through VM `id`; its time in microseconds, or < 0. */
static double vm_read_us(int fd, uint32_t id, uint8_t *p, uint8_t *dst, uint64_t *faults)
{
	struct drm_vgpu_vm_access a = {
		.vm_id = id, .op = DRM_VGPU_VM_READ, .start = (uintptr_t)p, .size = 4096,
		.data = (uintptr_t)dst,
	};
	double t0 = now_ms();

	if (ioctl(fd, DRM_IOCTL_VGPU_VM_ACCESS, &a))
		return -1;
	*faults = a.faults;
	return (now_ms() - t0) * 1e3;
}

/*
 * One fault sample: a fresh, CPU-filled range of `size` bytes (4 KiB: a one-page mapping; 2
 * MiB: the aligned middle of a 6 MiB mapping, a transparent huge page), the GPU's first read
 * of its first page (a miss: the fault creates the range, places it, maps it) less its second
 * (a hit). Returns the fault's microseconds, or < 0 (EPROTO: the data read back, or where the
 * range ended up, is not what the row says).
 */
static double fault_sample(int fd, uint32_t id, size_t size, int device, uint8_t *dst,
			   struct drm_vgpu_residency *where)
{
	size_t len = size == 4096 ? 3 * 4096 : 6 * MIB;
	uint8_t *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *p;
	uint64_t f1 = 0, f2 = 0;
	double miss, hit = -1;

	if (raw == MAP_FAILED)
		return -1;
	if (size == 4096) {
		/* Guards on both sides: the mapping, so the range, is one page. */
		p = raw + 4096;
		mprotect(raw, 4096, PROT_NONE);
		mprotect(p + 4096, 4096, PROT_NONE);
	} else {
		p = (uint8_t *)(((uintptr_t)raw + 2 * MIB - 1) & ~(2 * MIB - 1));
		madvise(p, size, MADV_HUGEPAGE);
	}
	memset(p, 0x5a, size);
	/*
	 * Advice stands on the VM's addresses, not on the mapping: this mapping may sit where a
	 * sample of another row advised otherwise, so each sample says what it wants.
	 */
	struct drm_vgpu_vm_madvise m = {
		.vm_id = id, .start = (uintptr_t)p, .size = size,
		.location = device ? DRM_VGPU_LOCATION_DEFAULT : DRM_VGPU_LOCATION_SYSTEM,
	};

	if (ioctl(fd, DRM_IOCTL_VGPU_VM_MADVISE, &m))
		goto out;
	miss = vm_read_us(fd, id, p, dst, &f1);
	if (miss >= 0)
		hit = vm_read_us(fd, id, p, dst, &f2);
	if (hit >= 0 && (f1 != 1 || f2 != 0 || dst[0] != 0x5a || dst[4095] != 0x5a))
		hit = -1, errno = EPROTO;
	/* The row measured what it says only if the range is where it says. */
	if (hit >= 0) {
		*where = (struct drm_vgpu_residency){ .start = (uintptr_t)p, .size = size };
		if (ioctl(fd, DRM_IOCTL_VGPU_RESIDENCY, where))
			hit = -1;
		else if ((device ? where->local : where->system) != size / 4096)
			hit = -1, errno = EPROTO;
	}
	/* A hit can take as long as a cheap miss: never below zero. */
	if (hit >= 0)
		hit = miss > hit ? miss - hit : 0;
out:
	munmap(raw, len);
	return hit;
}

/* The fault-service table (vgpu's GPU0). */
static int fault_table(int fd)
{
	static const struct { size_t size; int device; const char *what; } rows[] = {
		{ 4096, 0, "4 KiB | system (map only)" },
		{ 4096, 1, "4 KiB | to device memory" },
		{ 2 * MIB, 0, "2 MiB | system (map only)" },
		{ 2 * MIB, 1, "2 MiB | to device memory" },
	};
	enum { ROWS = sizeof(rows) / sizeof(rows[0]) };
	double us[ROWS][FAULT_REPS], copy[2][FAULT_REPS];
	struct drm_vgpu_vm_create c = { 0 };
	uint8_t *dst = malloc(4096);
	int failed = 0;

	if (!dst || ioctl(fd, DRM_IOCTL_VGPU_VM_CREATE, &c)) {
		printf("fault service: no VM (errno %d)\n", errno);
		free(dst);
		return 1;
	}
	for (int i = 0; i < FAULT_REPS && !failed; i++) {
		for (int r = 0; r < ROWS && !failed; r++) {
			struct drm_vgpu_residency w = { 0 };

			us[r][i] = fault_sample(fd, c.vm_id, rows[r].size, rows[r].device, dst, &w);
			if (us[r][i] < 0) {
				printf("fault service: %s failed: errno %d (pages: %llu system, %llu "
				       "local, %llu peer, %llu none)\n", rows[r].what, errno,
				       (unsigned long long)w.system, (unsigned long long)w.local,
				       (unsigned long long)w.peer, (unsigned long long)w.none);
				failed = 1;
			}
		}
		copy[0][i] = 4096 / (memcpy_gbps(4096) * 1e3);
		copy[1][i] = 2 * MIB / (memcpy_gbps(2 * MIB) * 1e3);
	}
	if (failed)
		goto out;
	printf("GPU fault service (GPU0): from a GPU read that misses in the GPU page table to the "
	       "range mapped, in microseconds (the miss less the same read once it hits): median "
	       "(min-max) of %d samples, rows interleaved; beside one memcpy of the range's size "
	       "into pages already faulted in.\n\n", FAULT_REPS);
	printf("| range | data | fault us | one copy us | fault/copy |\n");
	printf("| --- | --- | --- | --- | --- |\n");
	for (int r = 0; r < ROWS; r++) {
		struct stat3 f = stat3(us[r], FAULT_REPS);
		struct stat3 m = stat3(copy[rows[r].size == 4096 ? 0 : 1], FAULT_REPS);

		printf("| %s | %.0f (%.0f-%.0f) | %.1f | %.2f |\n", rows[r].what, f.med, f.min,
		       f.max, m.med, f.med / m.med);
	}
out:
	ioctl(fd, DRM_IOCTL_VGPU_VM_DESTROY, &(struct drm_vgpu_vm_destroy){ .vm_id = c.vm_id });
	free(dst);
	return failed;
}

/* Prints one row: vgpu's and test_hmm's samples of one direction, and the ceiling. */
static void row(size_t size, int thp, const char *dir, double *ours, double *ref, double mc)
{
	struct stat3 o = stat3(ours, REPS), r = stat3(ref, REPS);

	printf("| %zu MiB | %s | %s | %.3f (%.3f-%.3f) | %.3f (%.3f-%.3f) | %.3f | %.2f | %.2f | %.2f |\n",
	       size / MIB, thp ? "yes" : "no", dir, o.med, o.min, o.max, r.med, r.min, r.max, mc,
	       o.med / r.med, o.med / mc, r.med / mc);
}

int main(int argc, char **argv)
{
	size_t sizes[] = { 2 * MIB, 16 * MIB, 64 * MIB, 256 * MIB };
	struct driver ours = { "vgpu", vgpu_fd(), vgpu_to_dev, vgpu_to_sys, vgpu_settle };
	struct driver ref = { "test_hmm", open("/dev/hmm_dmirror0", O_RDWR | O_CLOEXEC),
			      hmm_to_dev, hmm_to_sys, no_settle };
	int failed = 0;

	hmm_mirror = malloc(MAX_SIZE);
	if (ours.fd < 0 || ref.fd < 0 || !hmm_mirror) {
		printf("bench: needs vgpu and test_hmm loaded (vgpu %d, test_hmm %d)\n",
		       ours.fd, ref.fd);
		return 1;
	}
	printf("SVM-BENCH-BEGIN\n");
	/* First, while the VM's memory is fresh (later tables leave it fragmented). */
	failed |= fault_table(ours.fd);
	/* `bench_migrate fault`: that table only. */
	if (argc > 1 && !strcmp(argv[1], "fault")) {
		printf("SVM-BENCH-END\n");
		return failed;
	}
	printf("\n");
	printf("GB/s: median (min-max) of %d samples, vgpu's and test_hmm's interleaved; "
	       "ratios of medians; memcpy into faulted-in pages is the ceiling.\n\n", REPS);
	printf("| size | THP | direction | vgpu GB/s | test_hmm GB/s | memcpy GB/s | vgpu/test_hmm | vgpu/memcpy | test_hmm/memcpy |\n");
	printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
	for (unsigned int s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		size_t size = sizes[s];

		for (int thp = 1; thp >= 0; thp--) {
			double od[REPS], os[REPS], of[REPS], rd[REPS], rs[REPS], rf[REPS], mc[REPS];
			uint8_t *oraw, *rraw, *op = buffer(size, thp, &oraw), *rp = buffer(size, thp, &rraw);
			struct driver *fail = NULL;
			int err = 0;

			if (!op || !rp) {
				printf("| %zu MiB | %s | no memory for the buffers |\n", size / MIB,
				       thp ? "yes" : "no");
				failed = 1;
				goto next;
			}
			/* Warm-up round trips, untimed. */
			if (ours.to_dev(ours.fd, op, size) || ours.to_sys(ours.fd, op, size))
				fail = &ours, err = errno;
			else if (ref.to_dev(ref.fd, rp, size) || ref.to_sys(ref.fd, rp, size))
				fail = &ref, err = errno;
			ours.settle(ours.fd);
			for (int i = 0; i < REPS && !fail; i++) {
				struct sample so, sr;

				if (sample(&ours, op, size, &so)) {
					fail = &ours, err = errno;
					break;
				}
				if (sample(&ref, rp, size, &sr)) {
					fail = &ref, err = errno;
					break;
				}
				od[i] = so.to_dev, os[i] = so.to_sys, of[i] = so.fault;
				rd[i] = sr.to_dev, rs[i] = sr.to_sys, rf[i] = sr.fault;
				mc[i] = memcpy_gbps(size);
			}
			if (fail) {
				printf("| %zu MiB | %s | %s failed: errno %d |\n", size / MIB,
				       thp ? "yes" : "no", fail->name, err);
				failed = 1;
				goto next;
			}
			double ceiling = stat3(mc, REPS).med;

			row(size, thp, "RAM->device", od, rd, ceiling);
			row(size, thp, "device->RAM (ioctl)", os, rs, ceiling);
			row(size, thp, "device->RAM (CPU fault)", of, rf, ceiling);
			fflush(stdout);
next:
			if (op)
				munmap(oraw, size + 2 * MIB);
			if (rp)
				munmap(rraw, size + 2 * MIB);
		}
	}
	failed |= d2d_table();
	printf("SVM-BENCH-END\n");
	return failed;
}
