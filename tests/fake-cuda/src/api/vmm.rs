//! The virtual memory management API: address reservations (`PROT_NONE`
//! host VA), physical handles (memfds, so contents live with the handle and
//! can be exported as file descriptors), and mapping handles into
//! reservations (`MAP_SHARED | MAP_FIXED`, inaccessible until
//! `cuMemSetAccess`). `cuMemUnmap` does not wait for queued work: a kernel
//! still using an unmapped range faults, so callers must synchronize first.

use std::ffi::{c_int, c_ulonglong};

use super::trace_region;
use crate::driver::driver;
use crate::ffi::*;
use crate::guard::{CuResult, entry, read_in, write_out};
use crate::os;
use crate::registry::{Handle, Kind, Mapping, Region};

/// The allocation granularity of every device (as measured on the H100).
pub const GRANULARITY: u64 = 2 << 20;

fn check_prop(prop: *const CUmemAllocationProp) -> CuResult<(CUmemAllocationProp, usize)> {
    let driver = driver()?;
    // SAFETY: the caller passes NULL or a valid CUmemAllocationProp.
    let prop = unsafe { read_in(prop) }?;
    if prop.type_ != CU_MEM_ALLOCATION_TYPE_PINNED
        || prop.location.type_ != CU_MEM_LOCATION_TYPE_DEVICE
    {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let device = driver.device(prop.location.id)?;
    Ok((prop, device))
}

/// # Safety
/// `granularity` is NULL or writable; `prop` is NULL or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetAllocationGranularity(
    granularity: *mut usize,
    prop: *const CUmemAllocationProp,
    _option: c_int,
) -> CUresult {
    entry(|| {
        check_prop(prop)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(granularity, GRANULARITY as usize) }
    })
}

/// # Safety
/// `ptr` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAddressReserve(
    ptr: *mut CUdeviceptr,
    size: usize,
    alignment: usize,
    addr: CUdeviceptr,
    _flags: c_ulonglong,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let size = size as u64;
        let align = if alignment == 0 {
            GRANULARITY
        } else {
            alignment as u64
        };
        if size == 0
            || !size.is_multiple_of(GRANULARITY)
            || !align.is_power_of_two()
            || ptr.is_null()
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let base = os::reserve(size, align.max(os::page_size()), addr)?;
        let region = Region {
            size,
            mapped_bytes: size,
            kind: Kind::Reserved {
                mappings: Default::default(),
            },
        };
        driver.memory.lock().insert(base, region);
        trace_region(driver, "reserve", "va", base, size, 0);
        // SAFETY: forwarded caller contract.
        unsafe { write_out(ptr, base) }
    })
}

/// Frees a reservation; everything mapped into it must be unmapped first.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemAddressFree(ptr: CUdeviceptr, size: usize) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let mut memory = driver.memory.lock();
        match memory.containing(ptr) {
            Some((base, region))
                if base == ptr
                    && region.size == size as u64
                    && matches!(&region.kind, Kind::Reserved { mappings } if mappings.is_empty()) =>
                {}
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        memory.remove(ptr);
        drop(memory);
        os::release(ptr, size as u64);
        trace_region(driver, "unreserve", "va", ptr, size as u64, 0);
        Ok(())
    })
}

/// # Safety
/// `handle` is NULL or writable; `prop` is NULL or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemCreate(
    handle: *mut CUmemGenericAllocationHandle,
    size: usize,
    prop: *const CUmemAllocationProp,
    flags: c_ulonglong,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let (prop, device) = check_prop(prop)?;
        let size = size as u64;
        if size == 0 || !size.is_multiple_of(GRANULARITY) || flags != 0 || handle.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        driver.accounting.charge(device, size)?;
        let fd =
            os::memfd(size, device).inspect_err(|_| driver.accounting.release(device, size))?;
        let id = driver.memory.lock().add_handle(Handle {
            fd,
            size,
            device,
            handle_types: prop.requested_handle_types,
            charged: size,
            refs: 1,
            maps: 0,
        });
        if driver.trace.enabled() {
            driver.trace.event(
                "create",
                format_args!("handle=0x{id:x} bytes={size} device={device}"),
            );
        }
        // SAFETY: forwarded caller contract.
        unsafe { write_out(handle, id) }
    })
}

/// Drops one reference; the memory goes once it is also unmapped everywhere.
fn put_handle(id: CUmemGenericAllocationHandle) -> CuResult {
    let driver = driver()?;
    let mut memory = driver.memory.lock();
    memory.handle(id)?;
    memory.handle_mut(id)?.refs -= 1;
    if let Some(gone) = memory.collect_handle(id) {
        driver.accounting.release(gone.device, gone.charged);
        if driver.trace.enabled() {
            driver.trace.event(
                "destroy",
                format_args!("handle=0x{id:x} bytes={}", gone.size),
            );
        }
    }
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemRelease(handle: CUmemGenericAllocationHandle) -> CUresult {
    entry(|| put_handle(handle))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemMap(
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    handle: CUmemGenericAllocationHandle,
    flags: c_ulonglong,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let size = size as u64;
        let mut memory = driver.memory.lock();
        let (fd_size, device) = {
            let h = memory.handle(handle)?;
            (h.size, h.device)
        };
        // CUDA documents that the offset must currently be zero.
        if flags != 0
            || offset != 0
            || size == 0
            || !size.is_multiple_of(GRANULARITY)
            || size > fd_size
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let end = ptr.checked_add(size).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let Some((base, region)) = memory.containing(ptr) else {
            return Err(CUDA_ERROR_INVALID_VALUE);
        };
        let Kind::Reserved { mappings } = &region.kind else {
            return Err(CUDA_ERROR_INVALID_VALUE);
        };
        let clash = mappings
            .range(..end)
            .next_back()
            .is_some_and(|(start, m)| start + m.size > ptr);
        if end > base + region.size || clash {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        os::map_shared(ptr, size, &memory.handle(handle)?.fd)?;
        memory.handle_mut(handle)?.maps += 1;
        if let Some(Region {
            kind: Kind::Reserved { mappings },
            ..
        }) = memory.region_mut(base)
        {
            let mapping = Mapping {
                size,
                handle,
                device,
                accessible: false,
            };
            mappings.insert(ptr, mapping);
        }
        drop(memory);
        if driver.trace.enabled() {
            driver.trace.event(
                "map",
                format_args!("ptr=0x{ptr:x} bytes={size} handle=0x{handle:x} device={device}"),
            );
        }
        Ok(())
    })
}

/// The mappings exactly covering `[ptr, ptr + size)` (start, mapping), or
/// INVALID_VALUE if the range has holes or cuts a mapping.
fn covering(ptr: u64, size: u64, whole: bool) -> CuResult<(u64, Vec<(u64, Mapping)>)> {
    let driver = driver()?;
    let memory = driver.memory.lock();
    let end = ptr.checked_add(size).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    let Some((
        base,
        Region {
            kind: Kind::Reserved { mappings },
            ..
        },
    )) = memory.containing(ptr)
    else {
        return Err(CUDA_ERROR_INVALID_VALUE);
    };
    let mut found = Vec::new();
    let mut at = ptr;
    if let Some((start, m)) = mappings.range(..=ptr).next_back()
        && (*start == ptr || (!whole && ptr < start + m.size))
    {
        found.push((*start, *m));
        at = start + m.size;
    }
    while at < end {
        match mappings.get(&at) {
            Some(m) => {
                found.push((at, *m));
                at += m.size;
            }
            None => return Err(CUDA_ERROR_INVALID_VALUE),
        }
    }
    if found.is_empty() || (whole && at != end) {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    Ok((base, found))
}

/// # Safety
/// `desc` is NULL or points to `count` descriptors.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemSetAccess(
    ptr: CUdeviceptr,
    size: usize,
    desc: *const CUmemAccessDesc,
    count: usize,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        if desc.is_null() || count == 0 || size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: `desc` points to `count` descriptors per the caller contract.
        let descs = unsafe { std::slice::from_raw_parts(desc, count) };
        let mut flags = CU_MEM_ACCESS_FLAGS_PROT_NONE;
        for d in descs {
            if d.location.type_ != CU_MEM_LOCATION_TYPE_DEVICE {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            driver.device(d.location.id)?;
            if ![
                CU_MEM_ACCESS_FLAGS_PROT_NONE,
                CU_MEM_ACCESS_FLAGS_PROT_READ,
                CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
            ]
            .contains(&d.flags)
            {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            flags = flags.max(d.flags);
        }
        let (base, found) = covering(ptr, size as u64, false)?;
        os::protect(
            ptr,
            size as u64,
            flags != CU_MEM_ACCESS_FLAGS_PROT_NONE,
            flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
        )?;
        if let Some(Region {
            kind: Kind::Reserved { mappings },
            ..
        }) = driver.memory.lock().region_mut(base)
        {
            for (start, _) in found {
                if let Some(m) = mappings.get_mut(&start) {
                    m.accessible = flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
                }
            }
        }
        if driver.trace.enabled() {
            driver.trace.event(
                "access",
                format_args!("ptr=0x{ptr:x} bytes={size} flags={flags}"),
            );
        }
        Ok(())
    })
}

/// Unmaps whole mappings; the VA stays reserved and inaccessible.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemUnmap(ptr: CUdeviceptr, size: usize) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let (base, found) = covering(ptr, size as u64, true)?;
        os::make_reserved(ptr, size as u64)?;
        let mut memory = driver.memory.lock();
        if let Some(Region {
            kind: Kind::Reserved { mappings },
            ..
        }) = memory.region_mut(base)
        {
            for (start, _) in &found {
                mappings.remove(start);
            }
        }
        for (_, mapping) in &found {
            memory.handle_mut(mapping.handle)?.maps -= 1;
            if let Some(gone) = memory.collect_handle(mapping.handle) {
                driver.accounting.release(gone.device, gone.charged);
            }
        }
        drop(memory);
        if driver.trace.enabled() {
            driver
                .trace
                .event("unmap", format_args!("ptr=0x{ptr:x} bytes={size}"));
        }
        Ok(())
    })
}
