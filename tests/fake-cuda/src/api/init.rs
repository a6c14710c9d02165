//! Initialization, version, error strings and the export-table query.

use std::ffi::{c_char, c_int, c_uint, c_void};

use crate::driver;
use crate::ffi::*;
use crate::guard::{entry, write_out};

/// The CUDA version this fake claims to be (13.0).
pub const DRIVER_VERSION: c_int = 13000;

#[unsafe(no_mangle)]
pub extern "C" fn cuInit(flags: c_uint) -> CUresult {
    entry(|| {
        if flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        driver::init().map(drop)
    })
}

/// # Safety
/// `version` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDriverGetVersion(version: *mut c_int) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { write_out(version, DRIVER_VERSION) })
}

/// (name, description) of every code the fake returns.
fn describe(code: CUresult) -> Option<(&'static std::ffi::CStr, &'static std::ffi::CStr)> {
    Some(match code {
        CUDA_SUCCESS => (c"CUDA_SUCCESS", c"no error"),
        CUDA_ERROR_INVALID_VALUE => (c"CUDA_ERROR_INVALID_VALUE", c"invalid argument"),
        CUDA_ERROR_OUT_OF_MEMORY => (c"CUDA_ERROR_OUT_OF_MEMORY", c"out of memory"),
        CUDA_ERROR_NOT_INITIALIZED => (c"CUDA_ERROR_NOT_INITIALIZED", c"initialization error"),
        CUDA_ERROR_DEINITIALIZED => (c"CUDA_ERROR_DEINITIALIZED", c"driver shutting down"),
        CUDA_ERROR_NO_DEVICE => (
            c"CUDA_ERROR_NO_DEVICE",
            c"no CUDA-capable device is detected",
        ),
        CUDA_ERROR_INVALID_DEVICE => (c"CUDA_ERROR_INVALID_DEVICE", c"invalid device ordinal"),
        CUDA_ERROR_INVALID_IMAGE => (
            c"CUDA_ERROR_INVALID_IMAGE",
            c"device kernel image is invalid",
        ),
        CUDA_ERROR_INVALID_CONTEXT => (c"CUDA_ERROR_INVALID_CONTEXT", c"invalid device context"),
        CUDA_ERROR_ALREADY_MAPPED => (c"CUDA_ERROR_ALREADY_MAPPED", c"resource already mapped"),
        CUDA_ERROR_NOT_MAPPED => (c"CUDA_ERROR_NOT_MAPPED", c"resource not mapped"),
        CUDA_ERROR_FILE_NOT_FOUND => (c"CUDA_ERROR_FILE_NOT_FOUND", c"file not found"),
        CUDA_ERROR_INVALID_HANDLE => (c"CUDA_ERROR_INVALID_HANDLE", c"invalid resource handle"),
        CUDA_ERROR_NOT_FOUND => (c"CUDA_ERROR_NOT_FOUND", c"named symbol not found"),
        CUDA_ERROR_NOT_READY => (c"CUDA_ERROR_NOT_READY", c"device not ready"),
        CUDA_ERROR_ILLEGAL_ADDRESS => (
            c"CUDA_ERROR_ILLEGAL_ADDRESS",
            c"an illegal memory access was encountered",
        ),
        CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED => (
            c"CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED",
            c"part or all of the requested memory range is already mapped",
        ),
        CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED => (
            c"CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
            c"pointer does not correspond to a registered memory region",
        ),
        CUDA_ERROR_NOT_SUPPORTED => (c"CUDA_ERROR_NOT_SUPPORTED", c"operation not supported"),
        CUDA_ERROR_ILLEGAL_STATE => (
            c"CUDA_ERROR_ILLEGAL_STATE",
            c"the operation is not permitted in this state",
        ),
        CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED => (
            c"CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
            c"operation not permitted when stream is capturing",
        ),
        CUDA_ERROR_UNKNOWN => (c"CUDA_ERROR_UNKNOWN", c"unknown error"),
        _ => return None,
    })
}

/// # Safety
/// `text` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorString(code: CUresult, text: *mut *const c_char) -> CUresult {
    entry(|| {
        let (_, description) = describe(code).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(text, description.as_ptr()) }
    })
}

/// # Safety
/// `text` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorName(code: CUresult, text: *mut *const c_char) -> CUresult {
    entry(|| {
        let (name, _) = describe(code).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(text, name.as_ptr()) }
    })
}

/// The fake has no private export tables (libcudart copes: it only needs
/// them for features the fake does not offer), so every id is unknown.
///
/// # Safety
/// `table` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetExportTable(
    table: *mut *const c_void,
    _id: *const CUuuid,
) -> CUresult {
    entry(|| {
        // SAFETY: forwarded caller contract.
        unsafe { write_out(table, std::ptr::null()) }?;
        Err(CUDA_ERROR_INVALID_VALUE)
    })
}
