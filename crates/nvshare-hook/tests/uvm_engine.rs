//! The uvm engine against the fake driver, driven the way the gate drives
//! it: allocations through the hook's exported `cuMemAlloc_v2`, then
//! `evict` and `restore` called directly, checking what moved (in the
//! registry and in the fake driver's trace) and that the data survived.
//!
//! The scenario needs the fake `libcuda.so.1` on the library path from
//! process start, so the test re-runs its own executable as a child with
//! that environment.

use crate::support::run_scenario_in_child;
use nvshare::ffi::{CUcontext, CUdeviceptr, CUresult};
use nvshare::interpose::exports::exports;
use nvshare::{driver, engine};
use std::ffi::c_void;

const CHILD_MARKER: &str = "NVSHARE_TEST_UVM_CHILD";
use nvshare_proto::units::MIB;

#[test]
fn evict_moves_the_oldest_and_restore_brings_all_back_intact() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        scenario();
        return;
    }
    let trace = run_scenario_in_child(
        concat!(
            module_path!(),
            "::evict_moves_the_oldest_and_restore_brings_all_back_intact"
        ),
        CHILD_MARKER,
        "uvm",
        &[],
    );
    let to_host: Vec<_> = trace
        .lines()
        .filter(|l| l.contains("prefetch") && l.ends_with("dst=cpu"))
        .collect();
    let to_device: Vec<_> = trace
        .lines()
        .filter(|l| l.contains("prefetch") && l.ends_with("dst=0"))
        .collect();
    assert_eq!(
        to_host.len(),
        2,
        "eviction moves the two oldest allocations:\n{trace}"
    );
    assert!(
        to_host
            .iter()
            .any(|l| l.contains(&format!("bytes={}", MIB))),
        "{trace}"
    );
    assert!(
        to_host
            .iter()
            .any(|l| l.contains(&format!("bytes={}", 2 * MIB))),
        "{trace}"
    );
    assert!(
        to_device.len() >= 3,
        "restore prefetches every allocation:\n{trace}"
    );
}

fn check(call: &str, status: CUresult) {
    assert!(status.is_success(), "{call} failed: {status}");
}

/// Runs in the child, with the fake driver loadable.
fn scenario() {
    let table = driver::table().expect("the fake driver loads");
    let init = table.helpers.cuInit.expect("cuInit");
    // SAFETY: cuInit takes flags only.
    check("cuInit", unsafe { init(0) });
    let ctx: CUcontext = driver::ctx::retain_primary(0).expect("retain the primary context");
    driver::ctx::set_current(ctx).expect("make it current");

    let sizes = [MIB, 2 * MIB, 3 * MIB];
    let mut buffers: Vec<(CUdeviceptr, Vec<u8>)> = Vec::new();
    for (index, &size) in sizes.iter().enumerate() {
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: a valid out-pointer.
        check("cuMemAlloc_v2", unsafe {
            exports::cuMemAlloc_v2(&mut ptr, size as usize)
        });
        let data: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(index as u8))
            .collect();
        // SAFETY: `data` holds `size` bytes; `ptr` is a live allocation of that size.
        check("cuMemcpyHtoD_v2", unsafe {
            exports::cuMemcpyHtoD_v2(ptr, data.as_ptr().cast::<c_void>(), data.len())
        });
        buffers.push((ptr, data));
    }
    let engine = engine::current();
    assert_eq!(engine.name(), "uvm");
    let total: u64 = sizes.iter().sum();
    assert_eq!(engine.usage(0).footprint, total);

    let moved = engine.evict(0, 2 * MIB, &mut |_| {}).expect("evict");
    assert_eq!(
        moved,
        3 * MIB,
        "the oldest (1 MiB) is not enough, the next (2 MiB) completes it"
    );
    assert_eq!(engine.usage(0).resident, total - moved);
    assert_eq!(engine.usage(0).footprint, total);

    let restored = engine.restore(0, u64::MAX, None).expect("restore");
    assert_eq!(restored, moved);
    assert_eq!(engine.usage(0).resident, total);

    for (ptr, data) in &buffers {
        let mut back = vec![0u8; data.len()];
        // SAFETY: `back` holds as many bytes as the allocation.
        check("cuMemcpyDtoH_v2", unsafe {
            exports::cuMemcpyDtoH_v2(back.as_mut_ptr().cast::<c_void>(), *ptr, back.len())
        });
        assert!(
            back == *data,
            "the contents of 0x{ptr:x} changed across evict and restore"
        );
        // SAFETY: a live allocation, freed once.
        check("cuMemFree_v2", unsafe { exports::cuMemFree_v2(*ptr) });
    }
    assert_eq!(engine.usage(0).footprint, 0);
}
