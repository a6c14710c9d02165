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

/// The integer types the queries report sizes in: `size_t` since CUDA 3.2,
/// `unsigned int` before (saturated there, as the driver does).
trait SizeType: Copy {
    fn from_bytes(bytes: u64) -> Self;
}

impl SizeType for usize {
    fn from_bytes(bytes: u64) -> Self {
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }
}

impl SizeType for c_uint {
    fn from_bytes(bytes: u64) -> Self {
        c_uint::try_from(bytes).unwrap_or(c_uint::MAX)
    }
}

/// `cuMemGetInfo` of either size type: the real call first, then the
/// virtual numbers over its answer.
///
/// # Safety
/// As the driver's `cuMemGetInfo[_v2]`.
unsafe fn mem_get_info_as<T: SizeType>(
    real: unsafe extern "C" fn(*mut T, *mut T) -> CUresult,
    free: *mut T,
    total: *mut T,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let status = unsafe { real(free, total) };
    if !status.is_success() {
        return status;
    }
    if let Some((virtual_free, virtual_total)) = driver::ctx::device().ok().and_then(virtual_memory)
    {
        // SAFETY: the successful real call wrote through both pointers.
        unsafe {
            *free = T::from_bytes(virtual_free);
            *total = T::from_bytes(virtual_total);
        }
    }
    status
}

/// `cuDeviceTotalMem` of either size type.
///
/// # Safety
/// As the driver's `cuDeviceTotalMem[_v2]`.
unsafe fn device_total_mem_as<T: SizeType>(
    real: unsafe extern "C" fn(*mut T, CUdevice) -> CUresult,
    bytes: *mut T,
    device: CUdevice,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let status = unsafe { real(bytes, device) };
    if status.is_success()
        && let Some(capacity) = gate::capacity(device)
    {
        // SAFETY: the successful real call wrote through it.
        unsafe { *bytes = T::from_bytes(capacity) };
    }
    status
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
    // SAFETY: forwarded caller contract.
    unsafe { mem_get_info_as(real, free, total) }
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
    // SAFETY: forwarded caller contract.
    unsafe { mem_get_info_as(real, free, total) }
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
    // SAFETY: forwarded caller contract.
    unsafe { device_total_mem_as(real, bytes, device) }
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
    // SAFETY: forwarded caller contract.
    unsafe { device_total_mem_as(real, bytes, device) }
}
