// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu_vm: GPU VMs, a GPU's view of the process's address space. The GPU reads and writes
 * through its page table: its own memory where the data lives there, system memory anywhere
 * else, never stale data; checked byte for byte against what the CPU sees.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "igt.h"
#include "vgpu_util.h"
#include "vgpu_svm_util.h"
#include "test_hmm_uapi.h"

#define NEED_GPU() do { if (fd < 0) igt_skip("no vgpu0"); } while (0)
#define NEED_TWO() do { if (fd1 < 0) igt_skip("no vgpu1"); } while (0)

static enum igt_result create_destroy(void)
{
	uint32_t a, b, c;
	struct drm_vgpu_vm_create bad = { .flags = 1 };
	struct drm_vgpu_vm_destroy badpad = { .vm_id = 1, .pad = 1 };

	NEED_GPU();
	igt_assert_eq(svm_vm_create(fd, &a), 0);
	igt_assert_eq(svm_vm_create(fd, &b), 0);
	igt_assert(a != 0 && b != 0 && a != b);
	igt_assert_errno(ioctl(fd, DRM_IOCTL_VGPU_VM_CREATE, &bad), EINVAL);
	igt_assert_errno(ioctl(fd, DRM_IOCTL_VGPU_VM_DESTROY, &badpad), EINVAL);
	igt_assert_eq(svm_vm_destroy(fd, a), 0);
	igt_assert_errno(svm_vm_destroy(fd, a), ENOENT);
	igt_assert_errno(svm_vm_destroy(fd, 0xdead), ENOENT);
	/* Ids are not reused. */
	igt_assert_eq(svm_vm_create(fd, &c), 0);
	igt_assert(c != a && c != b);
	igt_assert_eq(svm_vm_destroy(fd, b), 0);
	igt_assert_eq(svm_vm_destroy(fd, c), 0);
	return IGT_PASS;
}

static enum igt_result too_many(void)
{
	uint32_t ids[DRM_VGPU_MAX_VMS], extra;

	NEED_GPU();
	for (int i = 0; i < DRM_VGPU_MAX_VMS; i++)
		igt_assert_eq(svm_vm_create(fd, &ids[i]), 0);
	igt_assert_errno(svm_vm_create(fd, &extra), ENOSPC);
	for (int i = 0; i < DRM_VGPU_MAX_VMS; i++)
		igt_assert_eq(svm_vm_destroy(fd, ids[i]), 0);
	return IGT_PASS;
}

static enum igt_result bad_access(void)
{
	size_t size = 4 * PAGE;
	uint8_t *p = map_anon(size), *buf = malloc(size);
	uint32_t id;

	NEED_GPU();
	igt_assert(p && buf);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	igt_assert_errno(svm_access(fd, id + 100, DRM_VGPU_VM_READ, p, size, buf, NULL), ENOENT);
	igt_assert_errno(svm_access(fd, id, 7, p, size, buf, NULL), EINVAL);
	igt_assert_errno(svm_access(fd, id, DRM_VGPU_VM_READ, p + 1, size, buf, NULL), EINVAL);
	igt_assert_errno(svm_access(fd, id, DRM_VGPU_VM_READ, p, size - 1, buf, NULL), EINVAL);
	igt_assert_errno(svm_access(fd, id, DRM_VGPU_VM_READ, p, 0, buf, NULL), EINVAL);
	/* Inaccessible and read-only memory fault as a CPU access would. */
	igt_assert_eq(mprotect(p, size, PROT_NONE), 0);
	igt_assert_errno(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, NULL), EFAULT);
	igt_assert_eq(mprotect(p, size, PROT_READ), 0);
	igt_assert_errno(svm_access(fd, id, DRM_VGPU_VM_WRITE, p, size, buf, NULL), EPERM);
	igt_assert_eq(check_zero(p, size), -1);
	munmap(p, size);
	igt_assert_errno(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, NULL), EFAULT);
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	free(buf);
	return IGT_PASS;
}

/*
 * System memory (the range advised to stay there): reads and writes both ways, and the page
 * table is kept warm. The GPU faults once per SVM range: 64 pages take at most 64 ranges.
 */
static enum igt_result system_read_write(void)
{
	size_t size = 64 * PAGE;
	uint8_t *p = map_anon(size), *buf = malloc(size);
	uint64_t faults;
	uint32_t id;

	NEED_GPU();
	igt_assert(p && buf);
	fill(p, size, 21);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	igt_assert_eq(svm_madvise(fd, id, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1 && faults <= size / PAGE);
	igt_assert_eq(check(buf, size, 21), -1);
	/* Mapped now: no fault, and a CPU write in place is seen at once. */
	p[5 * PAGE + 7] ^= 0xff;
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, &faults), 0);
	igt_assert_eq(faults, 0);
	igt_assert_eq(check(buf, size, 21), (long)(5 * PAGE + 7));
	p[5 * PAGE + 7] ^= 0xff;
	/* The GPU writes; the CPU reads it. */
	fill(buf, size, 22);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_WRITE, p, size, buf, &faults), 0);
	igt_assert_eq(check(p, size, 22), -1);
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	munmap(p, size);
	free(buf);
	return IGT_PASS;
}

/* An access larger than the kernel's bounce buffer, not a multiple of it. */
static enum igt_result large_access(void)
{
	size_t size = 5 * MIB + 3 * PAGE;
	uint8_t *p = map_anon(size), *buf = malloc(size);
	uint64_t faults;
	uint32_t id;

	NEED_GPU();
	igt_assert(p && buf);
	fill(p, size, 31);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 31), -1);
	fill(buf, size, 32);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_WRITE, p, size, buf, &faults), 0);
	igt_assert_eq(check(p, size, 32), -1);
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	munmap(p, size);
	free(buf);
	return IGT_PASS;
}

/* Never stale: after the CPU mapping changes under it, the GPU sees the new pages. */
static enum igt_result never_stale(void)
{
	size_t size = 16 * PAGE;
	uint8_t *p = map_anon(size), *q, *buf = malloc(size);
	uint64_t faults;
	uint32_t id;
	pid_t pid;
	int status;

	NEED_GPU();
	igt_assert(p && buf);
	fill(p, size, 23);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, &faults), 0);
	/* Replace the memory at the same address. */
	q = mmap(p, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	igt_assert(q == p);
	fill(q, size, 24);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(buf, size, 24), -1);
	/* Copy-on-write after fork: a GPU write goes to the parent's own copy only. */
	pid = fork();
	igt_assert(pid >= 0);
	if (pid == 0) {
		sleep(1);
		_exit(check(p, size, 24) == -1 ? 0 : 1);
	}
	fill(buf, size, 25);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_WRITE, p, size, buf, &faults), 0);
	igt_assert(faults >= 1);
	igt_assert_eq(check(p, size, 25), -1);
	igt_assert_eq(waitpid(pid, &status, 0), pid);
	igt_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	munmap(p, size);
	free(buf);
	return IGT_PASS;
}

/* Data in this GPU's memory is accessed there, without moving it. */
static enum igt_result device_memory_in_place(void)
{
	size_t size = 2 * MIB;
	uint8_t *p = map_anon(size), *buf = malloc(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults;
	uint32_t id;

	NEED_GPU();
	igt_assert(p && buf);
	fill(p, size, 26);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	s0 = stats(fd);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, &faults), 0);
	igt_assert_eq(check(buf, size, 26), -1);
	fill(buf, size, 27);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_WRITE, p, size, buf, &faults), 0);
	s1 = stats(fd);
	/* Nothing moved: no page went back to system memory. */
	igt_assert_eq(s1.pages_to_system, s0.pages_to_system);
	igt_assert_eq(s1.cpu_faults, s0.cpu_faults);
	/* The CPU faults the GPU's writes back and sees them. */
	igt_assert_eq(check(p, size, 27), -1);
	s1 = stats(fd);
	igt_assert(s1.pages_to_system >= s0.pages_to_system + size / PAGE);
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	munmap(p, size);
	free(buf);
	return IGT_PASS;
}

/*
 * Another GPU's memory, the range advised to system memory (so the GPU maps it where it is): a
 * linked GPU's is read and written in place, over the link; an unlinked GPU's data migrates
 * back first. Either way every byte is seen.
 */
static enum igt_result other_gpu_memory(void)
{
	size_t size = 64 * PAGE;
	uint8_t *p = map_anon(size), *buf = malloc(size);
	struct drm_vgpu_stats s0, s1;
	uint64_t faults, peer;
	uint32_t id;

	NEED_GPU();
	NEED_TWO();
	igt_assert(p && buf);
	fill(p, size, 28);
	igt_assert_eq(migrate(fd1, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	igt_assert_eq(svm_madvise(fd, id, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	s0 = stats(fd1);
	peer = stats(fd).peer_accesses;
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, &faults), 0);
	igt_assert_eq(check(buf, size, 28), -1);
	s1 = stats(fd1);
	if (same_group(fd, fd1)) {
		igt_assert_eq(s1.pages_to_system, s0.pages_to_system);
		igt_assert_eq(stats(fd).peer_accesses - peer, size / PAGE);
	} else {
		igt_assert_eq(s1.pages_to_system, s0.pages_to_system + size / PAGE);
	}
	/* And a write through vgpu0 lands where the CPU reads. */
	fill(buf, size, 29);
	igt_assert_eq(migrate(fd1, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_WRITE, p, size, buf, &faults), 0);
	igt_assert_eq(check(p, size, 29), -1);
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	munmap(p, size);
	free(buf);
	return IGT_PASS;
}

/* Closing the file with VMs still there destroys them (nothing leaks: kmemleak checks). */
static enum igt_result close_with_vms(void)
{
	size_t size = 8 * PAGE;
	uint8_t *p = map_anon(size), *buf = malloc(size);
	uint32_t id;
	int f;

	NEED_GPU();
	igt_assert(p && buf);
	/* A second open file description of the same node (a dup would share the file). */
	{
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		f = open(path, O_RDWR);
	}
	igt_assert(f >= 0);
	igt_assert_eq(svm_vm_create(f, &id), 0);
	fill(p, size, 30);
	igt_assert_eq(svm_access(f, id, DRM_VGPU_VM_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 30), -1);
	igt_assert_eq(close(f), 0);
	munmap(p, size);
	free(buf);
	return IGT_PASS;
}


/* Whether `len` bytes at `buf` hold the pattern of bytes [off, off + len) of a fill(seed). */
static int holds(const uint8_t *buf, size_t off, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != pattern(off + i, seed))
			return 0;
	return 1;
}

/* `size` bytes 2 MiB aligned, hinted for transparent huge pages; *raw is what to unmap. */
static uint8_t *map_huge(size_t size, uint8_t **raw)
{
	*raw = map_anon(size + 2 * MIB);
	if (!*raw)
		return NULL;
	uint8_t *p = (uint8_t *)(((uintptr_t)*raw + 2 * MIB - 1) & ~(2 * MIB - 1));

	madvise(p, size, MADV_HUGEPAGE);
	return p;
}

/*
 * A GPU write to this GPU's own page mapped read-only: EPERM, as a CPU write would get, and
 * nothing changes. (The range fault reports own device pages as they are, read-only ones
 * too: without handling that the write retried forever, unkillable.)
 */
static enum igt_result write_read_only(size_t size, int huge)
{
	uint8_t *raw = NULL, *p = huge ? map_huge(size, &raw) : map_anon(size);
	uint8_t *buf = malloc(size);
	uint32_t id;

	NEED_GPU();
	igt_assert(p && buf);
	fill(p, size, 40);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	/* Mapped by the GPU first, writable, so that the table holds the old entries. */
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 40), -1);
	igt_assert_eq(mprotect(p, size, PROT_READ), 0);
	fill(buf, size, 41);
	alarm(60);
	igt_assert_errno(svm_access(fd, id, DRM_VGPU_VM_WRITE, p, size, buf, NULL), EPERM);
	alarm(0);
	/* Nothing was written, seen from the GPU and from the CPU. */
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 40), -1);
	igt_assert_eq(check(p, size, 40), -1);
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	munmap(raw ? raw : p, raw ? size + 2 * MIB : size);
	free(buf);
	return IGT_PASS;
}

static enum igt_result write_read_only_device_page(void)
{
	return write_read_only(16 * PAGE, 0);
}

static enum igt_result write_read_only_device_thp(void)
{
	return write_read_only(2 * MIB, 1);
}

/*
 * After fork the parent's pages in this GPU's memory are read-only, shared copy-on-write with
 * the child: a GPU write through the parent's VM succeeds and breaks the sharing, and the
 * child keeps the old data.
 */
static enum igt_result write_cow(size_t size, int huge)
{
	uint8_t *raw = NULL, *p = huge ? map_huge(size, &raw) : map_anon(size);
	uint8_t *buf = malloc(size);
	int go[2], status;
	uint32_t id;
	pid_t pid;

	NEED_GPU();
	igt_assert(p && buf);
	igt_assert_eq(pipe(go), 0);
	fill(p, size, 42);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, NULL), 0);
	pid = fork();
	igt_assert(pid >= 0);
	if (pid == 0) {
		char c;

		alarm(120);
		close(go[1]);
		/* Until the parent wrote (or gave up). */
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		_exit(check(p, size, 42) == -1 ? 0 : 1);
	}
	close(go[0]);
	fill(buf, size, 43);
	alarm(60);
	status = svm_access(fd, id, DRM_VGPU_VM_WRITE, p, size, buf, NULL);
	alarm(0);
	igt_assert_eq(write(go[1], "w", 1), 1);
	close(go[1]);
	igt_assert_eq(status, 0);
	igt_assert_eq(check(p, size, 43), -1);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, NULL), 0);
	igt_assert_eq(check(buf, size, 43), -1);
	igt_assert_eq(waitpid(pid, &status, 0), pid);
	igt_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	munmap(raw ? raw : p, raw ? size + 2 * MIB : size);
	free(buf);
	return IGT_PASS;
}

static enum igt_result write_cow_device_page(void)
{
	return write_cow(16 * PAGE, 0);
}

static enum igt_result write_cow_device_thp(void)
{
	return write_cow(2 * MIB, 1);
}

/*
 * Accesses that start inside a huge page living in this GPU's memory reach the pages they
 * name: [p + 4 KiB, p + 8 KiB) is page 1, not page 0 (7.3's core mm reports the folio's head
 * for every page of such a range fault).
 */
static enum igt_result unaligned_access_in_device_thp(void)
{
	size_t size = 2 * MIB;
	uint8_t *raw, *p = map_huge(size, &raw), *buf = malloc(size);
	uint32_t id;

	NEED_GPU();
	igt_assert(p && buf);
	fill(p, size, 44);
	igt_assert_eq(migrate(fd, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p + PAGE, PAGE, buf, NULL), 0);
	igt_assert(holds(buf, PAGE, PAGE, 44));
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p + 5 * PAGE, 3 * PAGE, buf, NULL), 0);
	igt_assert(holds(buf, 5 * PAGE, 3 * PAGE, 44));
	/* A write to page 1 lands on page 1. */
	for (size_t i = 0; i < PAGE; i++)
		buf[i] = pattern(PAGE + i, 45);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_WRITE, p + PAGE, PAGE, buf, NULL), 0);
	/* The GPU reads the whole range back, then the CPU. */
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, buf, NULL), 0);
	igt_assert(holds(buf, 0, PAGE, 44));
	igt_assert(holds(buf + PAGE, PAGE, PAGE, 45));
	igt_assert(holds(buf + 2 * PAGE, 2 * PAGE, size - 2 * PAGE, 44));
	igt_assert(holds(p, 0, PAGE, 44));
	igt_assert(holds(p + PAGE, PAGE, PAGE, 45));
	igt_assert(holds(p + 2 * PAGE, 2 * PAGE, size - 2 * PAGE, 44));
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	munmap(raw, size + 2 * MIB);
	free(buf);
	return IGT_PASS;
}

/*
 * A GPU read of 128 MiB (twice what its page table holds) of read-only (zero) memory returns
 * and reads zeros, and the GPU page table, a cache of CPU mappings, stays bounded: it no
 * longer maps the start of the range afterwards (a new read there faults), while it still maps
 * the end (no fault). The destination is 128 MiB of address space backed by one 2 MiB shared
 * buffer mapped 64 times, so the test itself needs little memory.
 */
static enum igt_result huge_read_only_access(void)
{
	size_t size = 128 * MIB, win = 2 * MIB;
	uint8_t *p, *dst;
	uint64_t faults;
	uint32_t id;
	int mfd;

	NEED_GPU();
	p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	dst = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	igt_assert(p != MAP_FAILED && dst != MAP_FAILED);
	mfd = memfd_create("vgpu_vm", 0);
	igt_assert(mfd >= 0);
	igt_assert_eq(ftruncate(mfd, win), 0);
	for (size_t off = 0; off < size; off += win)
		igt_assert(mmap(dst + off, win, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
				mfd, 0) == dst + off);
	memset(dst, 0xff, win);
	igt_assert_eq(svm_vm_create(fd, &id), 0);
	alarm(300);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, size, dst, &faults), 0);
	alarm(0);
	igt_assert(faults >= size / win);
	igt_assert_eq(check_zero(dst, win), -1);
	/* The end is still mapped, the start was dropped to make room. */
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p + size - win, win, dst, &faults), 0);
	igt_assert_eq(faults, 0);
	igt_assert_eq(svm_access(fd, id, DRM_VGPU_VM_READ, p, win, dst, &faults), 0);
	igt_assert_eq(faults, 1);
	igt_assert_eq(check_zero(dst, win), -1);
	igt_assert_eq(svm_vm_destroy(fd, id), 0);
	munmap(dst, size);
	munmap(p, size);
	close(mfd);
	return IGT_PASS;
}

/* exclusive_racing_munmap's second thread: the GPU's exclusive (atomic) access to one page. */
struct exclusive_access {
	int dmirror;
	void *addr;
	uint8_t out[PAGE];
	int ret, err;
};

static void *exclusive_thread(void *arg)
{
	struct exclusive_access *x = arg;
	struct hmm_dmirror_cmd c = {
		.addr = (uintptr_t)x->addr, .ptr = (uintptr_t)x->out, .npages = 1,
	};

	x->ret = ioctl(x->dmirror, HMM_DMIRROR_EXCLUSIVE, &c);
	x->err = errno;
	return NULL;
}

/* Whether the CPU's entry for `addr` is a non-present (swap-like) one: /proc/self/pagemap. */
static int cpu_entry_is_swap(const void *addr)
{
	uint64_t entry = 0;
	int f = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (f < 0)
		return -1;
	n = pread(f, &entry, sizeof(entry), (off_t)((uintptr_t)addr / PAGE * sizeof(entry)));
	close(f);
	if (n != (ssize_t)sizeof(entry))
		return -1;
	return (entry >> 62) & 1;
}

/*
 * Device-exclusive access follows the notifier protocol: a munmap landing between the page
 * being made exclusive and the GPU's entry for it being committed (the window held open by
 * the debugfs knob exclusive_delay_ms; the test waits until the CPU's entry has become a
 * device-exclusive one) makes the GPU retry, on the new page mapped there meanwhile. It never
 * keeps an entry for the page munmap freed. Before the fix the entry went in regardless, and
 * the GPU read the freed page.
 */
static enum igt_result exclusive_racing_munmap(void)
{
	struct exclusive_access x = { 0 };
	struct hmm_dmirror_cmd c = { 0 };
	int delay_set, in_window = 0, ret = -1;
	struct timespec t0;
	uint8_t got[PAGE];
	char path[32];
	pthread_t t;
	uint8_t *p;

	NEED_GPU();
	snprintf(path, sizeof(path), "/dev/hmm_dmirror%d", gpu_index(fd));
	x.dmirror = open(path, O_RDWR | O_CLOEXEC);
	if (x.dmirror < 0)
		igt_skip("no %s (vgpu loaded without hmm_dmirror=1)", path);
	if (knob_get(fd, "exclusive_delay_ms") < 0 || cpu_entry_is_swap(&c) < 0) {
		close(x.dmirror);
		igt_skip("no debugfs knob exclusive_delay_ms or no /proc/self/pagemap");
	}
	p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	igt_assert(p != MAP_FAILED);
	memset(p, 0x11, PAGE);
	x.addr = p;

	delay_set = knob_set(fd, "exclusive_delay_ms", 2000);
	if (delay_set == 0 && pthread_create(&t, NULL, exclusive_thread, &x) == 0) {
		/* The page is exclusive to the GPU once its CPU entry is; the GPU then waits 2 s
		 * before committing its own entry. Munmap and map a new page inside that window. */
		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (!(in_window = cpu_entry_is_swap(p) == 1) && ms_since(&t0) < 1500)
			usleep(1000);
		if (in_window && munmap(p, PAGE) == 0 &&
		    mmap(p, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			 -1, 0) == p) {
			memset(p, 0x22, PAGE);
			ret = 0;
		}
		pthread_join(t, NULL);
	}
	/* Undo the knob before any assertion can end the subtest. */
	knob_set(fd, "exclusive_delay_ms", 0);
	igt_assert_eq(delay_set, 0);
	igt_assert(in_window);
	igt_assert_eq(ret, 0);
	igt_info("EXCLUSIVE returned %d (%s)\n", x.ret, x.ret ? strerror(x.err) : "ok");
	/* The GPU retried, on the new page. */
	igt_assert_eq(x.ret, 0);
	igt_assert_eq(check_byte(x.out, PAGE, 0x22), -1);
	/* Its page table holds no entry for the freed page: a read gets the new one. */
	c.addr = (uintptr_t)p;
	c.ptr = (uintptr_t)got;
	c.npages = 1;
	igt_assert_eq(ioctl(x.dmirror, HMM_DMIRROR_READ, &c), 0);
	igt_assert_eq(check_byte(got, PAGE, 0x22), -1);
	igt_assert_eq(check_byte(p, PAGE, 0x22), -1);
	munmap(p, PAGE);
	close(x.dmirror);
	return IGT_PASS;
}

static const struct igt_subtest tests[] = {
	{ "create-destroy", create_destroy },
	{ "too-many", too_many },
	{ "bad-access", bad_access },
	{ "system-read-write", system_read_write },
	{ "large-access", large_access },
	{ "never-stale", never_stale },
	{ "device-memory-in-place", device_memory_in_place },
	{ "other-gpu-memory", other_gpu_memory },
	{ "close-with-vms", close_with_vms },
	{ "write-read-only-device-page", write_read_only_device_page },
	{ "write-read-only-device-thp", write_read_only_device_thp },
	{ "write-cow-device-page", write_cow_device_page },
	{ "write-cow-device-thp", write_cow_device_thp },
	{ "unaligned-access-in-device-thp", unaligned_access_in_device_thp },
	{ "huge-read-only-access", huge_read_only_access },
	{ "exclusive-racing-munmap", exclusive_racing_munmap },
};

int main(int argc, char **argv)
{
	open_nodes();
	return igt_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
