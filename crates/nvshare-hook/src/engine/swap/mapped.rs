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

use super::unit::{Contents, Unit};
use super::{SwapEngine, Units};
use crate::driver::{self, CudaError};
use crate::ffi::*;
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
        driver::vmm_create_like(&self.prop.to_c(), bytes)
    }

    /// Sets the program's access on the fresh mapping at `base`.
    pub fn set_access(&self, base: CUdeviceptr, bytes: u64) -> Result<(), CudaError> {
        driver::vmm_set_access_descs(base, bytes, &self.access)
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

/// What a call on the program's memory needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<T> {
    /// Done, with this result.
    Done(T),
    /// Memory of this device it touches is swapped out: wait at the gate
    /// for the program's turn (which restores it) and ask again.
    NeedsResident(CUdevice),
}

/// How to answer `cuMemGetAllocationPropertiesFromHandle`.
#[derive(Debug)]
pub enum Properties {
    /// The driver's answer for the real handle.
    Asked(CUresult),
    /// Swapped out: the properties the program created it with.
    Recorded(CUmemAllocationProp),
}

/// The real handle behind `id` now (`None` while swapped out).
fn real_of(units: &Units, table: &Table, id: u64) -> Option<CUmemGenericAllocationHandle> {
    match table.records.get(&id)?.backing {
        Backing::Own(handle) => Some(handle),
        Backing::Unit(va) => units.by_base.get(&va).and_then(Unit::whole_handle),
    }
}

/// Whether the mapping at `va` is swapped out.
fn is_swapped(units: &Units, table: &Table, va: CUdeviceptr) -> bool {
    table
        .handle_at(va)
        .is_some_and(|r| r.backing == Backing::Unit(va))
        && units.by_base.get(&va).is_some_and(|u| !u.is_resident())
}

/// Makes `id` a unit if it became swappable, an ordinary handle if it no
/// longer is, and refreshes a unit's access. A handle stops being swappable
/// only through a call made while it is resident.
fn sync(units: &mut Units, table: &mut Table, id: u64) {
    let wanted = table.swappable(id);
    let Some(record) = table.records.get_mut(&id) else {
        return;
    };
    match (record.backing, wanted) {
        (Backing::Own(handle), Some((va, remap))) => {
            units.by_base.insert(
                va,
                Unit::adopt(
                    record.device,
                    va,
                    record.bytes,
                    handle,
                    Contents::Program(remap),
                ),
            );
            registry::lock().insert(
                va,
                Allocation {
                    device: record.device,
                    bytes: record.bytes,
                    kind: AllocKind::Swappable,
                    resident: true,
                    last_use: 0,
                },
            );
            record.backing = Backing::Unit(va);
            tracing::trace!(
                va,
                bytes = record.bytes,
                "the program's own GPU mapping can be swapped"
            );
        }
        (Backing::Unit(va), Some((now, remap))) if va == now => {
            if let Some(unit) = units.by_base.get_mut(&va) {
                unit.contents = Contents::Program(remap);
            }
        }
        (Backing::Unit(va), _) => {
            let handle = units.by_base.get(&va).and_then(Unit::whole_handle);
            let Some(handle) = handle else {
                tracing::error!(
                    va,
                    "bug: a swapped-out mapping of the program changed; it stays swappable"
                );
                return;
            };
            units.by_base.remove(&va);
            registry::lock().remove(va);
            record.backing = Backing::Own(handle);
            // Made swappable again at its new place, if it now is one.
            if table.swappable(id).is_some() {
                sync(units, table, id);
            }
        }
        (Backing::Own(_), None) => {}
    }
}

/// Forgets handle `id` (no references, no mappings), releasing its real
/// handle; returns its device, whose footprint shrank.
fn finish(table: &mut Table, id: u64) -> Option<CUdevice> {
    let record = table.records.remove(&id)?;
    if let Backing::Own(handle) = record.backing
        && let Err(err) = driver::vmm_release(handle)
    {
        tracing::warn!(%err, "releasing the program's GPU memory failed; the driver may keep it");
    }
    Some(record.device)
}

/// Bookkeeping after the mapping at `va` is gone from the GPU (unmapped by
/// the driver, or dropped while swapped out with no reference left):
/// returns the device whose footprint shrank, if the handle died with it.
fn unmapped(units: &mut Units, table: &mut Table, va: CUdeviceptr) -> Option<CUdevice> {
    let mapping = table.mappings.remove(&va)?;
    let id = mapping.id;
    let record = table.records.get_mut(&id)?;
    record.maps.remove(&va);
    if record.backing == Backing::Unit(va) {
        let unit = units.by_base.remove(&va);
        registry::lock().remove(va);
        match unit.as_ref().and_then(Unit::whole_handle) {
            Some(handle) => record.backing = Backing::Own(handle),
            None => {
                // Swapped out: the memory lived only in the shadow just
                // dropped. Callers do this only when no reference is left.
                debug_assert_eq!(record.refs, 0);
                let device = record.device;
                table.records.remove(&id);
                return Some(device);
            }
        }
    }
    if record.refs == 0 && record.maps.is_empty() {
        return finish(table, id);
    }
    sync(units, table, id);
    None
}

impl SwapEngine {
    /// The units and the program's handles, locked in order.
    fn program(&self) -> (MutexGuard<'_, Units>, MutexGuard<'static, Table>) {
        let units = self.units();
        (units, table())
    }

    /// Records a handle the program just created with `prop` (its real
    /// handle `real`, `bytes` on `device`); returns the program's handle.
    pub fn program_created(
        &self,
        device: CUdevice,
        bytes: u64,
        prop: &CUmemAllocationProp,
        real: CUmemGenericAllocationHandle,
    ) -> u64 {
        table().create(device, bytes, Prop::from_c(prop), real)
    }

    /// Whether `id` is a handle the hook gave the program.
    pub fn is_program_handle(&self, id: u64) -> bool {
        id & ID_TAG == ID_TAG && table().is_ours(id)
    }

    /// `cuMemRelease` of the program's handle `id`: returns the device
    /// whose footprint shrank, if the memory is gone.
    pub fn program_release(&self, id: u64) -> Result<Option<CUdevice>, CUresult> {
        let (_units, mut table) = self.program();
        let record = table
            .records
            .get_mut(&id)
            .ok_or(CUresult::ERROR_INVALID_VALUE)?;
        if record.refs == 0 {
            return Err(CUresult::ERROR_INVALID_VALUE);
        }
        record.refs -= 1;
        Ok(if record.refs == 0 && record.maps.is_empty() {
            finish(&mut table, id)
        } else {
            None
        })
    }

    /// `cuMemMap` of the program's handle `id`; `map` makes the real call
    /// with the real handle.
    pub fn program_map(
        &self,
        va: CUdeviceptr,
        bytes: u64,
        offset: u64,
        id: u64,
        map: impl FnOnce(CUmemGenericAllocationHandle) -> CUresult,
    ) -> Step<CUresult> {
        let (mut units, mut table) = self.program();
        let Some(record) = table.records.get(&id) else {
            return Step::Done(CUresult::ERROR_INVALID_VALUE);
        };
        if record.refs == 0 {
            return Step::Done(CUresult::ERROR_INVALID_VALUE);
        }
        let Some(real) = real_of(&units, &table, id) else {
            return Step::NeedsResident(record.device);
        };
        let status = map(real);
        if status.is_success() {
            table.add_mapping(va, bytes, offset, id);
            sync(&mut units, &mut table, id);
        }
        Step::Done(status)
    }

    /// `cuMemSetAccess` on `[ptr, ptr + size)`; `set` makes the real call.
    pub fn program_set_access(
        &self,
        ptr: u64,
        size: u64,
        descs: &[CUmemAccessDesc],
        set: impl FnOnce() -> CUresult,
    ) -> Step<CUresult> {
        let (mut units, mut table) = self.program();
        let ours = table.overlapping(ptr, size);
        if let Some(&va) = ours.iter().find(|&&va| is_swapped(&units, &table, va)) {
            return Step::NeedsResident(units.by_base[&va].device);
        }
        let status = set();
        if status.is_success() {
            for va in ours {
                table.set_access(va, ptr, size, descs);
                let id = table.mappings[&va].id;
                sync(&mut units, &mut table, id);
            }
        }
        Step::Done(status)
    }

    /// `cuMemUnmap` of `[ptr, ptr + size)`; `unmap` makes the real call.
    /// Returns its result and the devices whose footprint shrank.
    pub fn program_unmap(
        &self,
        ptr: u64,
        size: u64,
        unmap: impl FnOnce() -> CUresult,
    ) -> Step<(CUresult, Vec<CUdevice>)> {
        let (mut units, mut table) = self.program();
        let ours = table.overlapping(ptr, size);
        let swapped: Vec<CUdeviceptr> = ours
            .iter()
            .copied()
            .filter(|&va| is_swapped(&units, &table, va))
            .collect();
        let mut freed = Vec::new();
        if swapped.is_empty() {
            let status = unmap();
            if status.is_success() {
                for va in ours {
                    freed.extend(unmapped(&mut units, &mut table, va));
                }
            }
            return Step::Done((status, freed));
        }
        let released = |va: &CUdeviceptr| table.handle_at(*va).is_some_and(|r| r.refs == 0);
        if !table.exactly_covered(ptr, size) || !swapped.iter().all(released) {
            return Step::NeedsResident(units.by_base[&swapped[0]].device);
        }
        // Memory the program can no longer reach once unmapped: resident
        // mappings are unmapped one by one, swapped-out ones only forgotten.
        for va in ours {
            if !swapped.contains(&va) {
                let bytes = table.mappings[&va].bytes;
                if let Err(err) = driver::vmm_unmap(va, bytes) {
                    return Step::Done((err.code(), freed));
                }
            }
            freed.extend(unmapped(&mut units, &mut table, va));
        }
        Step::Done((CUresult::SUCCESS, freed))
    }

    /// `cuMemAddressFree` of `[ptr, ptr + size)` (the driver refuses a
    /// range with mappings left, but if it takes them, they are gone).
    pub fn program_address_free(
        &self,
        ptr: u64,
        size: u64,
        free: impl FnOnce() -> CUresult,
    ) -> Step<(CUresult, Vec<CUdevice>)> {
        let (mut units, mut table) = self.program();
        let ours = table.overlapping(ptr, size);
        if let Some(&va) = ours.iter().find(|&&va| is_swapped(&units, &table, va)) {
            return Step::NeedsResident(units.by_base[&va].device);
        }
        let status = free();
        let mut freed = Vec::new();
        if status.is_success() {
            for va in ours {
                freed.extend(unmapped(&mut units, &mut table, va));
            }
        }
        Step::Done((status, freed))
    }

    /// `cuMemExportToShareableHandle` (or `cuMulticastBindMem`) of `id`:
    /// once exported (or bound), another process (or device) may map the
    /// memory, so it never moves again. `share` makes the real call.
    pub fn program_share(
        &self,
        id: u64,
        share: impl FnOnce(CUmemGenericAllocationHandle) -> CUresult,
    ) -> Step<CUresult> {
        let (mut units, mut table) = self.program();
        let Some(record) = table.records.get(&id) else {
            return Step::Done(CUresult::ERROR_INVALID_VALUE);
        };
        let Some(real) = real_of(&units, &table, id) else {
            return Step::NeedsResident(record.device);
        };
        let status = share(real);
        if status.is_success() {
            if let Some(record) = table.records.get_mut(&id) {
                record.exported = true;
            }
            sync(&mut units, &mut table, id);
        }
        Step::Done(status)
    }

    /// `cuMemGetAllocationPropertiesFromHandle` of `id`; `ask` makes the
    /// real call.
    pub fn program_properties(
        &self,
        id: u64,
        ask: impl FnOnce(CUmemGenericAllocationHandle) -> CUresult,
    ) -> Properties {
        let (units, table) = self.program();
        let Some(record) = table.records.get(&id).filter(|r| r.refs > 0) else {
            return Properties::Asked(CUresult::ERROR_INVALID_VALUE);
        };
        match real_of(&units, &table, id) {
            Some(real) => Properties::Asked(ask(real)),
            None => Properties::Recorded(record.prop.to_c()),
        }
    }

    /// `cuMemRetainAllocationHandle` of an address in the program's
    /// mappings: one more reference to its handle, which is returned.
    pub fn program_retain(&self, address: u64) -> Option<u64> {
        let mut table = table();
        let va = table.containing(address)?;
        let id = table.mappings[&va].id;
        let record = table.records.get_mut(&id)?;
        record.refs += 1;
        Some(id)
    }

    /// The program's access flags at `address` for `location` while its
    /// mapping is swapped out (`cuMemGetAccess`); `None` otherwise.
    pub fn program_access_if_swapped(&self, address: u64, location: CUmemLocation) -> Option<u64> {
        let (units, table) = self.program();
        let va = table.containing(address)?;
        if !is_swapped(&units, &table, va) {
            return None;
        }
        let flags = table.mappings[&va]
            .access
            .iter()
            .find(|d| d.location == location)
            .map_or(CU_MEM_ACCESS_FLAGS_PROT_NONE, |d| d.flags);
        Some(flags.into())
    }
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
pub fn forget_after_fork() {
    // SAFETY: in the fork child only this thread exists; a held lock
    // belongs to a vanished thread. The contents are leaked, not dropped.
    unsafe {
        if TABLE.is_locked() {
            TABLE.force_unlock();
        }
    }
    std::mem::forget(std::mem::take(&mut *TABLE.lock()));
}

#[cfg(test)]
mod tests;
