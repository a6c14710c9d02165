//! Pointer queries: `cuPointerGetAttribute(s)`, `cuMemGetAddressRange`,
//! `cuIpcGetMemHandle`. On reserved but unmapped VA they fail the way the
//! real driver was measured to (INVALID_VALUE / NOT_FOUND, see DESIGN.md).

use std::ffi::{c_uint, c_void};

use crate::driver::{Driver, driver};
use crate::ffi::*;
use crate::guard::{CuResult, entry, write_out};
use crate::registry::Target;

/// `CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE`.
const ACCESS_READWRITE: u32 = 3;

/// One attribute's value, in the C type CUDA writes for it.
enum Value {
    U32(u32),
    U64(u64),
    Ptr(usize),
}

fn attribute(
    driver: &'static Driver,
    target: Target,
    ptr: u64,
    attribute: c_uint,
) -> CuResult<Value> {
    use Value::{Ptr, U32, U64};
    let (base, size, device, kind) = match target {
        Target::Device {
            base, size, device, ..
        } => (base, size, device, CU_MEMORYTYPE_DEVICE),
        Target::Managed { base, size } => (base, size, 0, CU_MEMORYTYPE_DEVICE),
        Target::Host { base, size } => (base, size, 0, CU_MEMORYTYPE_HOST),
        Target::Mapped {
            base, size, device, ..
        } => (base, size, device, CU_MEMORYTYPE_DEVICE),
        Target::ReservedUnmapped | Target::Unknown => return Err(CUDA_ERROR_INVALID_VALUE),
    };
    let host_visible = matches!(target, Target::Managed { .. } | Target::Host { .. });
    Ok(match attribute {
        CU_POINTER_ATTRIBUTE_CONTEXT => {
            Ptr(driver.contexts.primary(device, || driver.new_handle()) as usize)
        }
        CU_POINTER_ATTRIBUTE_MEMORY_TYPE => U32(kind),
        CU_POINTER_ATTRIBUTE_DEVICE_POINTER => U64(ptr),
        CU_POINTER_ATTRIBUTE_HOST_POINTER if host_visible => Ptr(ptr as usize),
        CU_POINTER_ATTRIBUTE_HOST_POINTER => return Err(CUDA_ERROR_INVALID_VALUE),
        CU_POINTER_ATTRIBUTE_SYNC_MEMOPS => U32(0),
        CU_POINTER_ATTRIBUTE_BUFFER_ID => U64(base),
        CU_POINTER_ATTRIBUTE_IS_MANAGED => U32(matches!(target, Target::Managed { .. }) as u32),
        CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL => U32(device as u32),
        CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE => U32(matches!(
            target,
            Target::Device {
                stream_ordered: false,
                ..
            }
        ) as u32),
        CU_POINTER_ATTRIBUTE_RANGE_START_ADDR | CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR => U64(base),
        CU_POINTER_ATTRIBUTE_RANGE_SIZE | CU_POINTER_ATTRIBUTE_MAPPING_SIZE => U64(size),
        CU_POINTER_ATTRIBUTE_MAPPED => U32(1),
        CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES => match target {
            Target::Mapped { handle, .. } => {
                let types = driver
                    .memory
                    .lock()
                    .handle_mut(handle)
                    .map_or(0, |h| h.handle_types);
                U64(types as u64)
            }
            _ => U64(0),
        },
        CU_POINTER_ATTRIBUTE_ACCESS_FLAGS => match target {
            Target::Mapped {
                accessible: false, ..
            } => U32(0),
            _ => U32(ACCESS_READWRITE),
        },
        _ => return Err(CUDA_ERROR_INVALID_VALUE),
    })
}

/// The zero value of an attribute's type (what `cuPointerGetAttributes`
/// reports for pointers the driver does not know).
fn zero(attribute: c_uint) -> Value {
    match attribute {
        CU_POINTER_ATTRIBUTE_CONTEXT | CU_POINTER_ATTRIBUTE_HOST_POINTER => Value::Ptr(0),
        CU_POINTER_ATTRIBUTE_DEVICE_POINTER
        | CU_POINTER_ATTRIBUTE_BUFFER_ID
        | CU_POINTER_ATTRIBUTE_RANGE_START_ADDR
        | CU_POINTER_ATTRIBUTE_RANGE_SIZE
        | CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES
        | CU_POINTER_ATTRIBUTE_MAPPING_SIZE
        | CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR => Value::U64(0),
        _ => Value::U32(0),
    }
}

/// # Safety
/// `data` is NULL or writable for the attribute's C type.
unsafe fn store(data: *mut c_void, value: Value) -> CuResult {
    // SAFETY: forwarded caller contract, per the attribute's type.
    unsafe {
        match value {
            Value::U32(v) => write_out(data.cast::<u32>(), v),
            Value::U64(v) => write_out(data.cast::<u64>(), v),
            Value::Ptr(v) => write_out(data.cast::<usize>(), v),
        }
    }
}

/// # Safety
/// `data` is NULL or writable for the attribute's C type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuPointerGetAttribute(
    data: *mut c_void,
    attr: c_uint,
    ptr: CUdeviceptr,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let target = driver.memory.lock().target(ptr);
        let value = attribute(driver, target, ptr, attr)?;
        // SAFETY: forwarded caller contract.
        unsafe { store(data, value) }
    })
}

/// Unlike the singular call, unknown pointers are no error: their
/// attributes read as zero (as CUDA documents).
///
/// # Safety
/// `attrs` and `data` are NULL or arrays of `count`, each `data[i]` writable
/// for `attrs[i]`'s C type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuPointerGetAttributes(
    count: c_uint,
    attrs: *const c_uint,
    data: *mut *mut c_void,
    ptr: CUdeviceptr,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        if count == 0 || attrs.is_null() || data.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let target = driver.memory.lock().target(ptr);
        for i in 0..count as usize {
            // SAFETY: both arrays hold `count` entries per the caller contract.
            let (attr, out) = unsafe { (*attrs.add(i), *data.add(i)) };
            let value = match target {
                Target::Unknown | Target::ReservedUnmapped => zero(attr),
                _ => attribute(driver, target, ptr, attr).unwrap_or_else(|_| zero(attr)),
            };
            // SAFETY: forwarded caller contract.
            unsafe { store(out, value)? };
        }
        Ok(())
    })
}

fn address_range(ptr: u64) -> CuResult<(u64, u64)> {
    match driver()?.memory.lock().target(ptr) {
        Target::Device { base, size, .. }
        | Target::Managed { base, size }
        | Target::Host { base, size }
        | Target::Mapped { base, size, .. } => Ok((base, size)),
        Target::ReservedUnmapped | Target::Unknown => Err(CUDA_ERROR_NOT_FOUND),
    }
}

/// # Safety
/// `base` and `size` are each NULL (not wanted) or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetAddressRange_v2(
    base: *mut CUdeviceptr,
    size: *mut usize,
    ptr: CUdeviceptr,
) -> CUresult {
    entry(|| {
        let (start, bytes) = address_range(ptr)?;
        if !base.is_null() {
            // SAFETY: non-NULL, writable per the caller contract.
            unsafe { write_out(base, start)? };
        }
        if !size.is_null() {
            // SAFETY: non-NULL, writable per the caller contract.
            unsafe { write_out(size, bytes as usize)? };
        }
        Ok(())
    })
}

/// The 32-bit variant.
///
/// # Safety
/// As [`cuMemGetAddressRange_v2`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetAddressRange(
    base: *mut c_uint,
    size: *mut c_uint,
    ptr: c_uint,
) -> CUresult {
    entry(|| {
        let (start, bytes) = address_range(u64::from(ptr))?;
        if !base.is_null() {
            // SAFETY: non-NULL, writable per the caller contract.
            unsafe { write_out(base, start as c_uint)? };
        }
        if !size.is_null() {
            // SAFETY: non-NULL, writable per the caller contract.
            unsafe { write_out(size, bytes as c_uint)? };
        }
        Ok(())
    })
}

/// Works for `cuMemAlloc` memory, like the real driver; VMM and
/// stream-ordered memory are refused with INVALID_VALUE (as measured). The
/// handle records the pid, base and size (opening it is not implemented).
///
/// # Safety
/// `handle` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuIpcGetMemHandle(
    handle: *mut CUipcMemHandle,
    ptr: CUdeviceptr,
) -> CUresult {
    entry(|| {
        let Target::Device {
            base,
            size,
            stream_ordered: false,
            ..
        } = driver()?.memory.lock().target(ptr)
        else {
            return Err(CUDA_ERROR_INVALID_VALUE);
        };
        let mut reserved = [0u8; 64];
        reserved[..8].copy_from_slice(b"FAKEIPC\0");
        reserved[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        reserved[16..24].copy_from_slice(&base.to_le_bytes());
        reserved[24..32].copy_from_slice(&size.to_le_bytes());
        // SAFETY: forwarded caller contract.
        unsafe { write_out(handle, CUipcMemHandle { reserved }) }
    })
}
