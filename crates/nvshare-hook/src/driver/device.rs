//! Devices: how many, their handles, UUIDs and memory, and the driver's
//! version.
//!
//! Handles are opaque tokens the driver validates, so calls taking them
//! are safe (`clippy::not_unsafe_ptr_arg_deref` is allowed here).

#![allow(clippy::not_unsafe_ptr_arg_deref)]

use super::call::call;
use super::{CudaError, table};
use crate::ffi::*;
use std::ffi::c_int;

/// The number of visible devices.
pub fn count() -> Result<c_int, CudaError> {
    let mut count: c_int = 0;
    call!(helpers.cuDeviceGetCount(&mut count))?;
    Ok(count)
}

/// The device handle of ordinal `ordinal`.
pub fn get(ordinal: c_int) -> Result<CUdevice, CudaError> {
    let mut device: CUdevice = 0;
    call!(helpers.cuDeviceGet(&mut device, ordinal))?;
    Ok(device)
}

/// `device`'s UUID.
pub fn uuid(device: CUdevice) -> Result<[u8; 16], CudaError> {
    let mut uuid = CUuuid::default();
    call!(helpers.cuDeviceGetUuid(&mut uuid, device))?;
    Ok(uuid.bytes)
}

/// The driver's CUDA version (e.g. 13000).
pub fn driver_version() -> Result<c_int, CudaError> {
    let mut version: c_int = 0;
    call!(helpers.cuDriverGetVersion(&mut version))?;
    Ok(version)
}

/// `device`'s physical memory, as the real driver reports it.
pub fn total_mem(device: CUdevice) -> Result<u64, CudaError> {
    let mut bytes: usize = 0;
    call!(intercepted.cuDeviceTotalMem_v2(&mut bytes, device))?;
    Ok(bytes as u64)
}
