//! VMM handle sharing and queries: exporting a handle as a POSIX file
//! descriptor (its memfd), importing one (here or in another process),
//! `cuMemRetainAllocationHandle` and `cuMemGetAllocationPropertiesFromHandle`.

use std::ffi::{c_int, c_ulonglong, c_void};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};

use crate::driver::driver;
use crate::ffi::*;
use crate::guard::{entry, write_out};
use crate::os;
use crate::registry::{Handle, Target};

/// # Safety
/// `shareable` is NULL or writable for an `int`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemExportToShareableHandle(
    shareable: *mut c_void,
    handle: CUmemGenericAllocationHandle,
    handle_type: c_int,
    flags: c_ulonglong,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let memory = driver.memory.lock();
        let h = memory.handle(handle)?;
        if handle_type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
            || h.handle_types & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR == 0
            || flags != 0
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let fd = os::dup(h.fd.as_raw_fd())?;
        drop(memory);
        if driver.trace.enabled() {
            driver
                .trace
                .event("export", format_args!("handle=0x{handle:x}"));
        }
        // SAFETY: forwarded caller contract.
        unsafe { write_out(shareable.cast::<c_int>(), fd.into_raw_fd()) }
    })
}

/// Imports a descriptor exported by this or another process; the memory
/// stays charged to the exporter.
///
/// # Safety
/// `handle` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemImportFromShareableHandle(
    handle: *mut CUmemGenericAllocationHandle,
    os_handle: *mut c_void,
    handle_type: c_int,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        if handle_type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR || handle.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let fd: OwnedFd = os::dup(os_handle as usize as c_int)?;
        let device = os::memfd_device(&fd).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let size = os::file_size(&fd)?;
        let id = driver.memory.lock().add_handle(Handle {
            fd,
            size,
            device,
            handle_types: CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            charged: 0,
            refs: 1,
            maps: 0,
        });
        // SAFETY: forwarded caller contract.
        unsafe { write_out(handle, id) }
    })
}

/// # Safety
/// `handle` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemRetainAllocationHandle(
    handle: *mut CUmemGenericAllocationHandle,
    addr: *mut c_void,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let mut memory = driver.memory.lock();
        let Target::Mapped { handle: id, .. } = memory.target(addr as u64) else {
            return Err(CUDA_ERROR_INVALID_VALUE);
        };
        if handle.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        memory.handle_mut(id)?.refs += 1;
        // SAFETY: non-NULL and writable per the caller contract.
        unsafe { write_out(handle, id) }
    })
}

/// # Safety
/// `prop` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetAllocationPropertiesFromHandle(
    prop: *mut CUmemAllocationProp,
    handle: CUmemGenericAllocationHandle,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        let memory = driver.memory.lock();
        let h = memory.handle(handle)?;
        let answer = CUmemAllocationProp {
            type_: CU_MEM_ALLOCATION_TYPE_PINNED,
            requested_handle_types: h.handle_types,
            location: CUmemLocation {
                type_: CU_MEM_LOCATION_TYPE_DEVICE,
                id: h.device as c_int,
            },
            win32_handle_meta_data: std::ptr::null_mut(),
            alloc_flags: Default::default(),
        };
        // SAFETY: forwarded caller contract.
        unsafe { write_out(prop, answer) }
    })
}
