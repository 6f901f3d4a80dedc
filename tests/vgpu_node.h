/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Finding vgpu render nodes: the one discovery every test program shares. The DRM core
 * numbers render nodes from 128 (at most 64 of them); which ones are vgpu's, and in which
 * order, depends on what else is loaded, so nodes are told apart by driver name, never by
 * number.
 */
#ifndef SVM_TESTS_VGPU_NODE_H
#define SVM_TESTS_VGPU_NODE_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <drm/drm.h>

/*
 * The page size every program assumes (buffers on the stack are sized by it). Checked
 * against sysconf(_SC_PAGESIZE) before any node is opened: on another page size the program
 * stops at once, saying why, instead of failing in confusing ways.
 */
#define PAGE 4096UL

static inline void vgpu_check_page_size(void)
{
	long size = sysconf(_SC_PAGESIZE);

	if (size != (long)PAGE) {
		printf("Bail out! the page size is %ld, these tests assume %lu\n", size, PAGE);
		exit(1);
	}
}

/*
 * Opens the next vgpu render node from minor `*cursor` on (start with 0): returns its file
 * descriptor, writes its path into `path` and moves `*cursor` past it; -1 when there is none.
 */
static inline int vgpu_node_next(int *cursor, char *path, size_t len)
{
	vgpu_check_page_size();
	int minor = *cursor < 128 ? 128 : *cursor;

	for (; minor < 192; minor++) {
		char name[32] = { 0 };
		struct drm_version v = { .name = name, .name_len = sizeof(name) - 1 };
		int f;

		snprintf(path, len, "/dev/dri/renderD%d", minor);
		f = open(path, O_RDWR | O_CLOEXEC);
		if (f < 0)
			continue;
		if (!ioctl(f, DRM_IOCTL_VERSION, &v) && !strcmp(name, "vgpu")) {
			*cursor = minor + 1;
			return f;
		}
		close(f);
	}
	*cursor = minor;
	return -1;
}

#endif
