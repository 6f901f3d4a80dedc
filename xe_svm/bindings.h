/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xe_svm's view of xe (the backend API of patches/apply/) and its C glue (helpers.c), for
 * the crate's bindgen step.
 */
#ifndef SVM_XE_SVM_BINDINGS_H
#define SVM_XE_SVM_BINDINGS_H

#include <drm/drm_pagemap.h>
#include <drm/intel/xe_svm_backend.h>

#include "xe_svm_ioctl.h"

struct auxiliary_device;
struct device;
struct dma_fence;

/* The region of an "xe.vram" auxiliary device (xe registers them embedded in it). */
struct xe_svm_backend_region *svm_xe_region_of(struct auxiliary_device *adev);
/* Waits for @fence, uninterruptibly, and drops it: 0 or the copy's error. */
int svm_xe_fence_wait_put(struct dma_fence *fence);
/* Drops @fence. */
void svm_xe_fence_put(struct dma_fence *fence);
/* The PCIe P2P distance from @provider (a PCI device) to @client, negative if none. */
int svm_xe_p2p_distance(struct device *provider, struct device *client);
/* Maps @size bytes at CPU physical address @phys (a BAR) for @dev: 0 and *@addr, or -EIO. */
int svm_xe_map_resource(struct device *dev, u64 phys, u64 size, int dir, u64 *addr);
void svm_xe_unmap_resource(struct device *dev, u64 addr, u64 size, int dir);

/* The ops of every allocation: @evict calls svm_xe_evict, defined in Rust (xe.rs). */
extern const struct xe_svm_backend_alloc_ops svm_xe_alloc_ops;
int svm_xe_evict(void *priv);
/* Defined in Rust (xe.rs): one block of an allocation, for xe_svm_backend_alloc_blocks(). */
int svm_xe_block(void *arg, u64 dpa, u64 size);

#endif
