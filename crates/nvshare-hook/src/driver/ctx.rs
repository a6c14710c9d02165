//! Contexts: the calling thread's current one, pushing and popping, and
//! the devices' primary contexts.
//!
//! Handles are opaque tokens the driver validates, so calls taking them
//! are safe (`clippy::not_unsafe_ptr_arg_deref` is allowed here).

#![allow(clippy::not_unsafe_ptr_arg_deref)]

use super::call::call;
use super::{CudaError, table};
use crate::ffi::*;

/// The calling thread's current context, if any.
pub fn current() -> Result<Option<CUcontext>, CudaError> {
    let mut ctx: CUcontext = std::ptr::null_mut();
    call!(helpers.cuCtxGetCurrent(&mut ctx))?;
    Ok((!ctx.is_null()).then_some(ctx))
}

/// The device of the calling thread's current context.
pub fn device() -> Result<CUdevice, CudaError> {
    let mut device: CUdevice = 0;
    call!(helpers.cuCtxGetDevice(&mut device))?;
    Ok(device)
}

/// Waits for all work of the current context.
pub fn synchronize() -> Result<(), CudaError> {
    call!(helpers.cuCtxSynchronize())
}

/// Makes `ctx` the calling thread's current context.
pub fn set_current(ctx: CUcontext) -> Result<(), CudaError> {
    call!(helpers.cuCtxSetCurrent(ctx))
}

/// A context pushed on the calling thread for the guard's lifetime.
pub struct PushedContext(());

impl PushedContext {
    /// Pushes `ctx` onto the calling thread's context stack.
    pub fn push(ctx: CUcontext) -> Result<Self, CudaError> {
        call!(helpers.cuCtxPushCurrent(ctx))?;
        Ok(PushedContext(()))
    }
}

impl Drop for PushedContext {
    fn drop(&mut self) {
        let mut popped: CUcontext = std::ptr::null_mut();
        if let Err(err) = (|| call!(helpers.cuCtxPopCurrent(&mut popped)))() {
            tracing::warn!(%err, "could not restore the thread's CUDA context");
        }
    }
}

/// Retains `device`'s primary context (released by [`release_primary`]).
pub fn retain_primary(device: CUdevice) -> Result<CUcontext, CudaError> {
    let mut ctx: CUcontext = std::ptr::null_mut();
    call!(helpers.cuDevicePrimaryCtxRetain(&mut ctx, device))?;
    Ok(ctx)
}

/// Releases one retain of `device`'s primary context.
pub fn release_primary(device: CUdevice) -> Result<(), CudaError> {
    call!(helpers.cuDevicePrimaryCtxRelease(device))
}
