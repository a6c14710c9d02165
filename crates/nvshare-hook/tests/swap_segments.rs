//! Segmented units against the fake driver: an allocation larger than a
//! segment (`NVSHARE_SWAP_SEGMENT_MIB`) is backed by one handle per
//! segment, an eviction reports memory freed segment by segment while it
//! runs, a restore ahead of a grant brings back only the segments that fit
//! its limit, and a partly restored allocation is answered, evicted and
//! restored without losing a byte.
//!
//! The scenario needs the fake `libcuda.so.1` on the library path from
//! process start, so the test re-runs its own executable as a child.

use crate::support::device::*;
use crate::support::run_scenario_in_child;
use nvshare::engine;
use nvshare::ffi::*;
use nvshare::interpose::exports::exports;
use std::ffi::c_void;

const CHILD_MARKER: &str = "NVSHARE_TEST_SWAP_SEGMENTS_CHILD";
use nvshare_proto::units::MIB;

#[test]
fn segments_move_one_by_one_and_a_limited_restore_brings_back_what_fits() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        scenario();
        return;
    }
    let trace = run_scenario_in_child(
        concat!(
            module_path!(),
            "::segments_move_one_by_one_and_a_limited_restore_brings_back_what_fits"
        ),
        CHILD_MARKER,
        "swap",
        &[
            ("NVSHARE_SWAP_SEGMENT_MIB", "4".to_string()),
            ("NVSHARE_SWAP_CHUNK_MIB", "1".to_string()),
        ],
    );
    let created: Vec<u64> = trace
        .lines()
        .filter(|l| l.contains(" create "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("bytes="))
                .and_then(|b| b.parse().ok())
        })
        .collect();
    assert!(
        created.starts_with(&[4 * MIB, 4 * MIB, 2 * MIB, 4 * MIB, 2 * MIB]),
        "10 MiB as 4 + 4 + 2 MiB handles, 6 MiB as 4 + 2: {created:?}\n{trace}"
    );
}

/// Runs in the child.
fn scenario() {
    start_fake_context();
    let engine = engine::current();
    // 10 MiB in three segments, 6 MiB in two, and a slab of small ones.
    let mut kept = vec![alloc(10 * MIB, 41), alloc(6 * MIB, 42), alloc(3000, 43)];
    let footprint = 10 * MIB + 6 * MIB + 2 * MIB;
    assert_eq!(engine.usage(0).footprint, footprint);

    // Freed memory is reported as it goes, a segment (4 MiB) at a time at
    // least, rising to everything.
    let mut reports = Vec::new();
    let moved = engine
        .evict(0, footprint, &mut |released| reports.push(released))
        .expect("evict everything");
    assert_eq!(moved, footprint);
    assert!(reports.len() >= 3, "freed step by step: {reports:?}");
    assert!(reports.windows(2).all(|w| w[0] < w[1]), "{reports:?}");
    assert!(reports[0] >= 4 * MIB, "{reports:?}");
    assert_eq!(reports.last(), Some(&footprint));
    assert_eq!(engine.usage(0).resident, 0);

    // Ahead of a grant, 7 MiB of room: whole segments that fit, no more.
    let ahead = engine.restore(0, 7 * MIB, None).expect("restore ahead");
    assert!(
        (6 * MIB..=7 * MIB).contains(&ahead),
        "first fit takes a 4 MiB and a 2 MiB segment: {ahead}"
    );
    assert_eq!(engine.usage(0).resident, ahead);
    // A partly restored allocation answers for all of itself, in the
    // segments back and in those still out.
    for (ptr, data) in &kept[..2] {
        let bytes = data.len() as u64;
        for inside in [*ptr, *ptr + bytes - 1] {
            assert_eq!(
                attribute_u64(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, inside),
                Ok(u64::from(CU_MEMORYTYPE_DEVICE))
            );
            assert_eq!(
                attribute_u64(CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, inside),
                Ok(*ptr)
            );
            assert_eq!(
                attribute_u64(CU_POINTER_ATTRIBUTE_RANGE_SIZE, inside),
                Ok(bytes)
            );
        }
    }
    // Evicting it again moves only what came back; nothing is lost.
    assert_eq!(
        engine
            .evict(0, footprint, &mut |_| {})
            .expect("evict again"),
        ahead
    );
    assert_eq!(
        engine.restore(0, 7 * MIB, None).expect("ahead again"),
        ahead
    );
    assert_eq!(
        engine
            .restore(0, u64::MAX, None)
            .expect("the rest, on the grant"),
        footprint - ahead
    );
    assert_eq!(engine.usage(0).resident, footprint);
    for (ptr, data) in &kept {
        assert_intact(*ptr, data);
    }

    // Changes made while it runs come back after a whole cycle too.
    for (ptr, data) in &mut kept {
        data.iter_mut().for_each(|b| *b = b.wrapping_mul(3));
        // SAFETY: `data` holds as many bytes as the allocation at `ptr`.
        check("cuMemcpyHtoD_v2", unsafe {
            exports::cuMemcpyHtoD_v2(*ptr, data.as_ptr().cast::<c_void>(), data.len())
        });
    }
    engine
        .evict(0, footprint, &mut |_| {})
        .expect("evict everything");
    engine.restore(0, 5 * MIB, None).expect("part ahead");
    engine.restore(0, u64::MAX, None).expect("the rest");
    for (ptr, data) in &kept {
        assert_intact(*ptr, data);
    }
    for (ptr, _) in kept {
        free(ptr);
    }
    assert_eq!(engine.usage(0).footprint, 0);
}
