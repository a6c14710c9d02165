//! The table of intercepted driver entry points: the one place to add one.
//!
//! [`entry_points!`] hands every line to a callback macro. The driver layer
//! makes the real-function table and the name lookups from it
//! ([`crate::driver::real`]); the interposition layer makes the exported
//! wrappers ([`crate::interpose::exports`]). The handler named on a line is
//! only tokens here, resolved where the wrappers are made.
//!
//! A line reads
//!
//! ```text
//! cuMemAlloc_v2 = "cuMemAlloc" @ 3020 legacy => (memory::alloc) (dptr: *mut CUdeviceptr, bytes: usize);
//! ```
//!
//! - the exported symbol name (what `dlsym` and the dynamic linker see),
//! - the base name `cuGetProcAddress` is asked for, the first CUDA version
//!   (`cudaVersion`) that returns this variant, and whether it is the legacy
//!   or the per-thread default stream variant (`legacy` / `per_thread`),
//! - the handler: `work` (admit through the gate, call the real function)
//!   or a parenthesized path to `unsafe fn(real, args...) -> CUresult`,
//! - the C signature.
//!
//! Versions: `cuGetProcAddress(base, cudaVersion, flags)` returns the variant
//! with the highest `version <= cudaVersion`, preferring the per-thread
//! variants when `flags` has `CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM`.
//! The `_v1` entries (32-bit device pointers, before CUDA 3.2) are what the
//! unversioned names still export.

/// Invokes `$callback! { line; line; ... }` with every intercepted entry
/// point; see the module documentation for the line format.
macro_rules! entry_points {
    ($callback:ident) => {
        $callback! {
        // Allocation and memory queries.
        cuMemAlloc = "cuMemAlloc" @ 2000 legacy => (memory::alloc_v1) (dptr: *mut CUdeviceptr_v1, bytes: c_uint);
        cuMemAlloc_v2 = "cuMemAlloc" @ 3020 legacy => (memory::alloc) (dptr: *mut CUdeviceptr, bytes: usize);
        cuMemAllocPitch = "cuMemAllocPitch" @ 2000 legacy => (memory::alloc_pitch_v1) (dptr: *mut CUdeviceptr_v1, pitch: *mut c_uint, width: c_uint, height: c_uint, element_size: c_uint);
        cuMemAllocPitch_v2 = "cuMemAllocPitch" @ 3020 legacy => (memory::alloc_pitch) (dptr: *mut CUdeviceptr, pitch: *mut usize, width: usize, height: usize, element_size: c_uint);
        cuMemFree = "cuMemFree" @ 2000 legacy => (memory::free_v1) (dptr: CUdeviceptr_v1);
        cuMemFree_v2 = "cuMemFree" @ 3020 legacy => (memory::free) (dptr: CUdeviceptr);
        cuMemAllocManaged = "cuMemAllocManaged" @ 6000 legacy => (memory::alloc_managed) (dptr: *mut CUdeviceptr, bytes: usize, flags: c_uint);
        cuMemAllocAsync = "cuMemAllocAsync" @ 11020 legacy => (memory::alloc_async) (dptr: *mut CUdeviceptr, bytes: usize, stream: CUstream);
        cuMemAllocAsync_ptsz = "cuMemAllocAsync" @ 11020 per_thread => (memory::alloc_async) (dptr: *mut CUdeviceptr, bytes: usize, stream: CUstream);
        cuMemAllocFromPoolAsync = "cuMemAllocFromPoolAsync" @ 11020 legacy => (memory::alloc_from_pool_async) (dptr: *mut CUdeviceptr, bytes: usize, pool: CUmemoryPool, stream: CUstream);
        cuMemAllocFromPoolAsync_ptsz = "cuMemAllocFromPoolAsync" @ 11020 per_thread => (memory::alloc_from_pool_async) (dptr: *mut CUdeviceptr, bytes: usize, pool: CUmemoryPool, stream: CUstream);
        cuMemFreeAsync = "cuMemFreeAsync" @ 11020 legacy => (memory::free_async) (dptr: CUdeviceptr, stream: CUstream);
        cuMemFreeAsync_ptsz = "cuMemFreeAsync" @ 11020 per_thread => (memory::free_async) (dptr: CUdeviceptr, stream: CUstream);
        cuMemGetInfo = "cuMemGetInfo" @ 2000 legacy => (info::mem_get_info_v1) (free: *mut c_uint, total: *mut c_uint);
        cuMemGetInfo_v2 = "cuMemGetInfo" @ 3020 legacy => (info::mem_get_info) (free: *mut usize, total: *mut usize);
        cuDeviceTotalMem = "cuDeviceTotalMem" @ 2000 legacy => (info::device_total_mem_v1) (bytes: *mut c_uint, device: CUdevice);
        cuDeviceTotalMem_v2 = "cuDeviceTotalMem" @ 3020 legacy => (info::device_total_mem) (bytes: *mut usize, device: CUdevice);

        // The program's own virtual memory management (handles virtualized,
        // memory admitted, counted and swapped; see wrappers::vmm).
        cuMemCreate = "cuMemCreate" @ 10020 legacy => (vmm::create) (handle: *mut CUmemGenericAllocationHandle, size: usize, prop: *const CUmemAllocationProp, flags: u64);
        cuMemRelease = "cuMemRelease" @ 10020 legacy => (vmm::release) (handle: CUmemGenericAllocationHandle);
        cuMemMap = "cuMemMap" @ 10020 legacy => (vmm::map) (ptr: CUdeviceptr, size: usize, offset: usize, handle: CUmemGenericAllocationHandle, flags: u64);
        cuMemUnmap = "cuMemUnmap" @ 10020 legacy => (vmm::unmap) (ptr: CUdeviceptr, size: usize);
        cuMemSetAccess = "cuMemSetAccess" @ 10020 legacy => (vmm::set_access) (ptr: CUdeviceptr, size: usize, desc: *const CUmemAccessDesc, count: usize);
        cuMemGetAccess = "cuMemGetAccess" @ 10020 legacy => (vmm::get_access) (flags: *mut u64, location: *const CUmemLocation, ptr: CUdeviceptr);
        cuMemAddressFree = "cuMemAddressFree" @ 10020 legacy => (vmm::address_free) (ptr: CUdeviceptr, size: usize);
        cuMemExportToShareableHandle = "cuMemExportToShareableHandle" @ 10020 legacy => (vmm::export) (shareable: *mut c_void, handle: CUmemGenericAllocationHandle, handle_type: c_int, flags: u64);
        cuMemGetAllocationPropertiesFromHandle = "cuMemGetAllocationPropertiesFromHandle" @ 10020 legacy => (vmm::properties) (prop: *mut CUmemAllocationProp, handle: CUmemGenericAllocationHandle);
        cuMulticastBindMem = "cuMulticastBindMem" @ 12010 legacy => (vmm::multicast_bind) (multicast: CUmemGenericAllocationHandle, multicast_offset: usize, handle: CUmemGenericAllocationHandle, offset: usize, size: usize, flags: u64);
        cuMemRetainAllocationHandle = "cuMemRetainAllocationHandle" @ 11000 legacy => (vmm::retain) (handle: *mut CUmemGenericAllocationHandle, addr: *mut c_void);

        // Pointer queries (answered for swapped-out memory).
        cuPointerGetAttribute = "cuPointerGetAttribute" @ 4000 legacy => (pointer::get_attribute) (data: *mut c_void, attribute: CUpointer_attribute, ptr: CUdeviceptr);
        cuPointerGetAttributes = "cuPointerGetAttributes" @ 7000 legacy => (pointer::get_attributes) (count: c_uint, attributes: *mut CUpointer_attribute, data: *mut *mut c_void, ptr: CUdeviceptr);
        cuMemGetAddressRange_v2 = "cuMemGetAddressRange" @ 3020 legacy => (pointer::address_range) (base: *mut CUdeviceptr, size: *mut usize, ptr: CUdeviceptr);

        // Kernel launches and other stream work.
        cuLaunch = "cuLaunch" @ 2000 legacy => work (f: CUfunction);
        cuLaunchGrid = "cuLaunchGrid" @ 2000 legacy => work (f: CUfunction, width: c_int, height: c_int);
        cuLaunchGridAsync = "cuLaunchGridAsync" @ 2000 legacy => work (f: CUfunction, width: c_int, height: c_int, stream: CUstream);
        cuLaunchKernel = "cuLaunchKernel" @ 4000 legacy => work (f: CUfunction, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared: c_uint, stream: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void);
        cuLaunchKernel_ptsz = "cuLaunchKernel" @ 7000 per_thread => work (f: CUfunction, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared: c_uint, stream: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void);
        cuLaunchKernelEx = "cuLaunchKernelEx" @ 11060 legacy => work (config: OpaqueParams, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void);
        cuLaunchKernelEx_ptsz = "cuLaunchKernelEx" @ 11060 per_thread => work (config: OpaqueParams, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void);
        cuLaunchCooperativeKernel = "cuLaunchCooperativeKernel" @ 9000 legacy => work (f: CUfunction, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared: c_uint, stream: CUstream, params: *mut *mut c_void);
        cuLaunchCooperativeKernel_ptsz = "cuLaunchCooperativeKernel" @ 9000 per_thread => work (f: CUfunction, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared: c_uint, stream: CUstream, params: *mut *mut c_void);
        cuGraphLaunch = "cuGraphLaunch" @ 10000 legacy => work (graph: CUgraphExec, stream: CUstream);
        cuGraphLaunch_ptsz = "cuGraphLaunch" @ 10000 per_thread => work (graph: CUgraphExec, stream: CUstream);
        cuLaunchHostFunc = "cuLaunchHostFunc" @ 10000 legacy => work (stream: CUstream, f: CUhostFn, data: *mut c_void);
        cuLaunchHostFunc_ptsz = "cuLaunchHostFunc" @ 10000 per_thread => work (stream: CUstream, f: CUhostFn, data: *mut c_void);
        cuMemPrefetchAsync = "cuMemPrefetchAsync" @ 8000 legacy => work (ptr: CUdeviceptr, bytes: usize, device: CUdevice, stream: CUstream);
        cuMemPrefetchAsync_ptsz = "cuMemPrefetchAsync" @ 8000 per_thread => work (ptr: CUdeviceptr, bytes: usize, device: CUdevice, stream: CUstream);
        cuMemPrefetchAsync_v2 = "cuMemPrefetchAsync" @ 12020 legacy => work (ptr: CUdeviceptr, bytes: usize, location: CUmemLocation, flags: c_uint, stream: CUstream);
        cuMemPrefetchAsync_v2_ptsz = "cuMemPrefetchAsync" @ 12020 per_thread => work (ptr: CUdeviceptr, bytes: usize, location: CUmemLocation, flags: c_uint, stream: CUstream);

        // Copies, unversioned (CUDA 4.0+ unified addressing).
        cuMemcpy = "cuMemcpy" @ 4000 legacy => work (dst: CUdeviceptr, src: CUdeviceptr, bytes: usize);
        cuMemcpy_ptds = "cuMemcpy" @ 7000 per_thread => work (dst: CUdeviceptr, src: CUdeviceptr, bytes: usize);
        cuMemcpyAsync = "cuMemcpyAsync" @ 4000 legacy => work (dst: CUdeviceptr, src: CUdeviceptr, bytes: usize, stream: CUstream);
        cuMemcpyAsync_ptsz = "cuMemcpyAsync" @ 7000 per_thread => work (dst: CUdeviceptr, src: CUdeviceptr, bytes: usize, stream: CUstream);
        cuMemcpyPeer = "cuMemcpyPeer" @ 4000 legacy => work (dst: CUdeviceptr, dst_ctx: CUcontext, src: CUdeviceptr, src_ctx: CUcontext, bytes: usize);
        cuMemcpyPeer_ptds = "cuMemcpyPeer" @ 7000 per_thread => work (dst: CUdeviceptr, dst_ctx: CUcontext, src: CUdeviceptr, src_ctx: CUcontext, bytes: usize);
        cuMemcpyPeerAsync = "cuMemcpyPeerAsync" @ 4000 legacy => work (dst: CUdeviceptr, dst_ctx: CUcontext, src: CUdeviceptr, src_ctx: CUcontext, bytes: usize, stream: CUstream);
        cuMemcpyPeerAsync_ptsz = "cuMemcpyPeerAsync" @ 7000 per_thread => work (dst: CUdeviceptr, dst_ctx: CUcontext, src: CUdeviceptr, src_ctx: CUcontext, bytes: usize, stream: CUstream);
        cuMemcpy3DPeer = "cuMemcpy3DPeer" @ 4000 legacy => work (params: OpaqueParams);
        cuMemcpy3DPeer_ptds = "cuMemcpy3DPeer" @ 7000 per_thread => work (params: OpaqueParams);
        cuMemcpy3DPeerAsync = "cuMemcpy3DPeerAsync" @ 4000 legacy => work (params: OpaqueParams, stream: CUstream);
        cuMemcpy3DPeerAsync_ptsz = "cuMemcpy3DPeerAsync" @ 7000 per_thread => work (params: OpaqueParams, stream: CUstream);
        cuMemcpyBatchAsync = "cuMemcpyBatchAsync" @ 12080 legacy => work (dsts: *mut CUdeviceptr, srcs: *mut CUdeviceptr, sizes: *mut usize, count: usize, attrs: OpaqueParams, attr_idxs: *mut usize, attr_count: usize, fail_idx: *mut usize, stream: CUstream);
        cuMemcpyBatchAsync_ptsz = "cuMemcpyBatchAsync" @ 12080 per_thread => work (dsts: *mut CUdeviceptr, srcs: *mut CUdeviceptr, sizes: *mut usize, count: usize, attrs: OpaqueParams, attr_idxs: *mut usize, attr_count: usize, fail_idx: *mut usize, stream: CUstream);
        cuMemcpyBatchAsync_v2 = "cuMemcpyBatchAsync" @ 13000 legacy => work (dsts: *mut CUdeviceptr, srcs: *mut CUdeviceptr, sizes: *mut usize, count: usize, attrs: OpaqueParams, attr_idxs: *mut usize, attr_count: usize, stream: CUstream);
        cuMemcpyBatchAsync_v2_ptsz = "cuMemcpyBatchAsync" @ 13000 per_thread => work (dsts: *mut CUdeviceptr, srcs: *mut CUdeviceptr, sizes: *mut usize, count: usize, attrs: OpaqueParams, attr_idxs: *mut usize, attr_count: usize, stream: CUstream);
        cuMemcpy3DBatchAsync = "cuMemcpy3DBatchAsync" @ 12080 legacy => work (count: usize, ops: OpaqueParams, fail_idx: *mut usize, flags: u64, stream: CUstream);
        cuMemcpy3DBatchAsync_ptsz = "cuMemcpy3DBatchAsync" @ 12080 per_thread => work (count: usize, ops: OpaqueParams, fail_idx: *mut usize, flags: u64, stream: CUstream);
        cuMemcpy3DBatchAsync_v2 = "cuMemcpy3DBatchAsync" @ 13000 legacy => work (count: usize, ops: OpaqueParams, flags: u64, stream: CUstream);
        cuMemcpy3DBatchAsync_v2_ptsz = "cuMemcpy3DBatchAsync" @ 13000 per_thread => work (count: usize, ops: OpaqueParams, flags: u64, stream: CUstream);

        // Copies with explicit directions: _v1 (32-bit), _v2, per-thread _v2.
        cuMemcpyHtoD = "cuMemcpyHtoD" @ 2000 legacy => work (dst: CUdeviceptr_v1, src: *const c_void, bytes: c_uint);
        cuMemcpyHtoD_v2 = "cuMemcpyHtoD" @ 3020 legacy => work (dst: CUdeviceptr, src: *const c_void, bytes: usize);
        cuMemcpyHtoD_v2_ptds = "cuMemcpyHtoD" @ 7000 per_thread => work (dst: CUdeviceptr, src: *const c_void, bytes: usize);
        cuMemcpyDtoH = "cuMemcpyDtoH" @ 2000 legacy => work (dst: *mut c_void, src: CUdeviceptr_v1, bytes: c_uint);
        cuMemcpyDtoH_v2 = "cuMemcpyDtoH" @ 3020 legacy => work (dst: *mut c_void, src: CUdeviceptr, bytes: usize);
        cuMemcpyDtoH_v2_ptds = "cuMemcpyDtoH" @ 7000 per_thread => work (dst: *mut c_void, src: CUdeviceptr, bytes: usize);
        cuMemcpyDtoD = "cuMemcpyDtoD" @ 2000 legacy => work (dst: CUdeviceptr_v1, src: CUdeviceptr_v1, bytes: c_uint);
        cuMemcpyDtoD_v2 = "cuMemcpyDtoD" @ 3020 legacy => work (dst: CUdeviceptr, src: CUdeviceptr, bytes: usize);
        cuMemcpyDtoD_v2_ptds = "cuMemcpyDtoD" @ 7000 per_thread => work (dst: CUdeviceptr, src: CUdeviceptr, bytes: usize);
        cuMemcpyDtoA = "cuMemcpyDtoA" @ 2000 legacy => work (dst: CUarray, dst_offset: c_uint, src: CUdeviceptr_v1, bytes: c_uint);
        cuMemcpyDtoA_v2 = "cuMemcpyDtoA" @ 3020 legacy => work (dst: CUarray, dst_offset: usize, src: CUdeviceptr, bytes: usize);
        cuMemcpyDtoA_v2_ptds = "cuMemcpyDtoA" @ 7000 per_thread => work (dst: CUarray, dst_offset: usize, src: CUdeviceptr, bytes: usize);
        cuMemcpyAtoD = "cuMemcpyAtoD" @ 2000 legacy => work (dst: CUdeviceptr_v1, src: CUarray, src_offset: c_uint, bytes: c_uint);
        cuMemcpyAtoD_v2 = "cuMemcpyAtoD" @ 3020 legacy => work (dst: CUdeviceptr, src: CUarray, src_offset: usize, bytes: usize);
        cuMemcpyAtoD_v2_ptds = "cuMemcpyAtoD" @ 7000 per_thread => work (dst: CUdeviceptr, src: CUarray, src_offset: usize, bytes: usize);
        cuMemcpyHtoA = "cuMemcpyHtoA" @ 2000 legacy => work (dst: CUarray, dst_offset: c_uint, src: *const c_void, bytes: c_uint);
        cuMemcpyHtoA_v2 = "cuMemcpyHtoA" @ 3020 legacy => work (dst: CUarray, dst_offset: usize, src: *const c_void, bytes: usize);
        cuMemcpyHtoA_v2_ptds = "cuMemcpyHtoA" @ 7000 per_thread => work (dst: CUarray, dst_offset: usize, src: *const c_void, bytes: usize);
        cuMemcpyAtoH = "cuMemcpyAtoH" @ 2000 legacy => work (dst: *mut c_void, src: CUarray, src_offset: c_uint, bytes: c_uint);
        cuMemcpyAtoH_v2 = "cuMemcpyAtoH" @ 3020 legacy => work (dst: *mut c_void, src: CUarray, src_offset: usize, bytes: usize);
        cuMemcpyAtoH_v2_ptds = "cuMemcpyAtoH" @ 7000 per_thread => work (dst: *mut c_void, src: CUarray, src_offset: usize, bytes: usize);
        cuMemcpyAtoA = "cuMemcpyAtoA" @ 2000 legacy => work (dst: CUarray, dst_offset: c_uint, src: CUarray, src_offset: c_uint, bytes: c_uint);
        cuMemcpyAtoA_v2 = "cuMemcpyAtoA" @ 3020 legacy => work (dst: CUarray, dst_offset: usize, src: CUarray, src_offset: usize, bytes: usize);
        cuMemcpyAtoA_v2_ptds = "cuMemcpyAtoA" @ 7000 per_thread => work (dst: CUarray, dst_offset: usize, src: CUarray, src_offset: usize, bytes: usize);
        cuMemcpy2D = "cuMemcpy2D" @ 2000 legacy => work (params: OpaqueParams);
        cuMemcpy2D_v2 = "cuMemcpy2D" @ 3020 legacy => work (params: OpaqueParams);
        cuMemcpy2D_v2_ptds = "cuMemcpy2D" @ 7000 per_thread => work (params: OpaqueParams);
        cuMemcpy2DUnaligned = "cuMemcpy2DUnaligned" @ 2000 legacy => work (params: OpaqueParams);
        cuMemcpy2DUnaligned_v2 = "cuMemcpy2DUnaligned" @ 3020 legacy => work (params: OpaqueParams);
        cuMemcpy2DUnaligned_v2_ptds = "cuMemcpy2DUnaligned" @ 7000 per_thread => work (params: OpaqueParams);
        cuMemcpy3D = "cuMemcpy3D" @ 2000 legacy => work (params: OpaqueParams);
        cuMemcpy3D_v2 = "cuMemcpy3D" @ 3020 legacy => work (params: OpaqueParams);
        cuMemcpy3D_v2_ptds = "cuMemcpy3D" @ 7000 per_thread => work (params: OpaqueParams);
        cuMemcpyHtoDAsync = "cuMemcpyHtoDAsync" @ 2000 legacy => work (dst: CUdeviceptr_v1, src: *const c_void, bytes: c_uint, stream: CUstream);
        cuMemcpyHtoDAsync_v2 = "cuMemcpyHtoDAsync" @ 3020 legacy => work (dst: CUdeviceptr, src: *const c_void, bytes: usize, stream: CUstream);
        cuMemcpyHtoDAsync_v2_ptsz = "cuMemcpyHtoDAsync" @ 7000 per_thread => work (dst: CUdeviceptr, src: *const c_void, bytes: usize, stream: CUstream);
        cuMemcpyDtoHAsync = "cuMemcpyDtoHAsync" @ 2000 legacy => work (dst: *mut c_void, src: CUdeviceptr_v1, bytes: c_uint, stream: CUstream);
        cuMemcpyDtoHAsync_v2 = "cuMemcpyDtoHAsync" @ 3020 legacy => work (dst: *mut c_void, src: CUdeviceptr, bytes: usize, stream: CUstream);
        cuMemcpyDtoHAsync_v2_ptsz = "cuMemcpyDtoHAsync" @ 7000 per_thread => work (dst: *mut c_void, src: CUdeviceptr, bytes: usize, stream: CUstream);
        cuMemcpyDtoDAsync = "cuMemcpyDtoDAsync" @ 3000 legacy => work (dst: CUdeviceptr_v1, src: CUdeviceptr_v1, bytes: c_uint, stream: CUstream);
        cuMemcpyDtoDAsync_v2 = "cuMemcpyDtoDAsync" @ 3020 legacy => work (dst: CUdeviceptr, src: CUdeviceptr, bytes: usize, stream: CUstream);
        cuMemcpyDtoDAsync_v2_ptsz = "cuMemcpyDtoDAsync" @ 7000 per_thread => work (dst: CUdeviceptr, src: CUdeviceptr, bytes: usize, stream: CUstream);
        cuMemcpyHtoAAsync = "cuMemcpyHtoAAsync" @ 2000 legacy => work (dst: CUarray, dst_offset: c_uint, src: *const c_void, bytes: c_uint, stream: CUstream);
        cuMemcpyHtoAAsync_v2 = "cuMemcpyHtoAAsync" @ 3020 legacy => work (dst: CUarray, dst_offset: usize, src: *const c_void, bytes: usize, stream: CUstream);
        cuMemcpyHtoAAsync_v2_ptsz = "cuMemcpyHtoAAsync" @ 7000 per_thread => work (dst: CUarray, dst_offset: usize, src: *const c_void, bytes: usize, stream: CUstream);
        cuMemcpyAtoHAsync = "cuMemcpyAtoHAsync" @ 2000 legacy => work (dst: *mut c_void, src: CUarray, src_offset: c_uint, bytes: c_uint, stream: CUstream);
        cuMemcpyAtoHAsync_v2 = "cuMemcpyAtoHAsync" @ 3020 legacy => work (dst: *mut c_void, src: CUarray, src_offset: usize, bytes: usize, stream: CUstream);
        cuMemcpyAtoHAsync_v2_ptsz = "cuMemcpyAtoHAsync" @ 7000 per_thread => work (dst: *mut c_void, src: CUarray, src_offset: usize, bytes: usize, stream: CUstream);
        cuMemcpy2DAsync = "cuMemcpy2DAsync" @ 2000 legacy => work (params: OpaqueParams, stream: CUstream);
        cuMemcpy2DAsync_v2 = "cuMemcpy2DAsync" @ 3020 legacy => work (params: OpaqueParams, stream: CUstream);
        cuMemcpy2DAsync_v2_ptsz = "cuMemcpy2DAsync" @ 7000 per_thread => work (params: OpaqueParams, stream: CUstream);
        cuMemcpy3DAsync = "cuMemcpy3DAsync" @ 2000 legacy => work (params: OpaqueParams, stream: CUstream);
        cuMemcpy3DAsync_v2 = "cuMemcpy3DAsync" @ 3020 legacy => work (params: OpaqueParams, stream: CUstream);
        cuMemcpy3DAsync_v2_ptsz = "cuMemcpy3DAsync" @ 7000 per_thread => work (params: OpaqueParams, stream: CUstream);

        // Memsets: synchronous (_v1, _v2, per-thread _v2) and stream-ordered.
        cuMemsetD8 = "cuMemsetD8" @ 2000 legacy => work (dst: CUdeviceptr_v1, value: u8, count: c_uint);
        cuMemsetD8_v2 = "cuMemsetD8" @ 3020 legacy => work (dst: CUdeviceptr, value: u8, count: usize);
        cuMemsetD8_v2_ptds = "cuMemsetD8" @ 7000 per_thread => work (dst: CUdeviceptr, value: u8, count: usize);
        cuMemsetD16 = "cuMemsetD16" @ 2000 legacy => work (dst: CUdeviceptr_v1, value: u16, count: c_uint);
        cuMemsetD16_v2 = "cuMemsetD16" @ 3020 legacy => work (dst: CUdeviceptr, value: u16, count: usize);
        cuMemsetD16_v2_ptds = "cuMemsetD16" @ 7000 per_thread => work (dst: CUdeviceptr, value: u16, count: usize);
        cuMemsetD32 = "cuMemsetD32" @ 2000 legacy => work (dst: CUdeviceptr_v1, value: c_uint, count: c_uint);
        cuMemsetD32_v2 = "cuMemsetD32" @ 3020 legacy => work (dst: CUdeviceptr, value: c_uint, count: usize);
        cuMemsetD32_v2_ptds = "cuMemsetD32" @ 7000 per_thread => work (dst: CUdeviceptr, value: c_uint, count: usize);
        cuMemsetD2D8 = "cuMemsetD2D8" @ 2000 legacy => work (dst: CUdeviceptr_v1, pitch: c_uint, value: u8, width: c_uint, height: c_uint);
        cuMemsetD2D8_v2 = "cuMemsetD2D8" @ 3020 legacy => work (dst: CUdeviceptr, pitch: usize, value: u8, width: usize, height: usize);
        cuMemsetD2D8_v2_ptds = "cuMemsetD2D8" @ 7000 per_thread => work (dst: CUdeviceptr, pitch: usize, value: u8, width: usize, height: usize);
        cuMemsetD2D16 = "cuMemsetD2D16" @ 2000 legacy => work (dst: CUdeviceptr_v1, pitch: c_uint, value: u16, width: c_uint, height: c_uint);
        cuMemsetD2D16_v2 = "cuMemsetD2D16" @ 3020 legacy => work (dst: CUdeviceptr, pitch: usize, value: u16, width: usize, height: usize);
        cuMemsetD2D16_v2_ptds = "cuMemsetD2D16" @ 7000 per_thread => work (dst: CUdeviceptr, pitch: usize, value: u16, width: usize, height: usize);
        cuMemsetD2D32 = "cuMemsetD2D32" @ 2000 legacy => work (dst: CUdeviceptr_v1, pitch: c_uint, value: c_uint, width: c_uint, height: c_uint);
        cuMemsetD2D32_v2 = "cuMemsetD2D32" @ 3020 legacy => work (dst: CUdeviceptr, pitch: usize, value: c_uint, width: usize, height: usize);
        cuMemsetD2D32_v2_ptds = "cuMemsetD2D32" @ 7000 per_thread => work (dst: CUdeviceptr, pitch: usize, value: c_uint, width: usize, height: usize);
        cuMemsetD8Async = "cuMemsetD8Async" @ 3020 legacy => work (dst: CUdeviceptr, value: u8, count: usize, stream: CUstream);
        cuMemsetD8Async_ptsz = "cuMemsetD8Async" @ 7000 per_thread => work (dst: CUdeviceptr, value: u8, count: usize, stream: CUstream);
        cuMemsetD16Async = "cuMemsetD16Async" @ 3020 legacy => work (dst: CUdeviceptr, value: u16, count: usize, stream: CUstream);
        cuMemsetD16Async_ptsz = "cuMemsetD16Async" @ 7000 per_thread => work (dst: CUdeviceptr, value: u16, count: usize, stream: CUstream);
        cuMemsetD32Async = "cuMemsetD32Async" @ 3020 legacy => work (dst: CUdeviceptr, value: c_uint, count: usize, stream: CUstream);
        cuMemsetD32Async_ptsz = "cuMemsetD32Async" @ 7000 per_thread => work (dst: CUdeviceptr, value: c_uint, count: usize, stream: CUstream);
        cuMemsetD2D8Async = "cuMemsetD2D8Async" @ 3020 legacy => work (dst: CUdeviceptr, pitch: usize, value: u8, width: usize, height: usize, stream: CUstream);
        cuMemsetD2D8Async_ptsz = "cuMemsetD2D8Async" @ 7000 per_thread => work (dst: CUdeviceptr, pitch: usize, value: u8, width: usize, height: usize, stream: CUstream);
        cuMemsetD2D16Async = "cuMemsetD2D16Async" @ 3020 legacy => work (dst: CUdeviceptr, pitch: usize, value: u16, width: usize, height: usize, stream: CUstream);
        cuMemsetD2D16Async_ptsz = "cuMemsetD2D16Async" @ 7000 per_thread => work (dst: CUdeviceptr, pitch: usize, value: u16, width: usize, height: usize, stream: CUstream);
        cuMemsetD2D32Async = "cuMemsetD2D32Async" @ 3020 legacy => work (dst: CUdeviceptr, pitch: usize, value: c_uint, width: usize, height: usize, stream: CUstream);
        cuMemsetD2D32Async_ptsz = "cuMemsetD2D32Async" @ 7000 per_thread => work (dst: CUdeviceptr, pitch: usize, value: c_uint, width: usize, height: usize, stream: CUstream);
        }
    };
}

pub(crate) use entry_points;
