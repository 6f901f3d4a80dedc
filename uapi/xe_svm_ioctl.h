/* SPDX-License-Identifier: MIT */
/*
 * xe_svm: process memory served from the VRAM of Intel xe GPUs (DG1, Battlemage), through
 * pagemaps of the rust-svm stack. The device node /dev/xe_svm is a misc device, root's by
 * default (mode 0600): whoever opens it can fill the VRAM of every region (a udev rule may give
 * it to a group). Each call acts on the caller's own address space only.
 *
 * A VRAM region is named by the instance number N of its auxiliary device,
 * /sys/bus/auxiliary/devices/xe.vram.N, which xe registers for each VRAM region (with the
 * patch of patches/apply/) and xe_svm binds to.
 *
 * Errors common to every ioctl: EFAULT (the argument cannot be read or written), EINVAL
 * (a flag or padding field not zero), ENOTTY (unknown ioctl).
 */
#ifndef _UAPI_XE_SVM_IOCTL_H_
#define _UAPI_XE_SVM_IOCTL_H_

#include <linux/ioctl.h>
#include <linux/types.h>

/**
 * struct xe_svm_devmem_open - XE_SVM_IOCTL_DEVMEM_OPEN: a pagemap fd of a VRAM region.
 * @region: in: N of xe.vram.N.
 * @flags: in: 0.
 * @pagemap_fd: out: a new file descriptor (close-on-exec) holding a reference on the
 *	region's pagemap, which any driver of the stack accepts as a migration target or
 *	preferred location (vgpu's DRM_IOCTL_VGPU_MIGRATE and VM_MADVISE, XE_SVM_IOCTL_MIGRATE).
 * @pad: 0.
 *
 * Errors: ENODEV (no such region bound, or it is being unbound), EMFILE, ENFILE, ENOMEM.
 */
struct xe_svm_devmem_open {
	__u32 region;
	__u32 flags;
	__s32 pagemap_fd;
	__u32 pad;
};

/* struct xe_svm_migrate::flags: back to system memory (pagemap_fd must be -1). */
#define XE_SVM_MIGRATE_TO_SYSTEM (1u << 0)

/**
 * struct xe_svm_migrate - XE_SVM_IOCTL_MIGRATE: place a range of the caller's memory.
 * @start: in: page-aligned start address.
 * @size: in: bytes, a non-zero multiple of the page size (of 64 KiB on GPUs that need 64 KiB
 *	VRAM pages, for their regions).
 * @pagemap_fd: in: the pagemap fd to move the range into (any driver's of the stack: the
 *	move is its provider's), or -1 with XE_SVM_MIGRATE_TO_SYSTEM.
 * @flags: in: 0 or XE_SVM_MIGRATE_TO_SYSTEM: the pages of the range that are in the VRAM of
 *	a region xe_svm has bound go back to system memory (those in another driver's memory
 *	stay; pages that cannot be collected stay too, without an error). With no region bound
 *	there is nothing to move: 0, whatever the range.
 * @timeslice_ms: in: how long the pages stay in device memory before a CPU fault may move
 *	them back, clamped by the target's provider (xe_svm: 5 ms); 0 with
 *	XE_SVM_MIGRATE_TO_SYSTEM.
 * @pad: 0.
 *
 * The range moves in 8 MiB-aligned pieces, one after the other: a failure leaves the pieces
 * before it moved, and a piece that fails with EBUSY may have moved in part. The data keeps
 * its value: a CPU access later faults it back to system memory, a GPU of the same
 * interconnect group reaches it where it is.
 *
 * Errors: EBADF (@pagemap_fd is not an open fd), EINVAL (an fd that is not a pagemap; an
 * unaligned, empty or wrapping range; a range crossing the end of its mapping; with
 * XE_SVM_MIGRATE_TO_SYSTEM, a @pagemap_fd other than -1 or a @timeslice_ms), ENOENT (an
 * address with no mapping, including addresses outside the user address space), EOPNOTSUPP
 * (a shared mapping, or file pages not yet copied), EBUSY (some page could not be collected:
 * pinned, another migration's, or in the memory of a device outside the target's
 * interconnect group, another tile of the same GPU included: move it back to system memory
 * first), ENOMEM or ENOSPC (no VRAM), ENODEV (the region is gone), EIO (the copy engine
 * failed), EFAULT (the caller's address space is gone). A signal before the first piece
 * restarts the call (or EINTR without SA_RESTART); after it, EINTR: what moved stays moved.
 */
struct xe_svm_migrate {
	__u64 start;
	__u64 size;
	__s32 pagemap_fd;
	__u32 flags;
	__u32 timeslice_ms;
	__u32 pad;
};

/* The ioctls' type (_IOC_TYPE): unused in Documentation/userspace-api/ioctl/ioctl-number.rst. */
#define XE_SVM_IOCTL_BASE 0xC1

#define XE_SVM_IOCTL_DEVMEM_OPEN _IOWR(XE_SVM_IOCTL_BASE, 0x00, struct xe_svm_devmem_open)
#define XE_SVM_IOCTL_MIGRATE _IOW(XE_SVM_IOCTL_BASE, 0x01, struct xe_svm_migrate)

#endif
