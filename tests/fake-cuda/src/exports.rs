//! Every entry point the fake exports, by name: what `cuGetProcAddress`
//! hands out once it has picked the versioned/per-thread name.

use std::ffi::c_void;

use crate::api::*;

macro_rules! exports {
    ($($name:ident,)*) => {
        /// The address of the exported function `name` (exact name).
        pub fn lookup(name: &str) -> Option<*mut c_void> {
            match name {
                $(stringify!($name) => Some($name as *mut c_void),)*
                _ => None,
            }
        }

        /// Every exported name.
        #[cfg(test)]
        pub const NAMES: &[&str] = &[$(stringify!($name),)*];
    };
}

exports! {
    cuCtxCreate,
    cuCtxCreate_v2,
    cuCtxCreate_v3,
    cuCtxCreate_v4,
    cuCtxDestroy,
    cuCtxDestroy_v2,
    cuCtxGetCurrent,
    cuCtxGetDevice,
    cuCtxGetStreamPriorityRange,
    cuCtxPopCurrent,
    cuCtxPopCurrent_v2,
    cuCtxPushCurrent,
    cuCtxPushCurrent_v2,
    cuCtxSetCurrent,
    cuCtxSynchronize,
    cuDeviceGet,
    cuDeviceGetAttribute,
    cuDeviceGetCount,
    cuDeviceGetName,
    cuDeviceGetUuid,
    cuDeviceGetUuid_v2,
    cuDevicePrimaryCtxGetState,
    cuDevicePrimaryCtxRelease,
    cuDevicePrimaryCtxRelease_v2,
    cuDevicePrimaryCtxReset,
    cuDevicePrimaryCtxReset_v2,
    cuDevicePrimaryCtxRetain,
    cuDeviceTotalMem,
    cuDeviceTotalMem_v2,
    cuDriverGetVersion,
    cuEventCreate,
    cuEventDestroy,
    cuEventDestroy_v2,
    cuEventElapsedTime,
    cuEventElapsedTime_v2,
    cuEventQuery,
    cuEventRecord,
    cuEventRecord_ptsz,
    cuEventSynchronize,
    cuGetErrorName,
    cuGetErrorString,
    cuGetExportTable,
    cuGetProcAddress,
    cuGetProcAddress_v2,
    cuGraphDestroy,
    cuGraphExecDestroy,
    cuGraphInstantiateWithFlags,
    cuGraphInstantiate_v2,
    cuGraphLaunch,
    cuGraphLaunch_ptsz,
    cuInit,
    cuIpcGetMemHandle,
    cuLaunchCooperativeKernel,
    cuLaunchCooperativeKernel_ptsz,
    cuLaunchHostFunc,
    cuLaunchHostFunc_ptsz,
    cuLaunchKernel,
    cuLaunchKernelEx,
    cuLaunchKernelEx_ptsz,
    cuLaunchKernel_ptsz,
    cuMemAddressFree,
    cuMemAddressReserve,
    cuMemAdvise,
    cuMemAdvise_v2,
    cuMemAlloc,
    cuMemAllocAsync,
    cuMemAllocAsync_ptsz,
    cuMemAllocHost,
    cuMemAllocHost_v2,
    cuMemAllocManaged,
    cuMemAllocPitch,
    cuMemAllocPitch_v2,
    cuMemAlloc_v2,
    cuMemCreate,
    cuMemExportToShareableHandle,
    cuMemFree,
    cuMemFreeAsync,
    cuMemFreeAsync_ptsz,
    cuMemFreeHost,
    cuMemFree_v2,
    cuMemGetAddressRange,
    cuMemGetAddressRange_v2,
    cuMemGetAllocationGranularity,
    cuMemGetAllocationPropertiesFromHandle,
    cuMemGetInfo,
    cuMemGetInfo_v2,
    cuMemHostAlloc,
    cuMemHostRegister,
    cuMemHostRegister_v2,
    cuMemHostUnregister,
    cuMemImportFromShareableHandle,
    cuMemMap,
    cuMemPrefetchAsync,
    cuMemPrefetchAsync_ptsz,
    cuMemPrefetchAsync_v2,
    cuMemPrefetchAsync_v2_ptsz,
    cuMemRelease,
    cuMemRetainAllocationHandle,
    cuMemSetAccess,
    cuMemUnmap,
    cuMemcpy,
    cuMemcpyAsync,
    cuMemcpyAsync_ptsz,
    cuMemcpyDtoD,
    cuMemcpyDtoDAsync,
    cuMemcpyDtoDAsync_v2,
    cuMemcpyDtoDAsync_v2_ptsz,
    cuMemcpyDtoD_v2,
    cuMemcpyDtoD_v2_ptds,
    cuMemcpyDtoH,
    cuMemcpyDtoHAsync,
    cuMemcpyDtoHAsync_v2,
    cuMemcpyDtoHAsync_v2_ptsz,
    cuMemcpyDtoH_v2,
    cuMemcpyDtoH_v2_ptds,
    cuMemcpyHtoD,
    cuMemcpyHtoDAsync,
    cuMemcpyHtoDAsync_v2,
    cuMemcpyHtoDAsync_v2_ptsz,
    cuMemcpyHtoD_v2,
    cuMemcpyHtoD_v2_ptds,
    cuMemcpy_ptds,
    cuMemsetD32,
    cuMemsetD32Async,
    cuMemsetD32Async_ptsz,
    cuMemsetD32_v2,
    cuMemsetD32_v2_ptds,
    cuMemsetD8,
    cuMemsetD8Async,
    cuMemsetD8Async_ptsz,
    cuMemsetD8_v2,
    cuMemsetD8_v2_ptds,
    cuModuleGetFunction,
    cuModuleLoad,
    cuModuleLoadData,
    cuModuleLoadDataEx,
    cuModuleUnload,
    cuPointerGetAttribute,
    cuPointerGetAttributes,
    cuStreamBeginCapture,
    cuStreamBeginCapture_ptsz,
    cuStreamBeginCapture_v2,
    cuStreamBeginCapture_v2_ptsz,
    cuStreamCreate,
    cuStreamCreateWithPriority,
    cuStreamDestroy,
    cuStreamDestroy_v2,
    cuStreamEndCapture,
    cuStreamEndCapture_ptsz,
    cuStreamIsCapturing,
    cuStreamIsCapturing_ptsz,
    cuStreamQuery,
    cuStreamQuery_ptsz,
    cuStreamSynchronize,
    cuStreamSynchronize_ptsz,
    cuStreamWaitEvent,
    cuStreamWaitEvent_ptsz,
}

#[cfg(test)]
mod tests {
    use super::NAMES;

    /// Every entry point defined in `api/` (directly or through one of its
    /// macros) is in the table, so `cuGetProcAddress` can hand it out.
    #[test]
    fn every_defined_entry_point_is_exported() {
        let sources = [
            include_str!("api/context.rs"),
            include_str!("api/copy.rs"),
            include_str!("api/device.rs"),
            include_str!("api/graph.rs"),
            include_str!("api/host.rs"),
            include_str!("api/init.rs"),
            include_str!("api/managed.rs"),
            include_str!("api/memory.rs"),
            include_str!("api/module.rs"),
            include_str!("api/query.rs"),
            include_str!("api/sharing.rs"),
            include_str!("api/stream.rs"),
            include_str!("api/vmm.rs"),
            include_str!("proc_address.rs"),
        ];
        let mut defined = Vec::new();
        for source in sources {
            for line in source.lines().map(str::trim) {
                let name = if let Some(rest) = line.split("extern \"C\" fn ").nth(1) {
                    rest.split('(').next()
                } else if line.starts_with("cu") {
                    // A macro invocation line: `cuName: ...` or `cuName => ...`.
                    let end = line
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(line.len());
                    let rest = &line[end..];
                    (rest.starts_with(':') || rest.starts_with(" =>")).then(|| &line[..end])
                } else {
                    None
                };
                if let Some(name) = name.filter(|n| {
                    n.len() > 2 && n.starts_with("cu") && n.as_bytes()[2].is_ascii_uppercase()
                }) {
                    defined.push(name.to_string());
                }
            }
        }
        assert!(
            defined.len() > 150,
            "the scan found the entry points: {}",
            defined.len()
        );
        for name in &defined {
            assert!(
                NAMES.contains(&name.as_str()),
                "{name} is defined but not in exports!"
            );
        }
    }
}
