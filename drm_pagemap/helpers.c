// SPDX-License-Identifier: GPL-2.0
/* C glue for kernel macros and static inlines used by the drm_pagemap crate. */

#include "bindings.h"

struct resource *svm_request_free_mem_region(unsigned long size, const char *name)
{
	return request_free_mem_region(&iomem_resource, size, name);
}
EXPORT_SYMBOL_GPL(svm_request_free_mem_region);

void svm_release_mem_region(resource_size_t start, resource_size_t size)
{
	release_mem_region(start, size);
}
EXPORT_SYMBOL_GPL(svm_release_mem_region);

struct workqueue_struct *svm_alloc_workqueue(const char *name, bool ordered)
{
	if (ordered)
		return alloc_ordered_workqueue("%s", WQ_MEM_RECLAIM, name);
	return alloc_workqueue("%s", WQ_UNBOUND | WQ_MEM_RECLAIM, 0, name);
}
EXPORT_SYMBOL_GPL(svm_alloc_workqueue);
