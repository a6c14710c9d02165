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
                driver::copy_to_host_async(host.cast(), device_ptr, chunk.bytes, stream)
            }
            Direction::ToDevice => {
                driver::copy_to_device_async(device_ptr, host.cast(), chunk.bytes, stream)
            }
        }
    }
}

/// The first of `pieces` (least recently used units first, each unit's
/// segments in address order) that hold at least `bytes`: only what was
/// asked moves, to the segment, so the last unit may stay partly resident.
fn enough_pieces(mut pieces: Vec<Piece>, bytes: u64) -> Vec<Piece> {
    let mut total = 0u64;
    let keep = pieces
        .iter()
        .position(|p| {
            total = total.saturating_add(p.bytes);
            total >= bytes
        })
        .map_or(pieces.len(), |last| last + 1);
    pieces.truncate(keep);
    pieces
}

/// How an eviction cuts its work.
#[derive(Debug, Clone, Copy)]
pub struct EvictSteps {
    /// Bytes per copy command.
    pub chunk_bytes: u64,
    /// Bytes it copies before it waits for them and releases their memory
    /// (and reports it released): small enough that the next program's
    /// restore can start early, large enough that waiting costs nothing.
    pub release_bytes: u64,
}

impl EvictSteps {
    /// The most bytes released at once: 256 MiB (a GiB segment is released
    /// alone).
    pub const MAX_RELEASE_BYTES: u64 = 256 << 20;
}

/// Consecutive pieces of at least `release_bytes` together (the last batch
/// may be smaller): `(first, end)` index ranges.
fn release_batches(pieces: &[Piece], release_bytes: u64) -> Vec<(usize, usize)> {
    let mut batches = Vec::new();
    let (mut first, mut bytes) = (0, 0u64);
    for (index, piece) in pieces.iter().enumerate() {
        bytes += piece.bytes;
        if bytes >= release_bytes || index + 1 == pieces.len() {
            batches.push((first, index + 1));
            first = index + 1;
            bytes = 0;
        }
    }
    batches
}

/// Enqueues the copies of `pieces` to their shadows batch by batch,
/// marking the end of each batch on every stream; returns the marks of
/// the batches fully enqueued, and the first enqueue failure.
fn enqueue_to_host(
    units: &Units,
    pieces: &[Piece],
    batches: &[(usize, usize)],
    streams: &CopyStreams,
    chunk_bytes: u64,
) -> (Vec<Vec<driver::Event>>, Result<(), CudaError>) {
    let sizes: Vec<u64> = pieces.iter().map(|p| p.bytes).collect();
    // One stream, in order: the copy engine serves a GPU's streams one
    // after the other (on the H200, the first of 9 segments dealt over four
    // streams was done only after 77% of the eviction), so spreading the
    // chunks would release memory only at the end; one engine in one
    // direction is as fast from one stream as from four.
    let plan = plan::chunks(&sizes, chunk_bytes, 1);
    let mut marks = Vec::with_capacity(batches.len());
    for &(first, end) in batches {
        let mut used = [false; plan::MAX_STREAMS];
        for (piece, chunks) in pieces[first..end].iter().zip(&plan[first..end]) {
            let unit = &units.by_base[&piece.unit];
            for chunk in chunks {
                if let Err(err) = enqueue_chunk(unit, piece, chunk, streams, Direction::ToHost) {
                    return (marks, Err(err));
                }
                used[chunk.stream] = true;
            }
        }
        let recorded = (0..streams.count())
            .filter(|&s| used[s])
            .map(|s| {
                let event = driver::Event::new()?;
                event.record(streams.stream(s))?;
                Ok(event)
            })
            .collect::<Result<Vec<_>, CudaError>>();
        match recorded {
            Ok(events) => marks.push(events),
            Err(err) => return (marks, Err(err)),
        }
    }
    (marks, Ok(()))
}

/// Moves at least `bytes` of `device`'s resident memory (least recently
/// used units first) to the units' shadows and releases it; returns the
/// bytes moved. Memory is released batch by batch as soon as its copies
/// are done, and `released` is told the running total each time, so that
/// the scheduler can let the next program's memory in meanwhile.
pub fn evict(
    units: &mut Units,
    streams: &CopyStreams,
    steps: EvictSteps,
    budget: HostBudget,
    device: CUdevice,
    bytes: u64,
    released: &mut dyn FnMut(u64),
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
    let started = std::time::Instant::now();
    let pieces = enough_pieces(pieces(units, &chosen, true), bytes);
    let batches = release_batches(&pieces, steps.release_bytes);
    let (marks, enqueued) = enqueue_to_host(units, &pieces, &batches, streams, steps.chunk_bytes);
    let enqueued_at = started.elapsed();
    let mut first_release = None;
    let mut moved = 0;
    let mut failure = enqueued.err();
    for (&(first, end), events) in batches.iter().zip(&marks) {
        if let Err(err) = events.iter().try_for_each(driver::Event::synchronize) {
            failure.get_or_insert(err);
            break;
        }
        for piece in &pieces[first..end] {
            let unit = units.get_mut(piece.unit).expect("chosen from the units");
            match unit.unmap_segment(piece.segment) {
                Ok(bytes) => moved += bytes,
                Err(err) => {
                    failure.get_or_insert(err);
                    break;
                }
            }
        }
        if failure.is_some() {
            break;
        }
        first_release.get_or_insert(started.elapsed());
        released(moved);
    }
    // Wait even after a failure: no copy may still run once we return.
    if let Err(err) = streams.synchronize() {
        failure.get_or_insert(err);
    }
    let out: Vec<_> = chosen
        .iter()
        .map(|b| &units.by_base[b])
        .filter(|u| !u.is_resident())
        .map(|u| (u.base, u.bytes))
        .collect();
    mark(device, &out, false);
    tracing::debug!(
        device,
        asked = bytes,
        moved,
        units = out.len(),
        enqueued_us = enqueued_at.as_micros() as u64,
        first_release_us = first_release.map_or(0, |t| t.as_micros() as u64),
        released_us = started.elapsed().as_micros() as u64,
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

/// Brings `device`'s swapped-out segments back at their addresses, those
/// that fit within `limit` bytes (first fit, unit by unit), in
/// `chunk_bytes` chunks over `streams`, mapping and copying pipelined (see
/// the module documentation); returns the bytes moved.
pub fn restore(
    units: &mut Units,
    streams: &CopyStreams,
    chunk_bytes: u64,
    device: CUdevice,
    limit: u64,
) -> Result<u64, EngineError> {
    let driver_error = |source| EngineError::Driver { device, source };
    let swapped: Vec<CUdeviceptr> = units
        .on(device)
        .filter(|u| !u.is_resident())
        .map(|u| u.base)
        .collect();
    let missing = pieces(units, &swapped, false);
    let sizes: Vec<u64> = missing.iter().map(|p| p.bytes).collect();
    let picked: Vec<Piece> = plan::fit_within(&sizes, limit)
        .into_iter()
        .map(|i| missing[i])
        .collect();
    if picked.is_empty() {
        return Ok(0);
    }
    let sizes: Vec<u64> = picked.iter().map(|p| p.bytes).collect();
    let geometry = CopyGeometry {
        chunk_bytes,
        streams: streams.count(),
    };
    let _pushed = PushedContext::push(streams.ctx()).map_err(driver_error)?;
    let started = std::time::Instant::now();
    let mut mapping = std::time::Duration::ZERO;
    let mut mapped = Vec::new();
    let mut map_failure = None;
    let mut enqueued = Ok(());
    for step in plan::restore_steps(&sizes, geometry) {
        match step {
            RestoreStep::Map { unit: index } => {
                let piece = picked[index];
                let unit = units.get_mut(piece.unit).expect("listed above");
                let map_started = std::time::Instant::now();
                let made = unit.map_fresh(piece.segment);
                mapping += map_started.elapsed();
                match made {
                    Ok(()) => mapped.push(piece),
                    Err(err) => {
                        // Typically out of device memory: restore what fits
                        // (the pieces mapped so far, whose copies are queued).
                        map_failure = Some(err);
                        break;
                    }
                }
            }
            RestoreStep::Copy { unit: index, chunk } => {
                // `restore_steps` puts a piece's copies after its mapping,
                // which succeeded (a failed mapping ends the loop).
                let piece = &picked[index];
                let unit = &units.by_base[&piece.unit];
                if let Err(err) = enqueue_chunk(unit, piece, &chunk, streams, Direction::ToDevice) {
                    enqueued = Err(err);
                    break;
                }
            }
        }
    }
    let enqueued_at = started.elapsed();
    // Wait even after a failure: no copy may still run into memory that
    // is about to be released, and none may be counted before it is done.
    let waited = streams.synchronize();
    let copied_at = started.elapsed();
    if let Err(err) = enqueued.and(waited) {
        // Some fresh memory holds garbage, and which copies completed is
        // unknown: give all of it back, the shadows stay authoritative.
        for piece in &mapped {
            let unit = units.get_mut(piece.unit).expect("listed above");
            if let Err(undo) = unit.unmap_segment(piece.segment) {
                tracing::error!(%undo, base = piece.unit, "cannot unmap GPU memory whose restore failed");
            }
        }
        return Err(driver_error(err));
    }
    let whole: Vec<_> = swapped
        .iter()
        .map(|b| &units.by_base[b])
        .filter(|u| u.is_resident())
        .map(|u| (u.base, u.bytes))
        .collect();
    mark(device, &whole, true);
    let moved = mapped.iter().map(|p| p.bytes).sum();
    // The phases, to tell mapping costs from copy speed on a GPU.
    tracing::debug!(
        device,
        moved,
        segments = mapped.len(),
        units = whole.len(),
        map_us = mapping.as_micros() as u64,
        enqueued_us = enqueued_at.as_micros() as u64,
        copied_us = copied_at.as_micros() as u64,
        "swapped GPU memory back in"
    );
    match map_failure {
        Some(source) => Err(driver_error(source)),
        None => Ok(moved),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(unit: CUdeviceptr, segment: usize, bytes: u64) -> Piece {
        Piece {
            unit,
            segment,
            offset: segment as u64 * 4,
            bytes,
        }
    }

    #[test]
    fn an_eviction_moves_segments_until_enough_not_whole_units() {
        let pieces = vec![
            piece(1, 0, 4),
            piece(1, 1, 4),
            piece(1, 2, 2),
            piece(2, 0, 4),
        ];
        let kept = |bytes| -> Vec<(CUdeviceptr, usize)> {
            enough_pieces(pieces.clone(), bytes)
                .iter()
                .map(|p| (p.unit, p.segment))
                .collect()
        };
        assert_eq!(kept(5), vec![(1, 0), (1, 1)], "8 of unit 1's 10");
        assert_eq!(kept(4), vec![(1, 0)]);
        assert_eq!(kept(11), vec![(1, 0), (1, 1), (1, 2), (2, 0)]);
        assert_eq!(kept(100).len(), 4, "all there is");
    }
}
