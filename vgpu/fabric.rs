// SPDX-License-Identifier: GPL-2.0

//! The interconnect between the virtual GPUs of one load: which GPUs are linked (the `links=`
//! module parameter), their interconnect groups (one device-private owner per group, from
//! `pagemap_util::owner`), and the GPUs present, by index, so that a GPU reaches a linked
//! peer's memory.

use drm_pagemap::owner::Owner;
use kernel::device::Device;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::Arc;
use kernel::sync::Mutex;
use pagemap_util::owner::Membership;
use pagemap_util::owner::OwnerList;

use crate::engine::VramPages;
use crate::vram::Vram;
use crate::MAX_DEVICES;
use drm_pagemap::device_private::DevicePrivateRegion;

const MAX: usize = MAX_DEVICES as usize;

/// A GPU present on the interconnect.
#[derive(Clone)]
pub(crate) struct Member {
    /// The GPU's DMA device (its faux device): the device a peer maps memory for.
    pub(crate) dev: ARef<Device>,
    pub(crate) vram: Arc<Vram>,
}

/// A GPU memory that lives, plugged or not: an unplugged GPU's memory lives on while pages
/// that could not be evicted use it, and peers still reach them there.
#[derive(Clone)]
pub(crate) struct Memory {
    /// Unique among the load's memories (never reused: a re-plugged GPU has a new one).
    pub(crate) id: u32,
    /// The index of the GPU it was made for.
    pub(crate) index: u32,
    pub(crate) pages: Arc<VramPages>,
    pub(crate) region: Arc<DevicePrivateRegion>,
}

/// A memory's entry in the fabric, removed when dropped (with the memory).
pub(crate) struct MemoryEntry {
    fabric: Arc<Fabric>,
    id: u32,
}

impl MemoryEntry {
    /// The memory's id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The fabric.
    pub(crate) fn fabric(&self) -> &Arc<Fabric> {
        &self.fabric
    }
}

impl Drop for MemoryEntry {
    fn drop(&mut self) {
        let gone = {
            let mut memories = self.fabric.memories.lock();
            let pos = memories.list.iter().position(|m| m.id == self.id);
            pos.and_then(|pos| memories.list.remove(pos).ok())
        };
        drop(gone);
    }
}

/// The live memories of a load.
struct Memories {
    list: KVec<Memory>,
    next_id: u32,
}

/// The links, groups and present GPUs of one load.
#[pin_data]
pub(crate) struct Fabric {
    /// Bit `j` of `links[i]`: GPU `i` has a link to GPU `j` (symmetric, never `i` itself).
    links: [u32; MAX],
    owners: Arc<OwnerList>,
    #[pin]
    members: Mutex<[Option<Member>; MAX]>,
    /// Every live GPU memory, plugged or not. Never allocates under the lock (taken under a
    /// GPU VM's page-table lock, itself taken in reclaim) but to add a memory.
    #[pin]
    memories: Mutex<Memories>,
}

/// A GPU's place on the fabric, held while the GPU exists: leaves its group when dropped.
pub(crate) struct Seat {
    fabric: Arc<Fabric>,
    index: u32,
    membership: Membership,
}

impl Fabric {
    /// The fabric of `num_devices` GPUs linked as `links` (the module parameter) says.
    pub(crate) fn new(links: Option<&CStr>, num_devices: u32) -> Result<Arc<Self>> {
        let links = parse_links(links, num_devices)?;
        Arc::pin_init(
            try_pin_init!(Self {
                links,
                owners: OwnerList::new()?,
                members <- kernel::new_mutex!([const { None }; MAX], "Fabric::members"),
                memories <- kernel::new_mutex!(
                    Memories {
                        list: KVec::new(),
                        next_id: 1,
                    },
                    "Fabric::memories"
                ),
            }),
            GFP_KERNEL,
        )
    }

    /// Whether GPUs `a` and `b` are linked (a GPU is always "linked" to itself).
    pub(crate) fn linked(&self, a: u32, b: u32) -> bool {
        a == b
            || self
                .links
                .get(a as usize)
                .is_some_and(|m| m & (1u32 << b.min(31)) != 0)
    }

    /// The GPUs `index` has a link to, as a bit mask.
    pub(crate) fn links_of(&self, index: u32) -> u32 {
        self.links.get(index as usize).copied().unwrap_or(0)
    }

    /// Puts GPU `index` in its interconnect group.
    pub(crate) fn seat(self: &Arc<Self>, index: u32) -> Result<Seat> {
        let membership = self.owners.acquire(index, |a, b| self.linked(a, b))?;
        Ok(Seat {
            fabric: self.clone(),
            index,
            membership,
        })
    }

    /// The present GPU `index`, if any.
    pub(crate) fn member(&self, index: u32) -> Option<Member> {
        self.members.lock().get(index as usize)?.clone()
    }

    /// The present GPU whose DMA device is `dev`, with its index.
    pub(crate) fn member_of(&self, dev: &Device) -> Option<(u32, Member)> {
        let members = self.members.lock();
        members.iter().enumerate().find_map(|(i, m)| {
            m.as_ref()
                .filter(|m| core::ptr::eq::<Device>(&*m.dev, dev))
                .map(|m| (i as u32, m.clone()))
        })
    }

    /// Adds GPU `index`'s memory; it stays listed as long as the entry.
    pub(crate) fn add_memory(
        self: &Arc<Self>,
        index: u32,
        pages: Arc<VramPages>,
        region: Arc<DevicePrivateRegion>,
    ) -> Result<MemoryEntry> {
        // Never allocates under the lock: a bigger list is made outside and swapped in. Each
        // round at least doubles the room, so this ends.
        let mut spare: Option<KVec<Memory>> = None;
        loop {
            let mut memories = self.memories.lock();
            if let Some(mut bigger) = spare.take() {
                if bigger.capacity() > memories.list.len() {
                    // The registered memories, one per GPU.
                    for m in core::mem::take(&mut memories.list) {
                        // Room checked just above.
                        let _ = bigger.push_within_capacity(m);
                    }
                    memories.list = bigger;
                }
            }
            if memories.list.len() < memories.list.capacity() {
                let id = memories.next_id;
                memories.next_id = id.checked_add(1).ok_or(ENOSPC)?;
                let memory = Memory {
                    id,
                    index,
                    pages,
                    region,
                };
                // Room checked just above.
                let _ = memories.list.push_within_capacity(memory);
                return Ok(MemoryEntry {
                    fabric: self.clone(),
                    id,
                });
            }
            let want = memories.list.len() * 2 + 4;
            drop(memories);
            spare = Some(KVec::with_capacity(want, GFP_KERNEL)?);
        }
    }

    /// The live memory `id`.
    pub(crate) fn memory(&self, id: u32) -> Option<Memory> {
        let memories = self.memories.lock();
        memories.list.iter().find(|m| m.id == id).cloned()
    }

    /// The live memory that has page `pfn`.
    pub(crate) fn memory_of_pfn(&self, pfn: usize) -> Option<Memory> {
        let memories = self.memories.lock();
        memories
            .list
            .iter()
            .find(|m| m.region.contains_pfn(pfn))
            .cloned()
    }

    /// The live memories, plugged or not.
    pub(crate) fn memories(&self) -> Result<KVec<Memory>> {
        // Sized before the lock (see `memories`); a memory added meanwhile is left out.
        let n = self.memories.lock().list.len();
        let mut v = KVec::with_capacity(n, GFP_KERNEL)?;
        let memories = self.memories.lock();
        // At most `n`.
        for m in memories.list.iter().take(n) {
            v.push_within_capacity(m.clone()).map_err(|_| ENOMEM)?;
        }
        Ok(v)
    }

    /// The present GPUs whose memory carries `owner`, as a bit mask.
    pub(crate) fn group_of(&self, owner: Owner) -> u32 {
        let members = self.members.lock();
        members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.as_ref().is_some_and(|m| m.vram.owner() == owner))
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }

    /// The present GPUs sharing GPU `index`'s interconnect group (itself included), as a bit
    /// mask; 0 if it is not present.
    pub(crate) fn group_of_index(&self, index: u32) -> u32 {
        match self.member(index) {
            Some(m) => self.group_of(m.vram.owner()),
            None => 0,
        }
    }
}

impl Seat {
    /// The group's owner, for the GPU's memory.
    pub(crate) fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Makes the GPU present: peers reach its memory from now on.
    pub(crate) fn present(&self, member: Member) {
        let mut members = self.fabric.members.lock();
        if let Some(slot) = members.get_mut(self.index as usize) {
            *slot = Some(member);
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let gone = self
            .fabric
            .members
            .lock()
            .get_mut(self.index as usize)
            .and_then(Option::take);
        // The GPU's references are dropped outside the lock.
        drop(gone);
    }
}

/// The `links=` module parameter (`vgpu/params.c`), if given.
pub(crate) fn links_param() -> Option<&'static CStr> {
    // SAFETY: Returns the parameter's string or null; read-only after load (mode 0444), so
    // it lives, unchanged, until the module unloads.
    let ptr = unsafe { crate::uapi::vgpu_param_links() };
    // SAFETY: Non-null, it is a NUL-terminated string that lives as long as the module.
    (!ptr.is_null()).then(|| unsafe { CStr::from_char_ptr(ptr) })
}

/// Parses `links=`: `all` (also when not given), `none`, or comma-separated pairs `a-b` of
/// distinct GPU indices below `n`. A bad string is refused with `EINVAL` and a message.
fn parse_links(text: Option<&CStr>, n: u32) -> Result<[u32; MAX]> {
    let mut links = [0u32; MAX];
    let text = match text {
        None => "all",
        Some(t) => t.to_str().map_err(|_| {
            pr_err!("links= is not text\n");
            EINVAL
        })?,
    };
    match text.trim() {
        "all" => {
            // At most the GPUs a link map holds.
            for (i, l) in links.iter_mut().enumerate().take(n as usize) {
                *l = ((1u32 << n) - 1) & !(1 << i);
            }
            return Ok(links);
        }
        "none" | "" => return Ok(links),
        _ => {}
    }
    // At most as many pairs as the string has commas: bounded by the parameter's length.
    for pair in text.split(',') {
        let parsed = pair.trim().split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?))
        });
        let (a, b) = match parsed {
            Some((a, b)) if a < n && b < n && a != b => (a, b),
            _ => {
                pr_err!(
                    "links=\"{text}\": \"{pair}\" is not a pair a-b of two GPU indices below {n}; give all, none or pairs such as 0-1,2-3\n"
                );
                return Err(EINVAL);
            }
        };
        links[a as usize] |= 1 << b;
        links[b as usize] |= 1 << a;
    }
    Ok(links)
}

#[kunit_tests(vgpu_fabric)]
mod tests {
    use super::*;

    fn parse(s: &CStr, n: u32) -> Result<[u32; MAX]> {
        parse_links(Some(s), n)
    }

    #[test]
    fn links_parse() -> Result {
        let all = parse_links(None, 3)?;
        assert_eq!(&all[..4], &[0b110, 0b101, 0b011, 0]);
        assert_eq!(parse(c"none", 4)?, [0; MAX]);
        let islands = parse(c"0-1, 2-3", 4)?;
        assert_eq!(&islands[..4], &[0b10, 0b01, 0b1000, 0b0100]);
        for bad in [c"0-1,", c"0-0", c"0-4", c"a-b", c"0+1", c"1", c"-1-2"] {
            assert_eq!(parse(bad, 4).err(), Some(EINVAL));
        }
        Ok(())
    }
}
