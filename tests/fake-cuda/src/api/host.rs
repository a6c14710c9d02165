//! Pinned host memory: `cuMemHostAlloc`/`cuMemAllocHost` and
//! `cuMemHostRegister`. It is not device memory, but it is limited per
//! process by `FAKE_CUDA_PINNED_LIMIT` (unlimited by default), so callers'
//! fallbacks for pinning failures can be tested: beyond the limit both
//! allocation and registration fail with CUDA_ERROR_OUT_OF_MEMORY.

use std::ffi::{c_uint, c_void};

use super::trace_region;
use crate::driver::driver;
use crate::ffi::*;
use crate::guard::{CuResult, entry, write_out};
use crate::os;
use crate::registry::{Kind, Region};

/// Allocates pinned host memory within the pinned limit.
fn alloc_host(bytes: u64) -> CuResult<u64> {
    let driver = driver()?;
    if bytes == 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let mapped = os::round_up(bytes, os::page_size()).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
    driver.pinned.charge(0, mapped)?;
    let base = os::alloc(mapped).inspect_err(|_| driver.pinned.release(0, mapped))?;
    let region = Region {
        size: bytes,
        mapped_bytes: mapped,
        kind: Kind::Host { owned: true },
    };
    driver.memory.lock().insert(base, region);
    trace_region(driver, "alloc", "host", base, bytes, 0);
    Ok(base)
}

/// # Safety
/// `host` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemHostAlloc(
    host: *mut *mut c_void,
    bytes: usize,
    _flags: c_uint,
) -> CUresult {
    entry(|| {
        let base = alloc_host(bytes as u64)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(host, base as *mut c_void) }
    })
}

/// # Safety
/// `host` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocHost_v2(host: *mut *mut c_void, bytes: usize) -> CUresult {
    // SAFETY: forwarded caller contract.
    unsafe { cuMemHostAlloc(host, bytes, 0) }
}

/// # Safety
/// `host` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocHost(host: *mut *mut c_void, bytes: c_uint) -> CUresult {
    // SAFETY: forwarded caller contract.
    unsafe { cuMemHostAlloc(host, bytes as usize, 0) }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFreeHost(host: *mut c_void) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let ptr = host as u64;
        let mut memory = driver.memory.lock();
        match memory.containing(ptr) {
            Some((base, region))
                if base == ptr && matches!(region.kind, Kind::Host { owned: true }) => {}
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        let region = memory.remove(ptr).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        drop(memory);
        os::release(ptr, region.mapped_bytes);
        driver.pinned.release(0, region.mapped_bytes);
        trace_region(driver, "free", "host", ptr, region.size, 0);
        Ok(())
    })
}

/// # Safety
/// `host` points to `bytes` of the caller's memory, as CUDA requires.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemHostRegister_v2(
    host: *mut c_void,
    bytes: usize,
    _flags: c_uint,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let ptr = host as u64;
        if host.is_null() || bytes == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut memory = driver.memory.lock();
        if memory.overlaps(ptr, bytes as u64) {
            return Err(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
        }
        driver.pinned.charge(0, bytes as u64)?;
        let region = Region {
            size: bytes as u64,
            mapped_bytes: bytes as u64,
            kind: Kind::Host { owned: false },
        };
        memory.insert(ptr, region);
        drop(memory);
        trace_region(driver, "register", "host", ptr, bytes as u64, 0);
        Ok(())
    })
}

/// # Safety
/// As for [`cuMemHostRegister_v2`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemHostRegister(
    host: *mut c_void,
    bytes: usize,
    flags: c_uint,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    unsafe { cuMemHostRegister_v2(host, bytes, flags) }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemHostUnregister(host: *mut c_void) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let ptr = host as u64;
        let mut memory = driver.memory.lock();
        match memory.containing(ptr) {
            Some((base, region))
                if base == ptr && matches!(region.kind, Kind::Host { owned: false }) => {}
            _ => return Err(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED),
        }
        let region = memory
            .remove(ptr)
            .ok_or(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED)?;
        drop(memory);
        driver.pinned.release(0, region.size);
        trace_region(driver, "unregister", "host", ptr, region.size, 0);
        Ok(())
    })
}
