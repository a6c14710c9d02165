//! The swap engine against the fake driver, driven the way the gate drives
//! it: allocations through the hook's exported `cuMemAlloc_v2`, `evict` and
//! `restore` called directly. Checks what moved (usage, the driver's trace),
//! that data survives, that pointer queries on swapped-out memory are
//! answered (where the driver itself refuses them), that the host limit
//! refuses an eviction cleanly, and that shadows are reused. A second
//! scenario restores several units with a non-default copy geometry (three
//! streams, 3 MiB chunks) and a GPU too full to take them all back.
//!
//! The scenarios need the fake `libcuda.so.1` on the library path from
//! process start, so the test re-runs its own executable as a child.

use crate::support::device::*;
use crate::support::run_scenario_in_child;
use nvshare::engine::swap::plan::CopyGeometry;
use nvshare::ffi::*;
use nvshare::interpose::exports::exports;
use nvshare::{config, engine};
use std::collections::BTreeMap;
use std::ffi::c_void;

const CHILD_MARKER: &str = "NVSHARE_TEST_SWAP_CHILD";
const GEOMETRY_CHILD_MARKER: &str = "NVSHARE_TEST_SWAP_GEOMETRY_CHILD";
use nvshare_proto::units::MIB;
/// Room for the shadows of the 6 and 4 MiB units, not for 6 + 4 + 2.
const HOST_LIMIT: u64 = 11 * MIB;

#[test]
fn swap_engine_moves_units_keeps_data_and_answers_queries_on_swapped_memory() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        scenario();
        return;
    }
    let trace = run_scenario_in_child(
        concat!(
            module_path!(),
            "::swap_engine_moves_units_keeps_data_and_answers_queries_on_swapped_memory"
        ),
        CHILD_MARKER,
        "swap",
        &[("NVSHARE_HOST_LIMIT", HOST_LIMIT.to_string())],
    );
    let registered: Vec<_> = trace.lines().filter(|l| l.contains(" register ")).collect();
    let unregistered = trace.lines().filter(|l| l.contains(" unregister ")).count();
    let sizes: Vec<u64> = registered
        .iter()
        .map(|l| {
            let field = l.split_whitespace().find_map(|w| w.strip_prefix("bytes="));
            field
                .and_then(|b| b.parse().ok())
                .expect("a register event has bytes")
        })
        .collect();
    assert_eq!(
        sizes,
        vec![6 * MIB, 4 * MIB, 2 * MIB, 2 * MIB],
        "each shadow made once (the big one reused twice), the mid one dropped:\n{trace}"
    );
    assert_eq!(
        unregistered, 4,
        "the dropped shadow and those of freed units are given back:\n{trace}"
    );
}

/// The fake GPU of the geometry scenario: room for all its units (two of
/// 10 MiB, three 2 MiB slabs), not for them beside another 8 MiB.
const GEOMETRY_GPU: u64 = 26 * MIB;

#[test]
fn a_pipelined_restore_with_three_streams_and_odd_chunks_keeps_every_unit_intact() {
    if std::env::var_os(GEOMETRY_CHILD_MARKER).is_some() {
        geometry_scenario();
        return;
    }
    let trace = run_scenario_in_child(
        concat!(
            module_path!(),
            "::a_pipelined_restore_with_three_streams_and_odd_chunks_keeps_every_unit_intact"
        ),
        GEOMETRY_CHILD_MARKER,
        "swap",
        &[
            ("NVSHARE_SWAP_STREAMS", "3".to_owned()),
            ("NVSHARE_SWAP_CHUNK_MIB", "3".to_owned()),
            ("FAKE_CUDA_MEMORY", GEOMETRY_GPU.to_string()),
        ],
    );

    let sizes = restore_copies_only_into_accessible_memory(&trace);
    assert!(
        sizes.iter().all(|&bytes| bytes <= 3 * MIB),
        "restore copies are cut into 3 MiB chunks: {sizes:?}\n{trace}"
    );
    assert!(
        sizes.contains(&MIB) && sizes.contains(&(2 * MIB)),
        "10 MiB units end in 1 MiB tails, 2 MiB slabs are one chunk: {sizes:?}"
    );
}

/// A `key=value` field of a trace line, as a number (hex with `0x`).
fn field(line: &str, key: &str) -> Option<u64> {
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?;
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// Checks, in trace order, that every host-to-device copy out of a
/// registered host shadow (a restore's copy) lands inside memory that is
/// mapped and whose access was set before it, and not unmapped since;
/// returns those copies' sizes.
fn restore_copies_only_into_accessible_memory(trace: &str) -> Vec<u64> {
    let mut shadows: BTreeMap<u64, u64> = BTreeMap::new();
    let mut accessible: BTreeMap<u64, u64> = BTreeMap::new();
    let mut sizes = Vec::new();
    let inside = |ranges: &BTreeMap<u64, u64>, at: u64, bytes: u64| {
        ranges
            .range(..=at)
            .next_back()
            .is_some_and(|(&start, &len)| at + bytes <= start + len)
    };
    for line in trace.lines() {
        let event = line.split_whitespace().nth(2).unwrap_or_default();
        let (ptr, bytes) = (field(line, "ptr"), field(line, "bytes"));
        match event {
            "register" => {
                shadows.insert(ptr.expect("ptr"), bytes.expect("bytes"));
            }
            "unregister" => {
                shadows.remove(&ptr.expect("ptr"));
            }
            "access" => {
                accessible.insert(ptr.expect("ptr"), bytes.expect("bytes"));
            }
            "unmap" => {
                accessible.remove(&ptr.expect("ptr"));
            }
            "memcpy" if line.contains("kind=HtoD") => {
                let (src, dst) = (
                    field(line, "src").expect("src"),
                    field(line, "dst").expect("dst"),
                );
                let bytes = bytes.expect("bytes");
                if inside(&shadows, src, bytes) {
                    assert!(
                        inside(&accessible, dst, bytes),
                        "a restore copied into memory not mapped with access set: {line}\n{trace}"
                    );
                    sizes.push(bytes);
                }
            }
            _ => {}
        }
    }
    assert!(
        !sizes.is_empty(),
        "no restore copies in the trace:\n{trace}"
    );
    sizes
}

/// Runs in the child of the geometry test.
fn geometry_scenario() {
    start_fake_context();
    let engine = engine::current();
    assert_eq!(
        CopyGeometry::from(&config::get().swap),
        CopyGeometry {
            chunk_bytes: 3 * MIB,
            streams: 3
        }
    );

    // Two 10 MiB units (a 3 MiB chunk geometry cuts each into 3 + 3 + 3 +
    // 1) and three slabs of small allocations (classes 1 KiB, 3 KiB, 64 KiB).
    let mut kept = vec![alloc(10 * MIB, 11), alloc(10 * MIB - 4096, 12)];
    for (index, bytes) in [1000u64, 1000, 3000, 60_000, 1000].into_iter().enumerate() {
        kept.push(alloc(bytes, 20 + index as u8));
    }
    let footprint = 20 * MIB + 3 * 2 * MIB;
    assert_eq!(engine.usage(0).footprint, footprint);
    // The scheduler's hint: shadows for everything made ahead, once, and
    // the first eviction below uses them instead of making its own.
    let registered = || {
        let trace = std::env::var_os("FAKE_CUDA_TRACE").expect("the child traces");
        let text = std::fs::read_to_string(trace).unwrap_or_default();
        text.lines().filter(|l| l.contains(" register ")).count()
    };
    assert_eq!(engine.prepare(0, footprint).expect("prepare"), footprint);
    let prepared = registered();
    assert_eq!(prepared, 5, "one shadow per unit (two units, three slabs)");
    assert_eq!(
        engine.prepare(0, footprint).expect("prepare again"),
        0,
        "every unit already has its shadow"
    );
    assert_eq!(
        engine.usage(0).resident,
        footprint,
        "preparing moves nothing"
    );
    assert_eq!(
        engine
            .evict(0, footprint, &mut |_| {})
            .expect("evict everything"),
        footprint
    );
    assert_eq!(
        registered(),
        prepared,
        "the eviction made no shadow of its own"
    );
    assert_eq!(
        engine
            .restore(0, u64::MAX, None)
            .expect("restore everything"),
        footprint
    );
    for round in 0..3 {
        assert_eq!(
            engine
                .evict(0, footprint, &mut |_| {})
                .expect("evict everything"),
            footprint,
            "round {round}"
        );
        assert_eq!(engine.usage(0).resident, 0);
        assert_eq!(
            engine
                .restore(0, u64::MAX, None)
                .expect("restore everything"),
            footprint
        );
        assert_eq!(engine.usage(0).resident, footprint);
        for (ptr, data) in &kept {
            assert_intact(*ptr, data);
        }
        // Changes made between switches must come back too.
        let (ptr, data) = &mut kept[round];
        data.iter_mut().for_each(|b| *b = b.wrapping_add(1));
        // SAFETY: `data` holds as many bytes as the allocation at `ptr`.
        check("cuMemcpyHtoD_v2", unsafe {
            exports::cuMemcpyHtoD_v2(*ptr, data.as_ptr().cast::<c_void>(), data.len())
        });
    }

    // Everything out, then an 8 MiB allocation: the units no longer all
    // fit. The restore maps units until one does not fit; those mapped
    // before it (their copies already queued) come back, the rest stay
    // out with their shadows and come back once there is room.
    assert_eq!(
        engine.evict(0, footprint, &mut |_| {}).expect("evict all"),
        footprint
    );
    let (blocker, blocker_data) = alloc(8 * MIB, 30);
    let refused = engine.restore(0, u64::MAX, None);
    assert!(
        matches!(refused, Err(engine::EngineError::Driver { .. })),
        "18 MiB free cannot take 26 MiB back: {refused:?}"
    );
    let partly = engine.usage(0).resident - 8 * MIB;
    assert!(
        partly > 0 && partly < footprint,
        "the units that fitted came back, not all: {partly} bytes"
    );
    assert_intact(blocker, &blocker_data);
    free(blocker);
    assert_eq!(
        engine
            .restore(0, u64::MAX, None)
            .expect("the rest now fits"),
        footprint - partly
    );
    for (ptr, data) in &kept {
        assert_intact(*ptr, data);
    }
    for (ptr, _) in kept {
        free(ptr);
    }
    assert_eq!(engine.usage(0).footprint, 0);
}

/// Runs in the child, with the fake driver loadable.
fn scenario() {
    start_fake_context();
    let engine = engine::current();
    assert_eq!(engine.name(), "swap");

    // Two units of their own (rounded to 6 and 4 MiB) and three small
    // allocations in two slabs (classes 1 KiB and 3 KiB), oldest first.
    let (big, big_data) = alloc(5 * MIB, 1);
    let (mid, mid_data) = alloc(3 * MIB, 2);
    let (small_a, small_a_data) = alloc(1000, 3);
    let (small_b, small_b_data) = alloc(3000, 4);
    let (small_c, small_c_data) = alloc(900, 5);
    let footprint = 6 * MIB + 4 * MIB + 2 * 2 * MIB;
    assert_eq!(
        engine.usage(0).footprint,
        footprint,
        "whole units are counted"
    );
    assert_eq!(engine.usage(0).resident, footprint);
    assert_eq!(
        attribute_u64(CU_POINTER_ATTRIBUTE_RANGE_SIZE, small_c + 1),
        Ok(900),
        "a slab block reads as an allocation of its own"
    );

    let moved = engine.evict(0, 1, &mut |_| {}).expect("evict the oldest");
    assert_eq!(moved, 6 * MIB, "only the oldest unit moves");
    assert_eq!(engine.usage(0).resident, footprint - moved);
    assert_eq!(engine.usage(0).footprint, footprint);
    queries_answer_as_if_resident(big, 5 * MIB);

    let refused = engine.evict(0, 5 * MIB, &mut |_| {});
    assert!(
        matches!(refused, Err(engine::EngineError::HostMemory { .. })),
        "6 MiB more shadows beside 6 exceed the 11 MiB host limit: {refused:?}"
    );
    assert_eq!(
        engine.usage(0).resident,
        footprint - moved,
        "a refused eviction moves nothing"
    );

    assert_eq!(engine.restore(0, u64::MAX, None).expect("restore"), 6 * MIB);
    assert_eq!(engine.usage(0).resident, footprint);
    for (ptr, data) in [
        (big, &big_data),
        (mid, &mid_data),
        (small_a, &small_a_data),
        (small_b, &small_b_data),
        (small_c, &small_c_data),
    ] {
        assert_intact(ptr, data);
    }

    // The next least recently used unit is the mid one (the big one was
    // just restored); its shadow still fits beside the big one's.
    assert_eq!(
        engine
            .evict(0, 4 * MIB, &mut |_| {})
            .expect("evict the least recently used"),
        4 * MIB
    );
    assert_eq!(engine.restore(0, u64::MAX, None).expect("restore"), 4 * MIB);
    assert_intact(mid, &mid_data);

    // Everything but the mid unit (the newest): the big unit's shadow is
    // reused, the two slabs need 4 MiB more, which fits only once the
    // shadow kept for the resident mid unit is dropped.
    assert_eq!(
        engine
            .evict(0, 10 * MIB, &mut |_| {})
            .expect("evict three units"),
        10 * MIB
    );
    assert_eq!(engine.usage(0).resident, 4 * MIB);
    queries_answer_as_if_resident(small_b, 3000);
    assert_eq!(
        engine.restore(0, u64::MAX, None).expect("restore"),
        10 * MIB
    );
    for (ptr, data) in [
        (big, &big_data),
        (small_a, &small_a_data),
        (small_b, &small_b_data),
        (small_c, &small_c_data),
    ] {
        assert_intact(ptr, data);
    }

    // Frees: a slab goes with its last block, a unit with its shadow.
    free(small_a);
    assert_eq!(
        engine.usage(0).footprint,
        footprint,
        "the 1 KiB slab still holds a block"
    );
    free(small_c);
    assert_eq!(engine.usage(0).footprint, footprint - 2 * MIB);
    free(mid);
    free(small_b);
    assert_eq!(engine.usage(0).footprint, 6 * MIB);

    // A swapped-out unit is freed without being brought back.
    assert_eq!(
        engine.evict(0, 1, &mut |_| {}).expect("evict again"),
        6 * MIB
    );
    free(big);
    assert_eq!(engine.usage(0).footprint, 0);
    assert_eq!(engine.usage(0).resident, 0);
}
