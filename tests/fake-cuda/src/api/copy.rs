//! `cuMemcpy*` and `cuMemset*`: synchronous ones run on the default stream
//! and wait for it; `*Async` ones are queued on their stream. Device-side
//! addresses are checked first: reserved but unmapped VA (a swapped-out
//! range) is refused with CUDA_ERROR_INVALID_VALUE, as the real driver does.

use std::ffi::{c_uchar, c_uint, c_void};
use std::sync::Arc;

use super::current;
use crate::ffi::*;
use crate::guard::{CuResult, entry};
use crate::stream::{DefaultStream, Replay};

/// What one side of a copy must be.
#[derive(Clone, Copy)]
enum Side {
    /// Memory the GPU can reach (device, managed, mapped VMM, pinned host).
    Device,
    /// Host memory the caller owns: not checked, beyond being non-NULL.
    Host,
    /// Either (unified addressing): any address but unmapped reserved VA.
    Any,
}

/// Where the work goes: the default stream and wait, or a stream, async.
#[derive(Clone, Copy)]
enum Mode {
    Sync(DefaultStream),
    Async(CUstream, DefaultStream),
}

fn check(side: Side, ptr: u64, bytes: u64) -> CuResult {
    let (driver, _) = current()?;
    match side {
        Side::Host if ptr != 0 => Ok(()),
        Side::Host => Err(CUDA_ERROR_INVALID_VALUE),
        Side::Device => driver.memory.lock().check_range(ptr, bytes, false),
        Side::Any => driver.memory.lock().check_range(ptr, bytes, true),
    }
}

/// Synchronous work runs now; async work can be captured into a graph.
fn submit(mode: Mode, op: Replay) -> CuResult {
    let (driver, device) = current()?;
    match mode {
        Mode::Sync(default) => {
            let stream = driver
                .streams
                .resolve(std::ptr::null_mut(), device, default)?;
            driver.streams.run_sync(&stream, Box::new(move || op()))
        }
        Mode::Async(stream, default) => {
            let stream = driver.streams.resolve(stream, device, default)?;
            driver.streams.submit_replayable(&stream, op)
        }
    }
}

fn copy(
    kind: &'static str,
    dst: (u64, Side),
    src: (u64, Side),
    bytes: u64,
    mode: Mode,
) -> CuResult {
    let (driver, _) = current()?;
    if bytes == 0 {
        return Ok(());
    }
    check(dst.1, dst.0, bytes)?;
    check(src.1, src.0, bytes)?;
    let (dst, src) = (dst.0, src.0);
    submit(
        mode,
        Arc::new(move || {
            if driver.trace.enabled() {
                driver.trace.event(
                    "memcpy",
                    format_args!("kind={kind} bytes={bytes} dst=0x{dst:x} src=0x{src:x}"),
                );
            }
            // SAFETY: both ranges were checked to be memory of `bytes` when
            // queued; CUDA requires them to stay valid until the copy ran.
            unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes as usize) };
        }),
    )
}

fn memset(dst: u64, value: u32, width: u64, count: u64, mode: Mode) -> CuResult {
    let (driver, _) = current()?;
    if !dst.is_multiple_of(width) {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let bytes = count.checked_mul(width).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    if bytes == 0 {
        return Ok(());
    }
    check(Side::Device, dst, bytes)?;
    submit(
        mode,
        Arc::new(move || {
            if driver.trace.enabled() {
                driver.trace.event(
                    "memset",
                    format_args!("ptr=0x{dst:x} bytes={bytes} width={width}"),
                );
            }
            // SAFETY: the range was checked to be device memory of `bytes`.
            unsafe {
                if width == 1 {
                    std::ptr::write_bytes(dst as *mut u8, value as u8, bytes as usize);
                } else {
                    std::slice::from_raw_parts_mut(dst as *mut u32, count as usize).fill(value);
                }
            }
        }),
    )
}

use DefaultStream::{Legacy, PerThread};
use Side::{Any, Device, Host};

macro_rules! sync_copies {
    ($($name:ident: $dst:ty => $dst_side:ident, $src:ty => $src_side:ident, $count:ty, $kind:literal, $default:ident;)*) => {$(
        /// # Safety
        /// The host-side pointer is valid for the byte count, as CUDA requires.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(dst: $dst, src: $src, bytes: $count) -> CUresult {
            entry(|| copy($kind, (dst as u64, $dst_side), (src as u64, $src_side), bytes as u64, Mode::Sync($default)))
        }
    )*};
}

macro_rules! async_copies {
    ($($name:ident: $dst:ty => $dst_side:ident, $src:ty => $src_side:ident, $count:ty, $kind:literal, $default:ident;)*) => {$(
        /// # Safety
        /// The host-side pointer stays valid for the byte count until the
        /// stream has run the copy, as CUDA requires.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(dst: $dst, src: $src, bytes: $count, stream: CUstream) -> CUresult {
            entry(|| copy($kind, (dst as u64, $dst_side), (src as u64, $src_side), bytes as u64, Mode::Async(stream, $default)))
        }
    )*};
}

sync_copies! {
    cuMemcpy: CUdeviceptr => Any, CUdeviceptr => Any, usize, "default", Legacy;
    cuMemcpy_ptds: CUdeviceptr => Any, CUdeviceptr => Any, usize, "default", PerThread;
    cuMemcpyHtoD_v2: CUdeviceptr => Device, *const c_void => Host, usize, "HtoD", Legacy;
    cuMemcpyHtoD_v2_ptds: CUdeviceptr => Device, *const c_void => Host, usize, "HtoD", PerThread;
    cuMemcpyHtoD: c_uint => Device, *const c_void => Host, c_uint, "HtoD", Legacy;
    cuMemcpyDtoH_v2: *mut c_void => Host, CUdeviceptr => Device, usize, "DtoH", Legacy;
    cuMemcpyDtoH_v2_ptds: *mut c_void => Host, CUdeviceptr => Device, usize, "DtoH", PerThread;
    cuMemcpyDtoH: *mut c_void => Host, c_uint => Device, c_uint, "DtoH", Legacy;
    cuMemcpyDtoD_v2: CUdeviceptr => Device, CUdeviceptr => Device, usize, "DtoD", Legacy;
    cuMemcpyDtoD_v2_ptds: CUdeviceptr => Device, CUdeviceptr => Device, usize, "DtoD", PerThread;
    cuMemcpyDtoD: c_uint => Device, c_uint => Device, c_uint, "DtoD", Legacy;
}

async_copies! {
    cuMemcpyAsync: CUdeviceptr => Any, CUdeviceptr => Any, usize, "default", Legacy;
    cuMemcpyAsync_ptsz: CUdeviceptr => Any, CUdeviceptr => Any, usize, "default", PerThread;
    cuMemcpyHtoDAsync_v2: CUdeviceptr => Device, *const c_void => Host, usize, "HtoD", Legacy;
    cuMemcpyHtoDAsync_v2_ptsz: CUdeviceptr => Device, *const c_void => Host, usize, "HtoD", PerThread;
    cuMemcpyHtoDAsync: c_uint => Device, *const c_void => Host, c_uint, "HtoD", Legacy;
    cuMemcpyDtoHAsync_v2: *mut c_void => Host, CUdeviceptr => Device, usize, "DtoH", Legacy;
    cuMemcpyDtoHAsync_v2_ptsz: *mut c_void => Host, CUdeviceptr => Device, usize, "DtoH", PerThread;
    cuMemcpyDtoHAsync: *mut c_void => Host, c_uint => Device, c_uint, "DtoH", Legacy;
    cuMemcpyDtoDAsync_v2: CUdeviceptr => Device, CUdeviceptr => Device, usize, "DtoD", Legacy;
    cuMemcpyDtoDAsync_v2_ptsz: CUdeviceptr => Device, CUdeviceptr => Device, usize, "DtoD", PerThread;
    cuMemcpyDtoDAsync: c_uint => Device, c_uint => Device, c_uint, "DtoD", Legacy;
}

macro_rules! sync_memsets {
    ($($name:ident: $ptr:ty, $value:ty, $width:literal, $count:ty, $default:ident;)*) => {$(
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(dst: $ptr, value: $value, count: $count) -> CUresult {
            entry(|| memset(dst as u64, value as u32, $width, count as u64, Mode::Sync($default)))
        }
    )*};
}

macro_rules! async_memsets {
    ($($name:ident: $value:ty, $width:literal, $default:ident;)*) => {$(
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(dst: CUdeviceptr, value: $value, count: usize, stream: CUstream) -> CUresult {
            entry(|| memset(dst, value as u32, $width, count as u64, Mode::Async(stream, $default)))
        }
    )*};
}

sync_memsets! {
    cuMemsetD8_v2: CUdeviceptr, c_uchar, 1, usize, Legacy;
    cuMemsetD8_v2_ptds: CUdeviceptr, c_uchar, 1, usize, PerThread;
    cuMemsetD8: c_uint, c_uchar, 1, c_uint, Legacy;
    cuMemsetD32_v2: CUdeviceptr, c_uint, 4, usize, Legacy;
    cuMemsetD32_v2_ptds: CUdeviceptr, c_uint, 4, usize, PerThread;
    cuMemsetD32: c_uint, c_uint, 4, c_uint, Legacy;
}

async_memsets! {
    cuMemsetD8Async: c_uchar, 1, Legacy;
    cuMemsetD8Async_ptsz: c_uchar, 1, PerThread;
    cuMemsetD32Async: c_uint, 4, Legacy;
    cuMemsetD32Async_ptsz: c_uint, 4, PerThread;
}
