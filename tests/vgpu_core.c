// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu_core: the drm_pagemap migration core driven from userspace as an attacker or an
 * unlucky process would: eviction of data whose owner exited, re-migration of resident
 * ranges, migrations back over huge and empty ranges, eviction racing reuse of device pages.
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include "igt.h"
#include "vgpu_util.h"

#define NEED_GPU()                                   \
	do {                                         \
		if (fd < 0)                          \
			igt_skip("no vgpu device");  \
	} while (0)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Data migrated by a process that forked and exited: the pages now live only in its child's
 * address space. EVICT must move them back promptly (the child still reads its data), not
 * wait for the child to exit.
 */
static enum igt_result evict_after_owner_exit(void)
{
	size_t size = 1 * MIB;
	uint64_t base;
	int go[2], ready[2];
	pid_t owner, child;
	struct drm_vgpu_evict ev = { 0 };
	double t0, took;
	int status;
	char c;

	NEED_GPU();
	base = vram_free(fd);
	igt_assert(pipe(go) == 0 && pipe(ready) == 0);
	owner = fork();
	igt_assert(owner >= 0);
	if (owner == 0) {
		uint8_t *p = map_anon(size);

		if (!p)
			_exit(10);
		fill(p, size, 31);
		if (migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE))
			_exit(11);
		child = fork();
		if (child < 0)
			_exit(12);
		if (child == 0) {
			/* Holds the device pages; gives up after 15 s so nothing hangs forever. */
			alarm(15);
			if (write(ready[1], "r", 1) != 1)
				_exit(13);
			if (read(go[0], &c, 1) != 1)
				_exit(14);
			c = check(p, size, 31) == -1 ? 'y' : 'n';
			_exit(write(ready[1], &c, 1) == 1 ? 0 : 15);
		}
		/* The owner exits while its child holds the pages. */
		_exit(0);
	}
	igt_assert(read(ready[0], &c, 1) == 1);
	igt_assert(waitpid(owner, &status, 0) == owner);
	igt_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	igt_assert(vram_free(fd) < base);

	t0 = now();
	igt_assert_eq(ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev), 0);
	took = now() - t0;
	igt_info("EVICT took %.3f s, evicted %u\n", took, ev.evicted);
	igt_assert(took < 5.0);
	igt_assert(ev.evicted >= 1);
	igt_assert_eq(vram_free(fd), base);

	/* The grandchild (an orphan now, reparented to init) reads its data back. */
	igt_assert(write(go[1], "g", 1) == 1);
	igt_assert(read(ready[0], &c, 1) == 1);
	igt_assert_eq(c, 'y');
	close(go[0]);
	close(go[1]);
	close(ready[0]);
	close(ready[1]);
	return IGT_PASS;
}

/*
 * 40 MiB of a range already live in device memory: migrating the range again allocates
 * nothing and succeeds; after half of it went back, only that half is allocated again.
 */
static enum igt_result remigrate_resident_range(void)
{
	size_t size = 40 * MIB;
	uint64_t base, resident;
	uint8_t *p;

	NEED_GPU();
	if (vram_size(fd) < 64 * MIB)
		igt_skip("needs 64 MiB of device memory");
	base = vram_free(fd);
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 32);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	resident = vram_free(fd);
	igt_assert_eq(base - resident, size);

	/* Again: nothing to move, nothing allocated. */
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(vram_free(fd), resident);

	/*
	 * Half back (its device memory stays allocated until the allocation's last page goes),
	 * then the whole range: just that half is allocated and moves again.
	 */
	igt_assert_eq(migrate(fd, p + size / 2, size / 2, DRM_VGPU_MIGRATE_TO_SYSTEM), 0);
	igt_assert_eq(vram_free(fd), resident);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(vram_free(fd), resident - size / 2);

	igt_assert_eq(check(p, size, 32), -1);
	munmap(p, size);
	igt_assert_eq(vram_free(fd), base);
	return IGT_PASS;
}

/*
 * EVICT while other processes keep migrating small ranges in and freeing them, so that the
 * device pages an eviction is about to lock are released and handed to a new migration under
 * it. An eviction must never lock a page it no longer owns (before the fix: a KASAN
 * use-after-free of zone-device data in copy_back within seconds), every process keeps its
 * data, and the device memory comes back in full.
 */
#define CHURNERS 2
static enum igt_result evict_racing_reuse(void)
{
	const double secs = 4.0;
	size_t size = 64 * PAGE;
	uint64_t base;
	pid_t pid[CHURNERS];
	double t0;
	long evictions = 0;
	uint64_t evicted0;
	int status;

	NEED_GPU();
	if (geteuid())
		igt_skip("EVICT needs CAP_SYS_ADMIN");
	base = vram_free(fd);
	evicted0 = stats(fd).evictions;
	for (int c = 0; c < CHURNERS; c++) {
		pid[c] = fork();
		igt_assert(pid[c] >= 0);
		if (pid[c] == 0) {
			double start = now();
			unsigned int round = 0;

			alarm(30);
			while (now() - start < secs) {
				uint8_t *p = map_anon(size);
				unsigned int seed = 40 + c * 1000 + round++;

				if (!p)
					_exit(20);
				fill(p, size, seed);
				/* EBUSY when an eviction holds a page: allowed, data stays. */
				if (migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE) &&
				    errno != EBUSY)
					_exit(21);
				if (round % 2 && check(p, size, seed) != -1)
					_exit(22);
				munmap(p, size);
			}
			_exit(0);
		}
	}
	t0 = now();
	while (now() - t0 < secs) {
		struct drm_vgpu_evict ev = { 0 };

		/* EBUSY when a page stayed locked by a migration or fault: allowed. */
		if (ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev) && errno != EBUSY)
			igt_assert_eq(errno, 0);
		evictions++;
	}
	for (int c = 0; c < CHURNERS; c++) {
		igt_assert(waitpid(pid[c], &status, 0) == pid[c]);
		igt_info("churner %d: status %#x\n", c, status);
		igt_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	/* The counter counts every allocation evicted, also by calls that then failed. */
	igt_info("%ld EVICT calls in %.0f s moved %llu allocations back\n", evictions, secs,
		 (unsigned long long)(stats(fd).evictions - evicted0));
	igt_assert(stats(fd).evictions > evicted0);
	/* Released asynchronously (and an exited churner's address space may be torn down
	 * from a work item): give it 10 s. */
	t0 = now();
	while (vram_free(fd) != base && now() - t0 < 10.0)
		usleep(10000);
	igt_assert_eq(vram_free(fd), base);
	return IGT_PASS;
}

/*
 * Migrations back to system memory over ranges far larger than any device: a 1280 MiB
 * mapping and a 1 TiB PROT_NONE reservation. The kernel works through them in bounded
 * chunks: no allocation warning, and a fatal signal ends even the longest promptly.
 */
static enum igt_result to_system_huge_ranges(void)
{
	size_t big = 1280 * MIB, huge = 1UL << 40;
	pid_t child;
	int status;
	double t0;
	void *p, *q;

	NEED_GPU();
	p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	igt_assert(p != MAP_FAILED);
	/* A few pages of it in device memory, at both ends. */
	memset(p, 1, PAGE);
	memset((char *)p + big - PAGE, 2, PAGE);
	igt_assert_eq(migrate(fd, p, PAGE, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(migrate(fd, (char *)p + big - PAGE, PAGE, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	t0 = now();
	igt_assert_eq(migrate(fd, p, big, DRM_VGPU_MIGRATE_TO_SYSTEM), 0);
	igt_info("TO_SYSTEM over 1280 MiB took %.3f s\n", now() - t0);
	igt_assert_eq(((uint8_t *)p)[0], 1);
	igt_assert_eq(((uint8_t *)p)[big - 1], 2);
	munmap(p, big);

	q = mmap(NULL, huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	igt_assert(q != MAP_FAILED);
	/* 64 GiB of it in one call: bounded memory, work proportional to the range. */
	t0 = now();
	igt_assert_eq(migrate(fd, q, huge >> 4, DRM_VGPU_MIGRATE_TO_SYSTEM), 0);
	igt_info("TO_SYSTEM over 64 GiB PROT_NONE took %.3f s\n", now() - t0);

	/* All of it: long, but a fatal signal ends it promptly. */
	child = fork();
	igt_assert(child >= 0);
	if (child == 0)
		_exit(migrate(fd, q, huge, DRM_VGPU_MIGRATE_TO_SYSTEM) ? 1 : 0);
	usleep(300000);
	t0 = now();
	kill(child, SIGKILL);
	igt_assert(waitpid(child, &status, 0) == child);
	igt_info("SIGKILL during TO_SYSTEM over 1 TiB took %.3f s to take effect\n", now() - t0);
	igt_assert(WIFSIGNALED(status) || WIFEXITED(status));
	igt_assert(now() - t0 < 2.0);
	munmap(q, huge);
	return IGT_PASS;
}

/*
 * No device-wide lock across a migration: while one process's migration waits inside its
 * copy (held there by the debugfs knob copy_delay_ms), device memory another process frees
 * comes back at once. Before the fix the GPU's allocation list was locked across the whole
 * migration, and the release of the freed memory waited for the copy.
 */
static enum igt_result free_while_migrating(void)
{
	size_t size = 64 * PAGE;
	uint64_t base, during_copy = 0;
	int status, delay_set, still_copying = 0;
	double t0, freed_after = -1;
	uint8_t *b;
	pid_t child;

	NEED_GPU();
	if (knob_get(fd, "copy_delay_ms") < 0)
		igt_skip("no debugfs knob copy_delay_ms");
	base = vram_free(fd);
	b = map_anon(size);
	igt_assert(b);
	fill(b, size, 41);
	igt_assert_eq(migrate(fd, b, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(vram_free(fd), base - size);
	/* Else the child maps these device pages too, and munmap frees nothing. */
	igt_assert_eq(madvise(b, size, MADV_DONTFORK), 0);

	delay_set = knob_set(fd, "copy_delay_ms", 2000);
	child = fork();
	if (child == 0) {
		uint8_t *a = map_anon(size);

		if (!a)
			_exit(10);
		fill(a, size, 42);
		if (migrate(fd, a, size, DRM_VGPU_MIGRATE_TO_DEVICE))
			_exit(11);
		_exit(check(a, size, 42) < 0 ? 0 : 12);
	}
	/* The child's allocation is taken before its copy starts (and waits 2 s). */
	t0 = now();
	while (child > 0 && vram_free(fd) != base - 2 * size && now() - t0 < 5.0)
		usleep(1000);
	if (child > 0 && vram_free(fd) == base - 2 * size) {
		during_copy = 1;
		t0 = now();
		munmap(b, size);
		while (vram_free(fd) != base - size && now() - t0 < 1.5)
			usleep(1000);
		if (vram_free(fd) == base - size)
			freed_after = now() - t0;
		still_copying = waitpid(child, &status, WNOHANG) == 0;
	}
	/* Undo the knob before any assertion can end the subtest. */
	knob_set(fd, "copy_delay_ms", 0);
	igt_assert(child > 0);
	igt_assert(waitpid(child, &status, 0) == child || !still_copying);
	igt_assert_eq(delay_set, 0);
	igt_assert(during_copy);
	igt_info("freed memory came back after %.3f s, the migration still copying: %d\n",
		 freed_after, still_copying);
	igt_assert(freed_after >= 0);
	igt_assert(still_copying);
	igt_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	t0 = now();
	while (vram_free(fd) != base && now() - t0 < 10.0)
		usleep(10000);
	igt_assert_eq(vram_free(fd), base);
	return IGT_PASS;
}

static const struct igt_subtest tests[] = {
	{ "evict-after-owner-exit", evict_after_owner_exit },
	{ "remigrate-resident-range", remigrate_resident_range },
	{ "to-system-huge-ranges", to_system_huge_ranges },
	{ "evict-racing-reuse", evict_racing_reuse },
	{ "free-while-migrating", free_while_migrating },
};

int main(int argc, char **argv)
{
	open_nodes();
	return igt_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
