// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu_migrate: moving a process's memory into a virtual GPU's device memory and back, by
 * ioctl and by CPU fault, checking every byte after every move, plus the refusals and the
 * failure paths (error injection, through each GPU's debugfs knobs: the tests run as root).
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "igt.h"
#include "vgpu_util.h"

/* Device memory is given back from a work item after the last page goes: wait for it. */
/*
 * Free device memory once allocations of earlier subtests have been released (a release
 * runs from a work item, shortly after the last page left): waits up to 2 s for the GPU to
 * be idle, then returns what is free.
 */
static uint64_t vram_free_settled(int f)
{
	for (int i = 0; i < 200 && vram_free(f) != vram_size(f); i++)
		usleep(10000);
	return vram_free(f);
}

static int wait_vram_free(int f, uint64_t want)
{
	for (int i = 0; i < 200; i++) {
		if (vram_free(f) == want)
			return 1;
		usleep(10000);
	}
	return 0;
}

/* Fails the next `allocs` device-memory allocations and `copies` copy jobs of GPU `f`. */
static int inject(int f, unsigned long allocs, unsigned long copies)
{
	return knob_set(f, "fail_allocs", allocs) || knob_set(f, "fail_copies", copies) ? -1 : 0;
}


#define NEED_GPU() do { if (fd < 0) igt_skip("no vgpu0"); } while (0)

static enum igt_result roundtrip(size_t size, int hint_huge)
{
	uint64_t free0 = vram_free_settled(fd);
	struct drm_vgpu_stats s0 = stats(fd), s1, s2;
	size_t npages = size / PAGE;
	uint8_t *p, *raw = NULL;

	if (hint_huge) {
		/* 2 MiB aligned so that the kernel can back it with a transparent huge page. */
		raw = map_anon(size + 2 * MIB);
		igt_assert(raw);
		p = (uint8_t *)(((uintptr_t)raw + 2 * MIB - 1) & ~(2 * MIB - 1));
		madvise(p, size, MADV_HUGEPAGE);
	} else {
		p = map_anon(size);
		igt_assert(p);
	}
	fill(p, size, 1);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	s1 = stats(fd);
	igt_assert_eq(s1.pages_to_device - s0.pages_to_device, npages);
	igt_assert_eq(vram_free(fd), free0 - size);
	/* Every read is a CPU fault that pulls the data back. */
	igt_assert_eq(check(p, size, 1), -1);
	s2 = stats(fd);
	igt_assert_eq(s2.pages_to_system - s1.pages_to_system, npages);
	igt_assert(s2.cpu_faults > s1.cpu_faults);
	igt_assert(s2.bytes_copied - s0.bytes_copied >= 2 * size);
	igt_assert(wait_vram_free(fd, free0));
	munmap(raw ? raw : p, raw ? size + 2 * MIB : size);
	return IGT_PASS;
}

static enum igt_result migrate_mmap_fault_back(void)
{
	NEED_GPU();
	return roundtrip(MIB, 0);
}

static enum igt_result migrate_malloc_fault_back(void)
{
	void *p;
	uint64_t free0;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	igt_assert_eq(posix_memalign(&p, PAGE, 256 * 1024), 0);
	fill(p, 256 * 1024, 2);
	igt_assert_eq(migrate(fd, p, 256 * 1024, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(check(p, 256 * 1024, 2), -1);
	free(p);
	igt_assert(wait_vram_free(fd, free0));
	return IGT_PASS;
}

static enum igt_result migrate_thp(void)
{
	NEED_GPU();
	return roundtrip(2 * MIB, 1);
}

static enum igt_result migrate_explicit_back(void)
{
	size_t size = 512 * 1024;
	uint64_t free0;
	struct drm_vgpu_stats s0, s1;
	uint8_t *p;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 3);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	s0 = stats(fd);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_SYSTEM), 0);
	s1 = stats(fd);
	igt_assert_eq(s1.pages_to_system - s0.pages_to_system, size / PAGE);
	/* Back by ioctl: no CPU fault was needed. */
	igt_assert_eq(s1.cpu_faults, s0.cpu_faults);
	igt_assert_eq(check(p, size, 3), -1);
	igt_assert(wait_vram_free(fd, free0));
	munmap(p, size);
	return IGT_PASS;
}

static enum igt_result write_middle_and_again(void)
{
	size_t size = 256 * 1024;
	uint64_t free0;
	uint8_t *p;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 4);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	/* One CPU write in the middle brings the allocation back... */
	p[size / 2 + 7] ^= 0xff;
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	/* ...and the second migration carries the written byte along. */
	p[size / 2 + 7] ^= 0xff;
	igt_assert_eq(check(p, size, 4), -1);
	munmap(p, size);
	igt_assert(wait_vram_free(fd, free0));
	return IGT_PASS;
}

static enum igt_result fork_after_migration(void)
{
	size_t size = 128 * 1024;
	uint8_t *p;
	int status;
	pid_t pid;

	NEED_GPU();
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 5);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	pid = fork();
	igt_assert(pid >= 0);
	if (pid == 0) {
		/* The child sees the data, then writes its own copy. */
		if (check(p, size, 5) != -1)
			_exit(1);
		fill(p, size, 6);
		_exit(check(p, size, 6) == -1 ? 0 : 2);
	}
	igt_assert_eq(waitpid(pid, &status, 0), pid);
	igt_assert(WIFEXITED(status));
	igt_assert_eq(WEXITSTATUS(status), 0);
	/* The parent's data is its own, untouched by the child's writes. */
	igt_assert_eq(check(p, size, 5), -1);
	munmap(p, size);
	return IGT_PASS;
}

static enum igt_result munmap_while_migrated(void)
{
	size_t size = 2 * MIB;
	uint64_t free0;
	uint8_t *p;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 7);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(vram_free(fd), free0 - size);
	igt_assert_eq(munmap(p, size), 0);
	igt_assert(wait_vram_free(fd, free0));
	return IGT_PASS;
}

static enum igt_result shared_and_file_pages_refused(void)
{
	size_t size = 64 * 1024;
	uint8_t *shared, *file;
	uint64_t free0;
	int mfd;

	NEED_GPU();
	shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	igt_assert(shared != MAP_FAILED);
	fill(shared, size, 8);
	igt_assert_errno(migrate(fd, shared, size, DRM_VGPU_MIGRATE_TO_DEVICE), EOPNOTSUPP);
	igt_assert_eq(check(shared, size, 8), -1);
	munmap(shared, size);

	mfd = open("/tmp/vgpu_migrate_file", O_RDWR | O_CREAT | O_TRUNC, 0600);
	igt_assert(mfd >= 0);
	igt_assert_eq(ftruncate(mfd, size), 0);
	file = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
	igt_assert(file != MAP_FAILED);
	/* Untouched: the file's own pages cannot move. */
	igt_assert_errno(migrate(fd, file, size, DRM_VGPU_MIGRATE_TO_DEVICE), EOPNOTSUPP);
	igt_assert_eq(check_zero(file, size), -1);
	/* Half written: still some of the file's pages; nothing moves. */
	fill(file, size / 2, 9);
	igt_assert_errno(migrate(fd, file, size, DRM_VGPU_MIGRATE_TO_DEVICE), EOPNOTSUPP);
	igt_assert_eq(check(file, size / 2, 9), -1);
	igt_assert_eq(check_zero(file + size / 2, size / 2), -1);
	/* All written: private anonymous copies, which move and come back by fault. */
	fill(file, size, 9);
	free0 = vram_free_settled(fd);
	igt_assert_eq(migrate(fd, file, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(vram_free(fd), free0 - size);
	igt_assert_eq(check(file, size, 9), -1);
	munmap(file, size);
	close(mfd);
	unlink("/tmp/vgpu_migrate_file");
	return IGT_PASS;
}

static enum igt_result bad_requests(void)
{
	size_t size = 64 * 1024;
	uint8_t *p, *hole;
	struct drm_vgpu_migrate m;

	NEED_GPU();
	p = map_anon(size + PAGE);
	igt_assert(p);
	hole = p + size;
	igt_assert_eq(munmap(hole, PAGE), 0);
	fill(p, size, 10);
	igt_assert_errno(migrate(fd, p + 1, size - PAGE, DRM_VGPU_MIGRATE_TO_DEVICE), EINVAL);
	igt_assert_errno(migrate(fd, p, size - 1, DRM_VGPU_MIGRATE_TO_DEVICE), EINVAL);
	igt_assert_errno(migrate(fd, p, 0, DRM_VGPU_MIGRATE_TO_DEVICE), EINVAL);
	igt_assert_errno(migrate(fd, p, size, 2), EINVAL);
	/* Running past the end of the mapping, or starting in a hole. */
	igt_assert_errno(migrate(fd, p, size + PAGE, DRM_VGPU_MIGRATE_TO_DEVICE), EINVAL);
	igt_assert_errno(migrate(fd, hole, PAGE, DRM_VGPU_MIGRATE_TO_DEVICE), ENOENT);
	igt_assert_errno(migrate(fd, hole, PAGE, DRM_VGPU_MIGRATE_TO_SYSTEM), ENOENT);
	/* Address space wrap-around. */
	igt_assert_errno(migrate(fd, (void *)(~0ul & ~(PAGE - 1)), 2 * PAGE,
				 DRM_VGPU_MIGRATE_TO_DEVICE), EINVAL);
	/* Larger than the device memory. */
	igt_assert_errno(migrate(fd, p, vram_size(fd) + PAGE, DRM_VGPU_MIGRATE_TO_DEVICE), ENOMEM);
	m = (struct drm_vgpu_migrate){ .start = (uintptr_t)p, .size = size, .flags = 2 };
	igt_assert_errno(ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m), EINVAL);
	m = (struct drm_vgpu_migrate){ .start = (uintptr_t)p, .size = size, .pagemap_fd = 1 };
	igt_assert_errno(ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m), EINVAL);
	igt_assert_eq(check(p, size, 10), -1);
	munmap(p, size);
	return IGT_PASS;
}

static enum igt_result alloc_failure(void)
{
	size_t size = 256 * 1024;
	uint64_t free0;
	struct drm_vgpu_stats s0;
	uint8_t *p;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	s0 = stats(fd);
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 11);
	igt_assert_eq(inject(fd, 1, 0), 0);
	igt_assert_errno(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), ENOMEM);
	igt_assert_eq(stats(fd).pages_to_device, s0.pages_to_device);
	igt_assert_eq(vram_free(fd), free0);
	igt_assert_eq(check(p, size, 11), -1);
	/* The injection was used up: the next migration works. */
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(check(p, size, 11), -1);
	munmap(p, size);
	igt_assert(wait_vram_free(fd, free0));
	return IGT_PASS;
}

static enum igt_result copy_failure(void)
{
	size_t size = 256 * 1024;
	uint64_t free0;
	struct drm_vgpu_stats s0, s1;
	uint8_t *p;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 12);
	s0 = stats(fd);
	igt_assert_eq(inject(fd, 0, 1), 0);
	igt_assert_errno(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), EIO);
	s1 = stats(fd);
	/* Nothing moved, nothing was faulted back: the data never left system memory. */
	igt_assert_eq(s1.pages_to_device, s0.pages_to_device);
	igt_assert_eq(check(p, size, 12), -1);
	igt_assert_eq(stats(fd).cpu_faults, s0.cpu_faults);
	igt_assert(wait_vram_free(fd, free0));
	munmap(p, size);
	return IGT_PASS;
}

static enum igt_result other_gpu_page(void)
{
	size_t size = 64 * 1024;
	struct drm_vgpu_stats s0, s1;
	uint8_t *p;

	NEED_GPU();
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 13);
	if (fd1 < 0)
		igt_skip("needs a second GPU");
	igt_assert_eq(migrate(fd1, p + PAGE, PAGE, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	s0 = stats(fd);
	s1 = stats(fd1);
	/*
	 * One page of the range lives on vgpu1: linked, it comes straight over the link; not
	 * linked, through system memory. Either way the whole range moves.
	 */
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	if (same_group(fd, fd1)) {
		igt_assert_eq(stats(fd).pages_from_peer - s0.pages_from_peer, 1);
		igt_assert_eq(stats(fd1).pages_to_peer - s1.pages_to_peer, 1);
	} else {
		igt_assert_eq(stats(fd1).pages_to_system - s1.pages_to_system, 1);
	}
	igt_assert_eq(stats(fd).pages_to_device - s0.pages_to_device, size / PAGE);
	igt_assert_eq(check(p, size, 13), -1);
	munmap(p, size);
	return IGT_PASS;
}

static enum igt_result timeslice(void)
{
	size_t size = 64 * 1024;
	struct drm_vgpu_migrate m;
	struct timespec t0;
	long ms, bound;
	uint8_t *p;

	NEED_GPU();
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 14);
	/* 200 ms is above the default bound: raise the GPU's bound first. */
	bound = knob_get(fd, "timeslice_max_ms");
	igt_assert(bound >= 0);
	igt_assert_eq(knob_set(fd, "timeslice_max_ms", 1000), 0);
	m = (struct drm_vgpu_migrate){
		.start = (uintptr_t)p, .size = size,
		.target = DRM_VGPU_MIGRATE_TO_DEVICE, .timeslice_ms = 200,
	};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	igt_assert_eq(ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m), 0);
	/* The first touch keeps faulting until the timeslice is over. */
	igt_assert_eq(p[0], pattern(0, 14));
	ms = ms_since(&t0);
	igt_info("first touch after %ld ms\n", ms);
	igt_assert_eq(knob_set(fd, "timeslice_max_ms", bound), 0);
	igt_assert(ms >= 150);
	igt_assert_eq(check(p, size, 14), -1);
	munmap(p, size);
	return IGT_PASS;
}

/* The bound itself: root sets it in debugfs, within 0 to 1000 ms; it clamps requests. */
static enum igt_result timeslice_max_knob(void)
{
	size_t size = 64 * 1024;
	struct drm_vgpu_migrate m;
	struct timespec t0;
	long bound, ms;
	uint8_t *p;

	NEED_GPU();
	bound = knob_get(fd, "timeslice_max_ms");
	igt_assert(bound >= 0 && bound <= 1000);
	igt_assert_errno(knob_set(fd, "timeslice_max_ms", 1001), EINVAL);
	igt_assert_errno(knob_set(fd, "timeslice_max_ms", 0xffffffffUL), EINVAL);
	igt_assert_errno(knob_set(fd, "timeslice_max_ms", 0x100000000UL), EINVAL);
	igt_assert_errno(knob_write(fd, "timeslice_max_ms", "-1\n"), EINVAL);
	igt_assert_errno(knob_write(fd, "timeslice_max_ms", "ten\n"), EINVAL);
	igt_assert_errno(knob_write(fd, "timeslice_max_ms", "12345678901234567890\n"), EINVAL);
	igt_assert_eq(knob_get(fd, "timeslice_max_ms"), bound);
	/* 0: no timeslice at all, whatever a migration asks for. */
	igt_assert_eq(knob_set(fd, "timeslice_max_ms", 0), 0);
	igt_assert_eq(knob_get(fd, "timeslice_max_ms"), 0);
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 24);
	m = (struct drm_vgpu_migrate){
		.start = (uintptr_t)p, .size = size,
		.target = DRM_VGPU_MIGRATE_TO_DEVICE, .timeslice_ms = 500,
	};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	igt_assert_eq(ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m), 0);
	igt_assert_eq(p[0], pattern(0, 24));
	ms = ms_since(&t0);
	igt_info("first touch after %ld ms with the bound at 0\n", ms);
	igt_assert_eq(knob_set(fd, "timeslice_max_ms", bound), 0);
	igt_assert(ms < 400);
	igt_assert_eq(check(p, size, 24), -1);
	munmap(p, size);
	/* Each GPU has its own bound. */
	if (fd1 >= 0) {
		long bound1 = knob_get(fd1, "timeslice_max_ms");

		igt_assert(bound1 >= 0);
		igt_assert_eq(knob_set(fd1, "timeslice_max_ms", 7), 0);
		igt_assert_eq(knob_get(fd1, "timeslice_max_ms"), 7);
		igt_assert_eq(knob_get(fd, "timeslice_max_ms"), bound);
		igt_assert_eq(knob_set(fd1, "timeslice_max_ms", bound1), 0);
	}
	return IGT_PASS;
}

/* The error-injection knobs read back what was set and count down as failures happen. */
static enum igt_result fault_injection_knobs(void)
{
	size_t size = 64 * 1024;
	uint8_t *p;

	NEED_GPU();
	igt_assert_eq(knob_get(fd, "fail_allocs"), 0);
	igt_assert_eq(knob_get(fd, "fail_copies"), 0);
	igt_assert_errno(knob_write(fd, "fail_allocs", "many\n"), EINVAL);
	igt_assert_errno(knob_write(fd, "fail_copies", "-3\n"), EINVAL);
	igt_assert_eq(inject(fd, 2, 0), 0);
	igt_assert_eq(knob_get(fd, "fail_allocs"), 2);
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 25);
	igt_assert_errno(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), ENOMEM);
	igt_assert_eq(knob_get(fd, "fail_allocs"), 1);
	igt_assert_eq(inject(fd, 0, 0), 0);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(check(p, size, 25), -1);
	munmap(p, size);
	return IGT_PASS;
}

/* What a timeslice of 0xffffffff ms may cost at most, once the device bound clamps it. */
#define PROMPT_MS 1000

/*
 * The child of timeslice-bounded: a timeslice of 0xffffffff ms, then the kernel reading the
 * buffer (write(2) into a pipe), the CPU reading it and the other GPU reading it. Each must
 * return promptly with the data. Exit status 0 if so, else which step failed.
 */
static int timeslice_bounded_child(void)
{
	size_t size = 64 * 1024;
	uint8_t *p = map_anon(size), *got = malloc(size);
	struct drm_vgpu_migrate m = {
		.size = size, .target = DRM_VGPU_MIGRATE_TO_DEVICE, .timeslice_ms = 0xffffffffu,
	};
	struct drm_vgpu_vm_access a = { .op = DRM_VGPU_VM_READ, .size = size };
	struct drm_vgpu_vm_create c = { 0 };
	struct timespec t0;
	size_t done = 0;
	int pipefd[2];
	long ms;

	if (!p || !got || pipe(pipefd))
		return 10;
	fill(p, size, 19);
	m.start = (uintptr_t)p;
	if (ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m))
		return 11;
	/* The kernel reads the buffer (a pipe holds 64 KiB). */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (write(pipefd[1], p, size) != (ssize_t)size)
		return 12;
	ms = ms_since(&t0);
	printf("# write(2) from the buffer after %ld ms\n", ms);
	while (done < size) {
		ssize_t n = read(pipefd[0], got + done, size - done);

		if (n <= 0)
			return 13;
		done += n;
	}
	if (check(got, size, 19) != -1 || ms > PROMPT_MS)
		return 14;
	/* The CPU reads it. */
	if (ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m))
		return 15;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (check(p, size, 19) != -1)
		return 16;
	ms = ms_since(&t0);
	printf("# CPU read after %ld ms\n", ms);
	if (ms > PROMPT_MS)
		return 17;
	/* The other GPU reads it. */
	if (fd1 < 0)
		return 0;
	if (ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m) || ioctl(fd1, DRM_IOCTL_VGPU_VM_CREATE, &c))
		return 18;
	memset(got, 0, size);
	a.vm_id = c.vm_id;
	a.start = (uintptr_t)p;
	a.data = (uintptr_t)got;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (ioctl(fd1, DRM_IOCTL_VGPU_VM_ACCESS, &a))
		return 19;
	ms = ms_since(&t0);
	printf("# GPU1 read after %ld ms\n", ms);
	if (check(got, size, 19) != -1 || ms > PROMPT_MS)
		return 20;
	return 0;
}

/*
 * A timeslice is device policy: a process asking for 0xffffffff ms gets the device's bound
 * (timeslice_max_ms), and nobody spins on its pages meanwhile.
 */
static enum igt_result timeslice_bounded(void)
{
	NEED_GPU();
	igt_assert_eq(run_with_deadline(timeslice_bounded_child, 10), 0);
	return IGT_PASS;
}

/* EVICT moves every process's data: only CAP_SYS_ADMIN may ask for it. */
static enum igt_result evict_unprivileged_eperm(void)
{
	size_t size = 256 * 1024;
	struct drm_vgpu_evict ev = { 0 };
	struct drm_vgpu_stats s0;
	uint64_t free0;
	uint8_t *p;
	int status;
	pid_t pid;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 20);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	s0 = stats(fd);
	pid = fork();
	igt_assert(pid >= 0);
	if (pid == 0) {
		/* nobody, with the render node it inherited open: no capability left. */
		if (setgid(65534) || setuid(65534))
			_exit(10);
		if (ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev) != -1 || errno != EPERM)
			_exit(11);
		/* An ordinary client otherwise. */
		if (stats(fd).evictions != s0.evictions)
			_exit(12);
		_exit(0);
	}
	igt_assert_eq(waitpid(pid, &status, 0), pid);
	igt_assert(WIFEXITED(status));
	igt_assert_eq(WEXITSTATUS(status), 0);
	/* Nothing was evicted: the data is still in device memory. */
	igt_assert_eq(stats(fd).evictions, s0.evictions);
	igt_assert_eq(vram_free(fd), free0 - size);
	/* Root may. */
	igt_assert_eq(ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev), 0);
	igt_assert_eq(ev.evicted, 1);
	igt_assert(wait_vram_free(fd, free0));
	igt_assert_eq(check(p, size, 20), -1);
	munmap(p, size);
	return IGT_PASS;
}

/*
 * An allocation whose eviction fails (its copy fails) does not stop EVICT: every other
 * allocation is evicted, then the first error is returned; the failed one stays on the
 * device with its data, and a second EVICT takes it.
 */
static enum igt_result evict_past_failure(void)
{
	size_t size = 256 * 1024;
	struct drm_vgpu_evict ev = { 0 };
	struct drm_vgpu_stats s0, s1;
	uint64_t free0;
	uint8_t *a, *b, *c;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	a = map_anon(size);
	b = map_anon(size);
	c = map_anon(size);
	igt_assert(a && b && c);
	fill(a, size, 21);
	fill(b, size, 22);
	fill(c, size, 23);
	igt_assert_eq(migrate(fd, a, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(migrate(fd, b, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(migrate(fd, c, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	s0 = stats(fd);
	/* The first eviction's copy fails. */
	igt_assert_eq(inject(fd, 0, 1), 0);
	igt_assert_errno(ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev), EIO);
	s1 = stats(fd);
	/* The two others went anyway. */
	igt_assert_eq(s1.evictions - s0.evictions, 2);
	igt_assert_eq(s1.pages_to_system - s0.pages_to_system, 2 * size / PAGE);
	igt_assert(wait_vram_free(fd, free0 - size));
	igt_assert_eq(s1.cpu_faults, s0.cpu_faults);
	/* The failed one is still on the device; a second EVICT takes it. */
	igt_assert_eq(ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev), 0);
	igt_assert_eq(ev.evicted, 1);
	igt_assert(wait_vram_free(fd, free0));
	igt_assert_eq(check(a, size, 21), -1);
	igt_assert_eq(check(b, size, 22), -1);
	igt_assert_eq(check(c, size, 23), -1);
	igt_assert_eq(stats(fd).cpu_faults, s0.cpu_faults);
	munmap(a, size);
	munmap(b, size);
	munmap(c, size);
	return IGT_PASS;
}

static enum igt_result evict(void)
{
	size_t size = 512 * 1024;
	uint64_t free0;
	struct drm_vgpu_stats s0, s1;
	struct drm_vgpu_evict ev = { 0 };
	uint8_t *a, *b;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	a = map_anon(size);
	b = map_anon(size);
	igt_assert(a && b);
	fill(a, size, 16);
	fill(b, size, 17);
	igt_assert_eq(migrate(fd, a, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(migrate(fd, b, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	s0 = stats(fd);
	igt_assert_eq(ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev), 0);
	igt_assert_eq(ev.evicted, 2);
	s1 = stats(fd);
	igt_assert_eq(s1.evictions - s0.evictions, 2);
	igt_assert_eq(s1.pages_to_system - s0.pages_to_system, 2 * size / PAGE);
	igt_assert(wait_vram_free(fd, free0));
	/* The data is back in system memory: reading it takes no CPU fault. */
	igt_assert_eq(check(a, size, 16), -1);
	igt_assert_eq(check(b, size, 17), -1);
	igt_assert_eq(stats(fd).cpu_faults, s0.cpu_faults);
	/* Nothing left to evict; bad flags refused. */
	igt_assert_eq(ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev), 0);
	igt_assert_eq(ev.evicted, 0);
	ev.flags = 1;
	igt_assert_errno(ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev), EINVAL);
	munmap(a, size);
	munmap(b, size);
	return IGT_PASS;
}

/* Eviction of huge device pages: they come back whole, with no VMA and no CPU fault. */
static enum igt_result evict_thp(void)
{
	size_t size = 4 * MIB;
	uint64_t free0;
	struct drm_vgpu_stats s0, s1;
	struct drm_vgpu_evict ev = { 0 };
	uint8_t *raw, *p;

	NEED_GPU();
	free0 = vram_free_settled(fd);
	raw = map_anon(2 * size);
	igt_assert(raw);
	p = (uint8_t *)(((uintptr_t)raw + 2 * MIB - 1) & ~(2 * MIB - 1));
	igt_assert_eq(madvise(p, size, MADV_HUGEPAGE), 0);
	fill(p, size, 18);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	s0 = stats(fd);
	igt_assert_eq(ioctl(fd, DRM_IOCTL_VGPU_EVICT, &ev), 0);
	igt_assert_eq(ev.evicted, 1);
	s1 = stats(fd);
	igt_assert_eq(s1.pages_to_system - s0.pages_to_system, size / PAGE);
	igt_assert(wait_vram_free(fd, free0));
	igt_assert_eq(check(p, size, 18), -1);
	igt_assert_eq(stats(fd).cpu_faults, s0.cpu_faults);
	munmap(raw, 2 * size);
	return IGT_PASS;
}

/*
 * Run by module_lifecycle.sh only (VGPU_UNLOAD_TEST=1): with no file open, data living in
 * device memory must keep the module loaded, and stay readable.
 */
static enum igt_result unload_refused_while_migrated(void)
{
	size_t size = 256 * 1024;
	uint8_t *p;

	if (!getenv("VGPU_UNLOAD_TEST"))
		igt_skip("only run by module_lifecycle.sh");
	NEED_GPU();
	p = map_anon(size);
	igt_assert(p);
	fill(p, size, 15);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	close(fd);
	if (fd1 >= 0)
		close(fd1);
	fd = fd1 = -1;
	igt_assert(system("rmmod vgpu 2>/dev/null") != 0);
	igt_assert_eq(check(p, size, 15), -1);
	munmap(p, size);
	return IGT_PASS;
}

static const struct igt_subtest tests[] = {
	{ "migrate-mmap-fault-back", migrate_mmap_fault_back },
	{ "migrate-malloc-fault-back", migrate_malloc_fault_back },
	{ "migrate-thp", migrate_thp },
	{ "migrate-explicit-back", migrate_explicit_back },
	{ "write-middle-and-again", write_middle_and_again },
	{ "fork-after-migration", fork_after_migration },
	{ "munmap-while-migrated", munmap_while_migrated },
	{ "shared-and-file-pages-refused", shared_and_file_pages_refused },
	{ "bad-requests", bad_requests },
	{ "alloc-failure", alloc_failure },
	{ "copy-failure", copy_failure },
	{ "other-gpu-page", other_gpu_page },
	{ "timeslice", timeslice },
	{ "timeslice-bounded", timeslice_bounded },
	{ "timeslice-max-knob", timeslice_max_knob },
	{ "fault-injection-knobs", fault_injection_knobs },
	{ "evict", evict },
	{ "evict-thp", evict_thp },
	{ "evict-unprivileged-eperm", evict_unprivileged_eperm },
	{ "evict-past-failure", evict_past_failure },
	{ "unload-refused-while-migrated", unload_refused_while_migrated },
};

int main(int argc, char **argv)
{
	open_nodes();
	return igt_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
