// SPDX-License-Identifier: GPL-2.0

//! xe_svm: process memory served from the VRAM of Intel xe GPUs through the rust-svm stack. A
//! provider: each `xe.vram` auxiliary device (one per VRAM region, registered by xe with the
//! patch of `patches/apply/`) becomes a pagemap whose memory is that VRAM and whose copies run
//! on xe's copy engine; `/dev/xe_svm` opens pagemap fds of them and moves ranges into them.
//! xe keeps its own C GPU SVM: to it, these pages are another device's, which it moves back to
//! system memory through this module when its GPU touches them.

mod backend;
mod driver;
mod ffi;
mod file;
#[cfg(CONFIG_KUNIT)]
mod mock;
mod region;
#[cfg(CONFIG_KUNIT)]
mod region_kunit;
mod uapi;
mod xe;

use kernel::auxiliary;
use kernel::driver::Registration;
use kernel::miscdevice::MiscDeviceOptions;
use kernel::miscdevice::MiscDeviceRegistration;
use kernel::prelude::*;

module! {
    type: XeSvmModule,
    name: "xe_svm",
    authors: ["The rust-svm developers"],
    description: "Device-private memory for GPU shared virtual memory from Intel xe VRAM",
    license: "GPL",
}

#[pin_data]
struct XeSvmModule {
    // Dropped first: no new request once the regions start going.
    #[pin]
    _misc: MiscDeviceRegistration<file::XeSvmFile>,
    #[pin]
    _driver: Registration<auxiliary::Adapter<driver::XeSvmDriver>>,
    // Dropped last: empties the registry once no region is bound.
    _registry: RegistryGuard,
}

/// Empties the driver's registry when dropped.
struct RegistryGuard;

impl Drop for RegistryGuard {
    fn drop(&mut self) {
        driver::fini();
    }
}

impl kernel::InPlaceModule for XeSvmModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _registry: {
                driver::init()?;
                RegistryGuard
            },
            _driver <- Registration::new(c"xe_svm", module),
            _misc <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"xe_svm" }),
        })
    }
}
