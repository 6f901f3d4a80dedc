/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel APIs the gpusvm crate needs that `kernel::bindings` lacks: HMM range faults and
 * interval notifiers, with the static inlines wrapped by helpers.c.
 */
#ifndef SVM_GPUSVM_BINDINGS_H
#define SVM_GPUSVM_BINDINGS_H

#include <linux/dma-mapping.h>
#include <linux/hmm.h>
#include <linux/interval_tree.h>
#include <linux/memremap.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/rmap.h>
#include <linux/sched/signal.h>

bool svm_mmu_interval_read_retry(struct mmu_interval_notifier *mni, unsigned long seq);
void svm_mmu_interval_set_seq(struct mmu_interval_notifier *mni, unsigned long seq);
bool svm_mmu_notifier_range_blockable(const struct mmu_notifier_range *range);
unsigned long svm_hmm_pfn_to_pfn(unsigned long hmm_pfn);
unsigned int svm_hmm_pfn_to_map_order(unsigned long hmm_pfn);
bool svm_pfn_is_zero(unsigned long pfn);
struct page *svm_pfn_page(unsigned long pfn);
bool svm_pfn_is_device_private(unsigned long pfn);
bool svm_pfn_is_zone_device(unsigned long pfn);
long svm_make_device_exclusive(struct mm_struct *mm, unsigned long addr, void *owner,
			       struct folio **folio);
void svm_folio_unlock_put(struct folio *folio);
unsigned long svm_hmm_pfn_fix_device_pmd(unsigned long hmm_pfn, unsigned long addr);
unsigned long svm_next_vma(struct mm_struct *mm, unsigned long addr, unsigned long *end);
/* From drm_pagemap's helpers (gpusvm loads after drm_pagemap). */
int svm_dma_map_page(struct device *dev, struct page *page, size_t size,
		     enum dma_data_direction dir, dma_addr_t *addr);
void svm_dma_unmap_page(struct device *dev, dma_addr_t addr, size_t size,
			enum dma_data_direction dir);
size_t svm_dma_max_mapping_size(struct device *dev);
void svm_gpusvm_dma_unmap(struct device *dev, dma_addr_t addr, size_t size,
			  enum dma_data_direction dir);
void svm_gpusvm_dma_sync(struct device *dev, dma_addr_t addr, size_t size,
			 enum dma_data_direction dir, bool for_device);
/* Also from drm_pagemap's helpers, for KUnit tests that need an address space. */
unsigned long svm_kunit_mmap_anon(unsigned long len);

#endif
