//! `cuGetProcAddress` (CUDA 11.3 signature) and `cuGetProcAddress_v2`
//! (CUDA 12, with a `symbolStatus`). Callers ask by base name with the CUDA
//! version they were built for and a stream-semantics flag; the driver picks
//! the versioned export (`cuMemAlloc` → `cuMemAlloc_v2` from 3.2 on) and, for
//! `CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM`, its `_ptds`/`_ptsz`
//! variant. Versioned or per-thread names themselves are not base names and
//! are not found, and neither is the empty name libcudart probes with.

use std::ffi::{c_char, c_int, c_void};

use crate::exports;
use crate::ffi::*;
use crate::guard::{CuResult, entry, read_str, write_out};

/// Base names whose export changed with the CUDA version: (suffix, from).
const VERSIONED: &[(&str, &[(&str, c_int)])] = &[
    ("cuCtxCreate", &[("_v2", 3020), ("_v4", 13000)]),
    ("cuCtxDestroy", &[("_v2", 4000)]),
    ("cuCtxPopCurrent", &[("_v2", 4000)]),
    ("cuCtxPushCurrent", &[("_v2", 4000)]),
    ("cuDevicePrimaryCtxRelease", &[("_v2", 11000)]),
    ("cuDevicePrimaryCtxReset", &[("_v2", 11000)]),
    ("cuDeviceGetUuid", &[("_v2", 11040)]),
    ("cuDeviceTotalMem", &[("_v2", 3020)]),
    ("cuEventDestroy", &[("_v2", 4000)]),
    ("cuEventElapsedTime", &[("_v2", 12080)]),
    ("cuGetProcAddress", &[("_v2", 12000)]),
    (
        "cuGraphInstantiate",
        &[("_v2", 11000), ("WithFlags", 12000)],
    ),
    ("cuMemAdvise", &[("_v2", 13000)]),
    ("cuMemAlloc", &[("_v2", 3020)]),
    ("cuMemAllocHost", &[("_v2", 3020)]),
    ("cuMemAllocPitch", &[("_v2", 3020)]),
    ("cuMemFree", &[("_v2", 3020)]),
    ("cuMemGetAddressRange", &[("_v2", 3020)]),
    ("cuMemGetInfo", &[("_v2", 3020)]),
    ("cuMemHostRegister", &[("_v2", 6050)]),
    ("cuMemPrefetchAsync", &[("_v2", 13000)]),
    ("cuMemcpyDtoD", &[("_v2", 3020)]),
    ("cuMemcpyDtoDAsync", &[("_v2", 3020)]),
    ("cuMemcpyDtoH", &[("_v2", 3020)]),
    ("cuMemcpyDtoHAsync", &[("_v2", 3020)]),
    ("cuMemcpyHtoD", &[("_v2", 3020)]),
    ("cuMemcpyHtoDAsync", &[("_v2", 3020)]),
    ("cuMemsetD32", &[("_v2", 3020)]),
    ("cuMemsetD8", &[("_v2", 3020)]),
    ("cuStreamBeginCapture", &[("_v2", 10010)]),
    ("cuStreamDestroy", &[("_v2", 4000)]),
];

/// The CUDA version that introduced a function (others: always there).
const INTRODUCED: &[(&str, c_int)] = &[
    ("cuCtxGetStreamPriorityRange", 5050),
    ("cuDeviceGetUuid", 9020),
    ("cuDevicePrimaryCtxRetain", 7000),
    ("cuGetProcAddress", 11030),
    ("cuGraphDestroy", 10000),
    ("cuGraphExecDestroy", 10000),
    ("cuGraphInstantiate", 10000),
    ("cuGraphInstantiateWithFlags", 11040),
    ("cuGraphLaunch", 10000),
    ("cuLaunchCooperativeKernel", 9000),
    ("cuLaunchHostFunc", 10000),
    ("cuLaunchKernel", 4000),
    ("cuLaunchKernelEx", 11060),
    ("cuMemAddressFree", 10020),
    ("cuMemAddressReserve", 10020),
    ("cuMemAdvise", 8000),
    ("cuMemAllocAsync", 11020),
    ("cuMemAllocManaged", 6000),
    ("cuMemCreate", 10020),
    ("cuMemExportToShareableHandle", 10020),
    ("cuMemFreeAsync", 11020),
    ("cuMemGetAllocationGranularity", 10020),
    ("cuMemGetAllocationPropertiesFromHandle", 10020),
    ("cuMemImportFromShareableHandle", 10020),
    ("cuMemMap", 10020),
    ("cuMemPrefetchAsync", 8000),
    ("cuMemRelease", 10020),
    ("cuMemRetainAllocationHandle", 11000),
    ("cuMemSetAccess", 10020),
    ("cuMemUnmap", 10020),
    ("cuStreamBeginCapture", 10000),
    ("cuStreamCreateWithPriority", 5050),
    ("cuStreamEndCapture", 10000),
    ("cuStreamIsCapturing", 10000),
];

/// Whether `name` carries a version or stream-semantics suffix.
fn is_variant_name(name: &str) -> bool {
    if name.ends_with("_ptds") || name.ends_with("_ptsz") {
        return true;
    }
    name.rsplit_once("_v")
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Resolves a base name the way the driver does: the export's name, or the
/// query status explaining why there is none.
pub fn resolve(
    symbol: &str,
    cuda_version: c_int,
    flags: u64,
) -> Result<String, CUdriverProcAddressQueryResult> {
    if symbol.is_empty() || is_variant_name(symbol) {
        return Err(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
    }
    let mut name = symbol.to_string();
    if let Some((_, steps)) = VERSIONED.iter().find(|(base, _)| *base == symbol) {
        for (suffix, from) in *steps {
            if cuda_version >= *from {
                name = format!("{symbol}{suffix}");
            }
        }
    }
    if exports::lookup(&name).is_none() {
        return Err(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
    }
    let introduced = INTRODUCED
        .iter()
        .find(|(base, _)| *base == symbol)
        .map_or(0, |(_, from)| *from);
    if cuda_version < introduced {
        return Err(CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
    }
    // LEGACY_STREAM wins if both are set; DEFAULT (0) means legacy here.
    let per_thread = flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM != 0
        && flags & CU_GET_PROC_ADDRESS_LEGACY_STREAM == 0;
    if per_thread {
        for suffix in ["_ptds", "_ptsz"] {
            let variant = format!("{name}{suffix}");
            if exports::lookup(&variant).is_some() {
                return Ok(variant);
            }
        }
    }
    Ok(name)
}

/// # Safety
/// `symbol` is NULL or a C string; `pfn` is NULL or writable.
unsafe fn get_proc_address(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
    status: *mut CUdriverProcAddressQueryResult,
) -> CuResult {
    if pfn.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: forwarded caller contract.
    let symbol = unsafe { read_str(symbol) }?;
    let resolved = resolve(symbol, cuda_version, flags);
    let pointer = resolved
        .as_ref()
        .ok()
        .and_then(|name| exports::lookup(name))
        .unwrap_or(std::ptr::null_mut());
    // SAFETY: non-NULL and writable per the caller contract.
    unsafe { write_out(pfn, pointer) }?;
    if !status.is_null() {
        let code = resolved
            .as_ref()
            .err()
            .copied()
            .unwrap_or(CU_GET_PROC_ADDRESS_SUCCESS);
        // SAFETY: non-NULL and writable per the caller contract.
        unsafe { write_out(status, code) }?;
    }
    resolved.map(drop).map_err(|_| CUDA_ERROR_NOT_FOUND)
}

/// # Safety
/// `symbol` is NULL or a C string; `pfn` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { get_proc_address(symbol, pfn, cuda_version, flags, std::ptr::null_mut()) })
}

/// # Safety
/// `symbol` is NULL or a C string; `pfn` and `status` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
    status: *mut CUdriverProcAddressQueryResult,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { get_proc_address(symbol, pfn, cuda_version, flags, status) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTDS: u64 = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;

    #[test]
    fn versions_pick_the_versioned_export() {
        assert_eq!(resolve("cuMemAlloc", 13000, 0).unwrap(), "cuMemAlloc_v2");
        assert_eq!(resolve("cuMemAlloc", 3010, 0).unwrap(), "cuMemAlloc");
        assert_eq!(resolve("cuCtxCreate", 12080, 0).unwrap(), "cuCtxCreate_v2");
        assert_eq!(resolve("cuCtxCreate", 13000, 0).unwrap(), "cuCtxCreate_v4");
        assert_eq!(
            resolve("cuMemPrefetchAsync", 12080, 0).unwrap(),
            "cuMemPrefetchAsync"
        );
        assert_eq!(
            resolve("cuMemPrefetchAsync", 13000, 0).unwrap(),
            "cuMemPrefetchAsync_v2"
        );
    }

    #[test]
    fn per_thread_flag_picks_ptds_and_ptsz_variants_where_they_exist() {
        assert_eq!(
            resolve("cuMemcpyHtoD", 13000, PTDS).unwrap(),
            "cuMemcpyHtoD_v2_ptds"
        );
        assert_eq!(
            resolve("cuMemcpyHtoDAsync", 13000, PTDS).unwrap(),
            "cuMemcpyHtoDAsync_v2_ptsz"
        );
        assert_eq!(
            resolve("cuLaunchKernel", 13000, PTDS).unwrap(),
            "cuLaunchKernel_ptsz"
        );
        assert_eq!(
            resolve("cuLaunchKernel", 13000, CU_GET_PROC_ADDRESS_LEGACY_STREAM).unwrap(),
            "cuLaunchKernel"
        );
        assert_eq!(resolve("cuMemAlloc", 13000, PTDS).unwrap(), "cuMemAlloc_v2");
        assert_eq!(
            resolve("cuMemPrefetchAsync", 13000, PTDS).unwrap(),
            "cuMemPrefetchAsync_v2_ptsz"
        );
    }

    #[test]
    fn unknown_empty_variant_and_too_new_names_are_refused() {
        assert_eq!(
            resolve("", 13000, 0),
            Err(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND)
        );
        assert_eq!(
            resolve("cuNoSuchThing", 13000, 0),
            Err(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND)
        );
        assert_eq!(
            resolve("cuMemAlloc_v2", 13000, 0),
            Err(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND)
        );
        assert_eq!(
            resolve("cuLaunchKernel_ptsz", 13000, 0),
            Err(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND)
        );
        assert_eq!(
            resolve("cuMemAllocAsync", 11000, 0),
            Err(CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT)
        );
        assert_eq!(
            resolve("cuMemAllocAsync", 11020, 0).unwrap(),
            "cuMemAllocAsync"
        );
    }

    #[test]
    fn every_versioned_step_and_every_export_base_resolves() {
        for (base, steps) in VERSIONED {
            for (suffix, from) in *steps {
                assert_eq!(resolve(base, *from, 0).unwrap(), format!("{base}{suffix}"));
            }
        }
        for name in exports::NAMES.iter().filter(|n| !is_variant_name(n)) {
            assert!(resolve(name, 13000, 0).is_ok(), "{name}");
            assert!(resolve(name, 13000, PTDS).is_ok(), "{name}");
        }
    }
}
