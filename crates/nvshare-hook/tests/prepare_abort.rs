//! A drop that arrives while host shadows are being made ahead of it
//! (the scheduler's `Prepare`) stops that work at once: what was made is
//! kept, the eviction makes the rest itself, and no data is lost. Against
//! the fake driver, with populating slowed down so that the build would
//! take far longer than the test waits.

use crate::support::device::*;
use crate::support::run_scenario_in_child;
use nvshare::engine;
use nvshare::engine::swap::shadow::slow_populating_for_tests;
use nvshare::ffi::*;
use nvshare::interpose::exports::exports;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CHILD_MARKER: &str = "NVSHARE_TEST_PREPARE_ABORT_CHILD";
use nvshare_proto::units::MIB;
const UNITS: u64 = 8;
const UNIT: u64 = 16 * MIB;
/// The pause before each populating step: one step per 16 MiB shadow, so a
/// whole build takes at least 8 x 150 ms.
const PAUSE: Duration = Duration::from_millis(150);

#[test]
fn a_drop_during_a_slow_prepare_is_applied_promptly_and_loses_nothing() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        scenario();
        return;
    }
    let trace = run_scenario_in_child(
        concat!(
            module_path!(),
            "::a_drop_during_a_slow_prepare_is_applied_promptly_and_loses_nothing"
        ),
        CHILD_MARKER,
        "swap",
        &[],
    );
    let registered = trace.lines().filter(|l| l.contains(" register ")).count();
    assert_eq!(
        registered, UNITS as usize,
        "one shadow per unit: those made ahead were kept and not made again:\n{trace}"
    );
}

fn scenario() {
    start_fake_context();
    let engine = engine::current();
    let kept: Vec<_> = (0..UNITS).map(|i| alloc(UNIT, i as u8)).collect();
    let total = UNITS * UNIT;
    assert_eq!(engine.usage(0).footprint, total);

    slow_populating_for_tests(PAUSE);
    let dropped = AtomicBool::new(false);
    let (prepared, latency) = std::thread::scope(|scope| {
        let building = scope.spawn(|| {
            let abandon = || dropped.load(Ordering::SeqCst);
            let prepared = engine.prepare_until(0, total, &abandon);
            (prepared, Instant::now())
        });
        // Let it make a unit or two, then the drop arrives.
        std::thread::sleep(PAUSE * 2 + PAUSE / 2);
        let drop_at = Instant::now();
        dropped.store(true, Ordering::SeqCst);
        let (prepared, done) = building.join().expect("the build does not panic");
        (
            prepared.expect("prepare"),
            done.saturating_duration_since(drop_at),
        )
    });
    slow_populating_for_tests(Duration::ZERO);
    eprintln!("prepared {prepared} of {total} bytes; stopped {latency:?} after the drop");
    assert!(
        latency <= PAUSE + Duration::from_millis(500),
        "the build went on for {latency:?} after the drop"
    );
    assert!(
        prepared > 0 && prepared < total,
        "kept what was made before the drop, not everything: {prepared}"
    );
    assert_eq!(engine.usage(0).resident, total, "preparing moves nothing");

    // The drop itself: everything out (making the missing shadows), back,
    // and every byte as it was.
    assert_eq!(
        engine
            .evict(0, total, &mut |_| {})
            .expect("evict everything"),
        total
    );
    assert_eq!(engine.usage(0).resident, 0);
    assert_eq!(
        engine
            .restore(0, u64::MAX, None)
            .expect("restore everything"),
        total
    );
    for (ptr, data) in &kept {
        assert_intact(*ptr, data);
    }
    for (ptr, _) in kept {
        free(ptr);
    }
}

fn free(ptr: CUdeviceptr) {
    // SAFETY: a live allocation, freed once.
    check("cuMemFree_v2", unsafe { exports::cuMemFree_v2(ptr) });
}
