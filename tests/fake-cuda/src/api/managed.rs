//! `cuMemPrefetchAsync` and `cuMemAdvise` in both signatures: the old one
//! (a `CUdevice`, `CU_DEVICE_CPU` for the host) and CUDA 12.2/13's `_v2`
//! (a `CUmemLocation` and flags). A prefetch to a device charges the managed
//! range to it (past the capacity if need be: managed memory oversubscribes);
//! a prefetch to the host gives the charge back. Both are traced.

use std::ffi::{c_int, c_uint};

use super::current;
use crate::driver::Driver;
use crate::ffi::*;
use crate::guard::{CuResult, entry};
use crate::registry::{Kind, Target};
use crate::stream::DefaultStream;

/// A prefetch/advise destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Host,
    Device(usize),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Host => write!(f, "cpu"),
            Place::Device(d) => write!(f, "{d}"),
        }
    }
}

fn from_device(driver: &Driver, device: CUdevice) -> CuResult<Place> {
    if device == CU_DEVICE_CPU {
        Ok(Place::Host)
    } else {
        driver.device(device).map(Place::Device)
    }
}

fn from_location(driver: &Driver, location: CUmemLocation) -> CuResult<Place> {
    match location.type_ {
        CU_MEM_LOCATION_TYPE_DEVICE => driver.device(location.id).map(Place::Device),
        CU_MEM_LOCATION_TYPE_HOST
        | CU_MEM_LOCATION_TYPE_HOST_NUMA
        | CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT => Ok(Place::Host),
        _ => Err(CUDA_ERROR_INVALID_VALUE),
    }
}

/// Checks that `[ptr, ptr + bytes)` is managed memory; returns its base.
fn managed_base(driver: &Driver, ptr: u64, bytes: u64) -> CuResult<u64> {
    let memory = driver.memory.lock();
    match memory.target(ptr) {
        Target::Managed { base, size } if bytes > 0 && ptr + bytes <= base + size => Ok(base),
        _ => Err(CUDA_ERROR_INVALID_VALUE),
    }
}

/// Moves the charge of a managed allocation to `place` (runs in-stream).
fn migrate(driver: &Driver, base: u64, bytes: u64, place: Place) {
    let mut memory = driver.memory.lock();
    let Some(region) = memory.region_mut(base) else {
        return;
    };
    let limit = region.mapped_bytes;
    let Kind::Managed { resident, charged } = &mut region.kind else {
        return;
    };
    if let Some(old) = *resident
        && Place::Device(old) != place
    {
        driver.accounting.release(old, *charged);
        *charged = 0;
        *resident = None;
    }
    if let Place::Device(device) = place {
        let wanted = (*charged).max(bytes.min(limit));
        driver.accounting.force_charge(device, wanted - *charged);
        *charged = wanted;
        *resident = Some(device);
    }
}

fn prefetch(
    ptr: u64,
    bytes: u64,
    place: CuResult<Place>,
    stream: CUstream,
    default: DefaultStream,
) -> CuResult {
    let (driver, device) = current()?;
    let place = place?;
    let base = managed_base(driver, ptr, bytes)?;
    let stream = driver.streams.resolve(stream, device, default)?;
    driver.streams.submit(
        &stream,
        Box::new(move || {
            if driver.trace.enabled() {
                driver.trace.event(
                    "prefetch",
                    format_args!("ptr=0x{ptr:x} bytes={bytes} dst={place}"),
                );
            }
            migrate(driver, base, bytes, place);
        }),
    )?;
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemPrefetchAsync(
    ptr: CUdeviceptr,
    bytes: usize,
    dst: CUdevice,
    stream: CUstream,
) -> CUresult {
    entry(|| {
        let (driver, _) = current()?;
        prefetch(
            ptr,
            bytes as u64,
            from_device(driver, dst),
            stream,
            DefaultStream::Legacy,
        )
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemPrefetchAsync_ptsz(
    ptr: CUdeviceptr,
    bytes: usize,
    dst: CUdevice,
    stream: CUstream,
) -> CUresult {
    entry(|| {
        let (driver, _) = current()?;
        prefetch(
            ptr,
            bytes as u64,
            from_device(driver, dst),
            stream,
            DefaultStream::PerThread,
        )
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemPrefetchAsync_v2(
    ptr: CUdeviceptr,
    bytes: usize,
    location: CUmemLocation,
    flags: c_uint,
    stream: CUstream,
) -> CUresult {
    entry(|| {
        let (driver, _) = current()?;
        if flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        prefetch(
            ptr,
            bytes as u64,
            from_location(driver, location),
            stream,
            DefaultStream::Legacy,
        )
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemPrefetchAsync_v2_ptsz(
    ptr: CUdeviceptr,
    bytes: usize,
    location: CUmemLocation,
    flags: c_uint,
    stream: CUstream,
) -> CUresult {
    entry(|| {
        let (driver, _) = current()?;
        if flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        prefetch(
            ptr,
            bytes as u64,
            from_location(driver, location),
            stream,
            DefaultStream::PerThread,
        )
    })
}

/// Advice has no effect on host memory; it is checked and traced.
fn advise(ptr: u64, bytes: u64, advice: c_int, place: CuResult<Place>) -> CuResult {
    let (driver, _) = current()?;
    let place = place?;
    managed_base(driver, ptr, bytes)?;
    // CU_MEM_ADVISE_SET_READ_MOSTLY (1) .. CU_MEM_ADVISE_UNSET_ACCESSED_BY (6).
    if !(1..=6).contains(&advice) {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    if driver.trace.enabled() {
        driver.trace.event(
            "advise",
            format_args!("ptr=0x{ptr:x} bytes={bytes} advice={advice} dst={place}"),
        );
    }
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemAdvise(
    ptr: CUdeviceptr,
    bytes: usize,
    advice: c_int,
    device: CUdevice,
) -> CUresult {
    entry(|| {
        let (driver, _) = current()?;
        advise(ptr, bytes as u64, advice, from_device(driver, device))
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemAdvise_v2(
    ptr: CUdeviceptr,
    bytes: usize,
    advice: c_int,
    location: CUmemLocation,
) -> CUresult {
    entry(|| {
        let (driver, _) = current()?;
        advise(ptr, bytes as u64, advice, from_location(driver, location))
    })
}
