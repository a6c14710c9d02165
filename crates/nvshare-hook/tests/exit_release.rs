//! The swap engine's release at process exit, against the fake driver:
//! every unit of the device goes back to the driver, and the program's own
//! frees of that memory afterwards (its teardown) succeed without reaching
//! the driver.

use crate::support::device::*;
use crate::support::run_scenario_in_child;
use nvshare::engine;
use nvshare::ffi::*;
use nvshare::interpose::exports::exports;
use std::time::Duration;

const CHILD_MARKER: &str = "NVSHARE_TEST_EXIT_RELEASE_CHILD";
use nvshare_proto::units::MIB;

#[test]
fn memory_released_at_exit_goes_back_and_later_frees_succeed() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        scenario();
        return;
    }
    let trace = run_scenario_in_child(
        concat!(
            module_path!(),
            "::memory_released_at_exit_goes_back_and_later_frees_succeed"
        ),
        CHILD_MARKER,
        "swap",
        &[],
    );
    let destroyed: Vec<&str> = trace.lines().filter(|l| l.contains(" destroy ")).collect();
    assert_eq!(
        destroyed.len(),
        2,
        "the 6 MiB unit and the slab are released once each:\n{trace}"
    );
    assert!(
        !trace.lines().any(|l| l.contains(" free ")),
        "no free reached the driver after the release:\n{trace}"
    );
}

fn scenario() {
    start_fake_context();
    let engine = engine::current();
    let big = alloc(6 * MIB);
    let small = alloc(1000);
    assert_eq!(engine.usage(0).resident, 8 * MIB);
    assert_eq!(
        engine.release_at_exit(0, Duration::from_secs(1)),
        8 * MIB,
        "the unit and the slab are released"
    );
    // SAFETY: pointers the program allocated above, freed once each.
    unsafe {
        check("cuMemFree_v2", exports::cuMemFree_v2(big));
        check("cuMemFree_v2", exports::cuMemFree_v2(small));
    }
}

fn alloc(bytes: u64) -> CUdeviceptr {
    let mut ptr: CUdeviceptr = 0;
    // SAFETY: a valid out-pointer.
    check("cuMemAlloc_v2", unsafe {
        exports::cuMemAlloc_v2(&mut ptr, bytes as usize)
    });
    ptr
}
