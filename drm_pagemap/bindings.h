/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel APIs the drm_pagemap crate needs that `kernel::bindings` lacks:
 * function-like macros and static inlines wrapped by helpers.c.
 */
#ifndef SVM_DRM_PAGEMAP_BINDINGS_H
#define SVM_DRM_PAGEMAP_BINDINGS_H

#include <linux/ioport.h>
#include <linux/memremap.h>
#include <linux/module.h>
#include <linux/workqueue.h>

struct resource *svm_request_free_mem_region(unsigned long size, const char *name);
void svm_release_mem_region(resource_size_t start, resource_size_t size);
struct workqueue_struct *svm_alloc_workqueue(const char *name, bool ordered);

#endif
