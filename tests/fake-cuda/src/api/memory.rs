//! Device, managed, stream-ordered and pinned host allocations, and
//! `cuMemGetInfo`. Device memory is anonymous host memory charged to the
//! current device (rounded up to whole pages).

use std::ffi::c_uint;

use super::{current, trace_region};
use crate::driver::{Driver, driver};
use crate::ffi::*;
use crate::guard::{CuResult, entry, write_out};
use crate::os;
use crate::registry::{Kind, Region, Target};
use crate::stream::DefaultStream;

/// `CU_MEM_ATTACH_GLOBAL` / `CU_MEM_ATTACH_HOST`.
const CU_MEM_ATTACH_GLOBAL: c_uint = 0x1;
const CU_MEM_ATTACH_HOST: c_uint = 0x2;

/// Allocates device memory on the current device. `low` asks for an address
/// below 2 GiB (the 32-bit `CUdeviceptr_v1` entry points).
fn alloc_device(bytes: u64, low: bool, stream_ordered: bool) -> CuResult<u64> {
    let (driver, device) = current()?;
    if bytes == 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let mapped = os::round_up(bytes, os::page_size()).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
    driver.accounting.charge(device, mapped)?;
    let base = if low {
        os::alloc_low(mapped)
    } else {
        os::alloc(mapped)
    };
    let base = base.inspect_err(|_| driver.accounting.release(device, mapped))?;
    let kind = Kind::Device {
        device,
        stream_ordered,
    };
    driver.memory.lock().insert(
        base,
        Region {
            size: bytes,
            mapped_bytes: mapped,
            kind,
        },
    );
    let label = if stream_ordered { "async" } else { "device" };
    trace_region(driver, "alloc", label, base, bytes, device);
    Ok(base)
}

/// Frees a device or managed allocation that starts at `ptr`, without
/// waiting for streams (the caller orders it).
pub(crate) fn release_allocation(driver: &Driver, ptr: u64) -> CuResult {
    let mut memory = driver.memory.lock();
    let (label, device, charged) = match memory.containing(ptr) {
        Some((base, region)) if base == ptr => match region.kind {
            Kind::Device { device, .. } => ("device", device, region.mapped_bytes),
            Kind::Managed { resident, charged } => ("managed", resident.unwrap_or(0), charged),
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        },
        _ => return Err(CUDA_ERROR_INVALID_VALUE),
    };
    let region = memory.remove(ptr).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    drop(memory);
    os::release(ptr, region.mapped_bytes);
    driver.accounting.release(device, charged);
    trace_region(driver, "free", label, ptr, region.size, device);
    Ok(())
}

/// `cuMemFree`: waits for the device's queued work first, so no kernel
/// still running can touch the memory after it is gone.
fn free(ptr: u64) -> CuResult {
    let driver = driver()?;
    let device = match driver.memory.lock().target(ptr) {
        Target::Device { device, .. } => device,
        _ => 0,
    };
    driver.streams.synchronize_device(device);
    release_allocation(driver, ptr)
}

/// # Safety
/// `dptr` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytes: usize) -> CUresult {
    entry(|| {
        let base = alloc_device(bytes as u64, false, false)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(dptr, base) }.inspect_err(|_| {
            let _ = free(base);
        })
    })
}

/// The 32-bit `CUdeviceptr_v1` entry point: the memory is placed below 2 GiB.
///
/// # Safety
/// `dptr` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAlloc(dptr: *mut c_uint, bytes: c_uint) -> CUresult {
    entry(|| {
        let base = alloc_device(u64::from(bytes), true, false)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(dptr, base as c_uint) }.inspect_err(|_| {
            let _ = free(base);
        })
    })
}

/// # Safety
/// `dptr` and `pitch` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocPitch_v2(
    dptr: *mut CUdeviceptr,
    pitch: *mut usize,
    width: usize,
    height: usize,
    element_size: c_uint,
) -> CUresult {
    entry(|| {
        if ![4, 8, 16].contains(&element_size) || width == 0 || height == 0 || pitch.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let row = os::round_up(width as u64, 512).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let bytes = row
            .checked_mul(height as u64)
            .ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        let base = alloc_device(bytes, false, false)?;
        // SAFETY: `pitch` is non-NULL and writable per the caller contract.
        unsafe { write_out(pitch, row as usize)? };
        // SAFETY: forwarded caller contract.
        unsafe { write_out(dptr, base) }.inspect_err(|_| {
            let _ = free(base);
        })
    })
}

/// # Safety
/// `dptr` and `pitch` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocPitch(
    dptr: *mut c_uint,
    pitch: *mut c_uint,
    width: c_uint,
    height: c_uint,
    element_size: c_uint,
) -> CUresult {
    entry(|| {
        if ![4, 8, 16].contains(&element_size) || width == 0 || height == 0 || pitch.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let row = os::round_up(u64::from(width), 512).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let base = alloc_device(row * u64::from(height), true, false)?;
        // SAFETY: `pitch` is non-NULL and writable per the caller contract.
        unsafe { write_out(pitch, row as c_uint)? };
        // SAFETY: forwarded caller contract.
        unsafe { write_out(dptr, base as c_uint) }.inspect_err(|_| {
            let _ = free(base);
        })
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    entry(|| free(dptr))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFree(dptr: c_uint) -> CUresult {
    entry(|| free(u64::from(dptr)))
}

fn mem_info() -> CuResult<(u64, u64)> {
    let (driver, device) = current()?;
    let total = driver.accounting.capacity();
    Ok((total.saturating_sub(driver.accounting.used(device)), total))
}

/// # Safety
/// `free` and `total` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    entry(|| {
        let (free_bytes, total_bytes) = mem_info()?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(free, free_bytes as usize)? };
        // SAFETY: forwarded caller contract.
        unsafe { write_out(total, total_bytes as usize) }
    })
}

/// The 32-bit variant: values are clamped to `u32::MAX`.
///
/// # Safety
/// `free` and `total` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetInfo(free: *mut c_uint, total: *mut c_uint) -> CUresult {
    entry(|| {
        let (free_bytes, total_bytes) = mem_info()?;
        let clamp = |v: u64| v.min(u64::from(c_uint::MAX)) as c_uint;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(free, clamp(free_bytes))? };
        // SAFETY: forwarded caller contract.
        unsafe { write_out(total, clamp(total_bytes)) }
    })
}

/// Managed memory takes no device memory until prefetched to a device.
///
/// # Safety
/// `dptr` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocManaged(
    dptr: *mut CUdeviceptr,
    bytes: usize,
    flags: c_uint,
) -> CUresult {
    entry(|| {
        let (driver, device) = current()?;
        if bytes == 0
            || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST)
            || dptr.is_null()
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mapped = os::round_up(bytes as u64, os::page_size()).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        let base = os::alloc(mapped)?;
        let kind = Kind::Managed {
            resident: None,
            charged: 0,
        };
        driver.memory.lock().insert(
            base,
            Region {
                size: bytes as u64,
                mapped_bytes: mapped,
                kind,
            },
        );
        trace_region(driver, "alloc", "managed", base, bytes as u64, device);
        // SAFETY: forwarded caller contract.
        unsafe { write_out(dptr, base) }
    })
}

/// # Safety
/// `dptr` is NULL or writable.
unsafe fn alloc_async(
    dptr: *mut CUdeviceptr,
    bytes: usize,
    stream: CUstream,
    default: DefaultStream,
) -> CuResult {
    let (driver, device) = current()?;
    driver.streams.resolve(stream, device, default)?;
    let base = alloc_device(bytes as u64, false, true)?;
    // SAFETY: forwarded caller contract.
    unsafe { write_out(dptr, base) }.inspect_err(|_| {
        let _ = release_allocation(driver, base);
    })
}

/// # Safety
/// `dptr` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    bytes: usize,
    stream: CUstream,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { alloc_async(dptr, bytes, stream, DefaultStream::Legacy) })
}

/// # Safety
/// `dptr` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync_ptsz(
    dptr: *mut CUdeviceptr,
    bytes: usize,
    stream: CUstream,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { alloc_async(dptr, bytes, stream, DefaultStream::PerThread) })
}

/// Frees when the stream reaches this point.
fn free_async(dptr: CUdeviceptr, stream: CUstream, default: DefaultStream) -> CuResult {
    let (driver, device) = current()?;
    let stream = driver.streams.resolve(stream, device, default)?;
    match driver.memory.lock().target(dptr) {
        Target::Device { base, .. } if base == dptr => {}
        _ => return Err(CUDA_ERROR_INVALID_VALUE),
    }
    driver.streams.submit(
        &stream,
        Box::new(move || {
            let _ = release_allocation(driver, dptr);
        }),
    )?;
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFreeAsync(dptr: CUdeviceptr, stream: CUstream) -> CUresult {
    entry(|| free_async(dptr, stream, DefaultStream::Legacy))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFreeAsync_ptsz(dptr: CUdeviceptr, stream: CUstream) -> CUresult {
    entry(|| free_async(dptr, stream, DefaultStream::PerThread))
}
