/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * uAPI of vgpu, the software GPU of the rust-svm project.
 *
 * Each virtual GPU is a DRM render node (/dev/dri/renderD*) whose driver name is "vgpu".
 * Every ioctl is allowed on render nodes; %DRM_IOCTL_VGPU_EVICT, which affects every user of
 * the GPU, needs CAP_SYS_ADMIN. Structures are 64-bit aligned and carry no implicit padding;
 * every field marked "must be 0" is checked, so that it can get a meaning later without
 * breaking old userspace. Fields marked "Out" are outputs only: what they hold on input is
 * ignored.
 *
 * Errors every ioctl may give, besides its own: EFAULT if the argument itself cannot be read
 * or written back, ENODEV once the GPU is gone, EINVAL for an ioctl number vgpu does not
 * have. The kernel copies the argument back even when the call fails: an "Out" field that
 * says so is meaningful then too.
 *
 * Device policy and test knobs are per GPU in debugfs, for root, not in this uAPI:
 * /sys/kernel/debug/vgpu<index>/ holds timeslice_max_ms (see &drm_vgpu_migrate.timeslice_ms),
 * fail_allocs (the next N device-memory allocations fail with ENOMEM) and fail_copies (the
 * next N copy-engine jobs fail with EIO), each read and written as a decimal number.
 */
#ifndef _UAPI_VGPU_DRM_H_
#define _UAPI_VGPU_DRM_H_

#include <drm/drm.h>

#if defined(__cplusplus)
extern "C" {
#endif

#define DRM_VGPU_QUERY 0x00
#define DRM_VGPU_MIGRATE 0x01
#define DRM_VGPU_STATS 0x02
/*
 * 0x03 was DRM_VGPU_INJECT (error injection for tests). Any client could make another
 * process's next copy fail, so it moved to debugfs (fail_allocs, fail_copies, above). The
 * number stays reserved, never reused: the kernel refuses it with EINVAL.
 */
#define DRM_VGPU_EVICT 0x04
#define DRM_VGPU_VM_CREATE 0x05
#define DRM_VGPU_VM_DESTROY 0x06
#define DRM_VGPU_VM_ACCESS 0x07
#define DRM_VGPU_DEVMEM_OPEN 0x08
#define DRM_VGPU_VM_MADVISE 0x09
#define DRM_VGPU_VM_PREFETCH 0x0a
#define DRM_VGPU_VM_ATOMIC 0x0b
#define DRM_VGPU_RESIDENCY 0x0c

/**
 * enum drm_vgpu_query_kind - What &drm_vgpu_query.query asks for.
 *
 * @DRM_VGPU_QUERY_DEVICE: The device, answered as &struct drm_vgpu_query_device.
 * @DRM_VGPU_QUERY_LINKS: The device's interconnect, answered as &struct drm_vgpu_query_links.
 */
enum drm_vgpu_query_kind {
	DRM_VGPU_QUERY_DEVICE = 0,
	DRM_VGPU_QUERY_LINKS = 1,
};

/**
 * struct drm_vgpu_query_device - Answer to %DRM_VGPU_QUERY_DEVICE.
 *
 * @index: Index of this virtual GPU, 0 to @num_devices - 1, in creation order.
 * @num_devices: Number of virtual GPUs the driver created.
 * @vram_size: Size in bytes of the device-private memory ("VRAM").
 * @vram_free: Bytes of that memory not allocated at the time of the query.
 * @page_size: Smallest allocation unit of that memory, in bytes.
 */
struct drm_vgpu_query_device {
	__u32 index;
	__u32 num_devices;
	__u64 vram_size;
	__u64 vram_free;
	__u64 page_size;
};

/**
 * struct drm_vgpu_query_links - Answer to %DRM_VGPU_QUERY_LINKS.
 *
 * @links: Bit j set: this GPU has an interconnect link to GPU j (the module parameter links=,
 *	all GPUs linked by default). Never this GPU's own bit.
 * @group: Bit j set: GPU j is present and in this GPU's interconnect group (this GPU's own bit
 *	included). GPUs of one group share one device-private owner: each reaches every other's
 *	memory over the interconnect, and pages move between them directly. A GPU joins the
 *	first group, in load order, whose every member it is linked to: in a chain 0-1, 1-2,
 *	GPUs 0 and 1 form a group and GPU 2 is alone.
 */
struct drm_vgpu_query_links {
	__u32 links;
	__u32 group;
};

/**
 * struct drm_vgpu_query - Argument of %DRM_IOCTL_VGPU_QUERY.
 *
 * @extensions: Must be 0 (EINVAL otherwise).
 * @query: One of &enum drm_vgpu_query_kind; anything else is refused with EINVAL.
 * @size: In: size of the buffer at @data. If 0, the kernel writes nothing to @data and only
 *        sets @size to the size the answer needs. Otherwise it must equal that size exactly
 *        (EINVAL if not). Out: the size of the answer.
 * @flags: Must be 0 (EINVAL otherwise).
 * @pad: Must be 0 (EINVAL otherwise).
 * @data: User pointer to the answer buffer; EFAULT if it cannot be written.
 */
struct drm_vgpu_query {
	__u64 extensions;
	__u32 query;
	__u32 size;
	__u32 flags;
	__u32 pad;
	__u64 data;
};

/**
 * enum drm_vgpu_migrate_target - Where &drm_vgpu_migrate moves a range.
 *
 * @DRM_VGPU_MIGRATE_TO_DEVICE: Into this GPU's device memory. All or nothing: if any page of
 *	the range cannot be moved (pinned, racing, in another GPU's memory) nothing moves and
 *	the ioctl fails with EBUSY. Pages already in this GPU's memory stay there.
 * @DRM_VGPU_MIGRATE_TO_SYSTEM: Whatever of the range is in this GPU's memory goes back to
 *	system memory.
 */
enum drm_vgpu_migrate_target {
	DRM_VGPU_MIGRATE_TO_DEVICE = 0,
	DRM_VGPU_MIGRATE_TO_SYSTEM = 1,
};

/**
 * struct drm_vgpu_migrate - Argument of %DRM_IOCTL_VGPU_MIGRATE: moves a range of the calling
 * process's address space.
 *
 * @start: Start address, page aligned (EINVAL otherwise).
 * @size: Size in bytes, page aligned and non-zero (EINVAL otherwise).
 * @target: One of &enum drm_vgpu_migrate_target (EINVAL otherwise).
 * @timeslice_ms: For %DRM_VGPU_MIGRATE_TO_DEVICE: for how many milliseconds CPU faults leave
 *	the data on the device (they wait until then) instead of pulling it back. 0 for none.
 *	The timeslice is device policy: a request longer than the GPU's bound is clamped to it
 *	(debugfs vgpu<index>/timeslice_max_ms, set at load by the module parameter of the same
 *	name: 5 ms by default, never more than 1000 ms), as it is when the migration is made.
 *	For %DRM_VGPU_MIGRATE_TO_SYSTEM it must be 0 (EINVAL otherwise).
 * @flags: 0, or %DRM_VGPU_MIGRATE_PAGEMAP_FD (EINVAL for any other bit).
 * @pagemap_fd: With %DRM_VGPU_MIGRATE_PAGEMAP_FD, for %DRM_VGPU_MIGRATE_TO_DEVICE only: a
 *	pagemap file descriptor (%DRM_IOCTL_VGPU_DEVMEM_OPEN of this GPU or of another) naming
 *	the memory to move the range into, instead of this GPU's own. EBADF if it is not an
 *	open descriptor, EINVAL if it is not a pagemap, ENOLINK if that memory is not in this
 *	GPU's interconnect group (&drm_vgpu_query_links.group). Without the flag, must be 0
 *	(EINVAL otherwise).
 *
 * Both ways, EINVAL for bad @flags, @pagemap_fd or @target, an unaligned or empty range, or one
 * that wraps around the address space; EFAULT if the calling process has no address space
 * (it is exiting).
 *
 * To the device, the range must lie in one private mapping of anonymous memory: ENOENT if
 * @start is not mapped (addresses outside the process's half included), EINVAL if the range
 * runs past the end of its mapping, EOPNOTSUPP for shared mappings and for private file
 * mappings where some page is still the file's own (not yet written, so not the process's
 * private copy), ENOMEM if the range is larger than the GPU's memory or the GPU (or the
 * kernel) has no room for it now, EBUSY if not every page could be collected (locked or
 * racing), EIO if the copy engine failed (the data then stays
 * in system memory). On any error nothing moves. If the GPU's huge-folio policy is on
 * (module parameter and debugfs vgpu<index>/huge_folios, off by default), transparent huge
 * pages move whole, as 2 MiB device pages, where the range covers them and the device memory
 * has a free aligned 2 MiB block; otherwise they move as base pages. Pages in the memory of
 * another GPU of the destination's interconnect group are copied straight from there over
 * the link (&drm_vgpu_stats.pages_from_peer); pages in the memory of a GPU outside the group
 * first go back to system memory (that GPU's &drm_vgpu_stats.pages_to_system), then move.
 *
 * To system memory, whatever of the range is in this GPU's memory comes back; the range may
 * span several mappings. A page that cannot be collected just now (locked, racing) stays
 * where it is, without error. ENOENT if the range reaches a hole (what lies before the hole
 * has moved back), ENOMEM if the kernel has no memory for the pages, EIO if the copy engine
 * failed (those pages stay on the device, with their data), EINTR if a fatal signal arrived
 * (what came back until then stays back). The work is done in 16 MiB chunks whatever the
 * size: a range of any size costs time in proportion to it, never memory.
 */
struct drm_vgpu_migrate {
	__u64 start;
	__u64 size;
	__u32 target;
	__u32 timeslice_ms;
	__u32 flags;
	__s32 pagemap_fd;
};

#define DRM_VGPU_MIGRATE_PAGEMAP_FD (1u << 0)

/**
 * struct drm_vgpu_stats - Argument of %DRM_IOCTL_VGPU_STATS: this GPU's counters since load.
 *
 * @pages_to_device: Out: pages migrated into this GPU's memory.
 * @pages_to_system: Out: pages migrated out of it, for any reason.
 * @bytes_copied: Out: bytes the copy engine moved, both ways.
 * @cpu_faults: Out: CPU faults on this GPU's pages served by migrating them back.
 * @evictions: Out: allocations evicted to system memory.
 * @flags: Must be 0 on input (EINVAL otherwise).
 * @pad: Must be 0 on input (EINVAL otherwise).
 * @pages_to_peer: Out: pages migrated out of this GPU's memory straight into a linked GPU's
 *	(not counted in @pages_to_system).
 * @pages_from_peer: Out: of @pages_to_device, those copied straight from a linked GPU's
 *	memory.
 * @peer_accesses: Out: pages of a linked GPU's memory this GPU read or wrote in place
 *	(&drm_vgpu_vm_access), without migrating them.
 * @gpu_faults: Out: GPU page faults served (a range placed and bound) in this GPU's VMs.
 * @ranges_created: Out: SVM ranges those faults created.
 * @ranges_collected: Out: SVM ranges destroyed: after the CPU unmapped any of them, or cut by
 *	a new edge of advice (&drm_vgpu_vm_madvise).
 * @invalidations: Out: bound ranges a CPU change of the address space unbound.
 * @pages_mapped_system: Out: pages faults mapped in system memory.
 * @pages_mapped_local: Out: pages faults mapped in this GPU's memory.
 * @pages_mapped_peer: Out: pages faults mapped in a linked GPU's memory.
 *
 * The structure grew twice: a caller built with an older, shorter one (48 or 72 bytes) gets
 * the counters it knows, as before.
 */
struct drm_vgpu_stats {
	__u64 pages_to_device;
	__u64 pages_to_system;
	__u64 bytes_copied;
	__u64 cpu_faults;
	__u64 evictions;
	__u32 flags;
	__u32 pad;
	__u64 pages_to_peer;
	__u64 pages_from_peer;
	__u64 peer_accesses;
	__u64 gpu_faults;
	__u64 ranges_created;
	__u64 ranges_collected;
	__u64 invalidations;
	__u64 pages_mapped_system;
	__u64 pages_mapped_local;
	__u64 pages_mapped_peer;
};

/**
 * struct drm_vgpu_evict - Argument of %DRM_IOCTL_VGPU_EVICT: moves every page in this GPU's
 * memory, of every process, back to system memory, as a driver does when it needs its memory
 * back. The processes keep their data and do not notice (no CPU fault is taken). It affects
 * every user of the GPU, so it needs CAP_SYS_ADMIN (EPERM otherwise).
 *
 * @flags: Must be 0 (EINVAL otherwise).
 * @evicted: Out: how many allocations were evicted; 0 when the call fails (the
 *	&drm_vgpu_stats.evictions counter counts them all).
 *
 * Every allocation is tried, one after the other, even after one failed: an allocation that
 * cannot be evicted keeps its data in device memory, and once all were tried the first error
 * is returned: EBUSY if some page stayed pinned through every retry, EIO if a copy failed,
 * ENOMEM if the kernel had no memory for the pages. EINTR if a signal arrived before all were
 * tried (what was evicted stays in system memory; calling again goes on).
 */
struct drm_vgpu_evict {
	__u32 flags;
	__u32 evicted;
};

/**
 * struct drm_vgpu_vm_create - Argument of %DRM_IOCTL_VGPU_VM_CREATE: creates a GPU VM, this
 * GPU's view of the calling process's address space (shared virtual memory: GPU addresses are
 * the process's addresses).
 *
 * @flags: Must be 0 (EINVAL otherwise).
 * @vm_id: Out: the VM's id, valid on this file until %DRM_IOCTL_VGPU_VM_DESTROY or close.
 *	Ids are not reused while the file is open.
 *
 * The VM belongs to the calling process's address space: only that process may access
 * through it (see &drm_vgpu_vm_access), though any holder of the file may destroy it.
 * ENOSPC if the file already has %DRM_VGPU_MAX_VMS VMs (or used up its ids); EINVAL from a
 * process with no address space (a kernel thread); ENOMEM if the kernel has no memory for
 * it (charged to the caller's memory cgroup).
 */
struct drm_vgpu_vm_create {
	__u32 flags;
	__u32 vm_id;
};

/** DRM_VGPU_MAX_VMS - How many VMs one open file may hold. */
#define DRM_VGPU_MAX_VMS 64

/**
 * struct drm_vgpu_vm_destroy - Argument of %DRM_IOCTL_VGPU_VM_DESTROY.
 *
 * @vm_id: The VM to destroy (ENOENT if this file has no such VM). Accesses running on it
 *         finish first.
 * @pad: Must be 0 (EINVAL otherwise).
 */
struct drm_vgpu_vm_destroy {
	__u32 vm_id;
	__u32 pad;
};

/**
 * enum drm_vgpu_vm_access_op - What &drm_vgpu_vm_access.op does.
 *
 * @DRM_VGPU_VM_READ: The GPU reads the range into the buffer at @data.
 * @DRM_VGPU_VM_WRITE: The GPU writes the buffer at @data over the range.
 */
enum drm_vgpu_vm_access_op {
	DRM_VGPU_VM_READ = 0,
	DRM_VGPU_VM_WRITE = 1,
};

/**
 * struct drm_vgpu_vm_access - Argument of %DRM_IOCTL_VGPU_VM_ACCESS: the GPU reads or writes
 * a range of the VM's address space, as a shader would, through its page table.
 *
 * @vm_id: The VM (ENOENT if this file has no such VM).
 * @op: One of &enum drm_vgpu_vm_access_op (EINVAL otherwise).
 * @start: First address, page aligned (EINVAL otherwise).
 * @size: Bytes, page aligned and non-zero (EINVAL otherwise); @start + @size must not wrap
 *	around the address space (EINVAL).
 * @data: Address of a @size-byte buffer of the calling process, the source or destination
 *	(EFAULT if it is not all readable, or writable, user memory).
 * @faults: Out: GPU page faults taken (one per SVM range serviced): 0 when the page table
 *	already mapped the whole range. Set when the call fails too.
 *
 * Only the process that created the VM may access through it: EACCES from any other
 * process holding the file (a child after fork, a receiver of the descriptor), which would
 * otherwise read and write another address space with its own buffer.
 *
 * The GPU page table is filled only by GPU page faults: an access that misses in it faults,
 * and the fault finds or creates the SVM range around the address (2 MiB, 64 KiB or 4 KiB:
 * the largest aligned chunk inside the mapping that overlaps no other range), places the
 * range where the VM's advice says (&drm_vgpu_vm_madvise: by default in this GPU's memory,
 * for private anonymous memory; shared and file mappings stay in system memory), maps its
 * pages and binds it as one entry, then the access goes on. Pages in this GPU's memory or a
 * linked GPU's are accessed there, in place; pages in the memory of a GPU outside this GPU's
 * interconnect group first go back to system memory, as a CPU fault would take them. A range
 * whose preferred memory has no room stays in system memory. The page table holds ranges over
 * at most 64 MiB of address space per VM: a fault past that drops the others (a cache of CPU
 * mappings: they fault again when next used). The GPU page table
 * follows every change of the CPU's (unmap, protection, migration, copy-on-write), so an
 * access never sees stale data. The range is accessed in order, a chunk of at most 2 MiB
 * at a time through a kernel bounce buffer; on an error, what came before may have been
 * accessed. Errors as a CPU access would raise them: EFAULT for an unmapped or inaccessible
 * address (addresses outside the process's half included), EPERM for a write to a read-only
 * mapping (a write to this GPU's own page that is read-only because of copy-on-write first
 * moves it back to system memory, so the write breaks the sharing as a CPU write would);
 * EIO for I/O or PFN mappings (no pages to mirror, such as [vvar]); ENOMEM if the kernel runs
 * out of memory; EINTR if a fatal signal stopped it; EBUSY if
 * invalidations kept racing with the GPU's faults, or pages stayed busy, past a bound; EIO
 * if moving such a page back failed in the copy engine (it stays, with its data).
 */
struct drm_vgpu_vm_access {
	__u32 vm_id;
	__u32 op;
	__u64 start;
	__u64 size;
	__u64 data;
	__u64 faults;
};

#define DRM_IOCTL_VGPU_QUERY \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_QUERY, struct drm_vgpu_query)
#define DRM_IOCTL_VGPU_MIGRATE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_MIGRATE, struct drm_vgpu_migrate)
#define DRM_IOCTL_VGPU_STATS \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_STATS, struct drm_vgpu_stats)
#define DRM_IOCTL_VGPU_EVICT \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_EVICT, struct drm_vgpu_evict)
#define DRM_IOCTL_VGPU_VM_CREATE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_VM_CREATE, struct drm_vgpu_vm_create)
#define DRM_IOCTL_VGPU_VM_DESTROY \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_VM_DESTROY, struct drm_vgpu_vm_destroy)
#define DRM_IOCTL_VGPU_VM_ACCESS \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_VM_ACCESS, struct drm_vgpu_vm_access)
#define DRM_IOCTL_VGPU_DEVMEM_OPEN \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_DEVMEM_OPEN, struct drm_vgpu_devmem_open)
#define DRM_IOCTL_VGPU_VM_MADVISE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_VM_MADVISE, struct drm_vgpu_vm_madvise)
#define DRM_IOCTL_VGPU_VM_PREFETCH \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_VM_PREFETCH, struct drm_vgpu_vm_prefetch)
#define DRM_IOCTL_VGPU_VM_ATOMIC \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_VM_ATOMIC, struct drm_vgpu_vm_atomic)
#define DRM_IOCTL_VGPU_RESIDENCY \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VGPU_RESIDENCY, struct drm_vgpu_residency)

/**
 * struct drm_vgpu_devmem_open - Argument of %DRM_IOCTL_VGPU_DEVMEM_OPEN: opens this GPU's
 * memory as a pagemap file descriptor, which names it to any GPU of this stack
 * (&drm_vgpu_migrate.pagemap_fd) and can be passed to another process (over a unix socket).
 * The descriptor keeps the memory's pagemap alive until closed; it is close-on-exec.
 *
 * @flags: Must be 0 (EINVAL otherwise).
 * @fd: Out: the new file descriptor. EMFILE if the process has no free descriptor.
 *
 * As with DRM's PRIME_HANDLE_TO_FD, the descriptor is installed before the argument is
 * written back: if that write fails (EFAULT), the descriptor stays open, unknown to the
 * caller, until the process exits.
 */
struct drm_vgpu_devmem_open {
	__u32 flags;
	__s32 fd;
};

/**
 * enum drm_vgpu_location - Preferred location of a range of a VM (&drm_vgpu_vm_madvise).
 * @DRM_VGPU_LOCATION_DEFAULT: This GPU's own memory: a GPU fault moves the range there.
 * @DRM_VGPU_LOCATION_SYSTEM: System memory: a GPU fault maps the range where it is, after
 *	bringing back what lives in device memory the GPU cannot reach in place (a GPU outside
 *	its interconnect group); pages in this GPU's memory or a linked GPU's stay there.
 * @DRM_VGPU_LOCATION_PAGEMAP: The memory a pagemap file descriptor names
 *	(&drm_vgpu_vm_madvise.pagemap_fd): this GPU's own or a linked GPU's. A GPU fault moves
 *	the range there (from a linked GPU straight over the link) and maps it in place.
 */
enum drm_vgpu_location {
	DRM_VGPU_LOCATION_DEFAULT = 0,
	DRM_VGPU_LOCATION_SYSTEM = 1,
	DRM_VGPU_LOCATION_PAGEMAP = 2,
};

/**
 * struct drm_vgpu_vm_madvise - Argument of %DRM_IOCTL_VGPU_VM_MADVISE: sets the preferred
 * location of a range of a VM, for the GPU faults and prefetches that come after. What the
 * GPU already maps stays where it is until %DRM_IOCTL_VGPU_VM_PREFETCH or the next fault on it
 * (the ranges the advice covers are unbound, so the next access faults).
 * @vm_id: The VM (ENOENT if this file has no such VM; EACCES from a process other than the
 *	VM's creator, as for &drm_vgpu_vm_access).
 * @location: One of &enum drm_vgpu_location (EINVAL otherwise).
 * @start: First address, page aligned (EINVAL otherwise).
 * @size: Bytes, page aligned and non-zero; @start + @size must not wrap (EINVAL).
 * @pagemap_fd: With %DRM_VGPU_LOCATION_PAGEMAP: a pagemap file descriptor
 *	(%DRM_IOCTL_VGPU_DEVMEM_OPEN of this GPU or of another). EBADF if it is not an open
 *	descriptor, EINVAL if it is not a pagemap, ENOLINK if its memory is outside this GPU's
 *	interconnect group. The VM keeps that memory's pagemap alive while the advice stands.
 *	Otherwise must be 0 (EINVAL).
 * @flags: Must be 0 (EINVAL otherwise).
 * A VM holds at most %DRM_VGPU_MAX_ADVICE pieces of advice (each call over a range splits
 * or replaces those it overlaps; adjacent equal advice merges): ENOSPC beyond. Advice only
 * changes where faults place data; a range whose memory is unusable (full, unplugged) falls
 * back to system memory. The GPU's ranges never cross an edge of advice: one a new edge cuts
 * is dropped, and its parts fault again into ranges of their own, each placed by its advice
 * then (data placed before stays where it is until then, as with any change of advice).
 * Advice stands on the VM's addresses, not on the CPU mapping there: it outlives a munmap,
 * and applies to whatever is mapped there next.
 */
struct drm_vgpu_vm_madvise {
	__u32 vm_id;
	__u32 location;
	__u64 start;
	__u64 size;
	__s32 pagemap_fd;
	__u32 flags;
};

/** DRM_VGPU_MAX_ADVICE - How many pieces of advice one VM holds at most. */
#define DRM_VGPU_MAX_ADVICE 1024

/**
 * struct drm_vgpu_vm_prefetch - Argument of %DRM_IOCTL_VGPU_VM_PREFETCH: services a GPU fault
 * on every SVM range of a range of a VM now, as an access would: each range is placed where
 * its advice says and bound in the GPU page table, so that the GPU's next accesses there do
 * not fault. Where the advice is system memory, a prefetch also brings back what lives in
 * device memory (a fault leaves it there, reached in place).
 * @vm_id: The VM (ENOENT if this file has no such VM).
 * @flags: Must be 0 (EINVAL otherwise).
 * @start: First address, page aligned (EINVAL otherwise).
 * @size: Bytes, page aligned and non-zero; @start + @size must not wrap (EINVAL).
 * Errors as &drm_vgpu_vm_access's (EFAULT for a hole, EACCES from another process); the
 * work goes range by range in address order, and on an error what came before stays placed.
 */
struct drm_vgpu_vm_prefetch {
	__u32 vm_id;
	__u32 flags;
	__u64 start;
	__u64 size;
};

/**
 * enum drm_vgpu_atomic_op - What &drm_vgpu_vm_atomic.op does.
 * @DRM_VGPU_ATOMIC_ADD: Adds @value to the 32-bit word, atomically for the GPU.
 */
enum drm_vgpu_atomic_op {
	DRM_VGPU_ATOMIC_ADD = 0,
};

/**
 * struct drm_vgpu_vm_atomic - Argument of %DRM_IOCTL_VGPU_VM_ATOMIC: a GPU atomic on one 32-bit
 * word of a VM. GPU atomics need the page in device memory: the fault that serves it is
 * device-memory only (the page moves to the range's preferred device memory, this GPU's own
 * when its advice is system memory), and the page stays there for the GPU's timeslice
 * (debugfs vgpu<index>/timeslice_max_ms) so that the atomic completes even while the CPU
 * keeps writing the same page: the CPU's write then waits for the timeslice, then pulls the
 * page back.
 * @vm_id: The VM (ENOENT if this file has no such VM).
 * @op: One of &enum drm_vgpu_atomic_op (EINVAL otherwise).
 * @addr: Address of the word, 4-byte aligned (EINVAL otherwise).
 * @value: The operand.
 * @pad: Must be 0 (EINVAL otherwise).
 * @old: Out: the word's value before the operation.
 * Errors as &drm_vgpu_vm_access's; also ENOMEM if no device memory could hold the page, and
 * EOPNOTSUPP for memory that cannot move to a device (shared or file mappings).
 */
struct drm_vgpu_vm_atomic {
	__u32 vm_id;
	__u32 op;
	__u64 addr;
	__u32 value;
	__u32 pad;
	__u64 old;
};

/**
 * struct drm_vgpu_residency - Argument of %DRM_IOCTL_VGPU_RESIDENCY: where the pages of a
 * range of the calling process's address space live, as this GPU sees them (a snapshot: it
 * faults nothing in and moves nothing).
 * @start: First address, page aligned (EINVAL otherwise).
 * @size: Bytes, page aligned and non-zero; @start + @size must not wrap (EINVAL).
 * @flags: Must be 0 (EINVAL otherwise).
 * @pad: Must be 0 (EINVAL otherwise).
 * @system: Out: pages in system memory.
 * @local: Out: pages in this GPU's memory.
 * @peer: Out: pages in the memory of another GPU of this GPU's interconnect group.
 * @none: Out: pages with nothing this GPU can see: never touched, unmapped, or in the memory
 *	of a GPU outside its group.
 * The counts add up to the range's pages. Any size is accepted; the work is done a bounded
 * batch at a time (EINTR if a fatal signal arrives meanwhile).
 */
struct drm_vgpu_residency {
	__u64 start;
	__u64 size;
	__u32 flags;
	__u32 pad;
	__u64 system;
	__u64 local;
	__u64 peer;
	__u64 none;
};

#if defined(__cplusplus)
}
#endif

#endif /* _UAPI_VGPU_DRM_H_ */
