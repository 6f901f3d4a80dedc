// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu_basic: the render nodes of the virtual GPUs and DRM_IOCTL_VGPU_QUERY, including its
 * refusal of malformed requests; every ioctl's argument checks, tried as a hostile client
 * would (reserved fields, flags, sizes, overflowing ranges, unaligned and kernel addresses,
 * another process's VM, the removed INJECT ioctl).
 *
 * Environment: VGPU_EXPECT_DEVICES and VGPU_EXPECT_VRAM_MIB give what the module was loaded
 * with (defaults 2 and 64).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <drm/drm.h>
#include "vgpu_drm.h"
#include "vgpu_node.h"
#include "igt.h"

#define MAX_NODES 64

static int fds[MAX_NODES];
static int nfds;

static long env_long(const char *name, long def)
{
	const char *v = getenv(name);

	return v ? strtol(v, NULL, 0) : def;
}

/* Opens every render node whose driver is "vgpu". */
static void open_nodes(void)
{
	char path[64];
	int cursor = 0, fd;

	while (nfds < MAX_NODES && (fd = vgpu_node_next(&cursor, path, sizeof(path))) >= 0)
		fds[nfds++] = fd;
}

static int query(int fd, struct drm_vgpu_query_device *dev)
{
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_DEVICE,
		.size = sizeof(*dev),
		.data = (uintptr_t)dev,
	};

	return ioctl(fd, DRM_IOCTL_VGPU_QUERY, &q);
}

static enum igt_result render_nodes(void)
{
	igt_assert_eq(nfds, env_long("VGPU_EXPECT_DEVICES", 2));
	return IGT_PASS;
}

static enum igt_result query_size_probe(void)
{
	if (!nfds)
		igt_skip("no vgpu render node");
	for (int i = 0; i < nfds; i++) {
		struct drm_vgpu_query q = { .query = DRM_VGPU_QUERY_DEVICE };

		igt_assert_eq(ioctl(fds[i], DRM_IOCTL_VGPU_QUERY, &q), 0);
		igt_assert_eq(q.size, sizeof(struct drm_vgpu_query_device));
	}
	return IGT_PASS;
}

static enum igt_result query_device(void)
{
	uint64_t vram = (uint64_t)env_long("VGPU_EXPECT_VRAM_MIB", 64) << 20;
	unsigned int seen = 0;

	if (!nfds)
		igt_skip("no vgpu render node");
	for (int i = 0; i < nfds; i++) {
		struct drm_vgpu_query_device d;

		memset(&d, 0xa5, sizeof(d));
		igt_assert_eq(query(fds[i], &d), 0);
		igt_assert_eq(d.num_devices, nfds);
		igt_assert(d.index < d.num_devices);
		igt_assert(!(seen & (1u << d.index)));
		seen |= 1u << d.index;
		igt_assert_eq(d.vram_size, vram);
		/* Nothing is allocated in device memory yet. */
		igt_assert_eq(d.vram_free, vram);
		igt_assert_eq(d.page_size, 4096);
	}
	igt_assert_eq(seen, (1u << nfds) - 1);
	return IGT_PASS;
}

static enum igt_result query_bad_size(void)
{
	uint8_t buf[sizeof(struct drm_vgpu_query_device) + 16];
	uint32_t sizes[] = { 1, sizeof(struct drm_vgpu_query_device) - 1,
			     sizeof(struct drm_vgpu_query_device) + 8, 0xffffffff };

	if (!nfds)
		igt_skip("no vgpu render node");
	for (unsigned int s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct drm_vgpu_query q = {
			.query = DRM_VGPU_QUERY_DEVICE,
			.size = sizes[s],
			.data = (uintptr_t)buf,
		};

		memset(buf, 0x5a, sizeof(buf));
		igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EINVAL);
		/* Nothing written on refusal. */
		for (unsigned int b = 0; b < sizeof(buf); b++)
			igt_assert_eq(buf[b], 0x5a);
	}
	return IGT_PASS;
}

static enum igt_result query_bad_fields(void)
{
	struct drm_vgpu_query_device d;
	struct drm_vgpu_query good = {
		.query = DRM_VGPU_QUERY_DEVICE,
		.size = sizeof(d),
		.data = (uintptr_t)&d,
	};
	struct drm_vgpu_query q;

	if (!nfds)
		igt_skip("no vgpu render node");
	q = good, q.flags = 1;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EINVAL);
	q = good, q.flags = 0x80000000u;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EINVAL);
	q = good, q.pad = 1;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EINVAL);
	q = good, q.extensions = (uintptr_t)&d;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EINVAL);
	q = good, q.query = 1;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EINVAL);
	q = good, q.query = 0xffffffffu;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EINVAL);
	/* And the good request still works afterwards. */
	q = good;
	igt_assert_eq(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), 0);
	return IGT_PASS;
}

static enum igt_result query_bad_pointer(void)
{
	struct drm_vgpu_query q = {
		.query = DRM_VGPU_QUERY_DEVICE,
		.size = sizeof(struct drm_vgpu_query_device),
	};
	void *ro;

	if (!nfds)
		igt_skip("no vgpu render node");
	q.data = 0;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EFAULT);
	q.data = 1;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EFAULT);
	q.data = ~0ull - 8;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EFAULT);
	ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	igt_assert(ro != MAP_FAILED);
	q.data = (uintptr_t)ro;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, &q), EFAULT);
	munmap(ro, 4096);
	/* The ioctl argument itself unreadable. */
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_QUERY, (void *)8), EFAULT);
	return IGT_PASS;
}

static enum igt_result unknown_ioctl(void)
{
	uint64_t arg[8] = { 0 };

	if (!nfds)
		igt_skip("no vgpu render node");
	igt_assert_errno(ioctl(fds[0], DRM_IOWR(DRM_COMMAND_BASE + 0x3f, uint64_t[8]), arg),
			 EINVAL);
	return IGT_PASS;
}

static enum igt_result many_opens(void)
{
	int extra[32];

	if (!nfds)
		igt_skip("no vgpu render node");
	/* Every open shares the one pagemap; every close gives its reference back. */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 32; i++) {
			char path[64];
			struct drm_vgpu_query_device d;

			snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[i % nfds]);
			extra[i] = open(path, O_RDWR | O_CLOEXEC);
			igt_assert(extra[i] >= 0);
			igt_assert_eq(query(extra[i], &d), 0);
		}
		for (int i = 0; i < 32; i++)
			close(extra[i]);
	}
	return IGT_PASS;
}

/* An address in the kernel's half of the address space (the x86-64 direct map). */
#define KADDR 0xffff888000000000ull

static void *map_anon(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static int migrate(int fd, uint64_t start, uint64_t size, uint32_t target, uint32_t timeslice)
{
	struct drm_vgpu_migrate m = {
		.start = start, .size = size, .target = target, .timeslice_ms = timeslice,
	};

	return ioctl(fd, DRM_IOCTL_VGPU_MIGRATE, &m);
}

static int vm_access(int fd, uint32_t id, uint32_t op, uint64_t start, uint64_t size,
		     uint64_t data)
{
	struct drm_vgpu_vm_access a = {
		.vm_id = id, .op = op, .start = start, .size = size, .data = data,
	};

	return ioctl(fd, DRM_IOCTL_VGPU_VM_ACCESS, &a);
}

static uint64_t vram_free(int fd)
{
	struct drm_vgpu_query_device d;

	return query(fd, &d) ? ~0ull : d.vram_free;
}

/*
 * Free device memory once allocations whose data went back have been released: a release
 * runs from a work item, shortly after the last page left. Waits up to 2 s for the GPU to
 * be idle (no subtest of this program leaves data behind).
 */
static uint64_t vram_free_settled(int fd)
{
	struct drm_vgpu_query_device d;

	for (int i = 0; i < 200; i++) {
		if (query(fd, &d))
			return ~0ull;
		if (d.vram_free == d.vram_size)
			break;
		usleep(10000);
	}
	return d.vram_free;
}

/* The argument of the removed DRM_VGPU_INJECT (0x03), as old userspace built it. */
struct old_inject {
	uint32_t fail_allocs;
	uint32_t fail_copies;
};

/*
 * Error injection left the uAPI (it is per-device debugfs, for root): its number is refused
 * like any unknown ioctl, and a refused call injects nothing.
 */
static enum igt_result inject_ioctl_removed(void)
{
	struct old_inject in = { .fail_allocs = 1, .fail_copies = 1 };
	size_t size = 16 * PAGE;
	uint64_t free0;
	uint8_t *p;

	if (!nfds)
		igt_skip("no vgpu render node");
	igt_assert_errno(ioctl(fds[0], DRM_IOWR(DRM_COMMAND_BASE + 0x03, struct old_inject), &in),
			 EINVAL);
	/* Nothing armed: the next migration and its copy work. */
	free0 = vram_free_settled(fds[0]);
	p = map_anon(size);
	igt_assert(p);
	memset(p, 0x3c, size);
	igt_assert_eq(migrate(fds[0], (uintptr_t)p, size, DRM_VGPU_MIGRATE_TO_DEVICE, 0), 0);
	igt_assert_eq(vram_free(fds[0]), free0 - size);
	igt_assert_eq(migrate(fds[0], (uintptr_t)p, size, DRM_VGPU_MIGRATE_TO_SYSTEM, 0), 0);
	for (size_t i = 0; i < size; i++)
		igt_assert_eq(p[i], 0x3c);
	munmap(p, size);
	return IGT_PASS;
}

static enum igt_result stats_bad_fields(void)
{
	struct drm_vgpu_stats s;

	if (!nfds)
		igt_skip("no vgpu render node");
	memset(&s, 0, sizeof(s));
	s.flags = 1;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_STATS, &s), EINVAL);
	memset(&s, 0, sizeof(s));
	s.pad = 0x80000000u;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_STATS, &s), EINVAL);
	/* Output fields are outputs: whatever they held on input is overwritten. */
	memset(&s, 0xff, sizeof(s));
	s.flags = 0;
	s.pad = 0;
	igt_assert_eq(ioctl(fds[0], DRM_IOCTL_VGPU_STATS, &s), 0);
	igt_assert(s.pages_to_device != ~0ull && s.bytes_copied != ~0ull);
	return IGT_PASS;
}

/* MIGRATE's checks: nothing moves and nothing is touched on refusal. */
static enum igt_result migrate_bad_args(void)
{
	size_t size = 16 * PAGE;
	uint64_t free0, p;
	uint8_t *buf;

	if (!nfds)
		igt_skip("no vgpu render node");
	free0 = vram_free_settled(fds[0]);
	buf = map_anon(size);
	igt_assert(buf);
	memset(buf, 0x5e, size);
	p = (uintptr_t)buf;
	for (uint32_t t = 0; t < 2; t++) {
		/* Unaligned, empty, overflowing start + size. */
		igt_assert_errno(migrate(fds[0], p + 1, size, t, 0), EINVAL);
		igt_assert_errno(migrate(fds[0], p, size + 1, t, 0), EINVAL);
		igt_assert_errno(migrate(fds[0], p, PAGE - 1, t, 0), EINVAL);
		igt_assert_errno(migrate(fds[0], p, 0, t, 0), EINVAL);
		igt_assert_errno(migrate(fds[0], p, ~0ull & ~(PAGE - 1), t, 0), EINVAL);
		igt_assert_errno(migrate(fds[0], ~0ull & ~(PAGE - 1), PAGE, t, 0), EINVAL);
		igt_assert_errno(migrate(fds[0], 1ull << 63, 1ull << 63, t, 0), EINVAL);
		/* Nothing mapped there: the null page, the kernel's half. */
		igt_assert_errno(migrate(fds[0], 0, PAGE, t, 0), ENOENT);
		igt_assert_errno(migrate(fds[0], KADDR, PAGE, t, 0), ENOENT);
	}
	/* Bigger than the GPU's memory. */
	igt_assert_errno(migrate(fds[0], p, 1ull << 40, DRM_VGPU_MIGRATE_TO_DEVICE, 0), ENOMEM);
	/* A timeslice means nothing on the way back: refused, so that it can mean something later. */
	igt_assert_errno(migrate(fds[0], p, size, DRM_VGPU_MIGRATE_TO_SYSTEM, 1), EINVAL);
	igt_assert_errno(migrate(fds[0], p, size, 2, 0), EINVAL);
	igt_assert_errno(migrate(fds[0], p, size, 0xffffffffu, 0), EINVAL);
	igt_assert_eq(vram_free(fds[0]), free0);
	for (size_t i = 0; i < size; i++)
		igt_assert_eq(buf[i], 0x5e);
	munmap(buf, size);
	return IGT_PASS;
}

/* EVICT's flags (the privilege check is in vgpu_migrate: it needs data to evict). */
static enum igt_result evict_bad_flags(void)
{
	struct drm_vgpu_evict ev = { .flags = 1 };

	if (!nfds)
		igt_skip("no vgpu render node");
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_EVICT, &ev), EINVAL);
	ev.flags = 0x80000000u;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_EVICT, &ev), EINVAL);
	return IGT_PASS;
}

/* VM_CREATE, VM_DESTROY and VM_ACCESS checks. */
static enum igt_result vm_bad_args(void)
{
	struct drm_vgpu_vm_create c = { 0 };
	struct drm_vgpu_vm_destroy d = { 0 };
	size_t size = 4 * PAGE;
	uint8_t *p, *buf;
	uint64_t a, b;
	uint32_t id;

	if (!nfds)
		igt_skip("no vgpu render node");
	p = map_anon(size);
	buf = map_anon(size);
	igt_assert(p && buf);
	memset(p, 0x11, size);
	memset(buf, 0x22, size);
	a = (uintptr_t)p;
	b = (uintptr_t)buf;
	c.flags = 0x80000000u;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_VM_CREATE, &c), EINVAL);
	c.flags = 0;
	igt_assert_eq(ioctl(fds[0], DRM_IOCTL_VGPU_VM_CREATE, &c), 0);
	id = c.vm_id;
	/* Unknown VMs, bad ops. */
	igt_assert_errno(vm_access(fds[0], 0, DRM_VGPU_VM_READ, a, size, b), ENOENT);
	igt_assert_errno(vm_access(fds[0], id + 1, DRM_VGPU_VM_READ, a, size, b), ENOENT);
	igt_assert_errno(vm_access(fds[0], ~0u, DRM_VGPU_VM_READ, a, size, b), ENOENT);
	igt_assert_errno(vm_access(fds[0], id, 2, a, size, b), EINVAL);
	igt_assert_errno(vm_access(fds[0], id, 0xffffffffu, a, size, b), EINVAL);
	for (uint32_t op = 0; op < 2; op++) {
		/* Unaligned, empty, overflowing start + size. */
		igt_assert_errno(vm_access(fds[0], id, op, a + 1, size, b), EINVAL);
		igt_assert_errno(vm_access(fds[0], id, op, a, size - 1, b), EINVAL);
		igt_assert_errno(vm_access(fds[0], id, op, a, 0, b), EINVAL);
		igt_assert_errno(vm_access(fds[0], id, op, ~0ull & ~(PAGE - 1), PAGE, b), EINVAL);
		igt_assert_errno(vm_access(fds[0], id, op, a, ~0ull & ~(PAGE - 1), b), EINVAL);
		/* Addresses nobody maps, and the kernel's, as the range or as the buffer. */
		igt_assert_errno(vm_access(fds[0], id, op, 0, size, b), EFAULT);
		igt_assert_errno(vm_access(fds[0], id, op, KADDR, size, b), EFAULT);
		igt_assert_errno(vm_access(fds[0], id, op, a, size, 0), EFAULT);
		igt_assert_errno(vm_access(fds[0], id, op, a, size, KADDR), EFAULT);
		igt_assert_errno(vm_access(fds[0], id, op, a, size, ~0ull - PAGE), EFAULT);
	}
	for (size_t i = 0; i < size; i++) {
		igt_assert_eq(p[i], 0x11);
		igt_assert_eq(buf[i], 0x22);
	}
	/* The good request works. */
	igt_assert_eq(vm_access(fds[0], id, DRM_VGPU_VM_READ, a, size, b), 0);
	igt_assert_eq(buf[size - 1], 0x11);
	d.vm_id = id;
	d.pad = 1;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_VM_DESTROY, &d), EINVAL);
	d.pad = 0;
	d.vm_id = id + 1;
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_VM_DESTROY, &d), ENOENT);
	d.vm_id = id;
	igt_assert_eq(ioctl(fds[0], DRM_IOCTL_VGPU_VM_DESTROY, &d), 0);
	igt_assert_errno(ioctl(fds[0], DRM_IOCTL_VGPU_VM_DESTROY, &d), ENOENT);
	munmap(p, size);
	munmap(buf, size);
	return IGT_PASS;
}

/*
 * A GPU VM is the address space of the process that created it. Another process holding the
 * same file (a fork, or a descriptor passed over a socket) must not read or write that
 * address space through it: that would be process_vm_readv/writev without ptrace's checks.
 */
static enum igt_result vm_other_process_refused(void)
{
	struct drm_vgpu_vm_create c = { 0 };
	size_t size = 4 * PAGE;
	uint8_t *p;
	int status;
	pid_t pid;

	if (!nfds)
		igt_skip("no vgpu render node");
	p = map_anon(size);
	igt_assert(p);
	memset(p, 0x33, size);
	igt_assert_eq(ioctl(fds[0], DRM_IOCTL_VGPU_VM_CREATE, &c), 0);
	pid = fork();
	igt_assert(pid >= 0);
	if (pid == 0) {
		uint8_t *buf = map_anon(size);
		int ret;

		if (!buf)
			_exit(10);
		/* The child's own copy differs from the parent's data from now on. */
		memset(p, 0x44, size);
		memset(buf, 0x55, size);
		ret = vm_access(fds[0], c.vm_id, DRM_VGPU_VM_READ, (uintptr_t)p, size,
				(uintptr_t)buf);
		if (ret != -1 || errno != EACCES)
			_exit(11);
		for (size_t i = 0; i < size; i++)
			if (buf[i] != 0x55)
				_exit(12);
		ret = vm_access(fds[0], c.vm_id, DRM_VGPU_VM_WRITE, (uintptr_t)p, size,
				(uintptr_t)buf);
		if (ret != -1 || errno != EACCES)
			_exit(13);
		_exit(0);
	}
	igt_assert_eq(waitpid(pid, &status, 0), pid);
	igt_assert(WIFEXITED(status));
	igt_assert_eq(WEXITSTATUS(status), 0);
	/* The parent's memory is its own. */
	for (size_t i = 0; i < size; i++)
		igt_assert_eq(p[i], 0x33);
	munmap(p, size);
	return IGT_PASS;
}

static const struct igt_subtest tests[] = {
	{ "render-nodes", render_nodes },
	{ "query-size-probe", query_size_probe },
	{ "query-device", query_device },
	{ "query-bad-size", query_bad_size },
	{ "query-bad-fields", query_bad_fields },
	{ "query-bad-pointer", query_bad_pointer },
	{ "unknown-ioctl", unknown_ioctl },
	{ "many-opens", many_opens },
	{ "inject-ioctl-removed", inject_ioctl_removed },
	{ "stats-bad-fields", stats_bad_fields },
	{ "migrate-bad-args", migrate_bad_args },
	{ "evict-bad-flags", evict_bad_flags },
	{ "vm-bad-args", vm_bad_args },
	{ "vm-other-process-refused", vm_other_process_refused },
};

int main(int argc, char **argv)
{
	open_nodes();
	return igt_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
