// SPDX-License-Identifier: GPL-2.0

//! One virtual GPU: a faux device with a DRM device registered on it, and its debugfs knobs.

use drm_pagemap::copy;
use kernel::debugfs;
use kernel::device::Bound;
use kernel::dma::DmaMask;
use kernel::drm;
use kernel::faux;
use kernel::fmt;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::aref::ARef;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Relaxed;
use kernel::sync::Arc;
use kernel::uaccess::UserSliceReader;

use crate::dmirror::DmirrorNode;
use crate::driver::GpuData;
use crate::driver::VgpuDevice;
use crate::driver::VgpuDriver;
use crate::fabric::Fabric;
use crate::fabric::Member;
use crate::fabric::Seat;
use crate::vram::Signals;
use crate::vram::Vram;
use crate::TIMESLICE_MAX_MS;
use drm_pagemap::pending::task::fatal_signal_pending;

/// A registered virtual GPU; dropping it unregisters the render node, then the device.
pub(crate) struct Gpu {
    // Dropped first: peers stop reaching this GPU's memory before it goes.
    _seat: Seat,
    // Dropped first: the files reach into the device, whose reference they hold.
    _debugfs: Pin<KBox<debugfs::Scope<ARef<VgpuDevice>>>>,
    // Its open files hold the DRM device, not the registration.
    _dmirror: Option<Pin<KBox<DmirrorNode>>>,
    // Declared (so dropped) before `faux`: it borrows the faux device.
    _drm: drm::Registration<'static, VgpuDriver>,
    _faux: faux::Registration,
}

/// What every GPU of a load is created with (the module parameters).
#[derive(Clone, Copy)]
pub(crate) struct GpuConfig {
    /// Number of GPUs.
    pub(crate) num_devices: u32,
    /// Bytes of device memory per GPU.
    pub(crate) vram_size: usize,
    /// Bound of migration timeslices, in ms.
    pub(crate) timeslice_max_ms: u32,
    /// Whether transparent huge pages move into 2 MiB device folios.
    pub(crate) huge_folios: bool,
    /// Whether each GPU is also `/dev/hmm_dmirror<index>`.
    pub(crate) dmirror: bool,
}

impl Gpu {
    /// Creates GPU `index` as `config` says: its memory (on `fabric`), its render node, its
    /// debugfs directory and its `/dev/hmm_dmirror<index>` node if asked for.
    pub(crate) fn new(fabric: &Arc<Fabric>, index: u32, config: &GpuConfig) -> Result<Self> {
        let GpuConfig {
            num_devices,
            vram_size,
            timeslice_max_ms,
            huge_folios,
            dmirror,
        } = *config;
        let name = CString::try_from_fmt(fmt!("vgpu{index}"))?;
        let faux = faux::Registration::new(&name, None)?;
        // The faux device stays registered and bound until `faux` is dropped, which `Gpu`'s
        // field order puts after the DRM registration that borrows it; `Gpu` is never forgotten.
        // SAFETY: So the device outlives every use of this reference.
        let fdev: &'static faux::Device<Bound> = unsafe { &*core::ptr::from_ref(faux.as_ref()) };
        // The copy engine reaches system memory at the DMA addresses the core maps for this
        // device: a CPU engine, so any address will do.
        // SAFETY: The device is new: nothing maps for it yet.
        unsafe { copy::set_software_dma_mask(fdev.as_ref(), DmaMask::new::<64>()) }?;
        // The GPU's pages carry its interconnect group's owner: linked peers see them as theirs.
        let seat = fabric.seat(index)?;
        let engine = CString::try_from_fmt(fmt!("vgpu{index}_copy"))?;
        let owner = seat.membership().region_owner();
        let vram = Arc::pin_init(
            Vram::new(
                index,
                fabric.clone(),
                vram_size,
                owner,
                timeslice_max_ms,
                &engine,
            )?,
            GFP_KERNEL,
        )?;
        let member = Member {
            dev: fdev.as_ref().into(),
            vram: vram.clone(),
        };
        let data = try_pin_init!(GpuData {
            index,
            num_devices,
            huge_folios: Atomic::new(u32::from(huge_folios)),
            exclusive_delay_ms: Atomic::new(0),
            vram,
            fabric: fabric.clone(),
        });
        let unregistered = drm::UnregisteredDevice::<VgpuDriver>::new(fdev, data)?;
        // SAFETY: The registration is stored in `Gpu` and dropped, never forgotten, before the
        // faux device it borrows.
        let reg = unsafe { drm::Registration::new(fdev.as_ref(), unregistered, (), 0)? };
        let dmirror = if dmirror {
            let node = DmirrorNode::new(index, reg.device().into())?;
            Some(KBox::pin_init(node, GFP_KERNEL)?)
        } else {
            None
        };
        let this: ARef<VgpuDevice> = reg.device().into();
        let debugfs = KBox::pin_init::<core::convert::Infallible>(
            debugfs::Scope::dir(this, &name, knobs),
            GFP_KERNEL,
        )?;
        seat.present(member);
        Ok(Self {
            _seat: seat,
            _debugfs: debugfs,
            _dmirror: dmirror,
            _drm: reg,
            _faux: faux,
        })
    }
}

impl Gpu {
    /// Unplugs the GPU: revokes its memory, evicts what lives there (best effort, bounded),
    /// takes it off the interconnect and unregisters it.
    pub(crate) fn unplug(self) {
        let vram = self._drm.device().vram.clone();
        vram.revoke();
        // Pages that stay pinned keep their data in the device memory, reachable by CPU
        // faults until their last user is gone: a few passes, then give up on them.
        for _ in 0..UNPLUG_EVICT_PASSES {
            if vram.is_empty() || fatal_signal_pending() {
                break;
            }
            if let Err(e) = vram.evict_all(Signals::Fatal) {
                pr_warn!("vgpu: unplug: eviction: {e:?}\n");
            }
        }
        // A pagemap created while the revocation ran (its creator had seen the memory
        // unrevoked) is revoked and not kept either.
        vram.revoke();
        drop(self);
    }
}

/// How many times an unplug tries to evict the GPU's memory.
const UNPLUG_EVICT_PASSES: u32 = 3;

/// Fills a GPU's debugfs directory, `/sys/kernel/debug/vgpu<N>/` (root only):
///
/// - `timeslice_max_ms`: the longest migration timeslice the GPU grants (0 to
///   [`TIMESLICE_MAX_MS`]; a bigger value is refused with `EINVAL`).
/// - `huge_folios`: 1 if transparent huge pages move into 2 MiB device folios, 0 if into
///   base pages (anything else is refused with `EINVAL`).
/// - `pagemaps` (read only): `created N destroyed M`, the pagemaps of the GPU's memory.
/// - `fail_allocs`: how many of the next device-memory allocations fail (`ENOMEM`).
/// - `fail_copies`: how many of the next copy-engine jobs fail (`EIO`).
///
/// - `copy_delay_ms`: how long the copy engine waits before each job (0 to
///   [`RACE_DELAY_MAX_MS`]).
/// - `exclusive_delay_ms`: how long a GPU VM waits between making a page exclusive to the GPU
///   and committing the GPU's entry for it (0 to [`RACE_DELAY_MAX_MS`]).
///
/// Error injection and the two delays (race wideners for tests) hit every user of the GPU,
/// hence here and not in the uAPI.
fn knobs<'data>(dev: &'data ARef<VgpuDevice>, dir: &debugfs::ScopedDir<'data, '_>) {
    dir.read_write_callback_file(
        c"timeslice_max_ms",
        &dev.vram.timeslice_max_ms,
        &show_u32,
        &store_timeslice_max,
    );
    dir.read_write_callback_file(c"huge_folios", &dev.huge_folios, &show_u32, &store_bool);
    dir.read_callback_file(c"pagemaps", &dev.vram, &show_pagemaps);
    dir.read_write_file(c"fail_allocs", &dev.vram.fail_allocs);
    dir.read_write_file(c"fail_copies", &dev.vram.fail_copies);
    dir.read_write_callback_file(
        c"copy_delay_ms",
        dev.vram.copy_delay_ms(),
        &show_u32,
        &store_delay,
    );
    dir.read_write_callback_file(
        c"exclusive_delay_ms",
        &dev.exclusive_delay_ms,
        &show_u32,
        &store_delay,
    );
}

/// The longest delay the race-widening knobs take, in milliseconds.
const RACE_DELAY_MAX_MS: u32 = 2000;

/// Sets a race-widening delay, refusing anything above [`RACE_DELAY_MAX_MS`].
fn store_delay(value: &Atomic<u32>, reader: &mut UserSliceReader) -> Result {
    store_at_most(value, reader, RACE_DELAY_MAX_MS)
}

/// Sets a knob to the number written, refusing (`EINVAL`) anything above `max`.
fn store_at_most(value: &Atomic<u32>, reader: &mut UserSliceReader, max: u32) -> Result {
    let v = parse_u32(reader)?;
    if v > max {
        return Err(EINVAL);
    }
    value.store(v, Relaxed);
    Ok(())
}

/// Shows how many pagemaps of the GPU's memory were created and destroyed.
fn show_pagemaps(vram: &Arc<Vram>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "created {} destroyed {}",
        vram.pagemaps_created.load(Relaxed),
        vram.pagemaps_destroyed.load(Relaxed)
    )
}

/// Shows a knob's value.
fn show_u32(value: &Atomic<u32>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "{}", value.load(Relaxed))
}

/// Parses a decimal `u32` written to a knob (surrounding white space allowed).
pub(crate) fn parse_u32(reader: &mut UserSliceReader) -> Result<u32> {
    let mut buf = [0u8; 16];
    let n = reader.len();
    let text = buf.get_mut(..n).ok_or(EINVAL)?;
    reader.read_slice(text)?;
    let text = core::str::from_utf8(text).map_err(|_| EINVAL)?;
    text.trim().parse::<u32>().map_err(|_| EINVAL)
}

/// Sets a 0-or-1 knob.
fn store_bool(value: &Atomic<u32>, reader: &mut UserSliceReader) -> Result {
    store_at_most(value, reader, 1)
}

/// Sets the timeslice bound, refusing anything above [`TIMESLICE_MAX_MS`].
fn store_timeslice_max(value: &Atomic<u32>, reader: &mut UserSliceReader) -> Result {
    store_at_most(value, reader, TIMESLICE_MAX_MS)
}
