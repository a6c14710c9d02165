//! Memory queries answered with the virtual GPU: the total is the capacity
//! the scheduler gives this program, the free memory that capacity minus the
//! program's own footprint. Unscheduled, the driver's answer stands.
//!
//! The real call always runs first, so that errors (no context, invalid
//! device) stay the driver's.

use crate::driver;
use crate::engine;
use crate::ffi::*;
use crate::gate;
use std::ffi::c_uint;

/// `(free, total)` as the program should see them on `device`, if it runs
/// under a scheduler.
pub fn virtual_memory(device: CUdevice) -> Option<(u64, u64)> {
    let capacity = gate::capacity(device)?;
    let footprint = engine::current().usage(device).footprint;
    Some((capacity.saturating_sub(footprint), capacity))
}

fn clamp_u32(value: u64) -> c_uint {
    value.min(u64::from(c_uint::MAX)) as c_uint
}

/// `cuMemGetInfo_v2`.
///
/// # Safety
/// As the driver's `cuMemGetInfo_v2`.
pub unsafe fn mem_get_info(
    real: unsafe extern "C" fn(*mut usize, *mut usize) -> CUresult,
    free: *mut usize,
    total: *mut usize,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let status = unsafe { real(free, total) };
    if !status.is_success() {
        return status;
    }
    if let Some((virtual_free, virtual_total)) =
        driver::ctx_get_device().ok().and_then(virtual_memory)
    {
        // SAFETY: the successful real call wrote through both pointers.
        unsafe {
            *free = virtual_free as usize;
            *total = virtual_total as usize;
        }
    }
    status
}

/// `cuMemGetInfo` (32-bit sizes, saturated).
///
/// # Safety
/// As the driver's `cuMemGetInfo`.
pub unsafe fn mem_get_info_v1(
    real: unsafe extern "C" fn(*mut c_uint, *mut c_uint) -> CUresult,
    free: *mut c_uint,
    total: *mut c_uint,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let status = unsafe { real(free, total) };
    if !status.is_success() {
        return status;
    }
    if let Some((virtual_free, virtual_total)) =
        driver::ctx_get_device().ok().and_then(virtual_memory)
    {
        // SAFETY: the successful real call wrote through both pointers.
        unsafe {
            *free = clamp_u32(virtual_free);
            *total = clamp_u32(virtual_total);
        }
    }
    status
}

/// `cuDeviceTotalMem_v2`.
///
/// # Safety
/// As the driver's `cuDeviceTotalMem_v2`.
pub unsafe fn device_total_mem(
    real: unsafe extern "C" fn(*mut usize, CUdevice) -> CUresult,
    bytes: *mut usize,
    device: CUdevice,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let status = unsafe { real(bytes, device) };
    if status.is_success() {
        if let Some(capacity) = gate::capacity(device) {
            // SAFETY: the successful real call wrote through it.
            unsafe { *bytes = capacity as usize };
        }
    }
    status
}

/// `cuDeviceTotalMem` (32-bit, saturated).
///
/// # Safety
/// As the driver's `cuDeviceTotalMem`.
pub unsafe fn device_total_mem_v1(
    real: unsafe extern "C" fn(*mut c_uint, CUdevice) -> CUresult,
    bytes: *mut c_uint,
    device: CUdevice,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let status = unsafe { real(bytes, device) };
    if status.is_success() {
        if let Some(capacity) = gate::capacity(device) {
            // SAFETY: the successful real call wrote through it.
            unsafe { *bytes = clamp_u32(capacity) };
        }
    }
    status
}
