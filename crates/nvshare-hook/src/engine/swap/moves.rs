//! Moving units between the GPU and their host shadows.
//!
//! Both directions copy in chunks dealt over the hook's streams (the
//! [`CopyGeometry`]: `NVSHARE_SWAP_CHUNK_MIB`, `NVSHARE_SWAP_STREAMS`) and
//! wait for all of them before any unit counts as moved, so that a failure
//! leaves every unit either resident and intact, or swapped out with a
//! complete, authoritative shadow:
//! - eviction makes every shadow it needs before copying anything (a
//!   refusal moves nothing), copies, waits, then unmaps unit by unit;
//! - restoration is pipelined ([`plan::restore_steps`]): it maps a unit's
//!   fresh memory (with access set), enqueues that unit's copies at once
//!   and maps the next unit while they run; a copy only ever goes into
//!   memory already mapped and accessible. It then waits for every copy.
//!   A unit counts as restored only after that wait succeeded; if any copy
//!   fails, all fresh memory of the restore is released again and the
//!   shadows stay authoritative. If mapping a unit fails (typically the GPU
//!   is full), the units mapped before it are restored and the rest stay
//!   swapped out.

use super::Units;
use super::plan::{self, Candidate, Chunk, CopyGeometry, RestoreStep};
use super::shadow::{HostBudget, Shadow};
use super::streams::CopyStreams;
use super::unit::Unit;
use crate::driver::{self, CudaError, PushedContext};
use crate::engine::EngineError;
use crate::ffi::{CUdevice, CUdeviceptr};
use crate::registry::{self, AllocKind};
use std::collections::BTreeMap;

/// The last use of each swappable allocation on `device`, by base.
fn last_uses(device: CUdevice) -> BTreeMap<CUdeviceptr, u64> {
    registry::lock()
        .allocations_on(device)
        .into_iter()
        .filter(|(_, a)| a.kind == AllocKind::Swappable)
        .map(|(base, a)| (base, a.last_use))
        .collect()
}

/// Marks the registry's allocations inside the given units as on or off
/// the device.
fn mark(device: CUdevice, ranges: &[(CUdeviceptr, u64)], resident: bool) {
    let bases = last_uses(device);
    let mut registry = registry::lock();
    for &(start, bytes) in ranges {
        for (&base, _) in bases.range(start..start + bytes) {
            registry.set_resident(base, resident);
        }
    }
}

/// Which way a copy goes.
#[derive(Clone, Copy)]
enum Direction {
    ToHost,
    ToDevice,
}

/// Enqueues one chunk of `unit`'s copy between its memory and its shadow
/// on the chunk's stream. The unit must be mapped with access set and have
/// a shadow of its size, and both must stay so until the streams have been
/// synchronized.
fn enqueue_chunk(
    unit: &Unit,
    chunk: &Chunk,
    streams: &CopyStreams,
    direction: Direction,
) -> Result<(), CudaError> {
    let shadow = unit.shadow.as_ref().expect("a moved unit has a shadow");
    debug_assert_eq!(shadow.bytes(), unit.bytes);
    debug_assert!(unit.is_resident(), "copies only touch mapped memory");
    debug_assert!(chunk.offset + chunk.bytes <= unit.bytes);
    // SAFETY: the chunk lies within the shadow (same size as the unit, see
    // `plan::chunks`), which the engine's lock keeps alive and untouched
    // until the callers' synchronize has returned.
    let (host, device_ptr) = unsafe {
        (
            shadow.ptr().cast::<u8>().add(chunk.offset as usize),
            unit.base + chunk.offset,
        )
    };
    let stream = streams.stream(chunk.stream);
    // SAFETY: as above; the device range is mapped and accessible (the
    // caller's contract) and stays so until the synchronize.
    unsafe {
        match direction {
            Direction::ToHost => {
                driver::copy_to_host_async(host.cast(), device_ptr, chunk.bytes, stream)
            }
            Direction::ToDevice => {
                driver::copy_to_device_async(device_ptr, host.cast(), chunk.bytes, stream)
            }
        }
    }
}

/// Copies every unit of `chosen` between its memory and its shadow and
/// waits. Each unit must be mapped and have a shadow of its size.
fn copy_all(
    units: &Units,
    chosen: &[CUdeviceptr],
    streams: &CopyStreams,
    chunk_bytes: u64,
    direction: Direction,
) -> Result<(), CudaError> {
    let picked: Vec<&Unit> = chosen.iter().map(|b| &units.by_base[b]).collect();
    let sizes: Vec<u64> = picked.iter().map(|u| u.bytes).collect();
    let plan = plan::chunks(&sizes, chunk_bytes, streams.count());
    let enqueued = picked
        .iter()
        .zip(&plan)
        .flat_map(|(unit, chunks)| chunks.iter().map(move |chunk| (*unit, chunk)))
        .try_for_each(|(unit, chunk)| enqueue_chunk(unit, chunk, streams, direction));
    // Wait even after a failure: no copy may still run once we return.
    let waited = streams.synchronize();
    enqueued.and(waited)
}

/// Moves at least `bytes` of `device`'s resident units (least recently
/// used first) to their shadows and releases their memory; returns the
/// bytes moved.
pub fn evict(
    units: &mut Units,
    streams: &CopyStreams,
    chunk_bytes: u64,
    budget: HostBudget,
    device: CUdevice,
    bytes: u64,
) -> Result<u64, EngineError> {
    let driver_error = |source| EngineError::Driver { device, source };
    let chosen = chosen_for_eviction(units, device, bytes);
    if chosen.is_empty() {
        return Ok(0);
    }
    make_shadows(units, &chosen, budget).map_err(|source| EngineError::HostMemory {
        device,
        bytes,
        source,
    })?;
    let _pushed = PushedContext::push(streams.ctx()).map_err(driver_error)?;
    copy_all(units, &chosen, streams, chunk_bytes, Direction::ToHost).map_err(driver_error)?;
    let mut evicted = Vec::new();
    let mut failure = None;
    for base in &chosen {
        let unit = units.get_mut(*base).expect("chosen from the units");
        match unit.unmap_and_release() {
            Ok(()) => evicted.push((unit.base, unit.bytes)),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    mark(device, &evicted, false);
    let moved = evicted.iter().map(|&(_, b)| b).sum();
    tracing::debug!(
        device,
        asked = bytes,
        moved,
        units = evicted.len(),
        "swapped GPU memory out to host shadows"
    );
    match failure {
        Some(source) => Err(driver_error(source)),
        None => Ok(moved),
    }
}

/// The resident units of `device` an eviction of `bytes` moves now: the
/// least recently used first.
fn chosen_for_eviction(units: &Units, device: CUdevice, bytes: u64) -> Vec<CUdeviceptr> {
    let ages = last_uses(device);
    let candidates = units
        .on(device)
        .filter(|u| u.is_resident())
        .map(|u| Candidate {
            base: u.base,
            bytes: u.bytes,
            last_use: ages
                .range(u.base..u.base + u.bytes)
                .map(|(_, &age)| age)
                .max()
                .unwrap_or(0),
        })
        .collect();
    plan::choose_eviction(candidates, bytes)
        .iter()
        .map(|c| c.base)
        .collect()
}

/// What an eviction of `bytes` from `device` would need made: the units it
/// would move that have no shadow yet, with their sizes (see
/// [`attach_shadows`]).
pub fn shadows_wanted(units: &Units, device: CUdevice, bytes: u64) -> Vec<(CUdeviceptr, u64)> {
    chosen_for_eviction(units, device, bytes)
        .into_iter()
        .filter(|b| units.by_base[b].shadow.is_none())
        .map(|b| (b, units.by_base[&b].bytes))
        .collect()
}

/// Gives each unit its shadow made ahead of an eviction, unless the unit
/// was freed, or got one meanwhile: such a shadow is dropped.
pub fn attach_shadows(units: &mut Units, made: Vec<(CUdeviceptr, Shadow)>) -> u64 {
    let mut attached = 0;
    for (base, shadow) in made {
        if let Some(unit) = units.get_mut(base)
            && unit.shadow.is_none()
            && unit.bytes == shadow.bytes()
        {
            attached += shadow.bytes();
            unit.shadow = Some(shadow);
        }
    }
    attached
}

/// The bytes of every shadow the process keeps.
pub fn shadow_total(units: &Units) -> u64 {
    units
        .by_base
        .values()
        .filter_map(|u| u.shadow.as_ref())
        .map(Shadow::bytes)
        .sum()
}

/// The shadows of `device`'s units, pinned and pageable.
pub fn shadows_on(units: &Units, device: CUdevice) -> crate::engine::HostShadows {
    let mut totals = crate::engine::HostShadows::default();
    for shadow in units.on(device).filter_map(|u| u.shadow.as_ref()) {
        if shadow.is_pinned() {
            totals.pinned += shadow.bytes();
        } else {
            totals.pageable += shadow.bytes();
        }
    }
    totals
}

/// Gives every chosen unit a shadow, within the budget; on failure removes
/// the shadows made here and moves nothing. Shadows of resident units are
/// kept for their next eviction, but dropped when host memory is short.
fn make_shadows(
    units: &mut Units,
    chosen: &[CUdeviceptr],
    budget: HostBudget,
) -> Result<(), super::shadow::ShadowError> {
    let missing: Vec<CUdeviceptr> = chosen
        .iter()
        .copied()
        .filter(|b| units.by_base[b].shadow.is_none())
        .collect();
    let wanted = missing.iter().map(|b| units.by_base[b].bytes).sum();
    if budget.admit(shadow_total(units), wanted).is_err() {
        let mut dropped = 0;
        for unit in units.by_base.values_mut() {
            if unit.is_resident() && !chosen.contains(&unit.base) {
                dropped += unit.shadow.take().map_or(0, |s| s.bytes());
            }
        }
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "host memory is short: dropped the shadows of resident GPU memory"
            );
        }
        budget.admit(shadow_total(units), wanted)?;
    }
    for (made, base) in missing.iter().enumerate() {
        let unit = units.get_mut(*base).expect("chosen from the units");
        match Shadow::new(unit.bytes) {
            Ok(shadow) => unit.shadow = Some(shadow),
            Err(err) => {
                for undo in &missing[..made] {
                    units.get_mut(*undo).expect("chosen").shadow = None;
                }
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Brings every swapped-out unit of `device` back at its address, in
/// `chunk_bytes` chunks over `streams`, mapping and copying pipelined (see
/// the module documentation); returns the bytes moved.
pub fn restore(
    units: &mut Units,
    streams: &CopyStreams,
    chunk_bytes: u64,
    device: CUdevice,
) -> Result<u64, EngineError> {
    let driver_error = |source| EngineError::Driver { device, source };
    let swapped: Vec<CUdeviceptr> = units
        .on(device)
        .filter(|u| !u.is_resident())
        .map(|u| u.base)
        .collect();
    let sizes: Vec<u64> = swapped.iter().map(|b| units.by_base[b].bytes).collect();
    let geometry = CopyGeometry {
        chunk_bytes,
        streams: streams.count(),
    };
    let _pushed = PushedContext::push(streams.ctx()).map_err(driver_error)?;
    let mut mapped = Vec::new();
    let mut map_failure = None;
    let mut enqueued = Ok(());
    for step in plan::restore_steps(&sizes, geometry) {
        match step {
            RestoreStep::Map { unit } => {
                let base = swapped[unit];
                match units.get_mut(base).expect("listed above").map_fresh() {
                    Ok(()) => mapped.push(base),
                    Err(err) => {
                        // Typically out of device memory: restore what fits
                        // (the units mapped so far, whose copies are queued).
                        map_failure = Some(err);
                        break;
                    }
                }
            }
            RestoreStep::Copy { unit, chunk } => {
                // `restore_steps` puts a unit's copies after its mapping,
                // which succeeded (a failed mapping ends the loop).
                let unit = &units.by_base[&swapped[unit]];
                if let Err(err) = enqueue_chunk(unit, &chunk, streams, Direction::ToDevice) {
                    enqueued = Err(err);
                    break;
                }
            }
        }
    }
    // Wait even after a failure: no copy may still run into memory that
    // is about to be released, and none may be counted before it is done.
    let waited = streams.synchronize();
    if let Err(err) = enqueued.and(waited) {
        // Some fresh memory holds garbage, and which copies completed is
        // unknown: give all of it back, the shadows stay authoritative.
        for base in &mapped {
            let unit = units.get_mut(*base).expect("listed above");
            if let Err(undo) = unit.unmap_and_release() {
                tracing::error!(%undo, base, "cannot unmap GPU memory whose restore failed");
            }
        }
        return Err(driver_error(err));
    }
    let ranges: Vec<_> = mapped
        .iter()
        .map(|b| (*b, units.by_base[b].bytes))
        .collect();
    mark(device, &ranges, true);
    let moved = ranges.iter().map(|&(_, b)| b).sum();
    tracing::debug!(
        device,
        moved,
        units = ranges.len(),
        "swapped GPU memory back in"
    );
    match map_failure {
        Some(source) => Err(driver_error(source)),
        None => Ok(moved),
    }
}
