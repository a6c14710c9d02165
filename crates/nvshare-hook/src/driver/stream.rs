//! Streams and events of the hook's own.
//!
//! Handles are opaque tokens the driver validates, so calls taking them
//! are safe (`clippy::not_unsafe_ptr_arg_deref` is allowed here).

#![allow(clippy::not_unsafe_ptr_arg_deref)]

use super::call::call;
use super::{CudaError, table};
use crate::ffi::*;
use std::ffi::c_uint;

/// A new stream in the current context.
pub fn create(flags: c_uint) -> Result<CUstream, CudaError> {
    let mut stream: CUstream = std::ptr::null_mut();
    call!(helpers.cuStreamCreate(&mut stream, flags))?;
    Ok(stream)
}

/// Waits for the work on `stream`.
pub fn synchronize(stream: CUstream) -> Result<(), CudaError> {
    call!(helpers.cuStreamSynchronize(stream))
}

/// Destroys `stream`.
pub fn destroy(stream: CUstream) -> Result<(), CudaError> {
    call!(helpers.cuStreamDestroy(stream))
}

/// An event of the hook's own (no timing), destroyed when dropped: marks a
/// point in one of the hook's streams to wait for.
#[derive(Debug)]
pub struct Event(CUevent);

impl Event {
    /// A new event in the current context.
    pub fn new() -> Result<Self, CudaError> {
        let mut event: CUevent = std::ptr::null_mut();
        call!(helpers.cuEventCreate(&mut event, CU_EVENT_DISABLE_TIMING))?;
        Ok(Event(event))
    }

    /// Marks the end of the work enqueued on `stream` so far.
    pub fn record(&self, stream: CUstream) -> Result<(), CudaError> {
        call!(helpers.cuEventRecord(self.0, stream))
    }

    /// Waits until the stream has reached the last record.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        call!(helpers.cuEventSynchronize(self.0))
    }
}

impl Event {
    fn destroy(&self) -> Result<(), CudaError> {
        call!(helpers.cuEventDestroy(self.0))
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Err(err) = self.destroy() {
            tracing::debug!(%err, "destroying a copy event failed");
        }
    }
}
