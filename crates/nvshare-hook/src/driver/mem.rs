//! Memory: the real allocation calls (no gate), managed-memory prefetch,
//! address ranges, the raw async copies and pinned host registration the
//! swap engine moves memory with.
//!
//! Calls that make the driver read or write host memory through a raw
//! pointer are `unsafe` and state their contract.
//!
//! Handles are opaque tokens the driver validates, so calls taking them
//! are safe (`clippy::not_unsafe_ptr_arg_deref` is allowed here).

#![allow(clippy::not_unsafe_ptr_arg_deref)]

use super::call::call;
use super::{CudaError, table};
use crate::ffi::*;
use std::ffi::{c_uint, c_void};

/// The real `(free, total)` memory of the current context's device.
pub fn get_info() -> Result<(u64, u64), CudaError> {
    let (mut free, mut total): (usize, usize) = (0, 0);
    call!(intercepted.cuMemGetInfo_v2(&mut free, &mut total))?;
    Ok((free as u64, total as u64))
}

/// A device allocation from the real `cuMemAlloc_v2`.
pub fn alloc(bytes: u64) -> Result<CUdeviceptr, CudaError> {
    let mut ptr: CUdeviceptr = 0;
    call!(intercepted.cuMemAlloc_v2(&mut ptr, bytes as usize))?;
    Ok(ptr)
}

/// Frees device or managed memory with the real `cuMemFree_v2`.
pub fn free(ptr: CUdeviceptr) -> Result<(), CudaError> {
    call!(intercepted.cuMemFree_v2(ptr))
}

/// A managed allocation from the real `cuMemAllocManaged`.
pub fn alloc_managed(bytes: u64, flags: c_uint) -> Result<CUdeviceptr, CudaError> {
    let mut ptr: CUdeviceptr = 0;
    call!(intercepted.cuMemAllocManaged(&mut ptr, bytes as usize, flags))?;
    Ok(ptr)
}

/// Where [`prefetch`] moves managed memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefetchTarget {
    /// Into a device's memory.
    Device(CUdevice),
    /// Out to host memory.
    Host,
}

/// Enqueues a prefetch of managed memory on `stream`, with whichever of the
/// two driver signatures exists (`cuMemPrefetchAsync_v2` since CUDA 12.2,
/// the only one in CUDA 13 headers; `cuMemPrefetchAsync` before).
pub fn prefetch(
    ptr: CUdeviceptr,
    bytes: u64,
    target: PrefetchTarget,
    stream: CUstream,
) -> Result<(), CudaError> {
    let driver = table()?;
    if driver.intercepted.cuMemPrefetchAsync_v2.is_some() {
        let location = match target {
            PrefetchTarget::Device(device) => CUmemLocation {
                type_: CU_MEM_LOCATION_TYPE_DEVICE,
                id: device,
            },
            PrefetchTarget::Host => CUmemLocation {
                type_: CU_MEM_LOCATION_TYPE_HOST,
                id: 0,
            },
        };
        return call!(intercepted.cuMemPrefetchAsync_v2(ptr, bytes as usize, location, 0, stream));
    }
    let device = match target {
        PrefetchTarget::Device(device) => device,
        PrefetchTarget::Host => CU_DEVICE_CPU,
    };
    call!(intercepted.cuMemPrefetchAsync(ptr, bytes as usize, device, stream))
}

/// The base and size of the allocation containing `ptr`.
pub fn address_range(ptr: CUdeviceptr) -> Result<(CUdeviceptr, u64), CudaError> {
    let (mut base, mut size): (CUdeviceptr, usize) = (0, 0);
    call!(helpers.cuMemGetAddressRange(&mut base, &mut size, ptr))?;
    Ok((base, size as u64))
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
