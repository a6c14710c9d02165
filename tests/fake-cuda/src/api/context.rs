//! Context creation, destruction, the current-context stack, and
//! `cuCtxSynchronize`.

use std::ffi::{c_int, c_uint, c_void};

use crate::driver::driver;
use crate::ffi::*;
use crate::guard::{CuResult, entry, write_out};

/// # Safety
/// `ctx` is NULL or writable.
unsafe fn create(ctx: *mut CUcontext, dev: CUdevice) -> CuResult {
    let driver = driver()?;
    let index = driver.device(dev)?;
    let handle = driver.contexts.create(index, driver.new_handle());
    driver.contexts.push(handle)?;
    // SAFETY: forwarded caller contract.
    unsafe { write_out(ctx, handle) }
}

/// # Safety
/// `ctx` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxCreate_v2(
    ctx: *mut CUcontext,
    _flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { create(ctx, dev) })
}

/// CUDA 11.4's variant with execution-affinity parameters (ignored here).
///
/// # Safety
/// `ctx` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxCreate_v3(
    ctx: *mut CUcontext,
    _params: *mut c_void,
    _num_params: c_int,
    _flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { create(ctx, dev) })
}

/// CUDA 12.5's variant with `CUctxCreateParams` (ignored here); what
/// `cuCtxCreate` means in CUDA 13.
///
/// # Safety
/// `ctx` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxCreate_v4(
    ctx: *mut CUcontext,
    _params: *mut c_void,
    _flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { create(ctx, dev) })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxDestroy_v2(ctx: CUcontext) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let device = driver.contexts.device_of(ctx)?;
        driver.streams.synchronize_device(device);
        driver.contexts.destroy(ctx)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxDestroy(ctx: CUcontext) -> CUresult {
    cuCtxDestroy_v2(ctx)
}

/// # Safety
/// `ctx` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetCurrent(ctx: *mut CUcontext) -> CUresult {
    entry(|| {
        let current = driver()?.contexts.current();
        // SAFETY: forwarded caller contract.
        unsafe { write_out(ctx, current) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    entry(|| driver()?.contexts.set_current(ctx))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxPushCurrent_v2(ctx: CUcontext) -> CUresult {
    entry(|| driver()?.contexts.push(ctx))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxPushCurrent(ctx: CUcontext) -> CUresult {
    cuCtxPushCurrent_v2(ctx)
}

/// # Safety
/// `ctx` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(ctx: *mut CUcontext) -> CUresult {
    entry(|| {
        let popped = driver()?.contexts.pop()?;
        if !ctx.is_null() {
            // SAFETY: non-NULL out-pointer, writable per the caller contract.
            unsafe { write_out(ctx, popped)? };
        }
        Ok(())
    })
}

/// # Safety
/// `ctx` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxPopCurrent(ctx: *mut CUcontext) -> CUresult {
    // SAFETY: forwarded caller contract.
    unsafe { cuCtxPopCurrent_v2(ctx) }
}

/// # Safety
/// `dev` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetDevice(dev: *mut CUdevice) -> CUresult {
    entry(|| {
        let device = driver()?.contexts.current_device()?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(dev, device as CUdevice) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    entry(|| {
        let driver = driver()?;
        let device = driver.contexts.current_device()?;
        driver.streams.synchronize_device(device);
        Ok(())
    })
}

/// The original name, with the same signature as `_v2`.
///
/// # Safety
/// `ctx` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxCreate(
    ctx: *mut CUcontext,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    unsafe { cuCtxCreate_v2(ctx, flags, dev) }
}
