//! Safe calls into the real driver, each a `Result` with a [`CudaError`].
//! The hook's own driver calls go through here and so bypass the gate.
//!
//! Context and stream handles are opaque tokens handed to the driver, never
//! dereferenced here, and the driver rejects unknown ones with an error
//! code: that is why functions taking them are safe
//! (`clippy::not_unsafe_ptr_arg_deref` is allowed for this module).

#![allow(clippy::not_unsafe_ptr_arg_deref)]

use super::{CudaError, Driver, table};
use crate::ffi::*;
use std::ffi::{c_int, c_uint};

/// Takes a resolved function out of the table or reports it missing.
fn need<F>(function: Option<F>, name: &'static str) -> Result<F, CudaError> {
    function.ok_or(CudaError::Missing { function: name })
}

fn check(function: &'static str, code: CUresult) -> Result<(), CudaError> {
    if code.is_success() {
        Ok(())
    } else {
        Err(CudaError::Failed { function, code })
    }
}

/// Calls a helper of the table: `helper!(cuCtxGetDevice(&mut dev))`.
macro_rules! helper {
    ($name:ident($($arg:expr),*)) => {{
        let driver: &Driver = table()?;
        let function = need(driver.helpers.$name, stringify!($name))?;
        // SAFETY: the driver's function with arguments that satisfy its
        // contract: out-pointers to live locals and plain values.
        check(stringify!($name), unsafe { function($($arg),*) })
    }};
}

/// Calls a real intercepted function: `real!(cuMemAlloc_v2(&mut ptr, n))`.
macro_rules! real {
    ($name:ident($($arg:expr),*)) => {{
        let driver: &Driver = table()?;
        let function = need(driver.intercepted.$name, stringify!($name))?;
        // SAFETY: as in `helper!`.
        check(stringify!($name), unsafe { function($($arg),*) })
    }};
}

/// The calling thread's current context, if any.
pub fn ctx_get_current() -> Result<Option<CUcontext>, CudaError> {
    let mut ctx: CUcontext = std::ptr::null_mut();
    helper!(cuCtxGetCurrent(&mut ctx))?;
    Ok((!ctx.is_null()).then_some(ctx))
}

/// The device of the calling thread's current context.
pub fn ctx_get_device() -> Result<CUdevice, CudaError> {
    let mut device: CUdevice = 0;
    helper!(cuCtxGetDevice(&mut device))?;
    Ok(device)
}

/// Waits for all work of the current context.
pub fn ctx_synchronize() -> Result<(), CudaError> {
    helper!(cuCtxSynchronize())
}

/// Makes `ctx` the calling thread's current context.
pub fn ctx_set_current(ctx: CUcontext) -> Result<(), CudaError> {
    helper!(cuCtxSetCurrent(ctx))
}

/// A context pushed on the calling thread for the guard's lifetime.
pub struct PushedContext(());

impl PushedContext {
    /// Pushes `ctx` onto the calling thread's context stack.
    pub fn push(ctx: CUcontext) -> Result<Self, CudaError> {
        helper!(cuCtxPushCurrent(ctx))?;
        Ok(PushedContext(()))
    }
}

impl Drop for PushedContext {
    fn drop(&mut self) {
        let mut popped: CUcontext = std::ptr::null_mut();
        if let Err(err) = (|| helper!(cuCtxPopCurrent(&mut popped)))() {
            tracing::warn!(%err, "could not restore the thread's CUDA context");
        }
    }
}

/// Retains `device`'s primary context (released by [`primary_ctx_release`]).
pub fn primary_ctx_retain(device: CUdevice) -> Result<CUcontext, CudaError> {
    let mut ctx: CUcontext = std::ptr::null_mut();
    helper!(cuDevicePrimaryCtxRetain(&mut ctx, device))?;
    Ok(ctx)
}

/// Releases one retain of `device`'s primary context.
pub fn primary_ctx_release(device: CUdevice) -> Result<(), CudaError> {
    helper!(cuDevicePrimaryCtxRelease(device))
}

/// The number of visible devices.
pub fn device_get_count() -> Result<c_int, CudaError> {
    let mut count: c_int = 0;
    helper!(cuDeviceGetCount(&mut count))?;
    Ok(count)
}

/// The device handle of ordinal `ordinal`.
pub fn device_get(ordinal: c_int) -> Result<CUdevice, CudaError> {
    let mut device: CUdevice = 0;
    helper!(cuDeviceGet(&mut device, ordinal))?;
    Ok(device)
}

/// `device`'s UUID.
pub fn device_uuid(device: CUdevice) -> Result<[u8; 16], CudaError> {
    let mut uuid = CUuuid::default();
    helper!(cuDeviceGetUuid(&mut uuid, device))?;
    Ok(uuid.bytes)
}

/// The driver's CUDA version (e.g. 13000).
pub fn driver_version() -> Result<c_int, CudaError> {
    let mut version: c_int = 0;
    helper!(cuDriverGetVersion(&mut version))?;
    Ok(version)
}

/// `device`'s physical memory, as the real driver reports it.
pub fn device_total_mem(device: CUdevice) -> Result<u64, CudaError> {
    let mut bytes: usize = 0;
    real!(cuDeviceTotalMem_v2(&mut bytes, device))?;
    Ok(bytes as u64)
}

/// The real `(free, total)` memory of the current context's device.
pub fn mem_get_info() -> Result<(u64, u64), CudaError> {
    let (mut free, mut total): (usize, usize) = (0, 0);
    real!(cuMemGetInfo_v2(&mut free, &mut total))?;
    Ok((free as u64, total as u64))
}

/// A device allocation from the real `cuMemAlloc_v2`.
pub fn mem_alloc(bytes: u64) -> Result<CUdeviceptr, CudaError> {
    let mut ptr: CUdeviceptr = 0;
    real!(cuMemAlloc_v2(&mut ptr, bytes as usize))?;
    Ok(ptr)
}

/// Frees device or managed memory with the real `cuMemFree_v2`.
pub fn mem_free(ptr: CUdeviceptr) -> Result<(), CudaError> {
    real!(cuMemFree_v2(ptr))
}

/// A managed allocation from the real `cuMemAllocManaged`.
pub fn mem_alloc_managed(bytes: u64, flags: c_uint) -> Result<CUdeviceptr, CudaError> {
    let mut ptr: CUdeviceptr = 0;
    real!(cuMemAllocManaged(&mut ptr, bytes as usize, flags))?;
    Ok(ptr)
}

/// Where [`mem_prefetch`] moves managed memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefetchTarget {
    /// Into a device's memory.
    Device(CUdevice),
    /// Out to host memory.
    Host,
}

/// Enqueues a prefetch of managed memory on `stream`, with whichever of the
/// two driver signatures exists (`cuMemPrefetchAsync_v2` since CUDA 12.2,
/// the only one in CUDA 13 headers; `cuMemPrefetchAsync` before).
pub fn mem_prefetch(
    ptr: CUdeviceptr,
    bytes: u64,
    target: PrefetchTarget,
    stream: CUstream,
) -> Result<(), CudaError> {
    let driver = table()?;
    if driver.intercepted.cuMemPrefetchAsync_v2.is_some() {
        let location = match target {
            PrefetchTarget::Device(device) => CUmemLocation {
                type_: CU_MEM_LOCATION_TYPE_DEVICE,
                id: device,
            },
            PrefetchTarget::Host => CUmemLocation {
                type_: CU_MEM_LOCATION_TYPE_HOST,
                id: 0,
            },
        };
        return real!(cuMemPrefetchAsync_v2(
            ptr,
            bytes as usize,
            location,
            0,
            stream
        ));
    }
    let device = match target {
        PrefetchTarget::Device(device) => device,
        PrefetchTarget::Host => CU_DEVICE_CPU,
    };
    real!(cuMemPrefetchAsync(ptr, bytes as usize, device, stream))
}

/// A new stream in the current context.
pub fn stream_create(flags: c_uint) -> Result<CUstream, CudaError> {
    let mut stream: CUstream = std::ptr::null_mut();
    helper!(cuStreamCreate(&mut stream, flags))?;
    Ok(stream)
}

/// Waits for the work on `stream`.
pub fn stream_synchronize(stream: CUstream) -> Result<(), CudaError> {
    helper!(cuStreamSynchronize(stream))
}

/// Destroys `stream`.
pub fn stream_destroy(stream: CUstream) -> Result<(), CudaError> {
    helper!(cuStreamDestroy(stream))
}

/// An event of the hook's own (no timing), destroyed when dropped: marks a
/// point in one of the hook's streams to wait for.
#[derive(Debug)]
pub struct Event(CUevent);

impl Event {
    /// A new event in the current context.
    pub fn new() -> Result<Self, CudaError> {
        let mut event: CUevent = std::ptr::null_mut();
        helper!(cuEventCreate(&mut event, CU_EVENT_DISABLE_TIMING))?;
        Ok(Event(event))
    }

    /// Marks the end of the work enqueued on `stream` so far.
    pub fn record(&self, stream: CUstream) -> Result<(), CudaError> {
        helper!(cuEventRecord(self.0, stream))
    }

    /// Waits until the stream has reached the last record.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        helper!(cuEventSynchronize(self.0))
    }
}

impl Event {
    fn destroy(&self) -> Result<(), CudaError> {
        helper!(cuEventDestroy(self.0))
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Err(err) = self.destroy() {
            tracing::debug!(%err, "destroying a copy event failed");
        }
    }
}

/// The base and size of the allocation containing `ptr`.
pub fn mem_get_address_range(ptr: CUdeviceptr) -> Result<(CUdeviceptr, u64), CudaError> {
    let (mut base, mut size): (CUdeviceptr, usize) = (0, 0);
    helper!(cuMemGetAddressRange(&mut base, &mut size, ptr))?;
    Ok((base, size as u64))
}
