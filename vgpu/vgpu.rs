// SPDX-License-Identifier: GPL-2.0

//! vgpu: a software GPU with device-private memory, exposed as DRM render nodes; the reference
//! user of every layer of the rust-svm stack and what its tests drive.

use kernel::prelude::*;
use kernel::sync::Arc;

mod dmirror;
mod driver;
mod engine;
mod fabric;
mod file;
mod gpu;
mod ioctl;
mod plug;
mod svm;
#[cfg(CONFIG_KUNIT)]
mod testing;
mod uapi;
mod vm;
mod vram;

module! {
    type: VgpuModule,
    name: "vgpu",
    authors: ["The rust-svm developers"],
    description: "Virtual GPUs with device-private memory for GPU shared virtual memory",
    license: "GPL",
    params: {
        num_devices: u32 {
            default: 2,
            description: "Number of virtual GPUs to create (1 to 8)",
        },
        hmm_dmirror: bool {
            default: false,
            description: "Also expose each GPU as /dev/hmm_dmirror<N>, speaking the ioctls of the kernel's lib/test_hmm_uapi.h (do not load test_hmm meanwhile)",
        },
        vram_mib: u32 {
            default: 64,
            description: "Device-private memory per GPU in MiB (even, 2 to 1024)",
        },
        huge_folios: bool {
            default: false,
            description: "Move transparent huge pages into 2 MiB device folios (default off: 7.3's core mm loses references of such folios when a process forks over them and changes its mappings, see the README; per GPU in debugfs: vgpu<N>/huge_folios)",
        },
        timeslice_max_ms: u32 {
            default: 5,
            description: "Longest timeslice (ms) a migration to a GPU may ask for; longer ones are clamped to it (0 to 1000; per GPU in debugfs: vgpu<N>/timeslice_max_ms)",
        },
    },
}

/// The most GPUs one load creates.
pub(crate) const MAX_DEVICES: u32 = 8;

/// The largest per-device timeslice bound, in milliseconds, the module parameter and debugfs
/// accept: a CPU fault on a page within its timeslice waits up to this long.
pub(crate) const TIMESLICE_MAX_MS: u32 = 1000;

struct VgpuModule {
    // Dropped first: no unplug or plug runs once the GPUs go.
    _debugfs: Pin<KBox<kernel::debugfs::Scope<Arc<plug::Gpus>>>>,
    _gpus: Arc<plug::Gpus>,
}

impl kernel::Module for VgpuModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let count = module_parameters::num_devices.value();
        let vram_mib = module_parameters::vram_mib.value();
        if count == 0 || count > MAX_DEVICES {
            pr_err!("num_devices={count} is out of range: give 1 to {MAX_DEVICES}\n");
            return Err(EINVAL);
        }
        if !(2..=1024).contains(&vram_mib) || vram_mib % 2 != 0 {
            pr_err!("vram_mib={vram_mib} is invalid: give an even size from 2 to 1024\n");
            return Err(EINVAL);
        }
        let timeslice_max_ms = module_parameters::timeslice_max_ms.value();
        if timeslice_max_ms > TIMESLICE_MAX_MS {
            pr_err!(
                "timeslice_max_ms={timeslice_max_ms} is too long: give 0 to {TIMESLICE_MAX_MS}\n"
            );
            return Err(EINVAL);
        }
        let fabric = fabric::Fabric::new(fabric::links_param(), count)?;
        let config = gpu::GpuConfig {
            num_devices: count,
            vram_size: vram_mib as usize * (1 << 20),
            timeslice_max_ms,
            huge_folios: module_parameters::huge_folios.value(),
            dmirror: module_parameters::hmm_dmirror.value(),
        };
        let gpus = plug::Gpus::new(fabric.clone(), config)?;
        let debugfs = plug::debugfs(gpus.clone())?;
        pr_info!("{count} virtual GPUs with {vram_mib} MiB of device memory each\n");
        for index in 0..count {
            pr_info!(
                "vgpu{index}: links to {:#x}, interconnect group {:#x}\n",
                fabric.links_of(index),
                fabric.group_of_index(index)
            );
        }
        Ok(Self {
            _debugfs: debugfs,
            _gpus: gpus,
        })
    }
}
