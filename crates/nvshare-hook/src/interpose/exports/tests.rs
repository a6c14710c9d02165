//! Tests of the exports: each entry point has a distinct wrapper that the lookups hand out.

use super::*;
use crate::driver::real::{ENTRY_POINTS, by_name};

#[test]
fn wrappers_are_distinct_functions() {
    let mut addresses: Vec<_> = WRAPPERS.iter().map(|wrapper| wrapper() as usize).collect();
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), ENTRY_POINTS.len());
    assert!(addresses.iter().all(|&a| a != 0));
}

#[test]
fn own_wrappers_are_recognized() {
    let wrapper = wrapper_of(by_name(c"cuMemAlloc_v2").expect("intercepted"));
    assert!(is_own_wrapper(wrapper));
    assert!(!is_own_wrapper(std::ptr::null_mut()));
    assert!(!is_own_wrapper(libc::getpid as *const () as *mut c_void));
}

#[test]
fn each_entry_points_at_its_own_exported_wrapper() {
    let alloc = by_name(c"cuMemAlloc_v2").expect("intercepted");
    assert_eq!(
        wrapper_of(alloc),
        exports::cuMemAlloc_v2 as *const () as *mut c_void
    );
    let launch = by_name(c"cuLaunchKernel_ptsz").expect("intercepted");
    assert_eq!(
        wrapper_of(launch),
        exports::cuLaunchKernel_ptsz as *const () as *mut c_void
    );
}
