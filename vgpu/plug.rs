// SPDX-License-Identifier: GPL-2.0

//! The GPUs of one load, and their hot-unplug and re-plug from userspace, as a PCI unbind and
//! rebind would do: debugfs `vgpu/unplug` and `vgpu/plug` (root only) take a GPU index.
//!
//! Unplugging revokes the GPU's memory (no new data moves in: `ENODEV`), moves what lives
//! there back to system memory, takes the GPU off the interconnect and unregisters it. Open
//! files and pagemap file descriptors stay valid and answer `ENODEV`; what could not be
//! evicted (a page pinned throughout) stays reachable by CPU faults, the memory living until
//! its last user is gone. Plugging creates the GPU again, as at load.

use kernel::debugfs;
use kernel::fmt;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::sync::Mutex;
use kernel::uaccess::UserSliceReader;

use crate::fabric::Fabric;
use crate::gpu::Gpu;
use crate::gpu::GpuConfig;

/// The GPU slots of one load.
#[pin_data]
pub(crate) struct Gpus {
    fabric: Arc<Fabric>,
    config: GpuConfig,
    /// GPU `i` is plugged iff slot `i` holds it. Plug and unplug are serialised by the lock,
    /// which nothing else takes.
    #[pin]
    slots: Mutex<KVec<Option<Gpu>>>,
}

impl Gpus {
    /// Creates the GPUs `config` says, on `fabric`.
    pub(crate) fn new(fabric: Arc<Fabric>, config: GpuConfig) -> Result<Arc<Self>> {
        let count = config.num_devices as usize;
        let mut slots = KVec::with_capacity(count, GFP_KERNEL)?;
        for index in 0..config.num_devices {
            // On error, the GPUs created so far are unregistered as `slots` drops.
            slots.push(Some(Gpu::new(&fabric, index, &config)?), GFP_KERNEL)?;
        }
        Arc::pin_init(
            try_pin_init!(Self {
                fabric,
                config,
                slots <- kernel::new_mutex!(slots, "Gpus::slots"),
            }),
            GFP_KERNEL,
        )
    }

    /// Unplugs GPU `index`: `ENOENT` if there is no such GPU, `ENODEV` if it is unplugged.
    pub(crate) fn unplug(&self, index: u32) -> Result {
        let mut slots = self.slots.lock();
        let slot = slots.get_mut(index as usize).ok_or(ENOENT)?;
        let gpu = slot.take().ok_or(ENODEV)?;
        gpu.unplug();
        Ok(())
    }

    /// Plugs GPU `index` back: `ENOENT` if there is no such GPU, `EEXIST` if it is plugged.
    pub(crate) fn plug(&self, index: u32) -> Result {
        let mut slots = self.slots.lock();
        let slot = slots.get_mut(index as usize).ok_or(ENOENT)?;
        if slot.is_some() {
            return Err(EEXIST);
        }
        *slot = Some(Gpu::new(&self.fabric, index, &self.config)?);
        Ok(())
    }
}

/// The module's debugfs directory, `/sys/kernel/debug/vgpu/` (root only):
///
/// - `unplug`: write a GPU index to unplug that GPU.
/// - `plug`: write a GPU index to plug it back.
pub(crate) fn debugfs(gpus: Arc<Gpus>) -> Result<Pin<KBox<debugfs::Scope<Arc<Gpus>>>>> {
    KBox::pin_init::<core::convert::Infallible>(
        debugfs::Scope::dir(gpus, c"vgpu", |gpus, dir| {
            dir.write_only_callback_file(c"unplug", gpus, &store_unplug);
            dir.write_only_callback_file(c"plug", gpus, &store_plug);
        }),
        GFP_KERNEL,
    )
    .map_err(|_| ENOMEM)
}

fn store_unplug(gpus: &Arc<Gpus>, reader: &mut UserSliceReader) -> Result {
    let index = crate::gpu::parse_u32(reader)?;
    gpus.unplug(index)
}

fn store_plug(gpus: &Arc<Gpus>, reader: &mut UserSliceReader) -> Result {
    let index = crate::gpu::parse_u32(reader)?;
    gpus.plug(index)
}

impl fmt::Debug for Gpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} GPUs", self.config.num_devices)
    }
}
