//! Restoration: maps each missing segment and copies it back from the
//! shadow, pipelined, within a limit for a restore ahead of the grant.

use super::*;

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
