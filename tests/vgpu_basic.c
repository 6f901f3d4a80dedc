// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu_basic: the render nodes of the virtual GPUs and DRM_IOCTL_VGPU_QUERY, including its
 * refusal of malformed requests.
 *
 * Environment: VGPU_EXPECT_DEVICES and VGPU_EXPECT_VRAM_MIB give what the module was loaded
 * with (defaults 2 and 64).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <drm/drm.h>
#include "vgpu_drm.h"
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
	for (int minor = 128; minor < 192 && nfds < MAX_NODES; minor++) {
		char path[64], name[32] = { 0 };
		struct drm_version v = { .name = name, .name_len = sizeof(name) - 1 };
		int fd;

		snprintf(path, sizeof(path), "/dev/dri/renderD%d", minor);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (ioctl(fd, DRM_IOCTL_VERSION, &v) == 0 && !strcmp(name, "vgpu"))
			fds[nfds++] = fd;
		else
			close(fd);
	}
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

static const struct igt_subtest tests[] = {
	{ "render-nodes", render_nodes },
	{ "query-size-probe", query_size_probe },
	{ "query-device", query_device },
	{ "query-bad-size", query_bad_size },
	{ "query-bad-fields", query_bad_fields },
	{ "query-bad-pointer", query_bad_pointer },
	{ "unknown-ioctl", unknown_ioctl },
	{ "many-opens", many_opens },
};

int main(int argc, char **argv)
{
	open_nodes();
	return igt_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
