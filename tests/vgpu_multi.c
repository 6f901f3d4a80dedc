// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu_multi: several GPUs on an interconnect, modelled on Xe's IGT xe_multigpu_svm. Needs
 * vgpu loaded with num_devices=4 links=0-1,2-3: GPUs 0 and 1 form one interconnect group,
 * 2 and 3 another. Checked: the groups (QUERY_LINKS), pagemap file descriptors
 * (DEVMEM_OPEN, MIGRATE to a pagemap fd, refusals, passing one to another process over a
 * unix socket), device-to-device migration straight over the link inside a group and
 * through system memory across groups (the statistics tell which), a GPU reading and
 * writing a linked GPU's memory in place, two GPUs writing disjoint halves of one buffer,
 * two GPUs pulling the same range to themselves in a loop while CPU threads read it, and
 * hot-unplug of a GPU holding data, then re-plug.
 * Every byte is checked.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "vgpu_util.h"
#include "vgpu_svm_util.h"
#include "igt.h"

#define NGPU 4

static int gpu[NGPU] = { -1, -1, -1, -1 };

static void open_all(void)
{
	char path[64];
	int cursor = 0, f;

	while ((f = vgpu_node_next(&cursor, path, sizeof(path))) >= 0) {
		int i = gpu_index(f);

		if (i >= 0 && i < NGPU && gpu[i] < 0)
			gpu[i] = f;
		else
			close(f);
	}
}

static int query_links(int f, struct drm_vgpu_query_links *l)
{
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_LINKS, .size = sizeof(*l), .data = (uintptr_t)l,
	};

	return ioctl(f, DRM_IOCTL_VGPU_QUERY, &q);
}

static int devmem_open(int f)
{
	struct drm_vgpu_devmem_open o = { 0 };

	if (ioctl(f, DRM_IOCTL_VGPU_DEVMEM_OPEN, &o))
		return -1;
	return o.fd;
}

/* Migrates [p, p + size) through GPU `f` into the memory pagemap fd `pfd` names. */
static int migrate_to_pagemap(int f, void *p, size_t size, int pfd)
{
	struct drm_vgpu_migrate m = {
		.start = (uintptr_t)p, .size = size, .target = DRM_VGPU_MIGRATE_TO_DEVICE,
		.flags = DRM_VGPU_MIGRATE_PAGEMAP_FD, .pagemap_fd = pfd,
	};

	return ioctl(f, DRM_IOCTL_VGPU_MIGRATE, &m);
}

static int vm_create(int f)
{
	struct drm_vgpu_vm_create c = { 0 };

	if (ioctl(f, DRM_IOCTL_VGPU_VM_CREATE, &c))
		return -1;
	return (int)c.vm_id;
}

static int vm_access(int f, int id, uint32_t op, void *start, size_t size, void *data)
{
	struct drm_vgpu_vm_access a = {
		.vm_id = (uint32_t)id, .op = op, .start = (uintptr_t)start, .size = size,
		.data = (uintptr_t)data,
	};

	return ioctl(f, DRM_IOCTL_VGPU_VM_ACCESS, &a);
}

static enum igt_result need_four(void)
{
	open_all();
	for (int i = 0; i < NGPU; i++)
		if (gpu[i] < 0)
			igt_skip("needs 4 GPUs (num_devices=4 links=0-1,2-3)");
	return IGT_PASS;
}

#define NEED_FOUR()                                             \
	do {                                                    \
		enum igt_result _r = need_four();               \
		if (_r != IGT_PASS)                             \
			return _r;                              \
	} while (0)

static enum igt_result links_islands(void)
{
	static const uint32_t links[NGPU] = { 0x2, 0x1, 0x8, 0x4 };
	static const uint32_t groups[NGPU] = { 0x3, 0x3, 0xc, 0xc };
	struct drm_vgpu_query_links l;
	struct drm_vgpu_query q = { .query = DRM_VGPU_QUERY_LINKS };

	NEED_FOUR();
	for (int i = 0; i < NGPU; i++) {
		igt_assert_eq(query_links(gpu[i], &l), 0);
		igt_assert_eq(l.links, links[i]);
		igt_assert_eq(l.group, groups[i]);
	}
	/* The size probe, and a wrong size. */
	igt_assert_eq(ioctl(gpu[0], DRM_IOCTL_VGPU_QUERY, &q), 0);
	igt_assert_eq(q.size, sizeof(l));
	q.size = 4;
	q.data = (uintptr_t)&l;
	igt_assert_errno(ioctl(gpu[0], DRM_IOCTL_VGPU_QUERY, &q), EINVAL);
	return IGT_PASS;
}

static enum igt_result devmem_open_fd(void)
{
	struct drm_vgpu_devmem_open bad = { .flags = 1 };
	int pfd;

	NEED_FOUR();
	igt_assert_errno(ioctl(gpu[0], DRM_IOCTL_VGPU_DEVMEM_OPEN, &bad), EINVAL);
	pfd = devmem_open(gpu[0]);
	igt_assert(pfd >= 0);
	igt_assert(fcntl(pfd, F_GETFD) & FD_CLOEXEC);
	/* Not readable or writable as a file, not an ioctl target. */
	{
		char c;

		igt_assert(read(pfd, &c, 1) < 0);
	}
	igt_assert_eq(close(pfd), 0);
	return IGT_PASS;
}

static enum igt_result pagemap_fd_refusals(void)
{
	size_t size = 16 * PAGE;
	uint8_t *p = map_anon(size);
	struct drm_vgpu_migrate m = {
		.start = (uintptr_t)p, .size = size, .target = DRM_VGPU_MIGRATE_TO_DEVICE,
	};
	int pfd0, pfd2;

	NEED_FOUR();
	igt_assert(p);
	fill(p, size, 1);
	pfd0 = devmem_open(gpu[0]);
	pfd2 = devmem_open(gpu[2]);
	igt_assert(pfd0 >= 0 && pfd2 >= 0);
	igt_assert_errno(migrate_to_pagemap(gpu[0], p, size, -1), EBADF);
	igt_assert_errno(migrate_to_pagemap(gpu[0], p, size, 100000), EBADF);
	/* A render node is not a pagemap. */
	igt_assert_errno(migrate_to_pagemap(gpu[0], p, size, gpu[1]), EINVAL);
	/* GPU 2 is not in GPU 0's group. */
	igt_assert_errno(migrate_to_pagemap(gpu[0], p, size, pfd2), ENOLINK);
	/* A descriptor without the flag, the flag to system memory, an unknown flag. */
	m.pagemap_fd = pfd0;
	igt_assert_errno(ioctl(gpu[0], DRM_IOCTL_VGPU_MIGRATE, &m), EINVAL);
	m.flags = DRM_VGPU_MIGRATE_PAGEMAP_FD;
	m.target = DRM_VGPU_MIGRATE_TO_SYSTEM;
	igt_assert_errno(ioctl(gpu[0], DRM_IOCTL_VGPU_MIGRATE, &m), EINVAL);
	m.flags = 2;
	m.target = DRM_VGPU_MIGRATE_TO_DEVICE;
	igt_assert_errno(ioctl(gpu[0], DRM_IOCTL_VGPU_MIGRATE, &m), EINVAL);
	/* Own memory by fd works like no fd. */
	igt_assert_eq(migrate_to_pagemap(gpu[0], p, size, pfd0), 0);
	igt_assert_eq(check(p, size, 1), -1);
	close(pfd0);
	close(pfd2);
	return IGT_PASS;
}

/* RAM -> GPU0 -> GPU1 (straight over the link) -> RAM. */
static enum igt_result direct_linked(void)
{
	size_t size = 4 * MIB, n = size / PAGE;
	uint8_t *p = map_anon(size);
	struct drm_vgpu_stats a0, a1, b0, b1;
	int pfd1;

	NEED_FOUR();
	igt_assert(p);
	fill(p, size, 2);
	igt_assert_eq(migrate(gpu[0], p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	pfd1 = devmem_open(gpu[1]);
	igt_assert(pfd1 >= 0);
	a0 = stats(gpu[0]);
	a1 = stats(gpu[1]);
	/* Through GPU 0's node, into GPU 1's memory. */
	igt_assert_eq(migrate_to_pagemap(gpu[0], p, size, pfd1), 0);
	b0 = stats(gpu[0]);
	b1 = stats(gpu[1]);
	igt_assert_eq(b0.pages_to_peer - a0.pages_to_peer, n);
	igt_assert_eq(b0.pages_to_system - a0.pages_to_system, 0);
	igt_assert_eq(b1.pages_to_device - a1.pages_to_device, n);
	igt_assert_eq(b1.pages_from_peer - a1.pages_from_peer, n);
	/* Back from GPU 1 by its own node... */
	igt_assert_eq(migrate(gpu[1], p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(stats(gpu[1]).pages_to_device, b1.pages_to_device);
	/* ...and to RAM, through CPU faults. */
	igt_assert_eq(check(p, size, 2), -1);
	igt_assert_eq(stats(gpu[1]).pages_to_system - b1.pages_to_system, n);
	close(pfd1);
	return IGT_PASS;
}

/* RAM -> GPU0 -> GPU2 (no link: through system memory) -> RAM. */
static enum igt_result bounce_unlinked(void)
{
	size_t size = 4 * MIB, n = size / PAGE;
	uint8_t *p = map_anon(size);
	struct drm_vgpu_stats a0, a2, b0, b2;

	NEED_FOUR();
	igt_assert(p);
	fill(p, size, 3);
	igt_assert_eq(migrate(gpu[0], p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	a0 = stats(gpu[0]);
	a2 = stats(gpu[2]);
	igt_assert_eq(migrate(gpu[2], p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	b0 = stats(gpu[0]);
	b2 = stats(gpu[2]);
	igt_assert_eq(b0.pages_to_system - a0.pages_to_system, n);
	igt_assert_eq(b0.pages_to_peer - a0.pages_to_peer, 0);
	igt_assert_eq(b2.pages_to_device - a2.pages_to_device, n);
	igt_assert_eq(b2.pages_from_peer - a2.pages_from_peer, 0);
	igt_assert_eq(check(p, size, 3), -1);
	igt_assert_eq(stats(gpu[2]).pages_to_system - b2.pages_to_system, n);
	return IGT_PASS;
}

/* GPU1 reads and writes data resident on GPU0 in place; GPU2 (no link) migrates it home. */
static enum igt_result peer_access_in_place(void)
{
	size_t size = 2 * MIB, n = size / PAGE;
	uint8_t *p = map_anon(size), *buf = malloc(size);
	struct drm_vgpu_stats a0, a1, b0, b1;
	int vm1;

	NEED_FOUR();
	igt_assert(p && buf);
	fill(p, size, 4);
	igt_assert_eq(migrate(gpu[0], p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	vm1 = vm_create(gpu[1]);
	igt_assert(vm1 > 0);
	/* Advised to system memory: GPU 1 maps the pages where they are, not moving them. */
	igt_assert_eq(svm_madvise(gpu[1], vm1, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	a0 = stats(gpu[0]);
	a1 = stats(gpu[1]);
	memset(buf, 0, size);
	igt_assert_eq(vm_access(gpu[1], vm1, DRM_VGPU_VM_READ, p, size, buf), 0);
	igt_assert_eq(check(buf, size, 4), -1);
	fill(buf, size, 5);
	igt_assert_eq(vm_access(gpu[1], vm1, DRM_VGPU_VM_WRITE, p, size, buf), 0);
	b0 = stats(gpu[0]);
	b1 = stats(gpu[1]);
	/* Nothing moved: GPU 1 went over the link. */
	igt_assert_eq(b0.pages_to_system - a0.pages_to_system, 0);
	igt_assert_eq(b0.pages_to_peer - a0.pages_to_peer, 0);
	igt_assert_eq(b1.pages_to_device - a1.pages_to_device, 0);
	igt_assert_eq(b1.peer_accesses - a1.peer_accesses, 2 * n);
	/* The CPU sees GPU 1's writes (faulting the pages back from GPU 0). */
	igt_assert_eq(check(p, size, 5), -1);
	igt_assert_eq(stats(gpu[0]).pages_to_system - b0.pages_to_system, n);
	free(buf);
	return IGT_PASS;
}

/* GPU0 and GPU1 write disjoint halves of one buffer; the CPU reads both. */
static enum igt_result disjoint_halves(void)
{
	size_t size = 4 * MIB, half = size / 2;
	uint8_t *p = map_anon(size), *buf = malloc(size);
	int vm0, vm1;

	NEED_FOUR();
	igt_assert(p && buf);
	memset(p, 0xaa, size);
	igt_assert_eq(migrate(gpu[0], p, half, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(migrate(gpu[1], p + half, half, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	vm0 = vm_create(gpu[0]);
	vm1 = vm_create(gpu[1]);
	igt_assert(vm0 > 0 && vm1 > 0);
	igt_assert_eq(svm_madvise(gpu[0], vm0, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	igt_assert_eq(svm_madvise(gpu[1], vm1, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	/* Each writes the half in the other's memory, in place over the link. */
	fill(buf, size, 6);
	igt_assert_eq(vm_access(gpu[0], vm0, DRM_VGPU_VM_WRITE, p + half, half, buf + half), 0);
	igt_assert_eq(vm_access(gpu[1], vm1, DRM_VGPU_VM_WRITE, p, half, buf), 0);
	igt_assert_eq(check(p, size, 6), -1);
	free(buf);
	return IGT_PASS;
}

/* A pagemap fd passed to another process over a unix socket (SCM_RIGHTS) and used there. */
static enum igt_result pagemap_fd_over_socket(void)
{
	int sv[2], pfd, status;
	pid_t pid;

	NEED_FOUR();
	pfd = devmem_open(gpu[1]);
	igt_assert(pfd >= 0);
	igt_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	igt_assert(pid >= 0);
	if (pid == 0) {
		char c, ctrl[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { .iov_base = &c, .iov_len = 1 };
		struct msghdr msg = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = ctrl, .msg_controllen = sizeof(ctrl),
		};
		size_t size = MIB, n = size / PAGE;
		uint8_t *p = map_anon(size);
		struct drm_vgpu_stats a1;
		int got;

		/* Not the copy fork gave: the one that comes over the socket. */
		close(pfd);
		close(sv[0]);
		if (!p || recvmsg(sv[1], &msg, 0) != 1 || !CMSG_FIRSTHDR(&msg))
			_exit(2);
		memcpy(&got, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
		fill(p, size, 7);
		a1 = stats(gpu[1]);
		/* Through GPU 0's node (inherited), into GPU 1's memory named by the fd. */
		if (migrate_to_pagemap(gpu[0], p, size, got))
			_exit(3);
		if (stats(gpu[1]).pages_to_device - a1.pages_to_device != n)
			_exit(4);
		_exit(check(p, size, 7) == -1 ? 0 : 5);
	}
	close(sv[1]);
	{
		char c = 'x', ctrl[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { .iov_base = &c, .iov_len = 1 };
		struct msghdr msg = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = ctrl, .msg_controllen = sizeof(ctrl),
		};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &pfd, sizeof(int));
		igt_assert_eq(sendmsg(sv[0], &msg, 0), 1);
	}
	/* The message holds its own reference: ours can go at once. */
	close(pfd);
	close(sv[0]);
	igt_assert_eq(waitpid(pid, &status, 0), pid);
	igt_assert(WIFEXITED(status));
	igt_assert_eq(WEXITSTATUS(status), 0);
	return IGT_PASS;
}

/* Two GPUs pull the same range to themselves in a loop while CPU threads read it. */
#define RACE_SIZE (2 * MIB)
#define RACE_ROUNDS 60

static uint8_t *race_buf;
static atomic_int race_stop;
static atomic_long race_bad;
static atomic_long race_moves;

static void *race_gpu(void *arg)
{
	int f = gpu[(long)arg];

	for (int i = 0; i < RACE_ROUNDS && !race_stop; i++) {
		int r = migrate(f, race_buf, RACE_SIZE, DRM_VGPU_MIGRATE_TO_DEVICE);

		/* EBUSY: the other GPU (or a CPU fault) held some page; nothing moved. */
		if (r && errno != EBUSY) {
			printf("# gpu%ld: migrate failed: %s\n", (long)arg, strerror(errno));
			race_bad++;
		} else if (!r) {
			race_moves++;
		}
	}
	return NULL;
}

static void *race_cpu(void *arg)
{
	(void)arg;
	while (!race_stop) {
		long bad = check(race_buf, RACE_SIZE, 8);

		if (bad >= 0) {
			printf("# CPU read a wrong byte at %ld\n", bad);
			race_bad++;
			break;
		}
	}
	return NULL;
}

static enum igt_result racing_pull(void)
{
	pthread_t g[2], c[2];

	NEED_FOUR();
	race_buf = map_anon(RACE_SIZE);
	igt_assert(race_buf);
	fill(race_buf, RACE_SIZE, 8);
	for (long i = 0; i < 2; i++) {
		igt_assert_eq(pthread_create(&g[i], NULL, race_gpu, (void *)i), 0);
		igt_assert_eq(pthread_create(&c[i], NULL, race_cpu, NULL), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(g[i], NULL);
	race_stop = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(c[i], NULL);
	igt_info("%ld migrations completed\n", (long)race_moves);
	igt_assert_eq(race_bad, 0);
	igt_assert(race_moves > 0);
	igt_assert_eq(check(race_buf, RACE_SIZE, 8), -1);
	return IGT_PASS;
}

/* Writes `text` to /sys/kernel/debug/vgpu/`file`: 0, or -1 with errno. */
static int plug_write(const char *file, const char *text)
{
	char path[64];

	snprintf(path, sizeof(path), "/sys/kernel/debug/vgpu/%s", file);
	return file_write(path, text);
}

/* GPU `index`'s pagemaps created and destroyed (debugfs vgpu<index>/pagemaps): 0, or -1. */
static int pagemaps(int index, long *created, long *destroyed)
{
	char path[64];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/sys/kernel/debug/vgpu%d/pagemaps", index);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fscanf(f, "created %ld destroyed %ld", created, destroyed);
	fclose(f);
	return n == 2 ? 0 : -1;
}

/*
 * Close every fd: GPU3's pagemap stays cached, idle, for pagemap_util's idle_ms (5 s), then
 * is destroyed, once; its memory is all free.
 */
static enum igt_result idle_destroy(void)
{
	long c0, d0, c1, d1;
	struct timespec t0;
	int f;

	NEED_FOUR();
	igt_assert_eq(pagemaps(3, &c0, &d0), 0);
	/* Our open file holds GPU3's pagemap: one alive. */
	igt_assert_eq(c0 - d0, 1);
	for (int i = 0; i < NGPU; i++)
		close(gpu[i]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	usleep(500000);
	igt_assert_eq(pagemaps(3, &c1, &d1), 0);
	igt_assert_eq(d1, d0);
	for (int i = 0; i < 1000 && d1 == d0; i++) {
		usleep(20000);
		igt_assert_eq(pagemaps(3, &c1, &d1), 0);
	}
	igt_info("destroyed %ld ms after the last close\n", ms_since(&t0));
	igt_assert_eq(d1, d0 + 1);
	igt_assert(ms_since(&t0) >= 4500);
	usleep(500000);
	igt_assert_eq(pagemaps(3, &c1, &d1), 0);
	igt_assert_eq(c1, c0);
	igt_assert_eq(d1, d0 + 1);
	/* A new user gets a new pagemap, and the memory is all free. */
	f = open_gpu(3);
	igt_assert(f >= 0);
	igt_assert_eq(vram_free(f), vram_size(f));
	igt_assert_eq(pagemaps(3, &c1, &d1), 0);
	igt_assert_eq(c1, c0 + 1);
	close(f);
	return IGT_PASS;
}

/* How many vgpu device-memory regions exist (/proc/iomem). */
static int vgpu_regions(void)
{
	char line[256];
	int n = 0;
	FILE *f = fopen("/proc/iomem", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, ": vgpu") != NULL;
	fclose(f);
	return n;
}

/*
 * Hot-unplug GPU1 while data lives in its memory: the process still reads every byte, GPU1's
 * node and pagemap fd answer ENODEV, the group shrinks; plugged back, it works again.
 */
static enum igt_result unplug_replug(void)
{
	size_t size = 4 * MIB;
	uint8_t *p = map_anon(size);
	struct drm_vgpu_query_links l;
	struct drm_vgpu_stats s;
	int pfd1, again;

	NEED_FOUR();
	igt_assert(p);
	fill(p, size, 9);
	igt_assert_eq(migrate(gpu[1], p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	pfd1 = devmem_open(gpu[1]);
	igt_assert(pfd1 >= 0);
	igt_assert_eq(plug_write("unplug", "1"), 0);
	/* Evicted: every byte is there, without a fault on GPU1's memory. */
	igt_assert_eq(check(p, size, 9), -1);
	igt_assert_errno(ioctl(gpu[1], DRM_IOCTL_VGPU_STATS, &s), ENODEV);
	igt_assert_errno(migrate_to_pagemap(gpu[0], p, size, pfd1), ENODEV);
	igt_assert_errno(plug_write("unplug", "1"), ENODEV);
	igt_assert_errno(plug_write("unplug", "9"), ENOENT);
	igt_assert_errno(plug_write("unplug", "x"), EINVAL);
	igt_assert_eq(query_links(gpu[0], &l), 0);
	igt_assert_eq(l.group, 0x1);
	close(pfd1);
	close(gpu[1]);
	/*
	 * Its memory goes with its last user (the pagemap's destruction runs from a work item):
	 * until then its group stays closed to newcomers, and a GPU plugged back meanwhile would
	 * get a group of its own.
	 */
	for (int i = 0; i < 500 && vgpu_regions() != NGPU - 1; i++)
		usleep(10000);
	igt_assert_eq(vgpu_regions(), NGPU - 1);
	igt_assert_eq(plug_write("plug", "1"), 0);
	igt_assert_errno(plug_write("plug", "1"), EEXIST);
	again = open_gpu(1);
	igt_assert(again >= 0);
	igt_assert_eq(query_links(gpu[0], &l), 0);
	igt_assert_eq(l.group, 0x3);
	igt_assert_eq(migrate(again, p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(stats(again).pages_to_device, size / PAGE);
	igt_assert_eq(check(p, size, 9), -1);
	return IGT_PASS;
}

/*
 * Hot-unplug GPU1 while its copy engine fails (fail_copies): some data stays in its memory,
 * which lives on, unplugged. A GPU plugged back at index 1 has memory of its own: moving the
 * range to GPU0 must copy the old memory's pages, never the new GPU's; GPU0 reads them in
 * place meanwhile; the CPU gets every byte.
 */
static enum igt_result unplug_leftover(void)
{
	size_t size = 2 * MIB;
	uint8_t *p = map_anon(size), *other = map_anon(size), *buf = malloc(size);
	struct drm_vgpu_stats s0;
	int again, vm0;

	NEED_FOUR();
	igt_assert(p && other && buf);
	fill(p, size, 10);
	/* 64 KiB at a time: many allocations, some of which fail to evict. */
	for (size_t off = 0; off < size; off += 64 * 1024)
		igt_assert_eq(migrate(gpu[1], p + off, 64 * 1024, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert_eq(knob_set(gpu[1], "fail_copies", 1000), 0);
	igt_assert_eq(plug_write("unplug", "1"), 0);
	close(gpu[1]);
	igt_assert_eq(plug_write("plug", "1"), 0);
	again = open_gpu(1);
	igt_assert(again >= 0);
	/* Someone else's data in the new GPU1, at the same offsets. */
	fill(other, size, 11);
	igt_assert_eq(migrate(again, other, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	/* GPU0 reads the old memory in place, then pulls the range over. */
	vm0 = vm_create(gpu[0]);
	igt_assert(vm0 > 0);
	igt_assert_eq(svm_madvise(gpu[0], vm0, DRM_VGPU_LOCATION_SYSTEM, p, size, 0), 0);
	igt_assert_eq(vm_access(gpu[0], vm0, DRM_VGPU_VM_READ, p, size, buf), 0);
	igt_assert_eq(check(buf, size, 10), -1);
	s0 = stats(gpu[0]);
	igt_assert_eq(migrate(gpu[0], p, size, DRM_VGPU_MIGRATE_TO_DEVICE), 0);
	igt_assert(stats(gpu[0]).pages_from_peer > s0.pages_from_peer);
	igt_assert_eq(check(p, size, 10), -1);
	igt_assert_eq(check(other, size, 11), -1);
	free(buf);
	return IGT_PASS;
}

static const struct igt_subtest tests[] = {
	{ "links-islands", links_islands },
	{ "devmem-open", devmem_open_fd },
	{ "pagemap-fd-refusals", pagemap_fd_refusals },
	{ "direct-linked", direct_linked },
	{ "bounce-unlinked", bounce_unlinked },
	{ "peer-access-in-place", peer_access_in_place },
	{ "disjoint-halves", disjoint_halves },
	{ "pagemap-fd-over-socket", pagemap_fd_over_socket },
	{ "racing-pull", racing_pull },
	{ "idle-destroy", idle_destroy },
	/* Last: a failure may leave GPU1 unplugged; the last one leaves GPU1 in a group of its
	 * own while the old memory lives. */
	{ "unplug-replug", unplug_replug },
	{ "unplug-leftover", unplug_leftover },
};

IGT_MAIN(tests)
