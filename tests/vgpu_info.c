// SPDX-License-Identifier: GPL-2.0
/* vgpu_info: prints what each virtual GPU is (what `make run` shows until the demo exists). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <drm/drm.h>
#include "vgpu_drm.h"
#include "vgpu_node.h"

int main(void)
{
	char path[64];
	int cursor = 0, found = 0, fd;

	while ((fd = vgpu_node_next(&cursor, path, sizeof(path))) >= 0) {
		struct drm_vgpu_query_device d;
		struct drm_vgpu_query q = {
			.query = DRM_VGPU_QUERY_DEVICE,
			.size = sizeof(d),
			.data = (uintptr_t)&d,
		};

		if (!ioctl(fd, DRM_IOCTL_VGPU_QUERY, &q)) {
			printf("%s: vgpu%u of %u, %llu MiB device memory (%llu MiB free), %llu-byte pages\n",
			       path, d.index, d.num_devices, (unsigned long long)d.vram_size >> 20,
			       (unsigned long long)d.vram_free >> 20, (unsigned long long)d.page_size);
			found++;
		}
		close(fd);
	}
	if (!found)
		printf("no virtual GPU found\n");
	return found ? 0 : 1;
}
