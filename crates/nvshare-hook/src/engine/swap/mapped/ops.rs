//! The operations on the program's handles, as the wrappers call them:
//! bookkeeping of the table beside the engine's units, under both locks.

use super::*;

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
        && let Err(err) = driver::vmm::release(handle)
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
                if let Err(err) = driver::vmm::unmap(va, bytes) {
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
