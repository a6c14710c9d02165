//! Allocation handlers. Every allocation is recorded in the registry (the
//! program's footprint) and checked against the capacity; device
//! allocations are backed by the memory engine of the configured mode.
//!
//! Each handler receives the real function first (the table's convention)
//! and returns the driver's own error for arguments it would refuse.

use crate::config::{self, MemoryMode};
use crate::driver;
use crate::engine;
use crate::ffi::*;
use crate::gate;
use crate::gate::admit;
use crate::registry::{self, AllocKind, Allocation};
use std::ffi::c_uint;

/// Row pitch for `cuMemAllocPitch` in uvm mode: a multiple of every texture
/// pitch alignment CUDA devices report (32 to 512 bytes).
const PITCH_ALIGNMENT: u64 = 512;

fn record(device: CUdevice, base: CUdeviceptr, bytes: u64, kind: AllocKind) {
    registry::lock().insert(
        base,
        Allocation {
            device,
            bytes,
            kind,
            resident: true,
            last_use: 0,
        },
    );
    gate::usage_changed(device);
}

fn forget(base: CUdeviceptr) -> Option<Allocation> {
    registry::lock().remove(base)
}

/// Runs a real allocation call within the capacity and records what it made.
/// `made` reads the new allocation's base and size after a success.
fn tracked(
    bytes_wanted: u64,
    kind: AllocKind,
    call: impl FnOnce() -> CUresult,
    made: impl FnOnce() -> (CUdeviceptr, u64),
) -> CUresult {
    let device = match driver::ctx::device() {
        Ok(device) => device,
        Err(err) => return err.code(),
    };
    if let Err(code) = admit(device, bytes_wanted) {
        return code;
    }
    let status = call();
    if status.is_success() {
        let (base, bytes) = made();
        record(device, base, bytes, kind);
    }
    status
}

/// A device allocation through the engine.
fn engine_alloc(bytes: u64) -> Result<CUdeviceptr, CUresult> {
    let device = driver::ctx::device().map_err(|err| err.code())?;
    admit(device, bytes)?;
    // Device memory is made only while the program holds the GPU with room
    // for it: made without the lock it would sit beside the memory of the
    // programs running there, and a holder growing past its room would
    // overcommit the GPU before the scheduler could drop anyone (seen on
    // the H100: four 12 GiB jobs granted at their first small allocation
    // peaked at 26-40 GiB on a 16 GiB virtual GPU). The guard keeps a drop
    // from draining until the allocation is recorded.
    let _admitted = if config::get().mode == MemoryMode::Swap {
        gate::enter_allocation(device, engine::current().growth(device, bytes))
    } else {
        None
    };
    let mut made = engine::current().alloc(device, bytes, gate::holds(device));
    if matches!(&made, Err(err) if err.code() == CUresult::ERROR_OUT_OF_MEMORY)
        && !gate::holds(device)
    {
        // Within its capacity but the GPU is physically full of the memory
        // of programs that run now: wait for this program's turn, which
        // comes with room made for it, and try again.
        gate::wait_for_room(device, bytes);
        made = engine::current().alloc(device, bytes, gate::holds(device));
    }
    let (base, kind) = made.map_err(|err| {
        tracing::debug!(%err, device, bytes, "device allocation failed");
        err.code()
    })?;
    record(device, base, bytes, kind);
    Ok(base)
}

/// Frees `base` with `call`, restoring the record if the driver refuses.
fn tracked_free(base: CUdeviceptr, call: impl FnOnce() -> CUresult) -> CUresult {
    let removed = forget(base);
    let status = call();
    match removed {
        Some(allocation) if !status.is_success() => {
            registry::lock().insert(base, allocation);
        }
        Some(allocation) => gate::usage_changed(allocation.device),
        None => {}
    }
    status
}

/// `cuMemAlloc_v2`.
///
/// # Safety
/// `dptr` is null or writable, as the driver requires.
pub unsafe fn alloc(
    real: unsafe extern "C" fn(*mut CUdeviceptr, usize) -> CUresult,
    dptr: *mut CUdeviceptr,
    bytes: usize,
) -> CUresult {
    if dptr.is_null() || bytes == 0 {
        // SAFETY: the driver validates its own arguments.
        return unsafe { real(dptr, bytes) };
    }
    match engine_alloc(bytes as u64) {
        Ok(base) => {
            // SAFETY: checked non-null; the caller's out-pointer.
            unsafe { *dptr = base };
            CUresult::SUCCESS
        }
        Err(code) => code,
    }
}

/// `cuMemAllocPitch_v2`: an allocation with a 512-byte aligned pitch,
/// backed by the engine of the configured mode (the driver's own call where
/// the arguments are invalid).
///
/// # Safety
/// As the driver's `cuMemAllocPitch_v2`.
pub unsafe fn alloc_pitch(
    real: unsafe extern "C" fn(*mut CUdeviceptr, *mut usize, usize, usize, c_uint) -> CUresult,
    dptr: *mut CUdeviceptr,
    pitch: *mut usize,
    width: usize,
    height: usize,
    element_size: c_uint,
) -> CUresult {
    let valid = !dptr.is_null()
        && !pitch.is_null()
        && width > 0
        && height > 0
        && matches!(element_size, 4 | 8 | 16);
    // SAFETY: the driver validates its own arguments.
    let passthrough = || unsafe { real(dptr, pitch, width, height, element_size) };
    if !valid {
        return passthrough();
    }
    let row = (width as u64).div_ceil(PITCH_ALIGNMENT) * PITCH_ALIGNMENT;
    let bytes = row * height as u64;
    // Both engines back pitched memory (uvm: managed, swap: VMM units).
    match engine_alloc(bytes) {
        Ok(base) => {
            // SAFETY: both checked non-null; the caller's out-pointers.
            unsafe {
                *dptr = base;
                *pitch = row as usize;
            }
            CUresult::SUCCESS
        }
        Err(code) => code,
    }
}

/// `cuMemFree_v2`: device and managed memory alike.
///
/// # Safety
/// As the driver's `cuMemFree_v2`.
pub unsafe fn free(
    real: unsafe extern "C" fn(CUdeviceptr) -> CUresult,
    dptr: CUdeviceptr,
) -> CUresult {
    tracked_free(dptr, || match engine::current().free(dptr) {
        Some(Ok(())) => CUresult::SUCCESS,
        Some(Err(err)) => err.code(),
        // SAFETY: the program's argument, forwarded.
        None => unsafe { real(dptr) },
    })
}

/// `cuMemAlloc` (32-bit pointers, before CUDA 3.2): the real call, accounted.
///
/// # Safety
/// As the driver's `cuMemAlloc`.
pub unsafe fn alloc_v1(
    real: unsafe extern "C" fn(*mut CUdeviceptr_v1, c_uint) -> CUresult,
    dptr: *mut CUdeviceptr_v1,
    bytes: c_uint,
) -> CUresult {
    // SAFETY: the driver validates its own arguments.
    let call = || unsafe { real(dptr, bytes) };
    if dptr.is_null() || bytes == 0 {
        return call();
    }
    // SAFETY: written by the successful real call.
    tracked(bytes.into(), AllocKind::Device, call, || unsafe {
        ((*dptr).into(), bytes.into())
    })
}

/// `cuMemAllocPitch` (32-bit): the real call, accounted.
///
/// # Safety
/// As the driver's `cuMemAllocPitch`.
pub unsafe fn alloc_pitch_v1(
    real: unsafe extern "C" fn(
        *mut CUdeviceptr_v1,
        *mut c_uint,
        c_uint,
        c_uint,
        c_uint,
    ) -> CUresult,
    dptr: *mut CUdeviceptr_v1,
    pitch: *mut c_uint,
    width: c_uint,
    height: c_uint,
    element_size: c_uint,
) -> CUresult {
    // SAFETY: the driver validates its own arguments.
    let call = || unsafe { real(dptr, pitch, width, height, element_size) };
    if dptr.is_null() || pitch.is_null() {
        return call();
    }
    let estimate = u64::from(width) * u64::from(height);
    // SAFETY: written by the successful real call.
    tracked(estimate, AllocKind::Device, call, || unsafe {
        ((*dptr).into(), u64::from(*pitch) * u64::from(height))
    })
}

/// `cuMemFree` (32-bit).
///
/// # Safety
/// As the driver's `cuMemFree`.
pub unsafe fn free_v1(
    real: unsafe extern "C" fn(CUdeviceptr_v1) -> CUresult,
    dptr: CUdeviceptr_v1,
) -> CUresult {
    // SAFETY: the program's argument, forwarded.
    tracked_free(dptr.into(), || unsafe { real(dptr) })
}

/// `cuMemAllocManaged`: the program's own managed memory, accounted.
///
/// # Safety
/// As the driver's `cuMemAllocManaged`.
pub unsafe fn alloc_managed(
    real: unsafe extern "C" fn(*mut CUdeviceptr, usize, c_uint) -> CUresult,
    dptr: *mut CUdeviceptr,
    bytes: usize,
    flags: c_uint,
) -> CUresult {
    // SAFETY: the driver validates its own arguments.
    let call = || unsafe { real(dptr, bytes, flags) };
    if dptr.is_null() || bytes == 0 {
        return call();
    }
    // SAFETY: written by the successful real call.
    tracked(bytes as u64, AllocKind::Managed, call, || unsafe {
        (*dptr, bytes as u64)
    })
}

/// `cuMemAllocAsync[_ptsz]`: stream-ordered memory, accounted (pools may
/// keep freed memory cached; the footprint counts what the program holds).
///
/// # Safety
/// As the driver's `cuMemAllocAsync`.
pub unsafe fn alloc_async(
    real: unsafe extern "C" fn(*mut CUdeviceptr, usize, CUstream) -> CUresult,
    dptr: *mut CUdeviceptr,
    bytes: usize,
    stream: CUstream,
) -> CUresult {
    // SAFETY: the driver validates its own arguments.
    let call = || unsafe { real(dptr, bytes, stream) };
    if dptr.is_null() || bytes == 0 {
        return call();
    }
    // SAFETY: written by the successful real call.
    tracked(bytes as u64, AllocKind::StreamOrdered, call, || unsafe {
        (*dptr, bytes as u64)
    })
}

/// `cuMemAllocFromPoolAsync[_ptsz]`: as [`alloc_async`]. The allocation is
/// counted against the current context's device.
///
/// # Safety
/// As the driver's `cuMemAllocFromPoolAsync`.
pub unsafe fn alloc_from_pool_async(
    real: unsafe extern "C" fn(*mut CUdeviceptr, usize, CUmemoryPool, CUstream) -> CUresult,
    dptr: *mut CUdeviceptr,
    bytes: usize,
    pool: CUmemoryPool,
    stream: CUstream,
) -> CUresult {
    // SAFETY: the driver validates its own arguments.
    let call = || unsafe { real(dptr, bytes, pool, stream) };
    if dptr.is_null() || bytes == 0 {
        return call();
    }
    // SAFETY: written by the successful real call.
    tracked(bytes as u64, AllocKind::StreamOrdered, call, || unsafe {
        (*dptr, bytes as u64)
    })
}

/// `cuMemFreeAsync[_ptsz]`.
///
/// # Safety
/// As the driver's `cuMemFreeAsync`.
pub unsafe fn free_async(
    real: unsafe extern "C" fn(CUdeviceptr, CUstream) -> CUresult,
    dptr: CUdeviceptr,
    stream: CUstream,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    tracked_free(dptr, || unsafe { real(dptr, stream) })
}
