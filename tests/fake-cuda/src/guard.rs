//! The boundary every entry point goes through: panics become
//! CUDA_ERROR_UNKNOWN instead of unwinding into C, and out-parameters are
//! checked for NULL the way the driver does (CUDA_ERROR_INVALID_VALUE).

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::ffi::{CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_UNKNOWN, CUDA_SUCCESS, CUresult};

/// What the internal functions return: CUDA's own status codes are the error
/// type, because that is exactly what a caller of the fake gets to see.
pub type CuResult<T = ()> = Result<T, CUresult>;

/// Runs the body of an entry point and turns its outcome into a `CUresult`.
pub fn entry(body: impl FnOnce() -> CuResult) -> CUresult {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CUDA_SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => CUDA_ERROR_UNKNOWN,
    }
}

/// Stores `value` through a caller's out-pointer.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`, as the CUDA API requires.
pub unsafe fn write_out<T>(out: *mut T, value: T) -> CuResult {
    if out.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: non-NULL, and valid for writes per this function's contract.
    unsafe { out.write_unaligned(value) };
    Ok(())
}

/// Reads a caller's in-pointer.
///
/// # Safety
/// `input` is NULL or valid for a read of `T`.
pub unsafe fn read_in<T: Copy>(input: *const T) -> CuResult<T> {
    if input.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: non-NULL, and valid for reads per this function's contract.
    Ok(unsafe { input.read_unaligned() })
}

/// Reads a NUL-terminated C string argument.
///
/// # Safety
/// `text` is NULL or points to a NUL-terminated string.
pub unsafe fn read_str<'a>(text: *const std::ffi::c_char) -> CuResult<&'a str> {
    if text.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let text = unsafe { std::ffi::CStr::from_ptr(text) };
    text.to_str().map_err(|_| CUDA_ERROR_INVALID_VALUE)
}
