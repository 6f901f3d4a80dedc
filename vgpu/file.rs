// SPDX-License-Identifier: GPL-2.0

//! Per-open state and ioctl handlers.

use drm_pagemap::migrate;
use drm_pagemap::pagemap;
use drm_pagemap::pagemap::Folios;
use drm_pagemap::pagemap::MigrateDetails;
use drm_pagemap::pagemap::Pagemap;
use drm_pagemap::range::PageRange;
use kernel::alloc::flags::GFP_KERNEL_ACCOUNT;
use kernel::drm;
use kernel::mm::Mm;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::sync::Mutex;
use kernel::transmute::AsBytes;
use kernel::uaccess::UserPtr;
use kernel::uaccess::UserSlice;

use crate::driver::VgpuDevice;
use crate::driver::VgpuDriver;
use crate::svm::SvmVm;
use crate::uapi;
use crate::vm::Access;
use crate::vram;
use crate::vram::VRAM_PAGE_SIZE;

/// Bytes a GPU VM access moves through its bounce buffer at a time.
const VM_ACCESS_CHUNK: usize = 2 << 20;

/// An open render node.
#[pin_data]
pub(crate) struct VgpuFile {
    /// Each client uses the device memory, so holds its pagemap: the pagemap lives as long as
    /// some client has the device open or some data lives in the device memory.
    pagemap: ARef<Pagemap>,
    /// The file's GPU VMs, by id.
    #[pin]
    vms: Mutex<Vms>,
}

/// The GPU VMs of one file.
struct Vms {
    list: KVec<(u32, Arc<SvmVm>)>,
    next_id: u32,
}

impl drm::file::DriverFile for VgpuFile {
    type Driver = VgpuDriver;

    fn open(dev: &VgpuDevice) -> Result<Pin<KBox<Self>>> {
        let pagemap = vram::pagemap(dev)?;
        KBox::try_pin_init(
            try_pin_init!(Self {
                pagemap,
                vms <- kernel::new_mutex!(
                    Vms {
                        list: KVec::new(),
                        next_id: 1,
                    },
                    "VgpuFile::vms"
                ),
            }),
            GFP_KERNEL,
        )
    }
}

/// The page-aligned, non-empty range `[start, start + size)` of a request, which must not
/// wrap around the address space; `EINVAL` otherwise.
fn user_range(start: u64, size: u64) -> Result<PageRange> {
    let start = usize::try_from(start).map_err(|_| EINVAL)?;
    let size = usize::try_from(size).map_err(|_| EINVAL)?;
    PageRange::with_len(start, size)
}

/// Whether the calling task has `CAP_SYS_ADMIN` (audited, as the DRM core checks it).
fn capable_sys_admin() -> bool {
    // SAFETY: `capable` only reads the credentials of the current task, which are valid for
    // the duration of the call; any capability number is accepted.
    unsafe { kernel::bindings::capable(kernel::bindings::CAP_SYS_ADMIN as i32) }
}

/// Writes a query's answer to the buffer it gave, or only its size if it gave none
/// (`&drm_vgpu_query.size` 0); `EINVAL` if the buffer's size is not the answer's.
fn answer<T: AsBytes>(req: &mut uapi::drm_vgpu_query, answer: &T) -> Result<u32> {
    let need = size_of_val(answer) as u32;
    if req.size == 0 {
        req.size = need;
        return Ok(0);
    }
    if req.size != need {
        return Err(EINVAL);
    }
    let user = UserSlice::new(UserPtr::from_addr(req.data as usize), need as usize);
    user.writer().write(answer)?;
    Ok(0)
}

impl VgpuFile {
    /// `DRM_IOCTL_VGPU_QUERY`.
    pub(crate) fn query(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_query,
        _file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.extensions != 0 || req.flags != 0 || req.pad != 0 {
            return Err(EINVAL);
        }
        match req.query {
            uapi::drm_vgpu_query_kind_DRM_VGPU_QUERY_DEVICE => answer(
                req,
                &uapi::drm_vgpu_query_device {
                    index: dev.index,
                    num_devices: dev.num_devices,
                    vram_size: dev.vram.size(),
                    vram_free: dev.vram.free(),
                    page_size: VRAM_PAGE_SIZE as u64,
                },
            ),
            uapi::drm_vgpu_query_kind_DRM_VGPU_QUERY_LINKS => answer(
                req,
                &uapi::drm_vgpu_query_links {
                    links: dev.fabric.links_of(dev.index),
                    group: dev.fabric.group_of(dev.vram.owner()),
                },
            ),
            _ => Err(EINVAL),
        }
    }

    /// `DRM_IOCTL_VGPU_MIGRATE`.
    pub(crate) fn migrate(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_migrate,
        file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        let with_fd = match req.flags {
            0 if req.pagemap_fd == 0 => false,
            uapi::DRM_VGPU_MIGRATE_PAGEMAP_FD => true,
            _ => return Err(EINVAL),
        };
        let range = user_range(req.start, req.size)?;
        let to_device = match req.target {
            uapi::drm_vgpu_migrate_target_DRM_VGPU_MIGRATE_TO_DEVICE => true,
            // A timeslice means nothing on the way back: refused, so that it can mean
            // something one day without old userspace breaking.
            uapi::drm_vgpu_migrate_target_DRM_VGPU_MIGRATE_TO_SYSTEM
                if req.timeslice_ms == 0 && !with_fd =>
            {
                false
            }
            _ => return Err(EINVAL),
        };
        // Looked up once everything else checked out.
        let pagemap = match with_fd {
            true => {
                let fd = u32::try_from(req.pagemap_fd).map_err(|_| EBADF)?;
                Some(pagemap_util::fd::import(fd)?)
            }
            false => None,
        };
        let task = kernel::current!();
        let mm = task.mm().ok_or(EFAULT)?;
        if !to_device {
            let mmap = mm.mmap_read_lock();
            migrate::migrate_to_ram(&mmap, range, dev.vram.region(), Folios::Huge)?;
            return Ok(0);
        }
        // The timeslice is device policy: the target memory's provider clamps it to its bound.
        let details = MigrateDetails {
            timeslice_ms: req.timeslice_ms,
            folios: vram::folios(dev),
        };
        let target = match &pagemap {
            // Memory outside this GPU's interconnect group is not ours to name.
            Some(p) if p.region().owner() != dev.vram.owner() => return Err(ENOLINK),
            Some(p) => p,
            None => &file.inner().pagemap,
        };
        match pagemap::populate_mm(target, mm, range, &details) {
            // Some page could not be collected: maybe pages of a GPU outside the group,
            // which go back to system memory first (bounced), then the range moves, once.
            Err(e) if e == EBUSY => {
                let memories = dev.vram.memories()?;
                let bounced = {
                    let user = mm.mmget_not_zero().ok_or(EFAULT)?;
                    let mmap = user.mmap_read_lock();
                    dev.vram.bounce_foreign(&mmap, range, &memories)?
                };
                // Only now, with the mmap lock dropped (see `bounce_foreign`).
                drop(memories);
                if bounced == 0 {
                    return Err(EBUSY);
                }
                pagemap::populate_mm(target, mm, range, &details)?;
            }
            r => r?,
        }
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_STATS`.
    pub(crate) fn stats(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_stats,
        _file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.flags != 0 || req.pad != 0 {
            return Err(EINVAL);
        }
        let stats = dev.vram.stats();
        req.pages_to_device = stats.pages_to_device.load(Relaxed);
        req.pages_to_system = stats.pages_to_ram.load(Relaxed);
        req.bytes_copied = dev.vram.bytes_copied();
        req.cpu_faults = stats.cpu_faults.load(Relaxed);
        req.evictions = stats.evictions.load(Relaxed);
        req.pages_to_peer = stats.pages_to_peer.load(Relaxed);
        req.pages_from_peer = stats.pages_from_peer.load(Relaxed);
        req.peer_accesses = dev.vram.peer_accesses();
        let svm = &dev.vram.svm_stats;
        req.gpu_faults = svm.gpu_faults.load(Relaxed);
        req.ranges_created = svm.ranges_created.load(Relaxed);
        req.ranges_collected = svm.ranges_collected.load(Relaxed);
        req.invalidations = svm.invalidations.load(Relaxed);
        req.pages_mapped_system = svm.mapped_system.load(Relaxed);
        req.pages_mapped_local = svm.mapped_local.load(Relaxed);
        req.pages_mapped_peer = svm.mapped_peer.load(Relaxed);
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_DEVMEM_OPEN`: this GPU's memory as a pagemap file descriptor.
    pub(crate) fn devmem_open(
        _dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_devmem_open,
        file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        req.fd = -1;
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let fd = pagemap_util::fd::export(file.inner().pagemap.clone())?;
        req.fd = fd as i32;
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_EVICT`: moves every process's data out of the device, so only for
    /// `CAP_SYS_ADMIN`.
    pub(crate) fn evict(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_evict,
        _file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        req.evicted = 0;
        if req.flags != 0 {
            return Err(EINVAL);
        }
        if !capable_sys_admin() {
            return Err(EPERM);
        }
        req.evicted = dev.vram.evict_all(vram::Signals::Any)?;
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_VM_CREATE`.
    pub(crate) fn vm_create(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_vm_create,
        file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        // Lives as long as the file: charged to the caller's memory cgroup.
        let vm = Arc::pin_init(SvmVm::new((&**dev).into(), mm)?, GFP_KERNEL_ACCOUNT)?;
        let inner = file.inner();
        let mut vms = inner.vms.lock();
        if vms.list.len() >= uapi::DRM_VGPU_MAX_VMS as usize {
            return Err(ENOSPC);
        }
        // Ids are not reused while the file is open (u32 ids run out only after 4 billion).
        let id = vms.next_id;
        vms.next_id = id.checked_add(1).ok_or(ENOSPC)?;
        vms.list.push((id, vm), GFP_KERNEL_ACCOUNT)?;
        req.vm_id = id;
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_VM_DESTROY`.
    pub(crate) fn vm_destroy(
        _dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_vm_destroy,
        file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.pad != 0 {
            return Err(EINVAL);
        }
        let inner = file.inner();
        let vm = {
            let mut vms = inner.vms.lock();
            let pos = vms
                .list
                .iter()
                .position(|(id, _)| *id == req.vm_id)
                .ok_or(ENOENT)?;
            vms.list.remove(pos)?
        };
        // Dropped outside the lock: removing the notifier waits for running invalidations.
        drop(vm);
        Ok(0)
    }

    /// The VM `id` of `file`, for the process that created it only: the range is in the
    /// VM's address space, a buffer in the caller's, and another process holding this file
    /// (a fork, a passed descriptor) must not reach into the creator's address space.
    fn own_vm(file: &drm::File<VgpuFile>, id: u32) -> Result<Arc<SvmVm>> {
        let inner = file.inner();
        let vm = {
            let vms = inner.vms.lock();
            let (_, vm) = vms.list.iter().find(|(i, _)| *i == id).ok_or(ENOENT)?;
            vm.clone()
        };
        let task = kernel::current!();
        let own = task.mm().ok_or(EACCES)?;
        let theirs = vm.mm().map_err(|_| EACCES)?;
        if !core::ptr::eq::<Mm>(&**own, &**theirs) {
            return Err(EACCES);
        }
        Ok(vm)
    }

    /// `DRM_IOCTL_VGPU_VM_ACCESS`.
    pub(crate) fn vm_access(
        _dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_vm_access,
        file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        req.faults = 0;
        let write = match req.op {
            uapi::drm_vgpu_vm_access_op_DRM_VGPU_VM_READ => false,
            uapi::drm_vgpu_vm_access_op_DRM_VGPU_VM_WRITE => true,
            _ => return Err(EINVAL),
        };
        let range = user_range(req.start, req.size)?;
        let vm = Self::own_vm(file, req.vm_id)?;
        let mut acc = Access::default();
        let res = vm.access_user(range, req.data as usize, write, VM_ACCESS_CHUNK, &mut acc);
        req.faults = acc.faults;
        res?;
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_VM_MADVISE`.
    pub(crate) fn vm_madvise(
        _dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_vm_madvise,
        file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let range = user_range(req.start, req.size)?;
        let with_fd = req.location == uapi::drm_vgpu_location_DRM_VGPU_LOCATION_PAGEMAP;
        if !with_fd && req.pagemap_fd != 0 {
            return Err(EINVAL);
        }
        if req.location > uapi::drm_vgpu_location_DRM_VGPU_LOCATION_PAGEMAP {
            return Err(EINVAL);
        }
        let vm = Self::own_vm(file, req.vm_id)?;
        let pagemap = match with_fd {
            true => {
                let fd = u32::try_from(req.pagemap_fd).map_err(|_| EBADF)?;
                Some(pagemap_util::fd::import(fd)?)
            }
            false => None,
        };
        vm.advise(range, req.location, pagemap)?;
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_VM_PREFETCH`.
    pub(crate) fn vm_prefetch(
        _dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_vm_prefetch,
        file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let range = user_range(req.start, req.size)?;
        Self::own_vm(file, req.vm_id)?.prefetch(range)?;
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_VM_ATOMIC`.
    pub(crate) fn vm_atomic(
        _dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_vm_atomic,
        file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        req.old = 0;
        if req.pad != 0 || req.op != uapi::drm_vgpu_atomic_op_DRM_VGPU_ATOMIC_ADD {
            return Err(EINVAL);
        }
        let addr = usize::try_from(req.addr).map_err(|_| EINVAL)?;
        if addr % 4 != 0 {
            return Err(EINVAL);
        }
        let vm = Self::own_vm(file, req.vm_id)?;
        req.old = vm.atomic_add(addr, req.value)?.into();
        Ok(0)
    }

    /// `DRM_IOCTL_VGPU_RESIDENCY`.
    pub(crate) fn residency(
        dev: &VgpuDevice<drm::Registered>,
        _reg: &(),
        req: &mut uapi::drm_vgpu_residency,
        _file: &drm::File<VgpuFile>,
    ) -> Result<u32> {
        req.system = 0;
        req.local = 0;
        req.peer = 0;
        req.none = 0;
        if req.flags != 0 || req.pad != 0 {
            return Err(EINVAL);
        }
        let range = user_range(req.start, req.size)?;
        let task = kernel::current!();
        let mm = task.mm().ok_or(EFAULT)?;
        let [system, local, peer, none] = crate::svm::residency(dev, mm, range)?;
        req.system = system;
        req.local = local;
        req.peer = peer;
        req.none = none;
        Ok(0)
    }
}
