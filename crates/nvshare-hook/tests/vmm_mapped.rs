//! The program's own VMM memory (what PyTorch's expandable segments make)
//! under the swap engine, against the fake driver: handles created, mapped
//! and given access through the hook's exported entry points, `evict` and
//! `restore` called directly as the gate would. Checks that handles are
//! virtualized, that the memory is counted, that only mappings that can
//! move safely move (not exported, doubly or partly mapped, unmapped, or
//! partly accessible ones), that data survives, that calls on swapped-out
//! memory are answered or refused without loss, and that everything is
//! given back to the driver at the end.
//!
//! The scenario needs the fake `libcuda.so.1` on the library path from
//! process start, so the test re-runs its own executable as a child.

use crate::support::device::*;
use crate::support::run_scenario_in_child;
use nvshare::engine::swap::mapped::ID_TAG;
use nvshare::ffi::*;
use nvshare::interpose::exports::exports;
use nvshare::registry::Usage;
use nvshare::{driver, engine};
use std::ffi::{c_int, c_void};

const CHILD_MARKER: &str = "NVSHARE_TEST_VMM_MAPPED_CHILD";
use nvshare_proto::units::MIB;

#[test]
fn the_programs_own_vmm_memory_is_counted_swapped_when_safe_and_kept_intact() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        scenario();
        return;
    }
    let trace = run_scenario_in_child(
        concat!(
            module_path!(),
            "::the_programs_own_vmm_memory_is_counted_swapped_when_safe_and_kept_intact"
        ),
        CHILD_MARKER,
        "swap",
        &[],
    );
    let created = trace.lines().filter(|l| l.contains(" create ")).count();
    let destroyed = trace.lines().filter(|l| l.contains(" destroy ")).count();
    assert!(created > 7, "handles were made again on restore:\n{trace}");
    assert_eq!(
        created, destroyed,
        "every handle made (the program's and the restores') is given back:\n{trace}"
    );
}

fn prop() -> CUmemAllocationProp {
    CUmemAllocationProp {
        type_: CU_MEM_ALLOCATION_TYPE_PINNED,
        requestedHandleTypes: CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
        location: CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: 0,
        },
        win32HandleMetaData: std::ptr::null_mut(),
        allocFlags: CUmemAllocationPropFlags::default(),
    }
}

fn create(bytes: u64) -> CUmemGenericAllocationHandle {
    let mut handle = 0;
    // SAFETY: a live out-pointer and properties.
    check("cuMemCreate", unsafe {
        exports::cuMemCreate(&mut handle, bytes as usize, &prop(), 0)
    });
    assert_eq!(handle & ID_TAG, ID_TAG, "the program gets a virtual handle");
    handle
}

fn map(va: u64, bytes: u64, handle: CUmemGenericAllocationHandle) {
    // SAFETY: plain values the driver checks.
    check("cuMemMap", unsafe {
        exports::cuMemMap(va, bytes as usize, 0, handle, 0)
    });
}

fn access(va: u64, bytes: u64) {
    let desc = CUmemAccessDesc {
        location: CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: 0,
        },
        flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    // SAFETY: one live descriptor.
    check("cuMemSetAccess", unsafe {
        exports::cuMemSetAccess(va, bytes as usize, &desc, 1)
    });
}

fn unmap(va: u64, bytes: u64) -> CUresult {
    // SAFETY: plain values the driver checks.
    unsafe { exports::cuMemUnmap(va, bytes as usize) }
}

fn release(handle: CUmemGenericAllocationHandle) {
    // SAFETY: a plain value the driver checks.
    check("cuMemRelease", unsafe { exports::cuMemRelease(handle) });
}

fn pattern(bytes: u64, seed: u8) -> Vec<u8> {
    (0..bytes)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn fill(va: u64, data: &[u8]) {
    // SAFETY: `data` is readable for its length; the range is mapped.
    check("cuMemcpyHtoD_v2", unsafe {
        exports::cuMemcpyHtoD_v2(va, data.as_ptr().cast::<c_void>(), data.len())
    });
}

fn assert_intact(va: u64, data: &[u8]) {
    let mut back = vec![0u8; data.len()];
    // SAFETY: `back` is writable for its length.
    check("cuMemcpyDtoH_v2", unsafe {
        exports::cuMemcpyDtoH_v2(back.as_mut_ptr().cast::<c_void>(), va, back.len())
    });
    assert!(back == data, "the contents at 0x{va:x} changed");
}

/// Bytes unmapped so far at `va` in the fake driver's trace.
fn unmaps_at(va: u64) -> usize {
    let trace = std::env::var_os("FAKE_CUDA_TRACE").expect("the child traces");
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let wanted = format!("ptr=0x{va:x} ");
    text.lines()
        .filter(|l| l.contains(" unmap ") && l.contains(&wanted))
        .count()
}

fn usage(footprint_mib: u64, resident_mib: u64) -> Usage {
    Usage {
        footprint: footprint_mib * MIB,
        resident: resident_mib * MIB,
    }
}

/// Runs in the child.
fn scenario() {
    start_fake_context();
    let engine = engine::current();
    let va = driver::vmm::reserve(64 * MIB, 0).expect("reserve like PyTorch");
    let at = |mib: u64| va + mib * MIB;

    // A: 4 MiB, one handle mapped whole with access: swappable.
    let a = create(4 * MIB);
    map(at(0), 4 * MIB, a);
    access(at(0), 4 * MIB);
    let mut a_data = pattern(4 * MIB, 1);
    fill(at(0), &a_data);
    // D: 2 MiB released right after mapping (the memory lives on): swappable.
    let d = create(2 * MIB);
    map(at(4), 2 * MIB, d);
    release(d);
    access(at(4), 2 * MIB);
    let d_data = pattern(2 * MIB, 2);
    fill(at(4), &d_data);
    // B: exported: another process may map it, so it never moves.
    let b = create(2 * MIB);
    map(at(6), 2 * MIB, b);
    access(at(6), 2 * MIB);
    let mut fd: c_int = -1;
    // SAFETY: `fd` is writable for an int.
    check("cuMemExportToShareableHandle", unsafe {
        exports::cuMemExportToShareableHandle(
            (&mut fd as *mut c_int).cast(),
            b,
            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR as c_int,
            0,
        )
    });
    assert!(fd >= 0);
    let b_data = pattern(2 * MIB, 3);
    fill(at(6), &b_data);
    // C: mapped at two places (access set once over both): stays.
    let c = create(2 * MIB);
    map(at(8), 2 * MIB, c);
    map(at(10), 2 * MIB, c);
    access(at(8), 4 * MIB);
    let c_data = pattern(2 * MIB, 4);
    fill(at(8), &c_data);
    assert_intact(at(10), &c_data);
    // E: created, never mapped: counted, stays.
    let e = create(2 * MIB);
    // F: access set on half of it: stays.
    let f = create(4 * MIB);
    map(at(12), 4 * MIB, f);
    access(at(12), 2 * MIB);
    let f_data = pattern(2 * MIB, 5);
    fill(at(12), &f_data);
    assert_eq!(engine.usage(0), usage(16, 16), "every handle is counted");

    // Everything that can move moves: A and D.
    assert_eq!(
        engine.evict(0, 64 * MIB, &mut |_| {}).expect("evict"),
        6 * MIB
    );
    assert_eq!(engine.usage(0), usage(16, 10));
    assert_eq!(unmaps_at(at(0)), 1);
    assert_eq!(unmaps_at(at(4)), 1);
    for mib in [6, 8, 10, 12] {
        assert_eq!(unmaps_at(at(mib)), 0, "the mapping at +{mib} MiB moved");
    }
    // Calls on swapped-out memory are answered from the records.
    let mut size = 0usize;
    let mut base = 0;
    // SAFETY: live out-pointers.
    check("cuMemGetAddressRange_v2", unsafe {
        exports::cuMemGetAddressRange_v2(&mut base, &mut size, at(1))
    });
    assert_eq!((base, size as u64), (at(0), 4 * MIB));
    let mut memory_type = 0u32;
    // SAFETY: a u32 out-value for the memory type.
    check("cuPointerGetAttribute", unsafe {
        exports::cuPointerGetAttribute(
            (&mut memory_type as *mut u32).cast(),
            CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            at(1),
        )
    });
    assert_eq!(memory_type, CU_MEMORYTYPE_DEVICE);
    let mut props = prop();
    props.location.id = 7;
    // SAFETY: a live out-pointer.
    check("cuMemGetAllocationPropertiesFromHandle", unsafe {
        exports::cuMemGetAllocationPropertiesFromHandle(&mut props, a)
    });
    assert_eq!(props.location.id, 0);
    let mut retained = 0;
    // SAFETY: a live out-pointer; the address lies in A's mapping.
    check("cuMemRetainAllocationHandle", unsafe {
        exports::cuMemRetainAllocationHandle(&mut retained, at(3) as *mut c_void)
    });
    assert_eq!(retained, a, "retaining gives the program's own handle back");
    release(retained);

    // Back at the same addresses, intact; changes made in between survive
    // the next round too.
    assert_eq!(engine.restore(0, u64::MAX, None).expect("restore"), 6 * MIB);
    assert_eq!(engine.usage(0), usage(16, 16));
    assert_intact(at(0), &a_data);
    assert_intact(at(4), &d_data);
    assert_intact(at(6), &b_data);
    assert_intact(at(8), &c_data);
    assert_intact(at(10), &c_data);
    assert_intact(at(12), &f_data);
    a_data.iter_mut().for_each(|x| *x = x.wrapping_add(1));
    fill(at(0), &a_data);
    assert_eq!(
        engine.evict(0, 64 * MIB, &mut |_| {}).expect("evict again"),
        6 * MIB
    );
    assert_eq!(
        engine.restore(0, u64::MAX, None).expect("restore again"),
        6 * MIB
    );
    assert_intact(at(0), &a_data);

    // Unmapping swapped-out memory the program no longer holds (D) only
    // drops its shadow; releasing a swapped-out handle (A) only counts.
    assert_eq!(
        engine.evict(0, 64 * MIB, &mut |_| {}).expect("evict"),
        6 * MIB
    );
    check(
        "cuMemUnmap of a released swapped handle",
        unmap(at(4), 2 * MIB),
    );
    assert_eq!(engine.usage(0), usage(14, 10));
    release(a);
    assert_eq!(engine.usage(0), usage(14, 10));
    // Unmapping swapped-out memory whose handle is still held needs it
    // back: without a scheduler nothing brings it, so the call fails and
    // nothing is lost.
    let g = create(2 * MIB);
    map(at(16), 2 * MIB, g);
    access(at(16), 2 * MIB);
    let g_data = pattern(2 * MIB, 6);
    fill(at(16), &g_data);
    assert_eq!(
        engine.evict(0, 2 * MIB, &mut |_| {}).expect("evict G"),
        2 * MIB
    );
    assert_eq!(unmap(at(16), 2 * MIB), CUresult::ERROR_OUT_OF_MEMORY);
    assert_eq!(engine.restore(0, u64::MAX, None).expect("restore"), 6 * MIB);
    assert_intact(at(0), &a_data);
    assert_intact(at(16), &g_data);

    // Mapping C a third time and unmapping the others leaves one whole
    // mapping with access: it becomes swappable.
    check("cuMemUnmap", unmap(at(8), 2 * MIB));
    check("cuMemUnmap", unmap(at(10), 2 * MIB));
    map(at(20), 2 * MIB, c);
    access(at(20), 2 * MIB);
    assert_intact(at(20), &c_data);
    assert_eq!(
        engine.evict(0, 64 * MIB, &mut |_| {}).expect("evict"),
        8 * MIB,
        "A, G and now C move"
    );
    assert_eq!(engine.restore(0, u64::MAX, None).expect("restore"), 8 * MIB);
    assert_intact(at(20), &c_data);

    // Everything back to the driver.
    for (mib, bytes) in [(0, 4), (6, 2), (12, 4), (16, 2), (20, 2)] {
        check("cuMemUnmap", unmap(at(mib), bytes * MIB));
    }
    for handle in [b, c, e, f, g] {
        release(handle);
    }
    assert_eq!(engine.usage(0), usage(0, 0), "nothing is counted any more");
    driver::vmm::unreserve(va, 64 * MIB).expect("the reservation is empty");
}
