//! What the fake knows about addresses: device allocations, managed memory,
//! pinned or registered host memory, reserved VA ranges with their VMM
//! mappings, and the VMM physical handles. Answers "what is at this pointer",
//! which every copy, memset and pointer query asks first.

use std::collections::{BTreeMap, HashMap};
use std::ffi::c_int;
use std::os::fd::OwnedFd;

use crate::ffi::{CUDA_ERROR_INVALID_HANDLE, CUDA_ERROR_INVALID_VALUE};
use crate::guard::CuResult;

/// What a region of address space is.
#[derive(Debug)]
pub enum Kind {
    /// `cuMemAlloc`/`cuMemAllocPitch`/`cuMemAllocAsync` memory.
    Device { device: usize, stream_ordered: bool },
    /// `cuMemAllocManaged` memory; `resident` is where it was prefetched to.
    Managed {
        resident: Option<usize>,
        charged: u64,
    },
    /// Pinned host memory: allocated by the driver (`owned`) or registered.
    Host { owned: bool },
    /// A `cuMemAddressReserve` range and the handles mapped into it.
    Reserved { mappings: BTreeMap<u64, Mapping> },
}

/// One contiguous range the fake handed out or registered.
#[derive(Debug)]
pub struct Region {
    /// Bytes the caller asked for (what range queries report).
    pub size: u64,
    /// Bytes actually mapped at the base (a whole number of pages).
    pub mapped_bytes: u64,
    pub kind: Kind,
}

/// A VMM handle mapped into a reservation.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub size: u64,
    pub handle: u64,
    pub device: usize,
    /// Whether `cuMemSetAccess` granted read-write access.
    pub accessible: bool,
}

/// A VMM physical allocation (`cuMemCreate` or an imported one).
#[derive(Debug)]
pub struct Handle {
    pub fd: OwnedFd,
    pub size: u64,
    pub device: usize,
    pub handle_types: c_int,
    /// Bytes charged to the device for it (0 for imported handles).
    pub charged: u64,
    /// Create/retain/import references not yet released.
    pub refs: u32,
    /// Live mappings of it.
    pub maps: u32,
}

/// What lies at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Device {
        base: u64,
        size: u64,
        device: usize,
        stream_ordered: bool,
    },
    Managed {
        base: u64,
        size: u64,
    },
    Host {
        base: u64,
        size: u64,
    },
    /// Inside a VMM mapping: `base`/`size` of the whole mapping.
    Mapped {
        base: u64,
        size: u64,
        device: usize,
        handle: u64,
        accessible: bool,
    },
    /// Reserved VA with nothing mapped there (a swapped-out range).
    ReservedUnmapped,
    /// Not known to the driver (pageable host memory, or garbage).
    Unknown,
}

/// The address-space bookkeeping of the process.
#[derive(Default)]
pub struct Registry {
    regions: BTreeMap<u64, Region>,
    handles: HashMap<u64, Handle>,
    next_handle: u64,
}

impl Registry {
    /// Records a region at `base`.
    pub fn insert(&mut self, base: u64, region: Region) {
        self.regions.insert(base, region);
    }

    /// Removes the region that starts exactly at `base`.
    pub fn remove(&mut self, base: u64) -> Option<Region> {
        self.regions.remove(&base)
    }

    /// The region containing `ptr`, with its base.
    pub fn containing(&self, ptr: u64) -> Option<(u64, &Region)> {
        let (base, region) = self.regions.range(..=ptr).next_back()?;
        (ptr < base + region.size.max(region.mapped_bytes)).then_some((*base, region))
    }

    /// Mutable access to the region starting at `base`.
    pub fn region_mut(&mut self, base: u64) -> Option<&mut Region> {
        self.regions.get_mut(&base)
    }

    /// Whether any region overlaps `[start, start + len)`.
    pub fn overlaps(&self, start: u64, len: u64) -> bool {
        let end = start.saturating_add(len);
        self.regions
            .range(..end)
            .next_back()
            .is_some_and(|(base, r)| base + r.size.max(r.mapped_bytes) > start)
    }

    /// Classifies `ptr`.
    pub fn target(&self, ptr: u64) -> Target {
        let Some((base, region)) = self.containing(ptr) else {
            return Target::Unknown;
        };
        match &region.kind {
            Kind::Device {
                device,
                stream_ordered,
            } => Target::Device {
                base,
                size: region.size,
                device: *device,
                stream_ordered: *stream_ordered,
            },
            Kind::Managed { .. } => Target::Managed {
                base,
                size: region.size,
            },
            Kind::Host { .. } => Target::Host {
                base,
                size: region.size,
            },
            Kind::Reserved { mappings } => match mappings.range(..=ptr).next_back() {
                Some((start, m)) if ptr < start + m.size => Target::Mapped {
                    base: *start,
                    size: m.size,
                    device: m.device,
                    handle: m.handle,
                    accessible: m.accessible,
                },
                _ => Target::ReservedUnmapped,
            },
        }
    }

    /// Checks that `[ptr, ptr + len)` is memory the GPU may touch (device,
    /// managed, pinned host, or contiguous VMM mappings). `pageable_ok`
    /// admits addresses unknown to the driver, as unified-addressing copies do.
    pub fn check_range(&self, ptr: u64, len: u64, pageable_ok: bool) -> CuResult {
        let end = ptr.checked_add(len).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        match self.target(ptr) {
            Target::Unknown if pageable_ok && !self.overlaps(ptr, len) => Ok(()),
            Target::Unknown | Target::ReservedUnmapped => Err(CUDA_ERROR_INVALID_VALUE),
            Target::Device { base, size, .. }
            | Target::Managed { base, size }
            | Target::Host { base, size } => {
                if end <= base + size {
                    Ok(())
                } else {
                    Err(CUDA_ERROR_INVALID_VALUE)
                }
            }
            Target::Mapped { base, size, .. } => {
                // Adjacent mappings (expandable segments) may be crossed.
                let mut covered = base + size;
                while covered < end {
                    match self.target(covered) {
                        Target::Mapped { base, size, .. } if base == covered => covered += size,
                        _ => return Err(CUDA_ERROR_INVALID_VALUE),
                    }
                }
                Ok(())
            }
        }
    }

    /// Records a new VMM handle and returns its id.
    pub fn add_handle(&mut self, handle: Handle) -> u64 {
        self.next_handle += 1;
        let id = 0xf00d_0000_0000 + self.next_handle;
        self.handles.insert(id, handle);
        id
    }

    /// A handle that still has references (released ones are invalid).
    pub fn handle(&self, id: u64) -> CuResult<&Handle> {
        self.handles
            .get(&id)
            .filter(|h| h.refs > 0)
            .ok_or(CUDA_ERROR_INVALID_VALUE)
    }

    /// Mutable access to any handle, referenced or only still mapped.
    pub fn handle_mut(&mut self, id: u64) -> CuResult<&mut Handle> {
        self.handles.get_mut(&id).ok_or(CUDA_ERROR_INVALID_HANDLE)
    }

    /// Drops the handle if nothing references or maps it; returns it so the
    /// caller can give back its charge.
    pub fn collect_handle(&mut self, id: u64) -> Option<Handle> {
        let unused = self
            .handles
            .get(&id)
            .is_some_and(|h| h.refs == 0 && h.maps == 0);
        if unused {
            self.handles.remove(&id)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserved(mappings: &[(u64, u64)]) -> Region {
        let mut map = BTreeMap::new();
        for (start, size) in mappings {
            map.insert(
                *start,
                Mapping {
                    size: *size,
                    handle: 1,
                    device: 0,
                    accessible: true,
                },
            );
        }
        Region {
            size: 0x1000,
            mapped_bytes: 0x1000,
            kind: Kind::Reserved { mappings: map },
        }
    }

    #[test]
    fn ranges_across_adjacent_mappings_are_valid_but_holes_are_not() {
        let mut registry = Registry::default();
        registry.insert(0x10000, reserved(&[(0x10000, 0x400), (0x10400, 0x400)]));
        assert!(registry.check_range(0x10100, 0x600, false).is_ok());
        assert_eq!(registry.target(0x10900), Target::ReservedUnmapped);
        assert_eq!(
            registry.check_range(0x10100, 0x800, false),
            Err(CUDA_ERROR_INVALID_VALUE)
        );
        assert_eq!(
            registry.check_range(0x10900, 4, true),
            Err(CUDA_ERROR_INVALID_VALUE)
        );
    }

    proptest::proptest! {
        /// A reservation with mappings at random page slots: a range is valid
        /// exactly when every page of it is mapped.
        #[test]
        fn a_range_is_valid_exactly_when_every_page_is_mapped(
            mapped in proptest::collection::vec(proptest::bool::ANY, 16),
            start in 0u64..16,
            pages in 1u64..6,
        ) {
            const PAGE: u64 = 0x1000;
            const BASE: u64 = 0x100_0000;
            let slots: Vec<(u64, u64)> = mapped
                .iter()
                .enumerate()
                .filter(|(_, m)| **m)
                .map(|(i, _)| (BASE + i as u64 * PAGE, PAGE))
                .collect();
            let mut region = reserved(&slots);
            region.size = 16 * PAGE;
            region.mapped_bytes = 16 * PAGE;
            let mut registry = Registry::default();
            registry.insert(BASE, region);
            let end = (start + pages).min(16);
            let all_mapped = (start..end).all(|p| mapped[p as usize]);
            let ok = registry.check_range(BASE + start * PAGE, (end - start) * PAGE, false).is_ok();
            proptest::prop_assert_eq!(ok, all_mapped);
        }
    }

    #[test]
    fn unknown_addresses_pass_only_as_pageable_host_memory() {
        let mut registry = Registry::default();
        registry.insert(
            0x20000,
            Region {
                size: 100,
                mapped_bytes: 0x1000,
                kind: Kind::Device {
                    device: 0,
                    stream_ordered: false,
                },
            },
        );
        assert!(registry.check_range(0x20000, 100, false).is_ok());
        assert!(registry.check_range(0x20000, 101, false).is_err());
        assert!(registry.check_range(0x50000, 8, true).is_ok());
        assert!(registry.check_range(0x50000, 8, false).is_err());
        // A pageable range that runs into a device allocation is refused.
        assert!(registry.check_range(0x1f000, 0x2000, true).is_err());
    }
}
