//! Eviction: copies to the units' shadows in order on one stream, and
//! releases the memory batch by batch as its copies complete.

use super::*;

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
) -> (Vec<Vec<driver::stream::Event>>, Result<(), CudaError>) {
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
                let event = driver::stream::Event::new()?;
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
        if let Err(err) = events
            .iter()
            .try_for_each(driver::stream::Event::synchronize)
        {
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
