//! Virtual memory management: reservations, physical handles, mappings
//! and access, as the swap engine uses them.
//!
//! Handles are opaque tokens the driver validates, so calls taking them
//! are safe (`clippy::not_unsafe_ptr_arg_deref` is allowed here).

#![allow(clippy::not_unsafe_ptr_arg_deref)]

use super::call::call;
use super::{CudaError, table};
use crate::ffi::*;
use std::ffi::c_uint;

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
pub fn granularity(device: CUdevice) -> Result<u64, CudaError> {
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
pub fn reserve(bytes: u64, alignment: u64) -> Result<CUdeviceptr, CudaError> {
    let mut base: CUdeviceptr = 0;
    call!(helpers.cuMemAddressReserve(&mut base, bytes as usize, alignment as usize, 0, 0))?;
    Ok(base)
}

/// Frees a reservation made by [`reserve`]; nothing may be mapped in it.
pub fn unreserve(base: CUdeviceptr, bytes: u64) -> Result<(), CudaError> {
    call!(helpers.cuMemAddressFree(base, bytes as usize))
}

/// Creates `bytes` of pinned device memory on `device`, exportable with the
/// handle types `handle_types` (`CU_MEM_HANDLE_TYPE_*` bits).
pub fn create(
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
pub fn create_like(
    prop: &CUmemAllocationProp,
    bytes: u64,
) -> Result<CUmemGenericAllocationHandle, CudaError> {
    let mut handle: CUmemGenericAllocationHandle = 0;
    call!(helpers.cuMemCreate(&mut handle, bytes as usize, prop, 0))?;
    Ok(handle)
}

/// Sets the access `descs` on the mapped `[base, base + bytes)` (a program's
/// own `cuMemSetAccess` descriptors, replayed after a swap-in).
pub fn set_access_descs(
    base: CUdeviceptr,
    bytes: u64,
    descs: &[CUmemAccessDesc],
) -> Result<(), CudaError> {
    call!(helpers.cuMemSetAccess(base, bytes as usize, descs.as_ptr(), descs.len()))
}

/// Drops the creator's reference to `handle`; the memory goes once it is
/// unmapped everywhere too.
pub fn release(handle: CUmemGenericAllocationHandle) -> Result<(), CudaError> {
    call!(helpers.cuMemRelease(handle))
}

/// Maps the whole of `handle` (`bytes`) at `base`, inside a reservation.
pub fn map(
    base: CUdeviceptr,
    bytes: u64,
    handle: CUmemGenericAllocationHandle,
) -> Result<(), CudaError> {
    call!(helpers.cuMemMap(base, bytes as usize, 0, handle, 0))
}

/// Unmaps `[base, base + bytes)`; the range stays reserved. Work still
/// queued on the range faults: synchronize first.
pub fn unmap(base: CUdeviceptr, bytes: u64) -> Result<(), CudaError> {
    call!(helpers.cuMemUnmap(base, bytes as usize))
}

/// Grants `device` read-write access to the mapped `[base, base + bytes)`.
pub fn set_access(base: CUdeviceptr, bytes: u64, device: CUdevice) -> Result<(), CudaError> {
    let access = CUmemAccessDesc {
        location: CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: device,
        },
        flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    call!(helpers.cuMemSetAccess(base, bytes as usize, &access, 1))
}
