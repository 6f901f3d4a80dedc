// SPDX-License-Identifier: GPL-2.0
/*
 * profile_migrate DRIVER SIZE_MIB ROUNDS THP: the workload `make profile` samples. DRIVER is
 * vgpu (the first render node) or test_hmm (/dev/hmm_dmirror0). Each round migrates a
 * SIZE_MIB buffer (transparent huge pages if THP is 1, base pages if 0) to the device and
 * back by ioctl; kprof's events (KPROF_FDS) are enabled around the way back only. Checks the
 * data after each round and prints the throughput of both ways.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/perf_event.h>
#include <drm/drm.h>
#include "vgpu_drm.h"
#include "vgpu_node.h"
#include "test_hmm_uapi.h"

#define MIB (1UL << 20)

static int prof_fds[64], nprof;
static uint8_t *mirror;

static void profile(int on)
{
	for (int i = 0; i < nprof; i++)
		ioctl(prof_fds[i], on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int migrate(int vgpu, int fd, void *p, size_t size, int to_device)
{
	if (vgpu) {
		struct drm_vgpu_migrate m = {
			.start = (uintptr_t)p,
			.size = size,
			.target = to_device ? DRM_VGPU_MIGRATE_TO_DEVICE : DRM_VGPU_MIGRATE_TO_SYSTEM,
		};

		return ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m);
	}
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)p, .ptr = (uintptr_t)mirror, .npages = size / PAGE,
	};

	return ioctl(fd, to_device ? HMM_DMIRROR_MIGRATE_TO_DEV : HMM_DMIRROR_MIGRATE_TO_SYS, &cmd);
}

int main(int argc, char **argv)
{
	double t_dev = 0, t_sys = 0;
	char *fds = getenv("KPROF_FDS");
	int vgpu, rounds, thp, fd;
	uint8_t *raw, *p;
	size_t size;

	if (argc != 5) {
		fprintf(stderr, "usage: profile_migrate vgpu|test_hmm SIZE_MIB ROUNDS THP\n");
		return 2;
	}
	vgpu = !strcmp(argv[1], "vgpu");
	size = strtoul(argv[2], NULL, 0) * MIB;
	rounds = atoi(argv[3]);
	thp = atoi(argv[4]);
	for (char *t = fds ? strtok(fds, ",") : NULL; t && nprof < 64; t = strtok(NULL, ","))
		prof_fds[nprof++] = atoi(t);
	if (vgpu) {
		char path[64];
		int cursor = 0;

		fd = vgpu_node_next(&cursor, path, sizeof(path));
	} else {
		fd = open("/dev/hmm_dmirror0", O_RDWR);
	}
	mirror = malloc(size);
	raw = mmap(NULL, size + 2 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fd < 0 || !mirror || raw == MAP_FAILED) {
		perror("set-up");
		return 1;
	}
	p = (uint8_t *)(((uintptr_t)raw + 2 * MIB - 1) & ~(2 * MIB - 1));
	madvise(p, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	for (int r = 0; r < rounds; r++) {
		double t0, t1;

		for (size_t i = 0; i < size; i++)
			p[i] = (uint8_t)(i * 7 + r);
		t0 = now_ms();
		if (migrate(vgpu, fd, p, size, 1)) {
			perror("migrate to the device");
			return 1;
		}
		t1 = now_ms();
		profile(1);
		if (migrate(vgpu, fd, p, size, 0)) {
			perror("migrate to system memory");
			return 1;
		}
		profile(0);
		t_sys += now_ms() - t1;
		t_dev += t1 - t0;
		for (size_t i = 0; i < size; i++) {
			if (p[i] != (uint8_t)(i * 7 + r)) {
				fprintf(stderr, "byte %zu wrong after round %d\n", i, r);
				return 1;
			}
		}
		/* vgpu's device memory comes back from a work item. */
		usleep(20000);
	}
	printf("PROFILE %s %zu MiB thp=%d: to device %.3f GB/s, back %.3f GB/s\n", argv[1],
	       size / MIB, thp, rounds * size / t_dev / 1e6, rounds * size / t_sys / 1e6);
	return 0;
}
