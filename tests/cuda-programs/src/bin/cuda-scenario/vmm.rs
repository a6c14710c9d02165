//! VMM scenarios: queries on unmapped VA, touching unmapped memory, and
//! swapping a range out and in at the same address.

use std::ffi::{c_int, c_void};

use cuda_programs::buffer::{AllocMode, Buffer};
use cuda_programs::error::{Error, check};
use cuda_programs::ffi::*;
use cuda_programs::session::{Cuda, arg};
use serde_json::{Value, json};

use crate::{Toucher, status};

/// Pointer queries, memset and IPC on mapped VMM memory, on the unmapped
/// VA next to it, and on `cuMemAlloc` memory.
pub fn unmapped_queries(cuda: &Cuda) -> Result<Value, Error> {
    let mut buffer = Buffer::alloc(cuda, AllocMode::Vmm, 4 << 20, 2 << 20)?;
    // Unmap the second half: reserved VA with nothing mapped.
    let second = buffer.chunks.pop().expect("two chunks");
    // SAFETY: the chunk was mapped by Buffer::alloc.
    check("cuMemUnmap", unsafe {
        (cuda.api.mem_unmap)(second.address, second.size as usize)
    })?;
    // SAFETY: our own handle.
    check("cuMemRelease", unsafe {
        (cuda.api.mem_release)(second.handle)
    })?;
    let query = |ptr: u64| -> Value {
        let mut memory_type: u32 = 0;
        let mut range_size: u64 = 0;
        let (mut base, mut size) = (0u64, 0usize);
        let mut ipc = [0u8; 64];
        // SAFETY: handles this program created and live out-pointers, per cuda.h.
        let type_code = unsafe {
            (cuda.api.pointer_get_attribute)(
                arg(&mut memory_type),
                CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                ptr,
            )
        };
        // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
        let size_code = unsafe {
            (cuda.api.pointer_get_attribute)(
                arg(&mut range_size),
                CU_POINTER_ATTRIBUTE_RANGE_SIZE,
                ptr,
            )
        };
        // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
        let range_code = unsafe { (cuda.api.mem_get_address_range)(&mut base, &mut size, ptr) };
        // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
        let ipc_code = unsafe { (cuda.api.ipc_get_mem_handle)(&mut ipc, ptr) };
        // SAFETY: a device address; the driver checks it.
        let memset_code = unsafe { (cuda.api.memset_d8)(ptr, 0xab, 16) };
        json!({
            "memory_type": status(type_code), "memory_type_value": memory_type,
            "range_size": status(size_code), "range_size_value": range_size,
            "address_range": status(range_code), "range_base": base, "range_bytes": size,
            "ipc": status(ipc_code), "memset": status(memset_code),
        })
    };
    let mapped = query(buffer.ptr + 4096);
    let unmapped = query(second.address + 4096);
    let plain = Buffer::alloc(cuda, AllocMode::Device, 1 << 20, 0)?;
    let device = query(plain.ptr);
    let report = json!({
        "mapped": mapped, "mapped_base": buffer.ptr,
        "unmapped": unmapped, "unmapped_base": second.address,
        "device": device, "device_base": plain.ptr,
    });
    plain.free(cuda)?;
    buffer.free(cuda)?;
    Ok(report)
}

/// Fills a VMM range, unmaps it, and touches it (the process must die).
pub fn touch_unmapped(cuda: &Cuda, by: Toucher) -> Result<Value, Error> {
    let kernels = cuda.kernels()?;
    let mut buffer = Buffer::alloc(cuda, AllocMode::Vmm, 2 << 20, 0)?;
    cuda.launch_u32_op(
        kernels.fill_u32,
        std::ptr::null_mut(),
        buffer.ptr,
        1,
        1 << 18,
    )?;
    cuda.synchronize(std::ptr::null_mut())?;
    buffer.unmap(cuda)?;
    println!("{}", json!({ "event": "touching", "ptr": buffer.ptr }));
    match by {
        Toucher::Kernel => {
            cuda.launch_u32_op(
                kernels.add_u32,
                std::ptr::null_mut(),
                buffer.ptr,
                1,
                1 << 18,
            )?;
            cuda.synchronize(std::ptr::null_mut())?;
        }
        Toucher::Host => {
            // SAFETY: deliberately not safe: the address is reserved but
            // unmapped, and reading it must fault. That is the test.
            let value = unsafe { std::ptr::read_volatile(buffer.ptr as *const u32) };
            return Ok(json!({ "ok": false, "read": value }));
        }
    }
    Ok(json!({ "ok": false, "survived": true }))
}

/// Swaps a VMM range out and back in at the same address, then maps its
/// first handle again through an exported file descriptor.
pub fn remap(cuda: &Cuda, bytes: u64) -> Result<Value, Error> {
    let kernels = cuda.kernels()?;
    let mut buffer = Buffer::alloc(cuda, AllocMode::Vmm, bytes, 2 << 20)?;
    let count = bytes / 4;
    cuda.launch_u32_op(
        kernels.fill_u32,
        std::ptr::null_mut(),
        buffer.ptr,
        41,
        count,
    )?;
    cuda.synchronize(std::ptr::null_mut())?;
    let (free_before, _) = cuda.mem_info()?;
    let mut shadow = vec![0u8; bytes as usize];
    buffer.download(cuda, &mut shadow)?;
    buffer.unmap(cuda)?;
    let (free_out, _) = cuda.mem_info()?;
    buffer.map(cuda, 2 << 20)?;
    buffer.upload(cuda, &shadow)?;
    cuda.launch_u32_op(kernels.add_u32, std::ptr::null_mut(), buffer.ptr, 1, count)?;
    let mut check_back = vec![0u8; 8];
    buffer.download(cuda, &mut check_back)?;
    let restored = u32::from_le_bytes(check_back[..4].try_into().expect("4 bytes"));

    // Share the first handle through a file descriptor and map it again.
    let first = &buffer.chunks[0];
    let mut fd: c_int = -1;
    // SAFETY: our handle, created with the POSIX fd handle type.
    check("cuMemExportToShareableHandle", unsafe {
        (cuda.api.mem_export)(
            arg(&mut fd),
            first.handle,
            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            0,
        )
    })?;
    let mut imported = 0;
    // SAFETY: the fd we just got, passed by value as CUDA wants.
    check("cuMemImportFromShareableHandle", unsafe {
        (cuda.api.mem_import)(
            &mut imported,
            fd as usize as *mut c_void,
            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
        )
    })?;
    let mut other = Buffer {
        ptr: 0,
        bytes: first.size,
        mode: AllocMode::Vmm,
        reserved: first.size,
        chunks: Vec::new(),
    };
    // SAFETY: valid out-pointer.
    check("cuMemAddressReserve", unsafe {
        (cuda.api.mem_address_reserve)(&mut other.ptr, first.size as usize, 0, 0, 0)
    })?;
    // SAFETY: fresh reservation of the handle's size.
    check("cuMemMap", unsafe {
        (cuda.api.mem_map)(other.ptr, first.size as usize, 0, imported, 0)
    })?;
    other.chunks.push(cuda_programs::buffer::Chunk {
        address: other.ptr,
        size: first.size,
        handle: imported,
    });
    let access = CUmemAccessDesc {
        location: CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: cuda.device,
        },
        flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    // SAFETY: mapped range, one descriptor.
    check("cuMemSetAccess", unsafe {
        (cuda.api.mem_set_access)(other.ptr, first.size as usize, &access, 1)
    })?;
    let mut shared = [0u8; 4];
    other.download(cuda, &mut shared)?;
    // SAFETY: the exported descriptor is ours to close.
    unsafe { libc::close(fd) };
    other.free(cuda)?;
    buffer.free(cuda)?;
    Ok(json!({
        "restored_first": restored, "shared_first": u32::from_le_bytes(shared),
        "free_mapped": free_before, "free_swapped_out": free_out,
    }))
}
