//! Device enumeration and properties, and the primary contexts.

use std::ffi::{c_char, c_int, c_uint};

use crate::driver::{self, driver};
use crate::ffi::*;
use crate::guard::{entry, write_out};

/// The UUID of device `index`: fixed bytes, distinct per device (the fake
/// NVML's too).
pub fn device_uuid(index: usize) -> CUuuid {
    CUuuid {
        bytes: fake_gpus::uuid_bytes(index),
    }
}

/// # Safety
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGet(out: *mut CUdevice, ordinal: c_int) -> CUresult {
    entry(|| {
        let index = driver()?.device(ordinal)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(out, index as CUdevice) }
    })
}

/// # Safety
/// `count` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    entry(|| {
        let devices = driver()?.config.devices as c_int;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(count, devices) }
    })
}

/// # Safety
/// `name` is NULL or writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    entry(|| {
        let index = driver()?.device(dev)?;
        if name.is_null() || len <= 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let text = format!("Fake GPU {index}");
        let n = text.len().min(len as usize - 1);
        // SAFETY: `name` holds `len` bytes and n + 1 <= len.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), name.cast::<u8>(), n);
            *name.add(n) = 0;
        }
        Ok(())
    })
}

/// # Safety
/// `uuid` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut CUuuid, dev: CUdevice) -> CUresult {
    entry(|| {
        let index = driver()?.device(dev)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(uuid, device_uuid(index)) }
    })
}

/// # Safety
/// `uuid` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut CUuuid, dev: CUdevice) -> CUresult {
    // SAFETY: forwarded caller contract.
    unsafe { cuDeviceGetUuid(uuid, dev) }
}

/// # Safety
/// `bytes` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    entry(|| {
        let driver = driver()?;
        driver.device(dev)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(bytes, driver.accounting.capacity() as usize) }
    })
}

/// The CUDA 3.1 signature took a 32-bit size; the fake answers like `_v2`,
/// clamped, so old callers see a sane value.
///
/// # Safety
/// `bytes` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceTotalMem(bytes: *mut c_uint, dev: CUdevice) -> CUresult {
    entry(|| {
        let driver = driver()?;
        driver.device(dev)?;
        let total = driver.accounting.capacity().min(u64::from(c_uint::MAX)) as c_uint;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(bytes, total) }
    })
}

/// # Safety
/// `value` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    value: *mut c_int,
    attribute: c_int,
    dev: CUdevice,
) -> CUresult {
    entry(|| {
        let index = driver()?.device(dev)?;
        let answer = match attribute {
            CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK => 1024,
            CU_DEVICE_ATTRIBUTE_WARP_SIZE => 32,
            CU_DEVICE_ATTRIBUTE_CLOCK_RATE => 1_755_000,
            CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT => 132,
            CU_DEVICE_ATTRIBUTE_INTEGRATED => 0,
            CU_DEVICE_ATTRIBUTE_PCI_BUS_ID => 0x10 + index as c_int,
            CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID => 0,
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR => 9,
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR => 0,
            CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING
            | CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY
            | CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS
            | CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED
            | CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED
            | CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED => 1,
            // CUDA 13 has fewer than 200 attributes; beyond that is a bug.
            a if !(1..200).contains(&a) => return Err(CUDA_ERROR_INVALID_VALUE),
            _ => 0,
        };
        // SAFETY: forwarded caller contract.
        unsafe { write_out(value, answer) }
    })
}

/// # Safety
/// `ctx` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(ctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let index = driver.device(dev)?;
        let handle = driver.contexts.primary(index, || driver.new_handle());
        // SAFETY: forwarded caller contract.
        unsafe { write_out(ctx, handle) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    entry(|| driver()?.device(dev).map(drop))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxRelease(dev: CUdevice) -> CUresult {
    cuDevicePrimaryCtxRelease_v2(dev)
}

/// Resetting waits for the device's work; allocations are kept (the fake
/// does not tear down the primary context's memory).
#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let index = driver.device(dev)?;
        driver.streams.synchronize_device(index);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxReset(dev: CUdevice) -> CUresult {
    cuDevicePrimaryCtxReset_v2(dev)
}

/// # Safety
/// `flags` and `active` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxGetState(
    dev: CUdevice,
    flags: *mut c_uint,
    active: *mut c_int,
) -> CUresult {
    entry(|| {
        driver::driver()?.device(dev)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(flags, 0)? };
        // SAFETY: forwarded caller contract.
        unsafe { write_out(active, 1) }
    })
}
