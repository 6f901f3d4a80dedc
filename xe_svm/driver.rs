// SPDX-License-Identifier: GPL-2.0

//! The auxiliary driver of xe's `xe.vram` devices: a region of device-private memory for each,
//! in an interconnect group with the regions that PCIe peer-to-peer reaches both ways, listed
//! for `DEVMEM_OPEN` by the device's instance number; revoked and emptied on unbind.

use kernel::auxiliary;
use kernel::device::Core;
use kernel::prelude::*;
use kernel::sync::Arc;
use pagemap_util::owner::OwnerList;

use crate::backend::Backend;
use crate::region::Region;
use crate::xe::XeBackend;

/// The bound regions, by auxiliary device instance number, and their interconnect groups.
pub(crate) struct Registry {
    regions: KVec<(u32, Arc<Region<XeBackend>>)>,
    owners: Option<Arc<OwnerList>>,
}

kernel::sync::global_lock! {
    // SAFETY: `init` initialises it in the module initializer, before the driver registers.
    pub(crate) unsafe(uninit) static REGISTRY: Mutex<Registry> = Registry {
        regions: KVec::new(),
        owners: None,
    };
}

/// Sets up the registry; called once from module init.
pub(crate) fn init() -> Result {
    // SAFETY: Called once, from the module initializer, before any other use.
    unsafe { REGISTRY.init() };
    REGISTRY.lock().owners = Some(OwnerList::new()?);
    Ok(())
}

/// Empties the registry; called once from module exit, after the driver unregistered.
pub(crate) fn fini() {
    let (regions, owners) = {
        let mut registry = REGISTRY.lock();
        (
            core::mem::take(&mut registry.regions),
            registry.owners.take(),
        )
    };
    drop((regions, owners));
}

/// The region of `xe.vram.<id>`, if bound.
pub(crate) fn region(id: u32) -> Option<Arc<Region<XeBackend>>> {
    let registry = REGISTRY.lock();
    registry
        .regions
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, r)| r.clone())
}

/// Every bound region (for moving data back to system memory).
pub(crate) fn regions() -> Result<KVec<Arc<Region<XeBackend>>>> {
    let registry = REGISTRY.lock();
    let mut v = KVec::with_capacity(registry.regions.len(), GFP_KERNEL)?;
    // Bounded by the bound regions.
    for (_, r) in registry.regions.iter() {
        v.push(r.clone(), GFP_KERNEL)?;
    }
    Ok(v)
}

pub(crate) struct XeSvmDriver;

/// A bound `xe.vram` device.
pub(crate) struct BoundRegion {
    id: u32,
    region: Arc<Region<XeBackend>>,
}

kernel::auxiliary_device_table!(
    AUX_TABLE,
    <XeSvmDriver as auxiliary::Driver>::IdInfo,
    [(auxiliary::DeviceId::new(c"xe", c"vram"), ())]
);

impl auxiliary::Driver for XeSvmDriver {
    type IdInfo = ();
    type Data<'bound> = BoundRegion;

    const ID_TABLE: auxiliary::IdTable<Self::IdInfo> = &AUX_TABLE;

    fn probe<'bound>(
        adev: &'bound auxiliary::Device<Core<'_>>,
        _info: &'bound Self::IdInfo,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        let id = adev.id();
        let backend = XeBackend::new(adev)?;
        let mut registry = REGISTRY.lock();
        let owners = registry.owners.clone().ok_or(ENODEV)?;
        registry.regions.reserve(1, GFP_KERNEL)?;
        // Linked: PCIe peer-to-peer from the first's BAR to the second. Regions of one GPU (its
        // tiles) are not: xe's copy engine takes system memory or a peer's BAR, not another
        // tile's VRAM, so their pages go through system memory. Runs under the owner list's
        // lock, taking none.
        let linked = |a: u32, b: u32| {
            let dev_of = |k: u32| {
                if k == id {
                    Some(backend.dma_device())
                } else {
                    registry
                        .regions
                        .iter()
                        .find(|(i, _)| *i == k)
                        .map(|(_, r)| r.backend().dma_device())
                }
            };
            let (Some(da), Some(db)) = (dev_of(a), dev_of(b)) else {
                return false;
            };
            if core::ptr::eq(da, db) {
                return false;
            }
            match a == id {
                true => backend.p2p_reachable(db),
                false => registry
                    .regions
                    .iter()
                    .find(|(i, _)| *i == a)
                    .is_some_and(|(_, r)| r.backend().p2p_reachable(db)),
            }
        };
        let membership = owners.acquire(id, linked)?;
        let owner = membership.region_owner();
        let region = Region::new(backend, owner, Some(membership))?;
        let info = region.info();
        dev_info!(
            adev.as_ref(),
            "VRAM region: {} MiB at DPA {:#x}, BAR {} MiB, pages of {} KiB\n",
            info.usable_size >> 20,
            info.dpa_base,
            info.io_size >> 20,
            info.min_page_size >> 10
        );
        registry
            .regions
            .push_within_capacity((id, region.clone()))
            .map_err(|_| ENOMEM)?;
        Ok(BoundRegion { id, region })
    }

    fn unbind<'bound>(adev: &'bound auxiliary::Device<Core<'_>>, this: Pin<&BoundRegion>) {
        // Not found by DEVMEM_OPEN any more; what it holds moves back to system memory.
        REGISTRY.lock().regions.retain(|(i, _)| *i != this.id);
        match this.region.unbind() {
            Ok(n) => dev_info!(adev.as_ref(), "unbound: {n} allocations moved to RAM\n"),
            Err(e) => dev_warn!(
                adev.as_ref(),
                "unbound with data left in VRAM ({e:?}): it stays until its pages go\n"
            ),
        }
    }
}
