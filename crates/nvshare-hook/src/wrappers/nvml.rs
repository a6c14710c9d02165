//! `nvmlDeviceGetMemoryInfo[_v2]` inside a hooked program: the real answer,
//! then, for a GPU the program uses under a scheduler, the virtual one
//! (total = capacity, used = the program's footprint), so that NVML agrees
//! with `cuMemGetInfo`.
//!
//! A program that has not called into CUDA gets the real answer untouched:
//! the hook stays dormant for NVML-only tools.

#![allow(non_snake_case)]

use crate::driver;
use crate::driver::loader::real_dlsym;
use crate::ffi::*;
use crate::guard::ffi_boundary;
use crate::wrappers::info::virtual_memory;
use nvshare_proto::GpuUuid;
use std::ffi::{CStr, c_char, c_uint, c_void};
use std::sync::OnceLock;

type MemoryInfoFn = unsafe extern "C" fn(nvmlDevice_t, *mut nvmlMemory_t) -> nvmlReturn_t;
type MemoryInfoV2Fn = unsafe extern "C" fn(nvmlDevice_t, *mut nvmlMemory_v2_t) -> nvmlReturn_t;
type UuidFn = unsafe extern "C" fn(nvmlDevice_t, *mut c_char, c_uint) -> nvmlReturn_t;

/// The real NVML functions the hook uses.
struct Nvml {
    memory_info: Option<MemoryInfoFn>,
    memory_info_v2: Option<MemoryInfoV2Fn>,
    uuid: Option<UuidFn>,
}

/// The real NVML, if the program loaded it.
fn nvml() -> Option<&'static Nvml> {
    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();
    NVML.get_or_init(|| {
        // SAFETY: a literal name and valid flags. A program calling an NVML
        // function has libnvidia-ml loaded, so this only takes a reference.
        let handle = unsafe {
            libc::dlopen(
                c"libnvidia-ml.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_NOLOAD,
            )
        };
        if handle.is_null() {
            return None;
        }
        let find = |name: &CStr| {
            // SAFETY: a live handle and a C string.
            let address = unsafe { real_dlsym(handle, name.as_ptr()) };
            (!address.is_null()).then_some(address)
        };
        // SAFETY: these NVML symbols have these signatures (nvml.h).
        unsafe {
            Some(Nvml {
                memory_info: find(c"nvmlDeviceGetMemoryInfo")
                    .map(|a| std::mem::transmute::<*mut c_void, MemoryInfoFn>(a)),
                memory_info_v2: find(c"nvmlDeviceGetMemoryInfo_v2")
                    .map(|a| std::mem::transmute::<*mut c_void, MemoryInfoV2Fn>(a)),
                uuid: find(c"nvmlDeviceGetUUID")
                    .map(|a| std::mem::transmute::<*mut c_void, UuidFn>(a)),
            })
        }
    })
    .as_ref()
}

/// Parses NVML's UUID text (`GPU-xxxxxxxx-...`, NUL-terminated in `buffer`).
pub fn parse_nvml_uuid(buffer: &[u8]) -> Option<GpuUuid> {
    let text = CStr::from_bytes_until_nul(buffer).ok()?.to_str().ok()?;
    text.parse().ok()
}

/// The CUDA device behind an NVML device, if the program already uses CUDA.
fn cuda_device_of(nvml: &Nvml, device: nvmlDevice_t) -> Option<CUdevice> {
    driver::table_if_loaded()?;
    let uuid_fn = nvml.uuid?;
    let mut buffer = [0u8; 96];
    // SAFETY: a writable buffer of the stated length.
    let status = unsafe { uuid_fn(device, buffer.as_mut_ptr().cast(), buffer.len() as c_uint) };
    if status != NVML_SUCCESS {
        return None;
    }
    let wanted = parse_nvml_uuid(&buffer)?;
    (0..driver::device::count().ok()?).find_map(|ordinal| {
        let cuda_device = driver::device::get(ordinal).ok()?;
        (driver::device::uuid(cuda_device).ok()? == wanted.0).then_some(cuda_device)
    })
}

/// `(free, total, used)` to report for `device`, if virtualized.
fn virtual_nvml(nvml: &Nvml, device: nvmlDevice_t) -> Option<(u64, u64, u64)> {
    let cuda_device = cuda_device_of(nvml, device)?;
    let (free, total) = virtual_memory(cuda_device)?;
    Some((free, total, total - free))
}

/// The hook's `nvmlDeviceGetMemoryInfo`.
///
/// # Safety
/// As NVML's `nvmlDeviceGetMemoryInfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_t,
) -> nvmlReturn_t {
    ffi_boundary("nvmlDeviceGetMemoryInfo", NVML_ERROR_UNKNOWN, || {
        let Some(nvml) = nvml() else {
            return NVML_ERROR_LIBRARY_NOT_FOUND;
        };
        let Some(real) = nvml.memory_info else {
            return NVML_ERROR_FUNCTION_NOT_FOUND;
        };
        // SAFETY: the program's arguments, forwarded.
        let status = unsafe { real(device, memory) };
        if status == NVML_SUCCESS
            && !memory.is_null()
            && let Some((free, total, used)) = virtual_nvml(nvml, device)
        {
            // SAFETY: the successful real call wrote through it.
            unsafe { *memory = nvmlMemory_t { total, free, used } };
        }
        status
    })
}

/// The hook's `nvmlDeviceGetMemoryInfo_v2`.
///
/// # Safety
/// As NVML's `nvmlDeviceGetMemoryInfo_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    ffi_boundary("nvmlDeviceGetMemoryInfo_v2", NVML_ERROR_UNKNOWN, || {
        let Some(nvml) = nvml() else {
            return NVML_ERROR_LIBRARY_NOT_FOUND;
        };
        let Some(real) = nvml.memory_info_v2 else {
            return NVML_ERROR_FUNCTION_NOT_FOUND;
        };
        // SAFETY: the program's arguments, forwarded.
        let status = unsafe { real(device, memory) };
        if status == NVML_SUCCESS
            && !memory.is_null()
            && let Some((free, total, used)) = virtual_nvml(nvml, device)
        {
            // SAFETY: the successful real call wrote the structure.
            unsafe {
                (*memory).total = total;
                (*memory).reserved = 0;
                (*memory).free = free;
                (*memory).used = used;
            }
        }
        status
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvml_uuid_text_parses_to_the_cuda_bytes() {
        let mut buffer = [0u8; 96];
        let text = b"GPU-00112233-4455-6677-8899-aabbccddeeff";
        buffer[..text.len()].copy_from_slice(text);
        let uuid = parse_nvml_uuid(&buffer).expect("valid UUID");
        assert_eq!(uuid.0[0], 0x00);
        assert_eq!(uuid.0[1], 0x11);
        assert_eq!(uuid.0[15], 0xff);
        assert!(parse_nvml_uuid(b"GPU-zz\0").is_none());
        assert!(parse_nvml_uuid(b"no terminator").is_none());
    }
}
