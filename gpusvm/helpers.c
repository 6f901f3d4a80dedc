// SPDX-License-Identifier: GPL-2.0
/* C glue for kernel macros and static inlines used by the gpusvm crate. */

#include "bindings.h"

bool svm_mmu_interval_read_retry(struct mmu_interval_notifier *mni, unsigned long seq)
{
	return mmu_interval_read_retry(mni, seq);
}
EXPORT_SYMBOL_GPL(svm_mmu_interval_read_retry);

void svm_mmu_interval_set_seq(struct mmu_interval_notifier *mni, unsigned long seq)
{
	mmu_interval_set_seq(mni, seq);
}
EXPORT_SYMBOL_GPL(svm_mmu_interval_set_seq);

bool svm_mmu_notifier_range_blockable(const struct mmu_notifier_range *range)
{
	return mmu_notifier_range_blockable(range);
}
EXPORT_SYMBOL_GPL(svm_mmu_notifier_range_blockable);

unsigned long svm_hmm_pfn_to_pfn(unsigned long hmm_pfn)
{
	return hmm_pfn & ~HMM_PFN_FLAGS;
}
EXPORT_SYMBOL_GPL(svm_hmm_pfn_to_pfn);

unsigned int svm_hmm_pfn_to_map_order(unsigned long hmm_pfn)
{
	return hmm_pfn_to_map_order(hmm_pfn);
}
EXPORT_SYMBOL_GPL(svm_hmm_pfn_to_map_order);

bool svm_pfn_is_zero(unsigned long pfn)
{
	return is_zero_pfn(pfn);
}
EXPORT_SYMBOL_GPL(svm_pfn_is_zero);

struct page *svm_pfn_page(unsigned long pfn)
{
	return pfn_to_page(pfn);
}
EXPORT_SYMBOL_GPL(svm_pfn_page);

bool svm_pfn_is_zone_device(unsigned long pfn)
{
	return is_zone_device_page(pfn_to_page(pfn));
}
EXPORT_SYMBOL_GPL(svm_pfn_is_zone_device);

bool svm_pfn_is_device_private(unsigned long pfn)
{
	return is_device_private_page(pfn_to_page(pfn));
}
EXPORT_SYMBOL_GPL(svm_pfn_is_device_private);

/*
 * make_device_exclusive() as a pfn or a negative errno; on success *folio is locked and
 * referenced until svm_folio_unlock_put().
 */
long svm_make_device_exclusive(struct mm_struct *mm, unsigned long addr, void *owner,
			       struct folio **folio)
{
	struct page *page = make_device_exclusive(mm, addr, owner, folio);

	if (IS_ERR(page))
		return PTR_ERR(page);
	return page_to_pfn(page);
}
EXPORT_SYMBOL_GPL(svm_make_device_exclusive);

void svm_folio_unlock_put(struct folio *folio)
{
	folio_unlock(folio);
	folio_put(folio);
}
EXPORT_SYMBOL_GPL(svm_folio_unlock_put);

/*
 * The HMM pfn of the page at @addr inside a PMD-mapped (order 9) device-private folio:
 * the folio's head plus the page's offset inside the 2 MiB range. Anything else is returned
 * unchanged. Works around hmm_vma_handle_absent_pmd() in kernels that report the head (plus
 * the page's index in the walk, not in the PMD) for every page of such an entry; on a kernel
 * that reports the right page it computes the same.
 *
 * The caller holds what keeps the mapping (and so the folio) from changing: the notifier's
 * sequence checked under its lock.
 */
unsigned long svm_hmm_pfn_fix_device_pmd(unsigned long hmm_pfn, unsigned long addr)
{
	unsigned int order = PMD_SHIFT - PAGE_SHIFT;
	struct folio *folio;
	struct page *page;

	if (!(hmm_pfn & HMM_PFN_VALID) || hmm_pfn_to_map_order(hmm_pfn) != order)
		return hmm_pfn;
	page = pfn_to_page(hmm_pfn & ~HMM_PFN_FLAGS);
	if (!is_device_private_page(page))
		return hmm_pfn;
	folio = page_folio(page);
	if (folio_order(folio) != order)
		return hmm_pfn;
	return (hmm_pfn & HMM_PFN_FLAGS) | (folio_pfn(folio) + ((addr & ~PMD_MASK) >> PAGE_SHIFT));
}
EXPORT_SYMBOL_GPL(svm_hmm_pfn_fix_device_pmd);

/* A software device's accesses through a streaming DMA mapping, bracketed as the DMA API asks. */
void svm_gpusvm_dma_sync(struct device *dev, dma_addr_t addr, size_t size,
			 enum dma_data_direction dir, bool for_device)
{
	if (for_device)
		dma_sync_single_for_device(dev, addr, size, dir);
	else
		dma_sync_single_for_cpu(dev, addr, size, dir);
}
EXPORT_SYMBOL_GPL(svm_gpusvm_dma_sync);

/*
 * The start and end of the first VMA of @mm ending after @addr, or 0 (and *end 0) if none.
 * The caller holds the mmap lock.
 */
unsigned long svm_next_vma(struct mm_struct *mm, unsigned long addr, unsigned long *end)
{
	struct vm_area_struct *vma = find_vma(mm, addr);

	if (!vma) {
		*end = 0;
		return 0;
	}
	*end = vma->vm_end;
	return vma->vm_start;
}
EXPORT_SYMBOL_GPL(svm_next_vma);

/*
 * Undoes a mapping of svm_dma_map_page() without the CPU sync a bounced (swiotlb) mapping does
 * at unmap time: a GPU SVM mapping lives on while the CPU keeps writing the page, and copying
 * the bounce buffer back then would overwrite those writes with what the device saw when it
 * last synced. A device makes its own writes visible with svm_gpusvm_dma_sync() as it goes.
 */
void svm_gpusvm_dma_unmap(struct device *dev, dma_addr_t addr, size_t size,
			  enum dma_data_direction dir)
{
	dma_unmap_page_attrs(dev, addr, size, dir, DMA_ATTR_SKIP_CPU_SYNC);
}
EXPORT_SYMBOL_GPL(svm_gpusvm_dma_unmap);
