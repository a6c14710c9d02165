//! Pure decisions of the swap engine: which units to evict, how to cut
//! copies into chunks over the hook's streams, and how much host memory the
//! shadows may take.

use crate::ffi::CUdeviceptr;

/// Bytes per copy command: large enough to run at full PCIe speed (the
/// measured 12 GiB in 64 MiB chunks reached 51-53 GB/s), small enough that
/// both streams stay busy to the end.
pub const CHUNK_BYTES: u64 = 64 << 20;

/// Streams per device the copies are spread over.
pub const STREAMS: usize = 2;

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

/// One copy command: `bytes` at `offset` into a unit, on stream `stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Offset from the unit's base (and its shadow's start).
    pub offset: u64,
    /// Bytes to copy.
    pub bytes: u64,
    /// Index of the stream, below [`STREAMS`].
    pub stream: usize,
}

/// Cuts units of the given sizes into chunks of at most `chunk_bytes`,
/// dealt round-robin over `streams` streams across all units, so that two
/// small units still use both streams. Returns per unit its chunks.
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
        let plan = chunks(&[2 << 20, 2 << 20], CHUNK_BYTES, 2);
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
        fn chunks_tile_each_unit_exactly(
            sizes in proptest::collection::vec(1u64..1_000_000, 0..8),
            chunk in 1u64..200_000,
            streams in 1usize..4,
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
