//! The virtual memory management calls of programs that map GPU memory
//! themselves (PyTorch's expandable segments): in swap mode `cuMemCreate`
//! is admitted against the capacity and counted like `cuMemAlloc`, its
//! handle is virtualized, and mappings that can move are swapped with the
//! hook's own memory (see [`crate::engine::swap::mapped`]). In uvm mode,
//! and for memory that is not device memory, every call passes through.
//!
//! A call that needs memory that is swapped out waits at the gate for the
//! program's turn (which brings it back) and is then made; if the memory
//! still is not back (the GPU is full), it fails with
//! `CUDA_ERROR_OUT_OF_MEMORY` rather than lose anything.

use crate::engine;
use crate::engine::swap::mapped::{Properties, Step};
use crate::ffi::*;
use crate::gate;
use crate::gate::admit;
use std::ffi::{c_int, c_void};

/// Runs `attempt` until it is done, waiting once at the gate of the device
/// whose memory it needs back.
fn with_resident<T>(mut attempt: impl FnMut() -> Step<T>) -> Result<T, CUresult> {
    let mut admitted = None;
    loop {
        match attempt() {
            Step::Done(value) => return Ok(value),
            Step::NeedsResident(device) if admitted.is_none() => {
                admitted = Some(gate::enter_device(device)?);
            }
            Step::NeedsResident(device) => {
                tracing::warn!(
                    device,
                    "the program's own GPU memory is swapped out and could not be brought back; the call fails with CUDA_ERROR_OUT_OF_MEMORY"
                );
                return Err(CUresult::ERROR_OUT_OF_MEMORY);
            }
        }
    }
}

fn report(devices: &[CUdevice]) {
    for &device in devices {
        gate::usage_changed(device);
    }
}

/// The driver's status of a call that may have freed memory on some
/// devices (whose usage is then reported), or the gate's refusal.
fn status_reporting_freed(outcome: Result<(CUresult, Vec<CUdevice>), CUresult>) -> CUresult {
    match outcome {
        Ok((status, freed)) => {
            report(&freed);
            status
        }
        Err(code) => code,
    }
}

/// `cuMemCreate`.
///
/// # Safety
/// As the driver's `cuMemCreate`.
pub unsafe fn create(
    real: unsafe extern "C" fn(
        *mut CUmemGenericAllocationHandle,
        usize,
        *const CUmemAllocationProp,
        u64,
    ) -> CUresult,
    handle: *mut CUmemGenericAllocationHandle,
    size: usize,
    prop: *const CUmemAllocationProp,
    flags: u64,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let passthrough = || unsafe { real(handle, size, prop, flags) };
    let Some(engine) = engine::swap_engine() else {
        return passthrough();
    };
    if handle.is_null() || prop.is_null() || size == 0 || flags != 0 {
        return passthrough();
    }
    // SAFETY: checked non-null; the program's properties (cuda.h layout).
    let wanted = unsafe { *prop };
    if wanted.type_ != CU_MEM_ALLOCATION_TYPE_PINNED
        || wanted.location.type_ != CU_MEM_LOCATION_TYPE_DEVICE
    {
        return passthrough();
    }
    let device = wanted.location.id;
    let bytes = size as u64;
    if let Err(code) = admit(device, bytes) {
        return code;
    }
    // As `cuMemAlloc` (wrappers::memory): made only while the program holds
    // the GPU with room for it.
    let _admitted = gate::enter_allocation(device, bytes);
    let mut made: CUmemGenericAllocationHandle = 0;
    // SAFETY: a live out-pointer and the program's properties.
    let mut status = unsafe { real(&mut made, size, prop, flags) };
    if status == CUresult::ERROR_OUT_OF_MEMORY && !gate::holds(device) {
        gate::wait_for_room(device, bytes);
        // SAFETY: as above.
        status = unsafe { real(&mut made, size, prop, flags) };
    }
    if !status.is_success() {
        return status;
    }
    let id = engine.program_created(device, bytes, &wanted, made);
    // SAFETY: checked non-null; the program's out-pointer.
    unsafe { *handle = id };
    gate::usage_changed(device);
    CUresult::SUCCESS
}

/// `cuMemRelease`.
///
/// # Safety
/// As the driver's `cuMemRelease`.
pub unsafe fn release(
    real: unsafe extern "C" fn(CUmemGenericAllocationHandle) -> CUresult,
    handle: CUmemGenericAllocationHandle,
) -> CUresult {
    let engine = engine::swap_engine().filter(|e| e.is_program_handle(handle));
    let Some(engine) = engine else {
        // SAFETY: the program's argument, forwarded.
        return unsafe { real(handle) };
    };
    match engine.program_release(handle) {
        Ok(freed) => {
            report(freed.as_slice());
            CUresult::SUCCESS
        }
        Err(code) => code,
    }
}

/// `cuMemMap`.
///
/// # Safety
/// As the driver's `cuMemMap`.
pub unsafe fn map(
    real: unsafe extern "C" fn(
        CUdeviceptr,
        usize,
        usize,
        CUmemGenericAllocationHandle,
        u64,
    ) -> CUresult,
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    handle: CUmemGenericAllocationHandle,
    flags: u64,
) -> CUresult {
    let engine = engine::swap_engine().filter(|e| e.is_program_handle(handle));
    let Some(engine) = engine else {
        // SAFETY: the program's arguments, forwarded.
        return unsafe { real(ptr, size, offset, handle, flags) };
    };
    with_resident(|| {
        engine.program_map(ptr, size as u64, offset as u64, handle, |actual| {
            // SAFETY: the program's arguments with its handle translated.
            unsafe { real(ptr, size, offset, actual, flags) }
        })
    })
    .unwrap_or_else(|code| code)
}

/// `cuMemUnmap`.
///
/// # Safety
/// As the driver's `cuMemUnmap`.
pub unsafe fn unmap(
    real: unsafe extern "C" fn(CUdeviceptr, usize) -> CUresult,
    ptr: CUdeviceptr,
    size: usize,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let call = move || unsafe { real(ptr, size) };
    let Some(engine) = engine::swap_engine() else {
        return call();
    };
    status_reporting_freed(with_resident(|| {
        engine.program_unmap(ptr, size as u64, call)
    }))
}

/// `cuMemSetAccess`.
///
/// # Safety
/// As the driver's `cuMemSetAccess`.
pub unsafe fn set_access(
    real: unsafe extern "C" fn(CUdeviceptr, usize, *const CUmemAccessDesc, usize) -> CUresult,
    ptr: CUdeviceptr,
    size: usize,
    desc: *const CUmemAccessDesc,
    count: usize,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let call = move || unsafe { real(ptr, size, desc, count) };
    let Some(engine) = engine::swap_engine() else {
        return call();
    };
    if desc.is_null() || count == 0 {
        return call();
    }
    // SAFETY: `desc` points to `count` descriptors (the caller's contract).
    let descs = unsafe { std::slice::from_raw_parts(desc, count) };
    with_resident(|| engine.program_set_access(ptr, size as u64, descs, call))
        .unwrap_or_else(|code| code)
}

/// `cuMemAddressFree`.
///
/// # Safety
/// As the driver's `cuMemAddressFree`.
pub unsafe fn address_free(
    real: unsafe extern "C" fn(CUdeviceptr, usize) -> CUresult,
    ptr: CUdeviceptr,
    size: usize,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let call = move || unsafe { real(ptr, size) };
    let Some(engine) = engine::swap_engine() else {
        return call();
    };
    status_reporting_freed(with_resident(|| {
        engine.program_address_free(ptr, size as u64, call)
    }))
}

/// `cuMemExportToShareableHandle`: the exported memory stays on the GPU.
///
/// # Safety
/// As the driver's `cuMemExportToShareableHandle`.
pub unsafe fn export(
    real: unsafe extern "C" fn(*mut c_void, CUmemGenericAllocationHandle, c_int, u64) -> CUresult,
    shareable: *mut c_void,
    handle: CUmemGenericAllocationHandle,
    handle_type: c_int,
    flags: u64,
) -> CUresult {
    let engine = engine::swap_engine().filter(|e| e.is_program_handle(handle));
    let Some(engine) = engine else {
        // SAFETY: the program's arguments, forwarded.
        return unsafe { real(shareable, handle, handle_type, flags) };
    };
    with_resident(|| {
        engine.program_share(handle, |actual| {
            // SAFETY: the program's arguments with its handle translated.
            unsafe { real(shareable, actual, handle_type, flags) }
        })
    })
    .unwrap_or_else(|code| code)
}

/// `cuMulticastBindMem`: the bound memory stays on the GPU.
///
/// # Safety
/// As the driver's `cuMulticastBindMem`.
pub unsafe fn multicast_bind(
    real: unsafe extern "C" fn(
        CUmemGenericAllocationHandle,
        usize,
        CUmemGenericAllocationHandle,
        usize,
        usize,
        u64,
    ) -> CUresult,
    multicast: CUmemGenericAllocationHandle,
    multicast_offset: usize,
    handle: CUmemGenericAllocationHandle,
    offset: usize,
    size: usize,
    flags: u64,
) -> CUresult {
    let engine = engine::swap_engine().filter(|e| e.is_program_handle(handle));
    let Some(engine) = engine else {
        // SAFETY: the program's arguments, forwarded.
        return unsafe { real(multicast, multicast_offset, handle, offset, size, flags) };
    };
    with_resident(|| {
        engine.program_share(handle, |actual| {
            // SAFETY: the program's arguments with its handle translated.
            unsafe { real(multicast, multicast_offset, actual, offset, size, flags) }
        })
    })
    .unwrap_or_else(|code| code)
}

/// `cuMemGetAllocationPropertiesFromHandle`.
///
/// # Safety
/// As the driver's `cuMemGetAllocationPropertiesFromHandle`.
pub unsafe fn properties(
    real: unsafe extern "C" fn(*mut CUmemAllocationProp, CUmemGenericAllocationHandle) -> CUresult,
    prop: *mut CUmemAllocationProp,
    handle: CUmemGenericAllocationHandle,
) -> CUresult {
    let engine = engine::swap_engine().filter(|e| e.is_program_handle(handle));
    let (Some(engine), false) = (engine, prop.is_null()) else {
        // SAFETY: the program's arguments, forwarded.
        return unsafe { real(prop, handle) };
    };
    // SAFETY: the program's out-pointer with its handle translated.
    match engine.program_properties(handle, |actual| unsafe { real(prop, actual) }) {
        Properties::Asked(status) => status,
        Properties::Recorded(recorded) => {
            // SAFETY: checked non-null; the program's out-pointer.
            unsafe { *prop = recorded };
            CUresult::SUCCESS
        }
    }
}

/// `cuMemRetainAllocationHandle`: for the program's own mappings, one more
/// reference to its (virtual) handle.
///
/// # Safety
/// As the driver's `cuMemRetainAllocationHandle`.
pub unsafe fn retain(
    real: unsafe extern "C" fn(*mut CUmemGenericAllocationHandle, *mut c_void) -> CUresult,
    handle: *mut CUmemGenericAllocationHandle,
    address: *mut c_void,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let passthrough = || unsafe { real(handle, address) };
    let Some(engine) = engine::swap_engine() else {
        return passthrough();
    };
    if handle.is_null() {
        return passthrough();
    }
    match engine.program_retain(address as u64) {
        Some(id) => {
            // SAFETY: checked non-null; the program's out-pointer.
            unsafe { *handle = id };
            CUresult::SUCCESS
        }
        None => passthrough(),
    }
}

/// `cuMemGetAccess`: answered from the program's own descriptors while
/// its mapping is swapped out (the driver knows no mapping there then).
///
/// # Safety
/// As the driver's `cuMemGetAccess`.
pub unsafe fn get_access(
    real: unsafe extern "C" fn(*mut u64, *const CUmemLocation, CUdeviceptr) -> CUresult,
    flags: *mut u64,
    location: *const CUmemLocation,
    ptr: CUdeviceptr,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let passthrough = || unsafe { real(flags, location, ptr) };
    let Some(engine) = engine::swap_engine() else {
        return passthrough();
    };
    if flags.is_null() || location.is_null() {
        return passthrough();
    }
    // SAFETY: checked non-null; the program's location (cuda.h layout).
    let location = unsafe { *location };
    match engine.program_access_if_swapped(ptr, location) {
        Some(answer) => {
            // SAFETY: checked non-null; the program's out-pointer.
            unsafe { *flags = answer };
            CUresult::SUCCESS
        }
        None => passthrough(),
    }
}
