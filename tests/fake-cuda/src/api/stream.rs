//! Streams, events and `cuLaunchHostFunc`. `_ptsz` variants treat a NULL
//! stream as the calling thread's default stream.

use std::ffi::{c_int, c_uint, c_void};

use super::current;
use crate::driver::driver;
use crate::event::Event;
use crate::ffi::*;
use crate::guard::{CuResult, entry, write_out};
use crate::stream::DefaultStream::{self, Legacy, PerThread};

/// # Safety
/// `stream` is NULL or writable.
unsafe fn create(stream: *mut CUstream, flags: c_uint) -> CuResult {
    let (driver, device) = current()?;
    if flags & !CU_STREAM_NON_BLOCKING != 0 || stream.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let handle = driver.streams.create(
        device,
        flags & CU_STREAM_NON_BLOCKING != 0,
        driver.new_handle(),
    );
    // SAFETY: forwarded caller contract.
    unsafe { write_out(stream, handle) }
}

/// # Safety
/// `stream` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamCreate(stream: *mut CUstream, flags: c_uint) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { create(stream, flags) })
}

/// Priorities are accepted and ignored.
///
/// # Safety
/// `stream` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    stream: *mut CUstream,
    flags: c_uint,
    _priority: c_int,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { create(stream, flags) })
}

/// # Safety
/// `least` and `greatest` are each NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetStreamPriorityRange(
    least: *mut c_int,
    greatest: *mut c_int,
) -> CUresult {
    entry(|| {
        current()?;
        if !least.is_null() {
            // SAFETY: non-NULL, writable per the caller contract.
            unsafe { write_out(least, 0)? };
        }
        if !greatest.is_null() {
            // SAFETY: non-NULL, writable per the caller contract.
            unsafe { write_out(greatest, -5)? };
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamDestroy_v2(stream: CUstream) -> CUresult {
    entry(|| driver()?.streams.destroy(stream))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamDestroy(stream: CUstream) -> CUresult {
    cuStreamDestroy_v2(stream)
}

fn synchronize(stream: CUstream, default: DefaultStream) -> CuResult {
    let (driver, device) = current()?;
    driver
        .streams
        .resolve(stream, device, default)?
        .synchronize();
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamSynchronize(stream: CUstream) -> CUresult {
    entry(|| synchronize(stream, Legacy))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamSynchronize_ptsz(stream: CUstream) -> CUresult {
    entry(|| synchronize(stream, PerThread))
}

fn query(stream: CUstream, default: DefaultStream) -> CuResult {
    let (driver, device) = current()?;
    let stream = driver.streams.resolve(stream, device, default)?;
    if stream.is_capturing() {
        return Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    }
    if stream.is_idle() {
        Ok(())
    } else {
        Err(CUDA_ERROR_NOT_READY)
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamQuery(stream: CUstream) -> CUresult {
    entry(|| query(stream, Legacy))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamQuery_ptsz(stream: CUstream) -> CUresult {
    entry(|| query(stream, PerThread))
}

fn wait_event(stream: CUstream, event: CUevent, default: DefaultStream) -> CuResult {
    let (driver, device) = current()?;
    let stream = driver.streams.resolve(stream, device, default)?;
    let event = driver.events.get(event)?;
    driver.streams.submit(&stream, event.waiter())?;
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamWaitEvent(stream: CUstream, event: CUevent, _flags: c_uint) -> CUresult {
    entry(|| wait_event(stream, event, Legacy))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamWaitEvent_ptsz(
    stream: CUstream,
    event: CUevent,
    _flags: c_uint,
) -> CUresult {
    entry(|| wait_event(stream, event, PerThread))
}

/// # Safety
/// `event` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventCreate(event: *mut CUevent, flags: c_uint) -> CUresult {
    entry(|| {
        let (driver, _) = current()?;
        if event.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let handle = driver.events.create(flags, driver.new_handle());
        // SAFETY: forwarded caller contract.
        unsafe { write_out(event, handle) }
    })
}

fn record(event: CUevent, stream: CUstream, default: DefaultStream) -> CuResult {
    let (driver, device) = current()?;
    let event = driver.events.get(event)?;
    let stream = driver.streams.resolve(stream, device, default)?;
    driver.streams.submit(&stream, event.record())?;
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventRecord(event: CUevent, stream: CUstream) -> CUresult {
    entry(|| record(event, stream, Legacy))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventRecord_ptsz(event: CUevent, stream: CUstream) -> CUresult {
    entry(|| record(event, stream, PerThread))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventSynchronize(event: CUevent) -> CUresult {
    entry(|| {
        driver()?.events.get(event)?.synchronize();
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventQuery(event: CUevent) -> CUresult {
    entry(|| driver()?.events.get(event)?.query())
}

/// # Safety
/// `ms` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventElapsedTime(
    ms: *mut f32,
    start: CUevent,
    end: CUevent,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let (start, end) = (driver.events.get(start)?, driver.events.get(end)?);
        let elapsed = Event::elapsed_ms(&start, &end)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(ms, elapsed) }
    })
}

/// CUDA 12.8's name for the same call.
///
/// # Safety
/// `ms` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventElapsedTime_v2(
    ms: *mut f32,
    start: CUevent,
    end: CUevent,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    unsafe { cuEventElapsedTime(ms, start, end) }
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventDestroy_v2(event: CUevent) -> CUresult {
    entry(|| driver()?.events.destroy(event))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventDestroy(event: CUevent) -> CUresult {
    cuEventDestroy_v2(event)
}

/// A host function and its argument, sent to the stream's worker thread.
struct HostCall(unsafe extern "C" fn(*mut c_void), usize);

fn launch_host_func(
    stream: CUstream,
    func: CUhostFn,
    data: *mut c_void,
    default: DefaultStream,
) -> CuResult {
    let (driver, device) = current()?;
    let func = func.ok_or(CUDA_ERROR_INVALID_VALUE)?;
    let stream = driver.streams.resolve(stream, device, default)?;
    let call = HostCall(func, data as usize);
    driver.streams.submit(
        &stream,
        Box::new(move || {
            let HostCall(func, data) = call;
            if driver.trace.enabled() {
                driver
                    .trace
                    .event("host_func", format_args!("device={device}"));
            }
            // SAFETY: CUDA's contract: the caller's function may be called
            // once with its data pointer, from another thread.
            unsafe { func(data as *mut c_void) }
        }),
    )?;
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn cuLaunchHostFunc(
    stream: CUstream,
    func: CUhostFn,
    data: *mut c_void,
) -> CUresult {
    entry(|| launch_host_func(stream, func, data, Legacy))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuLaunchHostFunc_ptsz(
    stream: CUstream,
    func: CUhostFn,
    data: *mut c_void,
) -> CUresult {
    entry(|| launch_host_func(stream, func, data, PerThread))
}
