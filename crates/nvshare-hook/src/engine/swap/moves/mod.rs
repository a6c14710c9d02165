//! Moving units' segments between the GPU and their host shadows.
//!
//! Both directions copy in chunks dealt over the hook's streams (the
//! [`CopyGeometry`]: `NVSHARE_SWAP_CHUNK_MIB`, `NVSHARE_SWAP_STREAMS`), and
//! a segment changes sides only once its copies are known complete, so
//! that a failure leaves every segment either mapped and intact, or
//! released with its part of the unit's shadow complete and authoritative:
//! - eviction makes every shadow it needs before copying anything (a
//!   refusal moves nothing), enqueues all copies on one stream in order,
//!   and releases the segments batch by batch as events show each batch's
//!   copies done,
//!   telling the caller how much is free so far (the scheduler lets the
//!   next program's restore use it while the rest is still copied);
//! - restoration is pipelined ([`plan::restore_steps`]): it maps a
//!   segment's fresh memory (with access set), enqueues that segment's
//!   copies at once and maps the next while they run; a copy only ever
//!   goes into memory already mapped and accessible. It then waits for
//!   every copy. A segment counts as restored only after that wait
//!   succeeded; if any copy fails, all fresh memory of the restore is
//!   released again and the shadows stay authoritative. If mapping fails
//!   (typically the GPU is full), the segments mapped before are restored
//!   and the rest stay swapped out. A restore may be limited to a number of
//!   bytes (a restore ahead of the grant, into the room the scheduler has).
//!
//! The registry counts an allocation resident only while all of its unit
//! is mapped.
//!
//! # Layout
//! - this file: the pieces a move copies, the chunk copies, which units an
//!   eviction chooses and their shadows.
//! - [`evict`]: eviction, releasing memory batch by batch.
//! - [`restore`]: restoration, all or within a limit.

mod evict;
mod restore;

pub use evict::{EvictSteps, evict};
pub use restore::restore;

use super::Units;
use super::plan::{self, Candidate, Chunk, CopyGeometry, RestoreStep};
use super::shadow::{HostBudget, Shadow};
use super::streams::CopyStreams;
use super::unit::Unit;
use crate::driver::ctx::PushedContext;
use crate::driver::{self, CudaError};
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

/// One segment a move copies: mapped ones when evicting, missing ones when
/// restoring.
#[derive(Clone, Copy, Debug)]
struct Piece {
    /// The unit's base.
    unit: CUdeviceptr,
    /// The segment's index in the unit.
    segment: usize,
    /// The segment's start from the unit's base.
    offset: u64,
    /// The segment's size.
    bytes: u64,
}

/// The segments of the `chosen` units that are mapped (`mapped`) or not,
/// unit by unit in the order given.
fn pieces(units: &Units, chosen: &[CUdeviceptr], mapped: bool) -> Vec<Piece> {
    chosen
        .iter()
        .flat_map(|base| {
            let unit = &units.by_base[base];
            unit.segments
                .iter()
                .enumerate()
                .filter(move |(_, s)| s.handle.is_some() == mapped)
                .map(move |(segment, s)| Piece {
                    unit: unit.base,
                    segment,
                    offset: s.offset,
                    bytes: s.bytes,
                })
        })
        .collect()
}

/// Enqueues one chunk of `piece`'s copy between its memory and the unit's
/// shadow on the chunk's stream. The segment must be mapped with access
/// set and the unit have a shadow of its size, and both must stay so until
/// the chunk's stream has been waited for.
fn enqueue_chunk(
    unit: &Unit,
    piece: &Piece,
    chunk: &Chunk,
    streams: &CopyStreams,
    direction: Direction,
) -> Result<(), CudaError> {
    let shadow = unit.shadow.as_ref().expect("a moved unit has a shadow");
    debug_assert_eq!(shadow.bytes(), unit.bytes);
    debug_assert!(
        unit.segments[piece.segment].handle.is_some(),
        "copies only touch mapped memory"
    );
    debug_assert!(chunk.offset + chunk.bytes <= piece.bytes);
    let offset = piece.offset + chunk.offset;
    // SAFETY: the chunk lies within the piece, which lies within the shadow
    // (same size as the unit, see `plan::chunks` and `plan::segments`),
    // which the engine's lock keeps alive and untouched until the chunk's
    // stream has been waited for.
    let (host, device_ptr) = unsafe {
        (
            shadow.ptr().cast::<u8>().add(offset as usize),
            unit.base + offset,
        )
    };
    let stream = streams.stream(chunk.stream);
    // SAFETY: as above; the device range is mapped and accessible (the
    // caller's contract) and stays so until the stream is waited for.
    unsafe {
        match direction {
            Direction::ToHost => {
                driver::mem::copy_to_host_async(host.cast(), device_ptr, chunk.bytes, stream)
            }
            Direction::ToDevice => {
                driver::mem::copy_to_device_async(device_ptr, host.cast(), chunk.bytes, stream)
            }
        }
    }
}

/// The resident units of `device` an eviction of `bytes` moves now: the
/// least recently used first.
fn chosen_for_eviction(units: &Units, device: CUdevice, bytes: u64) -> Vec<CUdeviceptr> {
    let ages = last_uses(device);
    let candidates = units
        .on(device)
        .filter(|u| u.resident_bytes() > 0)
        .map(|u| Candidate {
            base: u.base,
            bytes: u.resident_bytes(),
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
