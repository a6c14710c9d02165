//! Tests of the real-function table: names unique and sorted, lookups by name and version.

use super::*;
use std::ffi::CStr;

#[test]
fn names_are_unique_and_the_order_is_sorted() {
    for pair in BY_NAME.windows(2) {
        let (a, b) = (
            ENTRY_POINTS[pair[0] as usize].name,
            ENTRY_POINTS[pair[1] as usize].name,
        );
        assert!(
            a.to_bytes() < b.to_bytes(),
            "{a:?} and {b:?} out of order or duplicated"
        );
    }
}

#[test]
fn every_entry_is_found_by_its_exported_name() {
    for symbol in ENTRY_POINTS {
        let found = by_name(symbol.name).unwrap_or_else(|| panic!("{:?} not found", symbol.name));
        assert!(std::ptr::eq(found, symbol));
    }
}

#[test]
fn every_entry_is_found_by_its_base_version_and_stream_kind() {
    for symbol in ENTRY_POINTS {
        let flags = if symbol.per_thread {
            CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
        } else {
            CU_GET_PROC_ADDRESS_LEGACY_STREAM
        };
        let found = for_proc_address(symbol.base, symbol.version, flags)
            .unwrap_or_else(|| panic!("{:?} not reachable", symbol.name));
        assert_eq!(found.name, symbol.name);
    }
}

#[test]
fn exported_names_extend_their_base_names() {
    for symbol in ENTRY_POINTS {
        assert!(
            symbol.name.to_bytes().starts_with(symbol.base.to_bytes()),
            "{:?}",
            symbol.name
        );
        let suffix = &symbol.name.to_bytes()[symbol.base.to_bytes().len()..];
        let per_thread_suffix = suffix.ends_with(b"_ptds") || suffix.ends_with(b"_ptsz");
        assert_eq!(per_thread_suffix, symbol.per_thread, "{:?}", symbol.name);
    }
}

fn proc_name(base: &CStr, version: c_int, flags: u64) -> Option<&'static CStr> {
    for_proc_address(base, version, flags).map(|s| s.name)
}

#[test]
fn versions_pick_the_matching_signature() {
    assert_eq!(proc_name(c"cuMemAlloc", 2000, 0), Some(c"cuMemAlloc"));
    assert_eq!(proc_name(c"cuMemAlloc", 3020, 0), Some(c"cuMemAlloc_v2"));
    assert_eq!(proc_name(c"cuMemAlloc", 13000, 0), Some(c"cuMemAlloc_v2"));
    assert_eq!(
        proc_name(c"cuMemGetInfo", 12000, 0),
        Some(c"cuMemGetInfo_v2")
    );
    assert_eq!(
        proc_name(c"cuMemPrefetchAsync", 12000, 0),
        Some(c"cuMemPrefetchAsync")
    );
    assert_eq!(
        proc_name(c"cuMemPrefetchAsync", 12020, 0),
        Some(c"cuMemPrefetchAsync_v2")
    );
    assert_eq!(proc_name(c"cuMemAllocAsync", 11000, 0), None);
}

#[test]
fn per_thread_flag_picks_ptds_and_ptsz_variants() {
    let per_thread = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
    assert_eq!(
        proc_name(c"cuMemcpyHtoD", 12000, per_thread),
        Some(c"cuMemcpyHtoD_v2_ptds")
    );
    assert_eq!(
        proc_name(c"cuLaunchKernel", 12000, per_thread),
        Some(c"cuLaunchKernel_ptsz")
    );
    assert_eq!(
        proc_name(c"cuMemPrefetchAsync", 13000, per_thread),
        Some(c"cuMemPrefetchAsync_v2_ptsz")
    );
    // Before per-thread streams existed (CUDA 7.0) the legacy variant answers.
    assert_eq!(
        proc_name(c"cuMemcpyHtoD", 6050, per_thread),
        Some(c"cuMemcpyHtoD_v2")
    );
    // Functions without per-thread variants ignore the flag.
    assert_eq!(
        proc_name(c"cuMemAlloc", 12000, per_thread),
        Some(c"cuMemAlloc_v2")
    );
}

#[test]
fn legacy_and_default_flags_never_pick_per_thread_variants() {
    for flags in [
        CU_GET_PROC_ADDRESS_DEFAULT,
        CU_GET_PROC_ADDRESS_LEGACY_STREAM,
    ] {
        assert_eq!(
            proc_name(c"cuLaunchKernel", 12000, flags),
            Some(c"cuLaunchKernel")
        );
        assert_eq!(
            proc_name(c"cuMemsetD8", 12000, flags),
            Some(c"cuMemsetD8_v2")
        );
    }
}

#[test]
fn unknown_names_are_not_intercepted() {
    assert!(by_name(c"cuInit").is_none());
    assert!(by_name(c"cuMemAlloc_v3").is_none());
    assert!(by_name(c"malloc").is_none());
    assert!(by_name(c"").is_none());
    assert!(for_proc_address(c"cuInit", 13000, 0).is_none());
    assert!(for_proc_address(c"", 13000, 0).is_none());
}

#[test]
fn ambiguity_is_per_base_and_stream_kind() {
    let entry = |name: &CStr| by_name(name).expect("intercepted");
    assert!(is_unambiguous(entry(c"cuLaunchKernel")));
    assert!(is_unambiguous(entry(c"cuLaunchKernel_ptsz")));
    assert!(!is_unambiguous(entry(c"cuMemAlloc_v2")));
    assert!(!is_unambiguous(entry(c"cuMemPrefetchAsync_v2_ptsz")));
}

#[test]
fn each_entry_knows_its_place() {
    for (index, entry) in ENTRY_POINTS.iter().enumerate() {
        assert_eq!(entry.index, index, "{:?}", entry.name);
    }
}
