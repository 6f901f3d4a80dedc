// SPDX-License-Identifier: GPL-2.0

//! Interconnect groups: devices that reach each other's memory over a fast link share one
//! device-private owner, so that range faults and migrations see the group's pages as their
//! own (the C `drm_pagemap_acquire_owner`/`drm_pagemap_release_owner`).
//!
//! A group that lost a member is sealed while the departed device's region lives: nobody
//! joins it meanwhile. The departed device's pages may still carry the group's owner (its
//! region lives while anything uses its memory), and a newcomer that has no link to it must
//! not see them as its own, as it would with the C version, which lets it join. Once that
//! region is gone (counted by a [`RegionLease`]), the group is open again.
//!
//! A device joins the first group whose every member it can reach, both ways; if there is
//! none, it starts a group of its own. Groups are not transitive: in a chain `a-b-c` where `a`
//! and `c` have no link, `a` and `b` share an owner and `c` has its own. Leaving a group never
//! changes the others' owners: a device's pages carry its owner for as long as its region
//! lives.
//!
//! C header: [`include/drm/drm_pagemap_util.h`](srctree/include/drm/drm_pagemap_util.h)

use drm_pagemap::owner::Owner;
use drm_pagemap::owner::RegionLease;
use drm_pagemap::owner::RegionOwner;
use drm_pagemap::owner::SharedOwner;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::sync::Mutex;

/// One member of a list.
struct Peer {
    id: u64,
    key: u32,
    owner: Arc<SharedOwner>,
}

/// The members of every group of one scope (typically one per driver), in joining order.
struct Peers {
    list: KVec<Peer>,
    next_id: u64,
    /// Owners of groups that lost a member whose region may still live, with its lease:
    /// closed to newcomers while the lease is in use.
    sealed: KVec<(Arc<SharedOwner>, Arc<RegionLease>)>,
}

/// Devices, named by the caller's numbers, and the owners of their interconnect groups (the C
/// `drm_pagemap_owner_list`). Not generic: its lock's class is defined once, here.
#[pin_data]
pub struct OwnerList {
    #[pin]
    peers: Mutex<Peers>,
}

/// A device's place in its group; leaving the group when dropped. The group's owner stays
/// alive as long as some region holds it ([`drm_pagemap::owner::RegionOwner::Shared`]).
pub struct Membership {
    list: Arc<OwnerList>,
    id: u64,
    owner: Arc<SharedOwner>,
    lease: Arc<RegionLease>,
}

impl OwnerList {
    /// An empty list.
    pub fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                peers <- kernel::new_mutex!(
                    Peers {
                        list: KVec::new(),
                        next_id: 0,
                        sealed: KVec::new(),
                    },
                    "OwnerList::peers"
                ),
            }),
            GFP_KERNEL,
        )
    }

    /// Puts the device `key` in the first group whose every member it reaches and that
    /// reaches it (`linked` is asked both ways), or in a new group of its own.
    ///
    /// `linked` runs under the list's lock: it must not take it (join or leave a group).
    pub fn acquire(
        self: &Arc<Self>,
        key: u32,
        linked: impl Fn(u32, u32) -> bool,
    ) -> Result<Membership> {
        let mut peers = self.peers.lock();
        peers.list.reserve(1, GFP_KERNEL)?;
        // Room to seal this device's group when it leaves, taken now: leaving cannot fail.
        let groups = peers.list.len() + 1;
        peers.sealed.reserve(groups, GFP_KERNEL)?;
        let mut chosen: Option<Arc<SharedOwner>> = None;
        // Bounded by the number of members (each group is examined once, each member once).
        for (i, first) in peers.list.iter().enumerate() {
            let group = first.owner.owner();
            // Each group is examined from its first member in joining order.
            if peers.list[..i].iter().any(|p| p.owner.owner() == group)
                || peers
                    .sealed
                    .iter()
                    .any(|(s, lease)| s.owner() == group && lease.in_use())
            {
                continue;
            }
            let reaches_all = peers
                .list
                .iter()
                .filter(|p| p.owner.owner() == group)
                .all(|p| linked(key, p.key) && linked(p.key, key));
            if reaches_all {
                chosen = Some(first.owner.clone());
                break;
            }
        }
        let owner = match chosen {
            Some(owner) => owner,
            None => SharedOwner::new()?,
        };
        let lease = RegionLease::new()?;
        let id = peers.next_id;
        peers.next_id += 1;
        peers.list.push(
            Peer {
                id,
                key,
                owner: owner.clone(),
            },
            GFP_KERNEL,
        )?;
        Ok(Membership {
            list: self.clone(),
            id,
            owner,
            lease,
        })
    }

    /// How many devices share `owner`. For diagnostics and tests.
    pub fn group_size(&self, owner: Owner) -> usize {
        let peers = self.peers.lock();
        peers
            .list
            .iter()
            .filter(|p| p.owner.owner() == owner)
            .count()
    }
}

impl Membership {
    /// The group's owner, to create the device's region with: the region counts in this
    /// membership's lease, which keeps the group closed to newcomers once the device has
    /// left, for as long as the region lives.
    pub fn region_owner(&self) -> RegionOwner {
        RegionOwner::leased(self.owner.clone(), self.lease.clone())
    }

    /// The group's owner.
    pub fn shared_owner(&self) -> &Arc<SharedOwner> {
        &self.owner
    }

    /// The group's owner value.
    pub fn owner(&self) -> Owner {
        self.owner.owner()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut peers = self.list.peers.lock();
        let pos = peers.list.iter().position(|p| p.id == self.id);
        // A member is plain data (an id, a number, an owner reference): dropped under the lock.
        let _removed = pos.and_then(|pos| peers.list.remove(pos).ok());
        let owner = self.owner.owner();
        if self.lease.in_use() && peers.list.iter().any(|p| p.owner.owner() == owner) {
            // Room reserved by `acquire`.
            let _ = peers
                .sealed
                .push_within_capacity((self.owner.clone(), self.lease.clone()));
        }
        // Seals whose region is gone, or whose group is empty (nobody can join it), go.
        // Bounded by the sealed owners.
        let mut i = 0;
        while i < peers.sealed.len() {
            let (o, lease) = &peers.sealed[i];
            let o = o.owner();
            if lease.in_use() && peers.list.iter().any(|p| p.owner.owner() == o) {
                i += 1;
            } else {
                let _ = peers.sealed.remove(i);
            }
        }
    }
}

#[kunit_tests(pagemap_util_owner)]
mod tests {
    use super::*;

    /// Links between devices `0..n`, as `(a, b)` pairs (symmetric).
    fn linked_by(links: &'static [(u32, u32)]) -> impl Fn(u32, u32) -> bool {
        move |a, b| {
            links
                .iter()
                .any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b))
        }
    }

    fn join(
        list: &Arc<OwnerList>,
        n: u32,
        links: &'static [(u32, u32)],
    ) -> Result<KVec<Membership>> {
        let mut v = KVec::new();
        for dev in 0..n {
            v.push(list.acquire(dev, linked_by(links))?, GFP_KERNEL)?;
        }
        Ok(v)
    }

    #[test]
    fn full_mesh_shares_one_owner() -> Result {
        let list = OwnerList::new()?;
        let m = join(&list, 4, &[(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])?;
        for x in m.iter() {
            assert!(x.owner() == m[0].owner());
        }
        assert_eq!(list.group_size(m[0].owner()), 4);
        Ok(())
    }

    #[test]
    fn two_islands_have_two_owners() -> Result {
        let list = OwnerList::new()?;
        let m = join(&list, 4, &[(0, 1), (2, 3)])?;
        assert!(m[0].owner() == m[1].owner());
        assert!(m[2].owner() == m[3].owner());
        assert!(m[0].owner() != m[2].owner());
        assert_eq!(list.group_size(m[0].owner()), 2);
        assert_eq!(list.group_size(m[2].owner()), 2);
        Ok(())
    }

    #[test]
    fn chain_is_not_transitive() -> Result {
        let list = OwnerList::new()?;
        // a-b-c: c reaches b but not a, so it cannot join a's group.
        let m = join(&list, 3, &[(0, 1), (1, 2)])?;
        assert!(m[0].owner() == m[1].owner());
        assert!(m[2].owner() != m[0].owner());
        assert_eq!(list.group_size(m[2].owner()), 1);
        Ok(())
    }

    #[test]
    fn one_way_link_is_no_link() -> Result {
        let list = OwnerList::new()?;
        let a = list.acquire(0, |_, _| true)?;
        let b = list.acquire(1, |x, y| x == 0 && y == 1)?;
        assert!(a.owner() != b.owner());
        Ok(())
    }

    #[test]
    fn release_and_reacquire() -> Result {
        let list = OwnerList::new()?;
        let mut m = join(&list, 3, &[(0, 1), (1, 2)])?;
        let first = m[0].owner();
        // c leaves: its group, c alone, is gone.
        let c = m.pop().ok_or(EINVAL)?;
        let c_owner = c.owner();
        drop(c);
        assert_eq!(list.group_size(c_owner), 0);
        // a leaves while its region lives: b is alone in the first group, which is sealed
        // (a's pages may still carry its owner).
        let a_region = m[0].region_owner();
        let a = m.remove(0)?;
        drop(a);
        assert_eq!(list.group_size(first), 1);
        // c reaches b but cannot join the sealed group: a group of its own.
        let c = list.acquire(2, linked_by(&[(0, 1), (1, 2)]))?;
        assert!(c.owner() != first);
        assert_eq!(list.group_size(first), 1);
        // a comes back: it reaches b (sealed) but not c, so it starts a new group.
        let a = list.acquire(0, linked_by(&[(0, 1), (1, 2)]))?;
        assert!(a.owner() != first);
        assert!(a.owner() != c.owner());
        assert_eq!(list.group_size(a.owner()), 1);
        // Once a's region is gone, b's group is open again: a full mesh newcomer joins it
        // (the first group in joining order).
        drop(a_region);
        let d = list.acquire(3, |_, _| true)?;
        assert!(d.owner() == first);
        assert_eq!(list.group_size(first), 2);
        Ok(())
    }

    #[test]
    fn owner_outlives_membership_while_held() -> Result {
        let list = OwnerList::new()?;
        let a = list.acquire(0, |_, _| true)?;
        let kept = a.shared_owner().clone();
        let value = a.owner();
        drop(a);
        // The region's reference keeps the address, so no new group can get the same owner.
        let b = list.acquire(1, |_, _| true)?;
        assert!(b.owner() != value);
        assert!(kept.owner() == value);
        Ok(())
    }
}
