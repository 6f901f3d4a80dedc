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

unsigned long svm_migrate_pfn(unsigned long pfn)
{
	return migrate_pfn(pfn);
}
EXPORT_SYMBOL_GPL(svm_migrate_pfn);

struct page *svm_migrate_pfn_to_page(unsigned long mpfn)
{
	return migrate_pfn_to_page(mpfn);
}
EXPORT_SYMBOL_GPL(svm_migrate_pfn_to_page);

unsigned long svm_page_to_pfn(struct page *page)
{
	return page_to_pfn(page);
}
EXPORT_SYMBOL_GPL(svm_page_to_pfn);

struct page *svm_pfn_to_page(unsigned long pfn)
{
	return pfn_to_page(pfn);
}
EXPORT_SYMBOL_GPL(svm_pfn_to_page);

bool svm_is_device_private_page(struct page *page)
{
	return is_device_private_page(page);
}
EXPORT_SYMBOL_GPL(svm_is_device_private_page);

struct dev_pagemap *svm_page_pgmap(struct page *page)
{
	return page_pgmap(page);
}
EXPORT_SYMBOL_GPL(svm_page_pgmap);

void *svm_page_zone_device_data(struct page *page)
{
	return folio_zone_device_data(page_folio(page));
}
EXPORT_SYMBOL_GPL(svm_page_zone_device_data);

void svm_page_set_zone_device_data(struct page *page, void *data)
{
	folio_set_zone_device_data(page_folio(page), data);
}
EXPORT_SYMBOL_GPL(svm_page_set_zone_device_data);

void *svm_folio_zone_device_data(struct folio *folio)
{
	return folio_zone_device_data(folio);
}
EXPORT_SYMBOL_GPL(svm_folio_zone_device_data);

void svm_unlock_put_page(struct page *page)
{
	struct folio *folio = page_folio(page);

	folio_unlock(folio);
	folio_put(folio);
}
EXPORT_SYMBOL_GPL(svm_unlock_put_page);

/* A system page for migration to RAM, locked as migrate_vma_pages() expects. */
struct page *svm_alloc_locked_page(struct vm_area_struct *vma, unsigned long addr)
{
	struct page *page;

	if (vma)
		page = alloc_page_vma(GFP_HIGHUSER_MOVABLE, vma, addr);
	else
		page = alloc_page(GFP_HIGHUSER);
	if (page)
		lock_page(page);
	return page;
}
EXPORT_SYMBOL_GPL(svm_alloc_locked_page);

/*
 * A locked transparent huge page for migrating a device folio of the same size back: for
 * the faulting VMA when there is one, else from any node (eviction).
 */
struct page *svm_alloc_locked_thp(struct vm_area_struct *vma, unsigned long addr)
{
	gfp_t gfp = GFP_HIGHUSER_MOVABLE | __GFP_NOWARN;
	struct folio *folio;

	/*
	 * A fault falls back to base pages if no huge page comes cheaply; eviction cannot (the
	 * core cannot split a device folio without a VMA), so it may reclaim and compact.
	 */
	if (vma)
		gfp |= __GFP_NORETRY;

	if (vma)
		folio = vma_alloc_folio(gfp, HPAGE_PMD_ORDER, vma, addr & HPAGE_PMD_MASK);
	else
		folio = folio_alloc(gfp, HPAGE_PMD_ORDER);
	if (!folio)
		return NULL;
	folio_lock(folio);
	return folio_page(folio, 0);
}
EXPORT_SYMBOL_GPL(svm_alloc_locked_thp);

unsigned long svm_hpage_pmd_nr(void)
{
	return HPAGE_PMD_NR;
}
EXPORT_SYMBOL_GPL(svm_hpage_pmd_nr);

unsigned int svm_hpage_pmd_order(void)
{
	return HPAGE_PMD_ORDER;
}
EXPORT_SYMBOL_GPL(svm_hpage_pmd_order);

/* Page @n of the folio @page belongs to. */
struct page *svm_folio_nth_page(struct page *page, unsigned long n)
{
	return folio_page(page_folio(page), n);
}
EXPORT_SYMBOL_GPL(svm_folio_nth_page);

/* What a folio split off a device folio inherits from it, besides its zone-device data. */
void svm_folio_split_inherit(struct folio *orig, struct folio *new)
{
	new->pgmap = orig->pgmap;
	new->page.mapping = orig->page.mapping;
}
EXPORT_SYMBOL_GPL(svm_folio_split_inherit);

void svm_folio_set_zone_device_data(struct folio *folio, void *data)
{
	folio_set_zone_device_data(folio, data);
}
EXPORT_SYMBOL_GPL(svm_folio_set_zone_device_data);

bool svm_vma_is_anonymous(struct vm_area_struct *vma)
{
	return vma_is_anonymous(vma);
}
EXPORT_SYMBOL_GPL(svm_vma_is_anonymous);

bool svm_page_is_anon(struct page *page)
{
	return folio_test_anon(page_folio(page));
}
EXPORT_SYMBOL_GPL(svm_page_is_anon);

/* Sleeps @ms milliseconds, or less if a fatal signal arrives. */
void svm_sleep_killable(unsigned int ms)
{
	schedule_timeout_killable(msecs_to_jiffies(ms));
}
EXPORT_SYMBOL_GPL(svm_sleep_killable);

bool svm_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}
EXPORT_SYMBOL_GPL(svm_fatal_signal_pending);

void svm_cond_resched(void)
{
	cond_resched();
}
EXPORT_SYMBOL_GPL(svm_cond_resched);

/* Whether a fault may drop its lock and return VM_FAULT_RETRY. */
bool svm_fault_may_retry(struct vm_fault *vmf)
{
	return (vmf->flags & FAULT_FLAG_ALLOW_RETRY) &&
	       !(vmf->flags & FAULT_FLAG_RETRY_NOWAIT);
}
EXPORT_SYMBOL_GPL(svm_fault_may_retry);

void svm_release_fault_lock(struct vm_fault *vmf)
{
	release_fault_lock(vmf);
}
EXPORT_SYMBOL_GPL(svm_release_fault_lock);

void svm_unlock_page(struct page *page)
{
	folio_unlock(page_folio(page));
}
EXPORT_SYMBOL_GPL(svm_unlock_page);

void svm_lock_page(struct page *page)
{
	folio_lock(page_folio(page));
}
EXPORT_SYMBOL_GPL(svm_lock_page);

bool svm_page_in_large_folio(struct page *page)
{
	return folio_test_large(page_folio(page));
}
EXPORT_SYMBOL_GPL(svm_page_in_large_folio);

int svm_page_ref_count(struct page *page)
{
	return page_ref_count(page);
}
EXPORT_SYMBOL_GPL(svm_page_ref_count);

/* 0 or a negative errno: dma_mapping_error() is a static inline. */
int svm_dma_map_page(struct device *dev, struct page *page, size_t size,
		     enum dma_data_direction dir, dma_addr_t *addr)
{
	/* dma_map_phys() WARNs for a device that never set a mask: a provider's set-up bug. */
	if (!dev->dma_mask) {
		dev_err_once(dev, "drm_pagemap: the pagemap's device has no DMA mask\n");
		return -EINVAL;
	}
	*addr = dma_map_page_attrs(dev, page, 0, size, dir, 0);
	return dma_mapping_error(dev, *addr) ? -ENOMEM : 0;
}
EXPORT_SYMBOL_GPL(svm_dma_map_page);

void svm_dma_unmap_page(struct device *dev, dma_addr_t addr, size_t size,
			enum dma_data_direction dir)
{
	dma_unmap_page_attrs(dev, addr, size, dir, 0);
}
EXPORT_SYMBOL_GPL(svm_dma_unmap_page);

size_t svm_dma_max_mapping_size(struct device *dev)
{
	return dma_max_mapping_size(dev);
}
EXPORT_SYMBOL_GPL(svm_dma_max_mapping_size);

/*
 * For a device whose DMA engine is the CPU: any address will do, and its accesses are
 * cache-coherent by nature (no cache maintenance at map and unmap time).
 */
int svm_dma_coerce_mask(struct device *dev, u64 mask)
{
#if defined(CONFIG_ARCH_HAS_SYNC_DMA_FOR_DEVICE) || \
	defined(CONFIG_ARCH_HAS_SYNC_DMA_FOR_CPU) || \
	defined(CONFIG_ARCH_HAS_SYNC_DMA_FOR_CPU_ALL)
	dev->dma_coherent = true;
#endif
	return dma_coerce_mask_and_coherent(dev, mask);
}
EXPORT_SYMBOL_GPL(svm_dma_coerce_mask);

/*
 * The kernel address of @len bytes at DMA address @addr of @dev, for a software copy engine,
 * or NULL when @dev does not map system memory directly and coherently (an IOMMU, other DMA
 * ops, cache maintenance the CPU would bypass) or the bytes are not all in the kernel's
 * linear map.
 */
void *svm_dma_direct_virt(struct device *dev, dma_addr_t addr, size_t len)
{
	unsigned long pfn, last;
	phys_addr_t phys;

	if (!len || get_dma_ops(dev) || use_dma_iommu(dev) || !dev_is_dma_coherent(dev))
		return NULL;
	phys = dma_to_phys(dev, addr);
	if (phys + len < phys)
		return NULL;
	last = PHYS_PFN(phys + len - 1);
	for (pfn = PHYS_PFN(phys); pfn <= last; pfn++)
		if (!pfn_valid(pfn) || PageHighMem(pfn_to_page(pfn)))
			return NULL;
	return phys_to_virt(phys);
}
EXPORT_SYMBOL_GPL(svm_dma_direct_virt);

/*
 * Lockdep annotations for copy fences, as dma-fence.c has for dma_fences (whose map and
 * might-wait helper are not exported): a provider's path to signalling a fence is a "read"
 * section of this map, and the core's wait for a fence takes it for "write". A signalling
 * path that takes a lock the waiter holds (the mmap lock, this crate's locks) then shows as
 * a lock-order inversion instead of a deadlock.
 */
#ifdef CONFIG_LOCKDEP
static struct lockdep_map svm_copy_fence_map = {
	.name = "drm_pagemap_copy_fence"
};

bool svm_copy_signalling_begin(void)
{
	/* Nested, or in atomic context (might_sleep catches the irq cases). */
	if (lock_is_held_type(&svm_copy_fence_map, 1) || in_atomic())
		return true;
	lock_acquire(&svm_copy_fence_map, 0, 1, 1, 1, NULL, _RET_IP_);
	return false;
}

void svm_copy_signalling_end(bool cookie)
{
	if (!cookie)
		lock_release(&svm_copy_fence_map, _RET_IP_);
}

void svm_copy_might_wait(void)
{
	bool nested = lock_is_held_type(&svm_copy_fence_map, 1);

	if (nested)
		lock_release(&svm_copy_fence_map, _THIS_IP_);
	lock_map_acquire(&svm_copy_fence_map);
	lock_map_release(&svm_copy_fence_map);
	if (nested)
		lock_acquire(&svm_copy_fence_map, 0, 1, 1, 1, NULL, _THIS_IP_);
}
#else
bool svm_copy_signalling_begin(void)
{
	return true;
}

void svm_copy_signalling_end(bool cookie)
{
}

void svm_copy_might_wait(void)
{
}
#endif
EXPORT_SYMBOL_GPL(svm_copy_signalling_begin);
EXPORT_SYMBOL_GPL(svm_copy_signalling_end);
EXPORT_SYMBOL_GPL(svm_copy_might_wait);

#if IS_ENABLED(CONFIG_KUNIT)
int svm_module_refcount(struct module *mod)
{
	return module_refcount(mod);
}
EXPORT_SYMBOL_GPL(svm_module_refcount);

/*
 * For KUnit tests of migration: gives the running test's kthread an address space (torn
 * down with the test) and maps @len bytes of private anonymous memory in it.
 */
unsigned long svm_kunit_mmap_anon(unsigned long len)
{
	struct kunit *test = kunit_get_current_test();

	if (!test)
		return 0;
	return kunit_vm_mmap(test, NULL, 0, len, PROT_READ | PROT_WRITE,
			     MAP_ANONYMOUS | MAP_PRIVATE, 0);
}
EXPORT_SYMBOL_GPL(svm_kunit_mmap_anon);
#endif
