//! Memory the program maps with CUDA's virtual memory API itself (PyTorch's
//! expandable segments, ...): its handles, virtualized, and the mappings the
//! swap engine moves like its own units.
//!
//! # Handles
//! `cuMemCreate` hands the program a handle of the hook's ([`ID_TAG`] plus a
//! counter: not a canonical address, so no driver hands it out), standing
//! for the real handle behind it, which changes each time the memory comes
//! back from a swap. Every call that takes a handle translates it; handles
//! the hook did not make (imported ones) pass through untouched. The
//! program's references (create, retain, release) are counted here; the
//! hook holds one real reference per real handle and gives it back once the
//! program's last reference and last mapping are gone, when the driver
//! would free the memory.
//!
//! # What moves
//! A handle is swappable when it is mapped exactly once, over its whole size
//! at offset 0, with read-write access of its own device set over the whole
//! mapping, and was never exported. Its mapping is then a unit of the swap
//! engine ([`Contents::Program`]) at the program's address, inside the
//! program's own reservation: eviction copies it to a shadow, unmaps it and
//! releases the real handle (the reservation stays the program's); restore
//! creates a handle with the program's properties, maps it at the same
//! address and replays the program's access descriptors before copying back.
//! Every other handle (exported, mapped several times or in part, unmapped
//! but alive, access set on part of a mapping) stays on the GPU: counted in
//! the footprint, never moved. A handle changes between the two as the
//! program maps, sets access, exports and unmaps.
//!
//! # Swapped-out memory
//! The gate keeps the program's work away from swapped-out memory. The
//! calls here that need the real handle or the mapping (mapping a handle
//! again, setting access, exporting, unmapping memory whose handle the
//! program still holds) answer [`Step::NeedsResident`]: the wrapper waits at
//! the gate (the program's turn, which restores everything) and asks again.
//! The rest is answered from the records: properties, retaining, releasing,
//! and unmapping a mapping whose handle the program no longer holds (which
//! only drops the shadow: the memory is gone for good).
//!
//! Lock order: the engine's units, then the [`Table`], then the registry.
//!
//! # Layout
//! - this file: the records (handles, mappings, access) and the rules of
//!   what may move.
//! - `ops`: the operations the wrappers call, keeping the records and the
//!   engine's units in step.
//! - `tests`: the rules and the records.

mod ops;

pub use ops::{Properties, Step};

use super::unit::{Contents, Unit};
use super::{SwapEngine, Units};
use crate::driver::{self, CudaError};
use crate::ffi::*;
use crate::fork::InForkChild;
use crate::registry::{self, AllocKind, Allocation};
use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::c_uint;

/// The high bits of every handle the hook hands a program.
pub const ID_TAG: u64 = 0x8e5e_0000_0000_0000;

/// A program's `cuMemCreate` properties, kept to create the memory again
/// (the Windows-only metadata pointer is not kept: always null on Linux).
#[derive(Debug, Clone, Copy)]
pub struct Prop {
    /// `CU_MEM_ALLOCATION_TYPE_*`.
    pub type_: c_uint,
    /// `CU_MEM_HANDLE_TYPE_*` bits.
    pub handle_types: c_uint,
    /// Where the memory lives.
    pub location: CUmemLocation,
    /// Allocation flags.
    pub flags: CUmemAllocationPropFlags,
}

impl Prop {
    /// Copies the program's properties.
    pub fn from_c(prop: &CUmemAllocationProp) -> Prop {
        Prop {
            type_: prop.type_,
            handle_types: prop.requestedHandleTypes,
            location: prop.location,
            flags: prop.allocFlags,
        }
    }

    /// The properties as `cuMemCreate` takes them.
    pub fn to_c(self) -> CUmemAllocationProp {
        CUmemAllocationProp {
            type_: self.type_,
            requestedHandleTypes: self.handle_types,
            location: self.location,
            win32HandleMetaData: std::ptr::null_mut(),
            allocFlags: self.flags,
        }
    }
}

/// What brings a program's mapping back after a swap: its handle's
/// properties and its access descriptors.
#[derive(Debug, Clone)]
pub struct Remap {
    /// The program's handle.
    pub id: u64,
    /// The properties it was created with.
    pub prop: Prop,
    /// The access set on its mapping (locations with some access).
    pub access: Vec<CUmemAccessDesc>,
}

impl Remap {
    /// Creates fresh memory of `bytes` like the program's.
    pub fn create(&self, bytes: u64) -> Result<CUmemGenericAllocationHandle, CudaError> {
        driver::vmm::create_like(&self.prop.to_c(), bytes)
    }

    /// Sets the program's access on the fresh mapping at `base`.
    pub fn set_access(&self, base: CUdeviceptr, bytes: u64) -> Result<(), CudaError> {
        driver::vmm::set_access_descs(base, bytes, &self.access)
    }
}

/// Where a program handle's real handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backing {
    /// Held here; the memory is on the GPU and never moves.
    Own(CUmemGenericAllocationHandle),
    /// In the unit at this address (none while swapped out).
    Unit(CUdeviceptr),
}

/// One handle the program created.
#[derive(Debug)]
struct Record {
    device: CUdevice,
    bytes: u64,
    prop: Prop,
    /// The program's references: create and retains, less releases.
    refs: u32,
    backing: Backing,
    /// Exported as a shareable handle or bound to a multicast object:
    /// mapped where the hook cannot see.
    exported: bool,
    /// The addresses it is mapped at.
    maps: BTreeSet<CUdeviceptr>,
}

/// One mapping of a program handle.
#[derive(Debug)]
struct Mapping {
    id: u64,
    bytes: u64,
    offset: u64,
    /// The access set over the whole mapping, by location.
    access: Vec<CUmemAccessDesc>,
    /// Access was set on part of it only.
    partial_access: bool,
}

/// The program's handles and their mappings (pure bookkeeping).
#[derive(Debug)]
pub struct Table {
    records: BTreeMap<u64, Record>,
    mappings: BTreeMap<CUdeviceptr, Mapping>,
    next: u64,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    /// No handles.
    pub const fn new() -> Self {
        Table {
            records: BTreeMap::new(),
            mappings: BTreeMap::new(),
            next: 0,
        }
    }

    /// Records a new handle of `bytes` on `device` backed by `real`, with
    /// one reference; returns the program's handle for it.
    pub fn create(&mut self, device: CUdevice, bytes: u64, prop: Prop, real: u64) -> u64 {
        self.next += 1;
        let id = ID_TAG | self.next;
        self.records.insert(
            id,
            Record {
                device,
                bytes,
                prop,
                refs: 1,
                backing: Backing::Own(real),
                exported: false,
                maps: BTreeSet::new(),
            },
        );
        id
    }

    /// Whether `id` is a handle the hook gave the program.
    pub fn is_ours(&self, id: u64) -> bool {
        self.records.contains_key(&id)
    }

    /// Bytes of `device`'s handles that never move (always on the GPU).
    pub fn held(&self, device: CUdevice) -> u64 {
        self.records
            .values()
            .filter(|r| r.device == device && matches!(r.backing, Backing::Own(_)))
            .map(|r| r.bytes)
            .sum()
    }

    /// Records a mapping of `id` at `va`.
    fn add_mapping(&mut self, va: CUdeviceptr, bytes: u64, offset: u64, id: u64) {
        if let Some(record) = self.records.get_mut(&id) {
            record.maps.insert(va);
            self.mappings.insert(
                va,
                Mapping {
                    id,
                    bytes,
                    offset,
                    access: Vec::new(),
                    partial_access: false,
                },
            );
        }
    }

    /// Records access `descs` set on `[ptr, ptr + size)` for the mapping at `va`:
    /// merged by location where the range covers the whole mapping,
    /// marking it partly accessible otherwise.
    fn set_access(&mut self, va: CUdeviceptr, ptr: u64, size: u64, descs: &[CUmemAccessDesc]) {
        let Some(mapping) = self.mappings.get_mut(&va) else {
            return;
        };
        let whole = ptr <= va && va + mapping.bytes <= ptr.saturating_add(size);
        if !whole {
            mapping.partial_access = true;
            return;
        }
        for desc in descs {
            mapping.access.retain(|d| d.location != desc.location);
            if desc.flags != CU_MEM_ACCESS_FLAGS_PROT_NONE {
                mapping.access.push(*desc);
            }
        }
    }

    /// The start of every mapping that overlaps `[ptr, ptr + size)`, in
    /// address order.
    fn overlapping(&self, ptr: u64, size: u64) -> Vec<CUdeviceptr> {
        let end = ptr.saturating_add(size);
        let mut found: Vec<CUdeviceptr> = self
            .mappings
            .range(..end)
            .rev()
            .take_while(|(va, m)| *va + m.bytes > ptr)
            .map(|(va, _)| *va)
            .collect();
        found.reverse();
        found
    }

    /// Whether `[ptr, ptr + size)` is exactly a run of whole mappings.
    fn exactly_covered(&self, ptr: u64, size: u64) -> bool {
        let mut at = ptr;
        for va in self.overlapping(ptr, size) {
            if va != at {
                return false;
            }
            at += self.mappings[&va].bytes;
        }
        at == ptr.saturating_add(size) && size > 0
    }

    /// The mapping containing `address`.
    fn containing(&self, address: u64) -> Option<CUdeviceptr> {
        let (va, mapping) = self.mappings.range(..=address).next_back()?;
        (address - va < mapping.bytes).then_some(*va)
    }

    /// The handle mapped at `va`.
    fn handle_at(&self, va: CUdeviceptr) -> Option<&Record> {
        self.records.get(&self.mappings.get(&va)?.id)
    }

    /// How `id` can be swapped: the address of its one mapping and what
    /// brings it back; `None` if it must stay on the GPU (see the module
    /// documentation).
    pub fn swappable(&self, id: u64) -> Option<(CUdeviceptr, Remap)> {
        let record = self.records.get(&id)?;
        if record.exported || record.maps.len() != 1 {
            return None;
        }
        let va = *record.maps.first()?;
        let mapping = self.mappings.get(&va)?;
        let own = CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: record.device,
        };
        let writable = mapping
            .access
            .iter()
            .any(|d| d.location == own && d.flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
        let whole = mapping.offset == 0 && mapping.bytes == record.bytes;
        (whole && writable && !mapping.partial_access).then(|| {
            (
                va,
                Remap {
                    id,
                    prop: record.prop,
                    access: mapping.access.clone(),
                },
            )
        })
    }
}

static TABLE: Mutex<Table> = Mutex::new(Table::new());

fn table() -> MutexGuard<'static, Table> {
    TABLE.lock()
}

/// Bytes of the program's own handles on `device` that never move.
pub fn held(device: CUdevice) -> u64 {
    table().held(device)
}

/// The handle types the program created the memory at `address` with, if
/// it lies in one of its own mappings.
pub fn handle_types_at(address: u64) -> Option<c_uint> {
    let table = table();
    let va = table.containing(address)?;
    table.handle_at(va).map(|r| r.prop.handle_types)
}

/// In a `fork()` child: the parent's handles mean nothing there.
pub fn forget_after_fork(child: &InForkChild) {
    crate::fork::forget_contents(&TABLE, child);
}

#[cfg(test)]
mod tests;
