// SPDX-License-Identifier: GPL-2.0
/*
 * xe_svm_uapi: /dev/xe_svm without an xe GPU (none probes in the VM), tried as a hostile
 * client would: every argument check of XE_SVM_IOCTL_DEVMEM_OPEN and XE_SVM_IOCTL_MIGRATE,
 * and a migration through it into another driver's memory (vgpu's, by pagemap fd), which
 * moves the bytes there and back intact.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <drm/drm.h>
#include "vgpu_drm.h"
#include "vgpu_node.h"
#include "xe_svm_ioctl.h"
#include "igt.h"

#define PAGES 64

static int xe_svm(void)
{
	return open("/dev/xe_svm", O_RDWR | O_CLOEXEC);
}

static void *pages(size_t n, unsigned char seed)
{
	unsigned char *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	for (size_t i = 0; i < n * PAGE; i++)
		p[i] = (unsigned char)(seed + i / PAGE) ^ (unsigned char)i;
	return p;
}

static int intact(const unsigned char *p, size_t n, unsigned char seed)
{
	for (size_t i = 0; i < n * PAGE; i++)
		if (p[i] != ((unsigned char)(seed + i / PAGE) ^ (unsigned char)i))
			return 0;
	return 1;
}

/* The auxiliary driver registered with the bus, bound to nothing: no xe GPU probes here. */
static enum igt_result driver_registered(void)
{
	const char *drv = "/sys/bus/auxiliary/drivers/xe_svm.xe_svm";
	char path[128];

	igt_assert(access(drv, F_OK) == 0);
	snprintf(path, sizeof(path), "%s/xe.vram.0", drv);
	igt_assert_errno(access(path, F_OK), ENOENT);
	return IGT_PASS;
}

static enum igt_result node_opens(void)
{
	int fd = xe_svm();

	igt_assert(fd >= 0);
	close(fd);
	return IGT_PASS;
}

/* Root's, as the header says: whoever opens it can fill every region's VRAM. */
static enum igt_result node_is_roots(void)
{
	struct stat st;

	igt_assert_eq(stat("/dev/xe_svm", &st), 0);
	igt_assert_eq(st.st_mode & 0777, 0600);
	igt_assert_eq(st.st_uid, 0);
	/* This subtest runs in a child of its own: it may drop its privileges. */
	igt_assert_eq(setgid(65534), 0);
	igt_assert_eq(setuid(65534), 0);
	igt_assert_errno(xe_svm(), EACCES);
	return IGT_PASS;
}

/* No xe GPU here: every region is absent; malformed requests are refused first. */
static enum igt_result devmem_open_checks(void)
{
	int fd = xe_svm();
	struct xe_svm_devmem_open req = { .region = 0, .pagemap_fd = -7 };

	igt_assert(fd >= 0);
	igt_assert_errno(ioctl(fd, XE_SVM_IOCTL_DEVMEM_OPEN, &req), ENODEV);
	igt_assert_eq(req.pagemap_fd, -7);
	req.region = 0xffffffff;
	igt_assert_errno(ioctl(fd, XE_SVM_IOCTL_DEVMEM_OPEN, &req), ENODEV);
	req = (struct xe_svm_devmem_open){ .flags = 1 };
	igt_assert_errno(ioctl(fd, XE_SVM_IOCTL_DEVMEM_OPEN, &req), EINVAL);
	req = (struct xe_svm_devmem_open){ .pad = 1 };
	igt_assert_errno(ioctl(fd, XE_SVM_IOCTL_DEVMEM_OPEN, &req), EINVAL);
	igt_assert_errno(ioctl(fd, XE_SVM_IOCTL_DEVMEM_OPEN, NULL), EFAULT);
	igt_assert_errno(ioctl(fd, XE_SVM_IOCTL_DEVMEM_OPEN, (void *)-4096L), EFAULT);
	igt_assert_errno(ioctl(fd, _IOWR(XE_SVM_IOCTL_BASE, 0x7f, struct xe_svm_devmem_open), &req),
			 ENOTTY);
	igt_assert_errno(ioctl(fd, _IOWR(XE_SVM_IOCTL_BASE, 0x00, __u64), &req), ENOTTY);
	igt_assert_errno(ioctl(fd, _IOWR('X', 0x00, struct xe_svm_devmem_open), &req), ENOTTY);
	close(fd);
	return IGT_PASS;
}

static enum igt_result migrate_checks(void)
{
	int fd = xe_svm(), null = open("/dev/null", O_RDWR);
	unsigned char *p = pages(4, 1);
	struct xe_svm_migrate m;

	igt_assert(fd >= 0 && null >= 0 && p);
#define M(...) (m = (struct xe_svm_migrate){ __VA_ARGS__ }, ioctl(fd, XE_SVM_IOCTL_MIGRATE, &m))
	igt_assert_errno(M(.start = (uintptr_t)p, .size = PAGE, .pagemap_fd = -1), EBADF);
	igt_assert_errno(M(.start = (uintptr_t)p, .size = PAGE, .pagemap_fd = null), EINVAL);
	igt_assert_errno(M(.start = (uintptr_t)p, .size = PAGE, .pagemap_fd = 999), EBADF);
	igt_assert_errno(M(.start = (uintptr_t)p, .size = PAGE, .pagemap_fd = -1, .flags = 2), EINVAL);
	igt_assert_errno(M(.start = (uintptr_t)p, .size = PAGE, .pagemap_fd = -1, .pad = 1), EINVAL);
	igt_assert_errno(M(.start = (uintptr_t)p, .size = PAGE, .pagemap_fd = null,
			   .flags = XE_SVM_MIGRATE_TO_SYSTEM), EINVAL);
	igt_assert_errno(M(.start = (uintptr_t)p, .size = PAGE, .pagemap_fd = -1,
			   .flags = XE_SVM_MIGRATE_TO_SYSTEM, .timeslice_ms = 1), EINVAL);
	igt_assert_errno(M(.start = (uintptr_t)p + 1, .size = PAGE, .pagemap_fd = -1,
			   .flags = XE_SVM_MIGRATE_TO_SYSTEM), EINVAL);
	igt_assert_errno(M(.start = (uintptr_t)p, .size = 0, .pagemap_fd = -1,
			   .flags = XE_SVM_MIGRATE_TO_SYSTEM), EINVAL);
	igt_assert_errno(M(.start = (uintptr_t)p, .size = 100, .pagemap_fd = -1,
			   .flags = XE_SVM_MIGRATE_TO_SYSTEM), EINVAL);
	igt_assert_errno(M(.start = -4096ULL, .size = 2 * PAGE, .pagemap_fd = -1,
			   .flags = XE_SVM_MIGRATE_TO_SYSTEM), EINVAL);
	igt_assert_errno(ioctl(fd, XE_SVM_IOCTL_MIGRATE, NULL), EFAULT);
	/* The top of the address space: its pieces' ends must not wrap (no region: nothing). */
	igt_assert_eq(M(.start = -8192ULL, .size = PAGE, .pagemap_fd = -1,
			.flags = XE_SVM_MIGRATE_TO_SYSTEM), 0);
	igt_assert_eq(M(.start = -(1ULL << 23) - 4096, .size = 2 * PAGE, .pagemap_fd = -1,
			.flags = XE_SVM_MIGRATE_TO_SYSTEM), 0);
	/* Back to system memory with no region bound: nothing to move, the data stays. */
	igt_assert_eq(M(.start = (uintptr_t)p, .size = 4 * PAGE, .pagemap_fd = -1,
			.flags = XE_SVM_MIGRATE_TO_SYSTEM), 0);
	igt_assert(intact(p, 4, 1));
#undef M
	close(null);
	close(fd);
	return IGT_PASS;
}

static int vgpu_stats(int node, struct drm_vgpu_stats *s)
{
	*s = (struct drm_vgpu_stats){ 0 };
	return ioctl(node, DRM_IOCTL_VGPU_STATS, s);
}

/* A pagemap fd is the stack's, not the driver's: xe_svm moves a range into vgpu's memory. */
static enum igt_result migrate_into_another_drivers_pagemap(void)
{
	char path[64];
	int cursor = 0, node = vgpu_node_next(&cursor, path, sizeof(path)), fd = xe_svm();
	struct drm_vgpu_devmem_open open_req = { 0 };
	struct drm_vgpu_stats before, after;
	unsigned char *p = pages(PAGES, 9);
	struct xe_svm_migrate m;

	if (node < 0)
		igt_skip("no vgpu render node");
	igt_assert(fd >= 0 && p);
	igt_assert_eq(ioctl(node, DRM_IOCTL_VGPU_DEVMEM_OPEN, &open_req), 0);
	igt_assert(open_req.fd >= 0);
	igt_assert_eq(vgpu_stats(node, &before), 0);
	/* A kernel address, and the top of the address space, have no mapping. */
	m = (struct xe_svm_migrate){ .start = -8192ULL, .size = PAGE, .pagemap_fd = open_req.fd };
	igt_assert_errno(ioctl(fd, XE_SVM_IOCTL_MIGRATE, &m), ENOENT);
	m = (struct xe_svm_migrate){ .start = 0xffff888000000000ULL, .size = PAGE,
				     .pagemap_fd = open_req.fd };
	igt_assert_errno(ioctl(fd, XE_SVM_IOCTL_MIGRATE, &m), ENOENT);
	m = (struct xe_svm_migrate){ .start = (uintptr_t)p, .size = PAGES * PAGE,
				     .pagemap_fd = open_req.fd };
	igt_assert_eq(ioctl(fd, XE_SVM_IOCTL_MIGRATE, &m), 0);
	igt_assert_eq(vgpu_stats(node, &after), 0);
	igt_assert_eq(after.pages_to_device - before.pages_to_device, PAGES);
	/* The CPU faults every page back from vgpu's memory, intact. */
	igt_assert(intact(p, PAGES, 9));
	igt_assert_eq(vgpu_stats(node, &after), 0);
	igt_assert_eq(after.pages_to_system - before.pages_to_system, PAGES);
	close(open_req.fd);
	close(fd);
	close(node);
	return IGT_PASS;
}

static const struct igt_subtest subtests[] = {
	{ "driver-registered", driver_registered },
	{ "node-opens", node_opens },
	{ "node-is-roots", node_is_roots },
	{ "devmem-open-checks", devmem_open_checks },
	{ "migrate-checks", migrate_checks },
	{ "migrate-into-another-drivers-pagemap", migrate_into_another_drivers_pagemap },
};

IGT_MAIN(subtests)
