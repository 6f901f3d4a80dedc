// SPDX-License-Identifier: GPL-2.0
/*
 * C glue of xe_svm: what Rust cannot call directly (inline functions, container_of over the
 * auxiliary device xe embeds), and the ops table xe calls back through.
 */
#include <linux/dma-fence.h>
#include <linux/dma-mapping.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/pci-p2pdma.h>

#include "bindings.h"

struct xe_svm_backend_region *svm_xe_region_of(struct auxiliary_device *adev)
{
	return container_of(adev, struct xe_svm_backend_region, adev);
}

int svm_xe_fence_wait_put(struct dma_fence *fence)
{
	long ret = dma_fence_wait(fence, false);
	int err = ret < 0 ? ret : fence->error;

	dma_fence_put(fence);
	return err;
}

void svm_xe_fence_put(struct dma_fence *fence)
{
	dma_fence_put(fence);
}

int svm_xe_p2p_distance(struct device *provider, struct device *client)
{
	if (!dev_is_pci(provider))
		return -1;
	return pci_p2pdma_distance(to_pci_dev(provider), client, false);
}

int svm_xe_map_resource(struct device *dev, u64 phys, u64 size, int dir, u64 *addr)
{
	dma_addr_t a = dma_map_resource(dev, phys, size, dir, DMA_ATTR_SKIP_CPU_SYNC);

	if (dma_mapping_error(dev, a))
		return -EIO;
	*addr = a;
	return 0;
}

void svm_xe_unmap_resource(struct device *dev, u64 addr, u64 size, int dir)
{
	dma_unmap_resource(dev, addr, size, dir, DMA_ATTR_SKIP_CPU_SYNC);
}

const struct xe_svm_backend_alloc_ops svm_xe_alloc_ops = {
	.owner = THIS_MODULE,
	.evict = svm_xe_evict,
};
