//! Pure decisions of the swap engine: which units to evict, how to cut
//! copies into chunks over the hook's streams, and how much host memory the
//! shadows may take.

use crate::ffi::CUdeviceptr;

/// The most copy streams per device (`NVSHARE_SWAP_STREAMS` is bounded by
/// it; the streams live as long as the process).
pub const MAX_STREAMS: usize = crate::config::MAX_SWAP_STREAMS;

/// How the swap engine's copies are cut and spread: `chunk_bytes` per copy
/// command, dealt round-robin over `streams` streams. Set by
/// `NVSHARE_SWAP_CHUNK_MIB` and `NVSHARE_SWAP_STREAMS` (see the hook's
/// configuration), so the benchmark can compare geometries on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyGeometry {
    /// Bytes per copy command (at least 1).
    pub chunk_bytes: u64,
    /// Streams the chunks are dealt over (1 to [`MAX_STREAMS`]).
    pub streams: usize,
}

impl CopyGeometry {
    /// 64 MiB chunks (12 GiB in 64 MiB chunks reached 51-53 GB/s, DESIGN.md:
    /// large enough for full PCIe speed, small enough that every stream
    /// stays busy to the end) over 4 streams: the configuration's defaults.
    pub const DEFAULT: CopyGeometry = CopyGeometry {
        chunk_bytes: crate::config::DEFAULT_SWAP_CHUNK_MIB << 20,
        streams: crate::config::DEFAULT_SWAP_STREAMS as usize,
    };
}

impl Default for CopyGeometry {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl From<&crate::config::SwapSettings> for CopyGeometry {
    fn from(settings: &crate::config::SwapSettings) -> Self {
        CopyGeometry {
            chunk_bytes: settings.chunk_bytes.max(1),
            streams: settings.streams.clamp(1, MAX_STREAMS),
        }
    }
}

/// A resident unit as eviction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The unit's base address.
    pub base: CUdeviceptr,
    /// Its physical size.
    pub bytes: u64,
    /// Its last use on the registry clock (lower is older).
    pub last_use: u64,
}

/// The least recently used candidates, oldest first, until at least `bytes`
/// are chosen (all of them if they hold less).
pub fn choose_eviction(mut candidates: Vec<Candidate>, bytes: u64) -> Vec<Candidate> {
    candidates.sort_by_key(|c| (c.last_use, c.base));
    let mut chosen = Vec::new();
    let mut total = 0u64;
    for candidate in candidates {
        if total >= bytes {
            break;
        }
        total += candidate.bytes;
        chosen.push(candidate);
    }
    chosen
}

/// Cuts a unit of `bytes` into segments of `segment_bytes` (both multiples
/// of the granularity), the last one shorter: `(offset, size)` in address
/// order, tiling the unit exactly. A unit is at least one segment.
pub fn segments(bytes: u64, segment_bytes: u64) -> Vec<(u64, u64)> {
    let segment_bytes = segment_bytes.max(1);
    let mut cut = Vec::with_capacity(bytes.div_ceil(segment_bytes).max(1) as usize);
    let mut offset = 0;
    while offset < bytes {
        let size = segment_bytes.min(bytes - offset);
        cut.push((offset, size));
        offset += size;
    }
    if cut.is_empty() {
        cut.push((0, bytes));
    }
    cut
}

/// Picks, first fit in order, the pieces (by size) whose total stays within
/// `limit`: what a restore ahead of a grant brings back into the room it
/// was given. Returns their indices.
pub fn fit_within(sizes: &[u64], limit: u64) -> Vec<usize> {
    let mut room = limit;
    let mut picked = Vec::new();
    for (index, &size) in sizes.iter().enumerate() {
        if size <= room {
            room -= size;
            picked.push(index);
        }
    }
    picked
}

/// One copy command: `bytes` at `offset` into a unit, on stream `stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Offset from the unit's base (and its shadow's start).
    pub offset: u64,
    /// Bytes to copy.
    pub bytes: u64,
    /// Index of the stream, below the geometry's stream count.
    pub stream: usize,
}

/// Cuts units of the given sizes into chunks of at most `chunk_bytes`,
/// dealt round-robin over `streams` streams across all units, so that
/// several small units still use every stream. Returns per unit its chunks.
pub fn chunks(unit_sizes: &[u64], chunk_bytes: u64, streams: usize) -> Vec<Vec<Chunk>> {
    let chunk_bytes = chunk_bytes.max(1);
    let streams = streams.max(1);
    let mut next_stream = 0;
    unit_sizes
        .iter()
        .map(|&size| {
            let mut unit = Vec::new();
            let mut offset = 0;
            while offset < size {
                let bytes = chunk_bytes.min(size - offset);
                unit.push(Chunk {
                    offset,
                    bytes,
                    stream: next_stream,
                });
                next_stream = (next_stream + 1) % streams;
                offset += bytes;
            }
            unit
        })
        .collect()
}

/// One step of a restore, in the order [`restore_steps`] gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStep {
    /// Map fresh memory for unit `unit` (an index into the sizes given) and
    /// grant the device access to it.
    Map {
        /// The unit's index.
        unit: usize,
    },
    /// Enqueue one chunk of unit `unit`'s copy from its shadow.
    Copy {
        /// The unit's index.
        unit: usize,
        /// What to copy, on which stream.
        chunk: Chunk,
    },
}

/// The order a restore works in: each unit is mapped, then all its chunks
/// are enqueued, before the next unit is mapped. Copies are asynchronous,
/// so a unit's copies run on the GPU while the host maps the next units
/// (mapping every unit first left the copy engines idle meanwhile); a copy
/// never comes before its own unit's mapping. Chunks are dealt over the
/// streams as by [`chunks`].
pub fn restore_steps(unit_sizes: &[u64], geometry: CopyGeometry) -> Vec<RestoreStep> {
    let plan = chunks(unit_sizes, geometry.chunk_bytes, geometry.streams);
    let mut steps = Vec::with_capacity(plan.len() + plan.iter().map(Vec::len).sum::<usize>());
    for (unit, unit_chunks) in plan.into_iter().enumerate() {
        steps.push(RestoreStep::Map { unit });
        steps.extend(
            unit_chunks
                .into_iter()
                .map(|chunk| RestoreStep::Copy { unit, chunk }),
        );
    }
    steps
}

/// Host memory kept free for the system when the limit is derived from
/// `MemAvailable`: 1/16 of the memory, at least 512 MiB.
pub fn safety_margin(mem_total: u64) -> u64 {
    (mem_total / 16).max(512 << 20)
}

/// How many more shadow bytes the process may create: within an explicit
/// limit on the shadows' total, or else what the system has available minus
/// the safety margin.
pub fn shadow_room(
    explicit_limit: Option<u64>,
    shadows_now: u64,
    mem_available: u64,
    mem_total: u64,
) -> u64 {
    match explicit_limit {
        Some(limit) => limit.saturating_sub(shadows_now),
        None => mem_available.saturating_sub(safety_margin(mem_total)),
    }
}

/// `(MemTotal, MemAvailable)` in bytes from the text of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            kib.checked_mul(1024)
        })
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidate(base: u64, bytes: u64, last_use: u64) -> Candidate {
        Candidate {
            base,
            bytes,
            last_use,
        }
    }

    #[test]
    fn units_are_cut_into_segments_with_a_short_tail() {
        assert_eq!(segments(10, 4), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(segments(8, 4), vec![(0, 4), (4, 4)]);
        assert_eq!(segments(2, 4), vec![(0, 2)]);
    }

    #[test]
    fn a_restore_ahead_takes_what_fits_first_fit() {
        assert_eq!(fit_within(&[4, 4, 2, 1], 7), vec![0, 2, 3]);
        assert_eq!(fit_within(&[4, 4], 3), Vec::<usize>::new());
        assert_eq!(fit_within(&[4, 4], u64::MAX), vec![0, 1]);
    }

    #[test]
    fn eviction_takes_the_least_recently_used_until_enough() {
        let units = vec![
            candidate(1, 10, 30),
            candidate(2, 10, 10),
            candidate(3, 10, 20),
        ];
        let bases = |c: Vec<Candidate>| c.iter().map(|c| c.base).collect::<Vec<_>>();
        assert_eq!(bases(choose_eviction(units.clone(), 15)), vec![2, 3]);
        assert_eq!(bases(choose_eviction(units.clone(), 0)), Vec::<u64>::new());
        assert_eq!(bases(choose_eviction(units, 1000)), vec![2, 3, 1]);
    }

    #[test]
    fn two_small_units_use_both_streams() {
        let plan = chunks(&[2 << 20, 2 << 20], CopyGeometry::DEFAULT.chunk_bytes, 2);
        assert_eq!(plan[0][0].stream, 0);
        assert_eq!(plan[1][0].stream, 1);
    }

    #[test]
    fn a_large_unit_is_cut_into_chunks_with_a_short_tail() {
        let plan = chunks(&[150 << 20], 64 << 20, 2);
        let sizes: Vec<_> = plan[0].iter().map(|c| c.bytes >> 20).collect();
        assert_eq!(sizes, vec![64, 64, 22]);
        let streams: Vec<_> = plan[0].iter().map(|c| c.stream).collect();
        assert_eq!(streams, vec![0, 1, 0]);
    }

    #[test]
    fn small_units_are_spread_over_every_stream_of_the_geometry() {
        let plan = chunks(&[2 << 20; 5], 64 << 20, 3);
        let streams: Vec<_> = plan.iter().map(|unit| unit[0].stream).collect();
        assert_eq!(streams, vec![0, 1, 2, 0, 1]);
    }

    #[test]
    fn a_restore_maps_each_unit_just_before_its_copies() {
        let geometry = CopyGeometry {
            chunk_bytes: 3 << 20,
            streams: 3,
        };
        let steps = restore_steps(&[7 << 20, 2 << 20, 4 << 20], geometry);
        let copy = |unit, offset_mib: u64, mib: u64, stream| RestoreStep::Copy {
            unit,
            chunk: Chunk {
                offset: offset_mib << 20,
                bytes: mib << 20,
                stream,
            },
        };
        assert_eq!(
            steps,
            vec![
                RestoreStep::Map { unit: 0 },
                copy(0, 0, 3, 0),
                copy(0, 3, 3, 1),
                copy(0, 6, 1, 2),
                RestoreStep::Map { unit: 1 },
                copy(1, 0, 2, 0),
                RestoreStep::Map { unit: 2 },
                copy(2, 0, 3, 1),
                copy(2, 3, 1, 2),
            ],
            "the first unit's copies are under way before the second is mapped"
        );
    }

    #[test]
    fn a_restore_of_nothing_has_no_steps() {
        assert!(restore_steps(&[], CopyGeometry::DEFAULT).is_empty());
    }

    #[test]
    fn room_follows_the_explicit_limit_or_the_available_memory() {
        assert_eq!(shadow_room(Some(100), 30, 1 << 40, 1 << 40), 70);
        assert_eq!(shadow_room(Some(100), 300, 1 << 40, 1 << 40), 0);
        let total = 64u64 << 30;
        assert_eq!(
            shadow_room(None, 0, 10 << 30, total),
            (10u64 << 30) - (4u64 << 30)
        );
        assert_eq!(shadow_room(None, 0, 100 << 20, 1 << 30), 0);
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       16318500 kB\nMemFree:  100 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some((16_318_500 * 1024, 12_000_000 * 1024))
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    proptest! {
        #[test]
        fn segments_tile_each_unit_exactly(granules in 1u64..5000, per_segment in 1u64..600) {
            let granule = 2u64 << 20;
            let cut = segments(granules * granule, per_segment * granule);
            let mut next = 0;
            for &(offset, size) in &cut {
                prop_assert_eq!(offset, next);
                prop_assert!(size > 0 && size <= per_segment * granule);
                prop_assert_eq!(size % granule, 0);
                next += size;
            }
            prop_assert_eq!(next, granules * granule);
        }

        #[test]
        fn chunks_tile_each_unit_exactly(
            sizes in proptest::collection::vec(1u64..1_000_000, 0..8),
            chunk in 1u64..200_000,
            streams in 1usize..=MAX_STREAMS,
        ) {
            let plan = chunks(&sizes, chunk, streams);
            prop_assert_eq!(plan.len(), sizes.len());
            for (unit, &size) in plan.iter().zip(&sizes) {
                let mut at = 0;
                for c in unit {
                    prop_assert_eq!(c.offset, at);
                    prop_assert!(c.bytes > 0 && c.bytes <= chunk);
                    prop_assert!(c.stream < streams);
                    at += c.bytes;
                }
                prop_assert_eq!(at, size);
            }
        }

        #[test]
        fn restore_steps_copy_only_mapped_units_and_map_each_once(
            sizes in proptest::collection::vec(1u64..1_000_000, 0..8),
            chunk in 1u64..200_000,
            streams in 1usize..=MAX_STREAMS,
        ) {
            let steps = restore_steps(&sizes, CopyGeometry { chunk_bytes: chunk, streams });
            // Units are mapped in order, each once, and a unit's copies all
            // follow its mapping and precede the next unit's: the pipeline
            // never copies into memory not yet mapped, and every unit's
            // copies are under way before the host maps the next one.
            let mut mapped: Option<usize> = None;
            let mut copied = vec![0u64; sizes.len()];
            for step in &steps {
                match *step {
                    RestoreStep::Map { unit } => {
                        prop_assert_eq!(unit, mapped.map_or(0, |m| m + 1));
                        if let Some(previous) = mapped {
                            prop_assert_eq!(copied[previous], sizes[previous]);
                        }
                        mapped = Some(unit);
                    }
                    RestoreStep::Copy { unit, chunk: c } => {
                        prop_assert_eq!(Some(unit), mapped);
                        prop_assert_eq!(c.offset, copied[unit]);
                        prop_assert!(c.stream < streams);
                        copied[unit] += c.bytes;
                    }
                }
            }
            prop_assert_eq!(mapped.map_or(0, |m| m + 1), sizes.len());
            prop_assert_eq!(copied, sizes);
        }

        #[test]
        fn eviction_frees_enough_with_the_oldest_and_no_more_than_needed(
            units in proptest::collection::vec((1u64..1000, 0u64..100), 0..20),
            bytes in 0u64..20_000,
        ) {
            let candidates: Vec<_> = units
                .iter()
                .enumerate()
                .map(|(i, &(size, age))| candidate(i as u64, size, age))
                .collect();
            let chosen = choose_eviction(candidates.clone(), bytes);
            let total: u64 = chosen.iter().map(|c| c.bytes).sum();
            let all: u64 = candidates.iter().map(|c| c.bytes).sum();
            prop_assert!(total >= bytes.min(all));
            if let Some(last) = chosen.last() {
                prop_assert!(total - last.bytes < bytes, "one unit more than needed");
                let newest_chosen = last.last_use;
                let left_older = candidates
                    .iter()
                    .filter(|c| !chosen.contains(c))
                    .any(|c| c.last_use < newest_chosen);
                prop_assert!(!left_older, "an older unit was left resident");
            }
        }
    }
}
