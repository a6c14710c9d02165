//! Device memory helpers for in-process scenarios against the fake driver:
//! allocations through the hook's exports filled with a known pattern,
//! checks that they are intact, and pointer queries.

use nvshare::driver;
use nvshare::ffi::*;
use nvshare::interpose::exports::exports;
use std::ffi::c_void;

/// Initializes the fake driver and makes device 0's primary context
/// current on this thread.
pub fn start_fake_context() {
    let table = driver::table().expect("the fake driver loads");
    let init = table.helpers.cuInit.expect("cuInit");
    // SAFETY: cuInit takes flags only.
    check("cuInit", unsafe { init(0) });
    let ctx = driver::ctx::retain_primary(0).expect("retain the primary context");
    driver::ctx::set_current(ctx).expect("make it current");
}

pub fn check(call: &str, status: CUresult) {
    assert!(status.is_success(), "{call} failed: {status}");
}

pub fn alloc(bytes: u64, seed: u8) -> (CUdeviceptr, Vec<u8>) {
    let mut ptr: CUdeviceptr = 0;
    // SAFETY: a valid out-pointer.
    check("cuMemAlloc_v2", unsafe {
        exports::cuMemAlloc_v2(&mut ptr, bytes as usize)
    });
    let data: Vec<u8> = (0..bytes)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    // SAFETY: `data` holds `bytes`; `ptr` is a live allocation of that size.
    check("cuMemcpyHtoD_v2", unsafe {
        exports::cuMemcpyHtoD_v2(ptr, data.as_ptr().cast::<c_void>(), data.len())
    });
    (ptr, data)
}

pub fn assert_intact(ptr: CUdeviceptr, data: &[u8]) {
    let mut back = vec![0u8; data.len()];
    // SAFETY: `back` holds as many bytes as the allocation.
    check("cuMemcpyDtoH_v2", unsafe {
        exports::cuMemcpyDtoH_v2(back.as_mut_ptr().cast::<c_void>(), ptr, back.len())
    });
    assert!(back == data, "the contents of 0x{ptr:x} changed");
}

pub fn free(ptr: CUdeviceptr) {
    // SAFETY: a live allocation, freed once.
    check("cuMemFree_v2", unsafe { exports::cuMemFree_v2(ptr) });
}

pub fn attribute_u64(attribute: CUpointer_attribute, ptr: CUdeviceptr) -> Result<u64, CUresult> {
    let mut value = 0u64;
    // SAFETY: `value` is writable for every 64-bit or 32-bit attribute.
    let status =
        unsafe { exports::cuPointerGetAttribute((&mut value as *mut u64).cast(), attribute, ptr) };
    if status.is_success() {
        Ok(value)
    } else {
        Err(status)
    }
}

/// Pointer queries on swapped-out `ptr` of `bytes` starting at `base`.
pub fn queries_answer_as_if_resident(base: CUdeviceptr, bytes: u64) {
    let inside = base + 100;
    let real = driver::table()
        .unwrap()
        .intercepted
        .cuPointerGetAttribute
        .unwrap();
    let mut ignored = 0u64;
    // SAFETY: the real driver with a writable out-value.
    let refused = unsafe {
        real(
            (&mut ignored as *mut u64).cast(),
            CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            inside,
        )
    };
    assert_eq!(
        refused,
        CUresult::ERROR_INVALID_VALUE,
        "the driver itself refuses queries on swapped-out memory"
    );
    assert_eq!(
        attribute_u64(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, inside),
        Ok(u64::from(CU_MEMORYTYPE_DEVICE))
    );
    assert_eq!(
        attribute_u64(CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, inside),
        Ok(base)
    );
    assert_eq!(
        attribute_u64(CU_POINTER_ATTRIBUTE_RANGE_SIZE, inside),
        Ok(bytes)
    );
    assert_eq!(
        attribute_u64(CU_POINTER_ATTRIBUTE_DEVICE_POINTER, inside),
        Ok(inside)
    );
    assert_eq!(
        attribute_u64(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, inside),
        Ok(0)
    );
    assert_eq!(
        attribute_u64(CU_POINTER_ATTRIBUTE_HOST_POINTER, inside),
        Err(CUresult::ERROR_INVALID_VALUE)
    );
    let (mut start, mut size) = (0 as CUdeviceptr, 0usize);
    // SAFETY: valid out-pointers.
    check("cuMemGetAddressRange_v2", unsafe {
        exports::cuMemGetAddressRange_v2(&mut start, &mut size, inside)
    });
    assert_eq!((start, size as u64), (base, bytes));
    let mut attributes = [
        CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
        CU_POINTER_ATTRIBUTE_RANGE_SIZE,
        CU_POINTER_ATTRIBUTE_HOST_POINTER,
    ];
    let (mut kind, mut range, mut host) = (0u32, 0u64, 1usize);
    let mut outputs: [*mut c_void; 3] = [
        (&mut kind as *mut u32).cast(),
        (&mut range as *mut u64).cast(),
        (&mut host as *mut usize).cast(),
    ];
    // SAFETY: three attributes, three outputs of their types.
    check("cuPointerGetAttributes", unsafe {
        exports::cuPointerGetAttributes(3, attributes.as_mut_ptr(), outputs.as_mut_ptr(), inside)
    });
    assert_eq!((kind, range, host), (CU_MEMORYTYPE_DEVICE, bytes, 0));
}
