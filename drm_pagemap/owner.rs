// SPDX-License-Identifier: GPL-2.0

//! Device-private owners: the cookie by which the core mm tells the pages of one device (or of
//! one group of devices sharing an interconnect) from everyone else's.
//!
//! C header: [`include/linux/memremap.h`](srctree/include/linux/memremap.h) (`dev_pagemap::owner`)

use core::ptr::NonNull;

use kernel::ffi::c_void;
use kernel::prelude::*;
use kernel::sync::atomic::Acquire;
use kernel::sync::atomic::Atomic;
use kernel::sync::atomic::Full;
use kernel::sync::atomic::Release;
use kernel::sync::Arc;

/// A device-private owner, as the core mm compares it: `dev_pagemap::owner`,
/// `hmm_range::dev_private_owner`, `migrate_vma::pgmap_owner`. Never null (the core mm reads a
/// null owner as "none"); an address that is compared, never dereferenced.
///
/// Pagemaps with the same owner see each other's pages as their own in range faults and
/// migrations: that is how devices on one interconnect share memory. The code here checks a
/// page's `dev_pagemap` before treating the page as its own, but C drivers trust the owner
/// (`test_hmm` takes any page with its owner for one of its own chunks): a pagemap given
/// another driver's owner would corrupt that driver's memory. Hence making an owner is
/// `unsafe`, and there is no way to turn a raw pointer into one.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct Owner(NonNull<c_void>);

// SAFETY: An owner is an address that is only compared, never dereferenced.
unsafe impl Send for Owner {}
// SAFETY: As above.
unsafe impl Sync for Owner {}

impl Owner {
    /// The owner named by the address of `cookie`.
    ///
    /// # Safety
    ///
    /// No other driver uses this address as a device-private owner for as long as pagemaps,
    /// faults and migrations use the returned owner: `cookie` is an object the caller owns (not
    /// a zero-sized one) and keeps alive that long, and the caller shares the owner only with
    /// the devices whose memory it may treat as its own.
    pub unsafe fn of<T>(cookie: &T) -> Self {
        Self(NonNull::from(cookie).cast())
    }

    /// The pointer the C structures hold.
    pub fn as_ptr(self) -> *mut c_void {
        self.0.as_ptr()
    }
}

/// An owner that is an allocation of its own: the owner of a group of devices sharing an
/// interconnect (the C `struct drm_pagemap_owner`), refcounted by every region that uses it.
///
/// Its address is unique among live allocations, so nobody else's owner can equal it while a
/// reference lives; a [`crate::device_private::DevicePrivateRegion`] made with one holds a
/// reference until the region is gone. Groups are formed by `pagemap_util::owner`.
pub struct SharedOwner {
    // Not zero-sized: the address must be the allocation's own.
    _unique: u8,
}

impl SharedOwner {
    /// A new owner, distinct from every other.
    pub fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(SharedOwner { _unique: 0 }, GFP_KERNEL)?)
    }

    /// The owner value, for comparisons and for range faults and migrations while a region
    /// made with this owner lives. A region is made with the [`SharedOwner`] itself
    /// (`RegionOwner::from`), which keeps the address allocated; the value alone never
    /// makes a region owner without `unsafe` ([`RegionOwner::unique`]).
    pub fn owner(self: &Arc<Self>) -> Owner {
        Owner(NonNull::from(&**self).cast::<c_void>())
    }
}

/// The owner a [`crate::device_private::DevicePrivateRegion`] is created with.
pub struct RegionOwner(OwnerKind);

enum OwnerKind {
    /// An owner whose lifetime the caller promised ([`RegionOwner::unique`]).
    Unique(Owner),
    /// A group's owner, kept alive by the region, and the lease the region counts in.
    Shared(Arc<SharedOwner>, Option<Arc<RegionLease>>),
}

/// Counts the regions made under one lease (a device's membership of a group): whoever
/// hands out the owner learns whether pages carrying it may still exist.
pub struct RegionLease {
    regions: Atomic<u32>,
}

impl RegionLease {
    /// A lease with no region yet.
    pub fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(
            RegionLease {
                regions: Atomic::new(0),
            },
            GFP_KERNEL,
        )?)
    }

    /// Whether a region made under this lease still lives.
    pub fn in_use(&self) -> bool {
        self.regions.load(Acquire) != 0
    }
}

impl RegionOwner {
    /// A region owner from an owner value.
    ///
    /// # Safety
    ///
    /// As for [`Owner::of`], for as long as the region lives: `owner` names an object its
    /// maker keeps alive (not a [`SharedOwner`] that may be freed meanwhile) and shares only
    /// with the devices whose memory it may treat as its own.
    pub unsafe fn unique(owner: Owner) -> Self {
        Self(OwnerKind::Unique(owner))
    }

    /// The owner value.
    pub fn owner(&self) -> Owner {
        match &self.0 {
            OwnerKind::Unique(o) => *o,
            OwnerKind::Shared(s, _) => s.owner(),
        }
    }

    /// A region owner for `owner`, counted in `lease` until the region is gone.
    pub fn leased(owner: Arc<SharedOwner>, lease: Arc<RegionLease>) -> Self {
        lease.regions.fetch_add(1, Full);
        Self(OwnerKind::Shared(owner, Some(lease)))
    }
}

impl From<Arc<SharedOwner>> for RegionOwner {
    fn from(owner: Arc<SharedOwner>) -> Self {
        Self(OwnerKind::Shared(owner, None))
    }
}

impl Drop for RegionOwner {
    fn drop(&mut self) {
        if let OwnerKind::Shared(_, Some(lease)) = &self.0 {
            lease.regions.fetch_sub(1, Release);
        }
    }
}
