/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel APIs the drm_pagemap crate needs that `kernel::bindings` lacks: the migrate_vma and
 * migrate_device APIs, and function-like macros and static inlines wrapped by helpers.c.
 */
#ifndef SVM_DRM_PAGEMAP_BINDINGS_H
#define SVM_DRM_PAGEMAP_BINDINGS_H

#include <linux/dma-direct.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/highmem.h>
#include <linux/iommu-dma.h>
#include <linux/lockdep.h>
#include <linux/ioport.h>
#include <linux/memremap.h>
#include <linux/migrate.h>
#include <linux/mman.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched/signal.h>
#include <linux/workqueue.h>
#include <kunit/test.h>
#include <kunit/test-bug.h>

struct resource *svm_request_free_mem_region(unsigned long size, const char *name);
void svm_release_mem_region(resource_size_t start, resource_size_t size);
struct workqueue_struct *svm_alloc_workqueue(const char *name, bool ordered);

unsigned long svm_migrate_pfn(unsigned long pfn);
struct page *svm_migrate_pfn_to_page(unsigned long mpfn);
unsigned long svm_page_to_pfn(struct page *page);
struct page *svm_pfn_to_page(unsigned long pfn);
bool svm_is_device_private_page(struct page *page);
struct dev_pagemap *svm_page_pgmap(struct page *page);
void *svm_page_zone_device_data(struct page *page);
void svm_page_set_zone_device_data(struct page *page, void *data);
void *svm_folio_zone_device_data(struct folio *folio);
void svm_unlock_put_page(struct page *page);
struct page *svm_alloc_locked_page(struct vm_area_struct *vma, unsigned long addr);
struct page *svm_alloc_locked_thp(struct vm_area_struct *vma, unsigned long addr);
unsigned long svm_hpage_pmd_nr(void);
unsigned int svm_hpage_pmd_order(void);
struct page *svm_folio_nth_page(struct page *page, unsigned long n);
void svm_folio_split_inherit(struct folio *orig, struct folio *new);
void svm_folio_set_zone_device_data(struct folio *folio, void *data);
bool svm_vma_is_anonymous(struct vm_area_struct *vma);
bool svm_page_is_anon(struct page *page);
void svm_sleep_killable(unsigned int ms);
bool svm_fatal_signal_pending(void);
void svm_cond_resched(void);
int svm_page_ref_count(struct page *page);
bool svm_page_in_large_folio(struct page *page);
bool svm_fault_may_retry(struct vm_fault *vmf);
void svm_release_fault_lock(struct vm_fault *vmf);
void svm_unlock_page(struct page *page);
void svm_lock_page(struct page *page);
int svm_dma_map_page(struct device *dev, struct page *page, size_t size,
		     enum dma_data_direction dir, dma_addr_t *addr);
void svm_dma_unmap_page(struct device *dev, dma_addr_t addr, size_t size,
			enum dma_data_direction dir);
size_t svm_dma_max_mapping_size(struct device *dev);
int svm_dma_coerce_mask(struct device *dev, u64 mask);
void *svm_dma_direct_virt(struct device *dev, dma_addr_t addr, size_t len);
bool svm_copy_signalling_begin(void);
void svm_copy_signalling_end(bool cookie);
void svm_copy_might_wait(void);
unsigned long svm_kunit_mmap_anon(unsigned long len);
int svm_module_refcount(struct module *mod);

#endif
