//! Safe calls into the real driver's virtual memory management API, pinned
//! host registration and the raw async copies: what the swap engine moves
//! memory with. Like the rest of [`crate::driver`] they bypass the gate.
//!
//! Device addresses and handles are plain values the driver validates, so
//! calls taking them are safe; calls that make the driver read or write host
//! memory through a raw pointer are `unsafe` and state their contract.

use super::{CudaError, Driver, table};
use crate::ffi::*;
use std::ffi::{c_uint, c_void};

fn check(function: &'static str, code: CUresult) -> Result<(), CudaError> {
    if code.is_success() {
        Ok(())
    } else {
        Err(CudaError::Failed { function, code })
    }
}

/// Calls `table().<group>.<name>` or reports it missing.
macro_rules! call {
    ($group:ident . $name:ident($($arg:expr),*)) => {{
        let driver: &Driver = table()?;
        let function = driver.$group.$name.ok_or(CudaError::Missing {
            function: stringify!($name),
        })?;
        // SAFETY: the driver's own function with the arguments its contract
        // asks for: out-pointers to live locals, plain values, and host
        // pointers whose validity the calling function guarantees.
        check(stringify!($name), unsafe { function($($arg),*) })
    }};
}

/// `cuMemCreate` properties for pinned memory on `device`.
fn device_memory(device: CUdevice, handle_types: c_uint) -> CUmemAllocationProp {
    CUmemAllocationProp {
        type_: CU_MEM_ALLOCATION_TYPE_PINNED,
        requestedHandleTypes: handle_types,
        location: CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: device,
        },
        win32HandleMetaData: std::ptr::null_mut(),
        allocFlags: CUmemAllocationPropFlags::default(),
    }
}

/// The minimum VMM allocation granularity of `device` (2 MiB on every GPU
/// measured).
pub fn vmm_granularity(device: CUdevice) -> Result<u64, CudaError> {
    let prop = device_memory(device, 0);
    let mut granularity = 0usize;
    call!(helpers.cuMemGetAllocationGranularity(
        &mut granularity,
        &prop,
        CU_MEM_ALLOC_GRANULARITY_MINIMUM
    ))?;
    Ok(granularity as u64)
}

/// Reserves `bytes` of device address space, aligned to `alignment` (0: the
/// granularity).
pub fn vmm_reserve(bytes: u64, alignment: u64) -> Result<CUdeviceptr, CudaError> {
    let mut base: CUdeviceptr = 0;
    call!(helpers.cuMemAddressReserve(&mut base, bytes as usize, alignment as usize, 0, 0))?;
    Ok(base)
}

/// Frees a reservation made by [`vmm_reserve`]; nothing may be mapped in it.
pub fn vmm_unreserve(base: CUdeviceptr, bytes: u64) -> Result<(), CudaError> {
    call!(helpers.cuMemAddressFree(base, bytes as usize))
}

/// Creates `bytes` of pinned device memory on `device`, exportable with the
/// handle types `handle_types` (`CU_MEM_HANDLE_TYPE_*` bits).
pub fn vmm_create(
    device: CUdevice,
    bytes: u64,
    handle_types: c_uint,
) -> Result<CUmemGenericAllocationHandle, CudaError> {
    let prop = device_memory(device, handle_types);
    let mut handle: CUmemGenericAllocationHandle = 0;
    call!(helpers.cuMemCreate(&mut handle, bytes as usize, &prop, 0))?;
    Ok(handle)
}

/// Creates `bytes` of memory as described by `prop` (a program's own
/// `cuMemCreate` properties, replayed when its mapping is swapped back in).
pub fn vmm_create_like(
    prop: &CUmemAllocationProp,
    bytes: u64,
) -> Result<CUmemGenericAllocationHandle, CudaError> {
    let mut handle: CUmemGenericAllocationHandle = 0;
    call!(helpers.cuMemCreate(&mut handle, bytes as usize, prop, 0))?;
    Ok(handle)
}

/// Sets the access `descs` on the mapped `[base, base + bytes)` (a program's
/// own `cuMemSetAccess` descriptors, replayed after a swap-in).
pub fn vmm_set_access_descs(
    base: CUdeviceptr,
    bytes: u64,
    descs: &[CUmemAccessDesc],
) -> Result<(), CudaError> {
    call!(helpers.cuMemSetAccess(base, bytes as usize, descs.as_ptr(), descs.len()))
}

/// Drops the creator's reference to `handle`; the memory goes once it is
/// unmapped everywhere too.
pub fn vmm_release(handle: CUmemGenericAllocationHandle) -> Result<(), CudaError> {
    call!(helpers.cuMemRelease(handle))
}

/// Maps the whole of `handle` (`bytes`) at `base`, inside a reservation.
pub fn vmm_map(
    base: CUdeviceptr,
    bytes: u64,
    handle: CUmemGenericAllocationHandle,
) -> Result<(), CudaError> {
    call!(helpers.cuMemMap(base, bytes as usize, 0, handle, 0))
}

/// Unmaps `[base, base + bytes)`; the range stays reserved. Work still
/// queued on the range faults: synchronize first.
pub fn vmm_unmap(base: CUdeviceptr, bytes: u64) -> Result<(), CudaError> {
    call!(helpers.cuMemUnmap(base, bytes as usize))
}

/// Grants `device` read-write access to the mapped `[base, base + bytes)`.
pub fn vmm_set_access(base: CUdeviceptr, bytes: u64, device: CUdevice) -> Result<(), CudaError> {
    let access = CUmemAccessDesc {
        location: CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: device,
        },
        flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    call!(helpers.cuMemSetAccess(base, bytes as usize, &access, 1))
}

/// Enqueues a copy of `bytes` from device memory at `src` to host memory at
/// `dst` on `stream`, with the real driver (no gate).
///
/// # Safety
/// `dst` is writable for `bytes` and stays valid and otherwise untouched
/// until `stream` has run the copy.
pub unsafe fn copy_to_host_async(
    dst: *mut c_void,
    src: CUdeviceptr,
    bytes: u64,
    stream: CUstream,
) -> Result<(), CudaError> {
    call!(intercepted.cuMemcpyDtoHAsync_v2(dst, src, bytes as usize, stream))
}

/// Enqueues a copy of `bytes` from host memory at `src` to device memory at
/// `dst` on `stream`, with the real driver (no gate).
///
/// # Safety
/// `src` is readable for `bytes` and stays valid and unchanged until
/// `stream` has run the copy.
pub unsafe fn copy_to_device_async(
    dst: CUdeviceptr,
    src: *const c_void,
    bytes: u64,
    stream: CUstream,
) -> Result<(), CudaError> {
    call!(intercepted.cuMemcpyHtoDAsync_v2(dst, src, bytes as usize, stream))
}

/// Page-locks `bytes` of host memory at `ptr` for every context
/// (`CU_MEMHOSTREGISTER_PORTABLE`).
///
/// # Safety
/// `ptr` is a live mapping of at least `bytes` that stays mapped until
/// [`host_unregister`] is called on it.
pub unsafe fn host_register(ptr: *mut c_void, bytes: u64) -> Result<(), CudaError> {
    call!(helpers.cuMemHostRegister(ptr, bytes as usize, CU_MEMHOSTREGISTER_PORTABLE))
}

/// Undoes [`host_register`].
///
/// # Safety
/// `ptr` was registered by [`host_register`] and is still mapped.
pub unsafe fn host_unregister(ptr: *mut c_void) -> Result<(), CudaError> {
    call!(helpers.cuMemHostUnregister(ptr))
}
