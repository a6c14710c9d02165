//! Raw CUDA driver and NVML types and constants, as `cuda.h` and `nvml.h`
//! define them. Only what the hook reads or writes is spelled out; structures
//! it merely forwards are opaque pointers.

#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_int, c_uint, c_void};
use std::fmt;

/// A CUDA driver status code (`CUresult`).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CUresult(pub u32);

impl CUresult {
    /// `CUDA_SUCCESS`.
    pub const SUCCESS: Self = Self(0);
    /// `CUDA_ERROR_INVALID_VALUE`.
    pub const ERROR_INVALID_VALUE: Self = Self(1);
    /// `CUDA_ERROR_OUT_OF_MEMORY`.
    pub const ERROR_OUT_OF_MEMORY: Self = Self(2);
    /// `CUDA_ERROR_NOT_INITIALIZED`.
    pub const ERROR_NOT_INITIALIZED: Self = Self(3);
    /// `CUDA_ERROR_DEINITIALIZED`.
    pub const ERROR_DEINITIALIZED: Self = Self(4);
    /// `CUDA_ERROR_NO_DEVICE`.
    pub const ERROR_NO_DEVICE: Self = Self(100);
    /// `CUDA_ERROR_INVALID_DEVICE`.
    pub const ERROR_INVALID_DEVICE: Self = Self(101);
    /// `CUDA_ERROR_INVALID_CONTEXT`.
    pub const ERROR_INVALID_CONTEXT: Self = Self(201);
    /// `CUDA_ERROR_SHARED_OBJECT_INIT_FAILED`.
    pub const ERROR_SHARED_OBJECT_INIT_FAILED: Self = Self(303);
    /// `CUDA_ERROR_NOT_FOUND`.
    pub const ERROR_NOT_FOUND: Self = Self(500);
    /// `CUDA_ERROR_NOT_SUPPORTED`.
    pub const ERROR_NOT_SUPPORTED: Self = Self(801);
    /// `CUDA_ERROR_UNKNOWN`.
    pub const ERROR_UNKNOWN: Self = Self(999);

    /// Whether this is `CUDA_SUCCESS`.
    pub fn is_success(self) -> bool {
        self == Self::SUCCESS
    }

    /// The `CUDA_ERROR_*` name of well-known codes, for log lines.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "CUDA_SUCCESS",
            1 => "CUDA_ERROR_INVALID_VALUE",
            2 => "CUDA_ERROR_OUT_OF_MEMORY",
            3 => "CUDA_ERROR_NOT_INITIALIZED",
            4 => "CUDA_ERROR_DEINITIALIZED",
            100 => "CUDA_ERROR_NO_DEVICE",
            101 => "CUDA_ERROR_INVALID_DEVICE",
            201 => "CUDA_ERROR_INVALID_CONTEXT",
            303 => "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED",
            500 => "CUDA_ERROR_NOT_FOUND",
            801 => "CUDA_ERROR_NOT_SUPPORTED",
            999 => "CUDA_ERROR_UNKNOWN",
            _ => "CUDA_ERROR_(other)",
        }
    }
}

impl fmt::Debug for CUresult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Display for CUresult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A device ordinal.
pub type CUdevice = c_int;
/// A device address (64-bit since CUDA 3.2).
pub type CUdeviceptr = u64;
/// A device address of the pre-3.2 (`_v1`) entry points.
pub type CUdeviceptr_v1 = c_uint;
/// `CUcontext` (opaque).
pub type CUcontext = *mut c_void;
/// `CUstream` (opaque; null is the default stream).
pub type CUstream = *mut c_void;
/// `CUevent` (opaque).
pub type CUevent = *mut c_void;
/// `CUfunction` (opaque).
pub type CUfunction = *mut c_void;
/// `CUarray` (opaque).
pub type CUarray = *mut c_void;
/// `CUgraphExec` (opaque).
pub type CUgraphExec = *mut c_void;
/// `CUmemoryPool` (opaque).
pub type CUmemoryPool = *mut c_void;
/// `CUhostFn`: a host callback enqueued by `cuLaunchHostFunc`.
pub type CUhostFn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;
/// `CUmemGenericAllocationHandle` (a VMM physical allocation).
pub type CUmemGenericAllocationHandle = u64;
/// Stream flags and similar plain bit sets.
pub type CUflags = c_uint;

/// `CUdriverProcAddressQueryResult`: `cuGetProcAddress_v2`'s symbol status.
pub type CUdriverProcAddressQueryResult = c_int;
/// The symbol was found.
pub const CU_GET_PROC_ADDRESS_SUCCESS: CUdriverProcAddressQueryResult = 0;
/// No such symbol.
pub const CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND: CUdriverProcAddressQueryResult = 1;
/// The symbol exists in a newer CUDA version than the one requested.
pub const CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT: CUdriverProcAddressQueryResult = 2;

/// `cuGetProcAddress` flags: the default search.
pub const CU_GET_PROC_ADDRESS_DEFAULT: u64 = 0;
/// `cuGetProcAddress` flags: the legacy default stream variants.
pub const CU_GET_PROC_ADDRESS_LEGACY_STREAM: u64 = 1;
/// `cuGetProcAddress` flags: the per-thread default stream variants
/// (`_ptds`/`_ptsz`).
pub const CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM: u64 = 2;

/// `CU_MEM_ATTACH_GLOBAL`: managed memory reachable from every stream.
pub const CU_MEM_ATTACH_GLOBAL: c_uint = 1;
/// `CU_DEVICE_CPU`: the host as a prefetch target (pre-12.2 signature).
pub const CU_DEVICE_CPU: CUdevice = -1;
/// `CU_STREAM_DEFAULT`: a blocking stream, ordered with the legacy default
/// stream.
pub const CU_STREAM_DEFAULT: CUflags = 0;

/// `CUmemLocationType`.
pub type CUmemLocationType = c_uint;
/// The location is a device (`id` is its ordinal).
pub const CU_MEM_LOCATION_TYPE_DEVICE: CUmemLocationType = 1;
/// The location is the host.
pub const CU_MEM_LOCATION_TYPE_HOST: CUmemLocationType = 2;

/// `CUmemLocation`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CUmemLocation {
    /// A `CU_MEM_LOCATION_TYPE_*`.
    pub type_: CUmemLocationType,
    /// The device ordinal (or NUMA node), by type.
    pub id: c_int,
}

/// `CU_MEM_ALLOCATION_TYPE_PINNED`: device memory that stays in place.
pub const CU_MEM_ALLOCATION_TYPE_PINNED: c_uint = 1;
/// `CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR`: exportable as a file descriptor.
pub const CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR: c_uint = 1;
/// `CU_MEM_ACCESS_FLAGS_PROT_NONE`: no access.
pub const CU_MEM_ACCESS_FLAGS_PROT_NONE: c_uint = 0;
/// `CU_MEM_ACCESS_FLAGS_PROT_READWRITE`.
pub const CU_MEM_ACCESS_FLAGS_PROT_READWRITE: c_uint = 3;
/// `CU_MEM_ALLOC_GRANULARITY_MINIMUM` (`CUmemAllocationGranularity_flags`).
pub const CU_MEM_ALLOC_GRANULARITY_MINIMUM: c_int = 0;
/// `CU_MEMHOSTREGISTER_PORTABLE`: pinned for every context.
pub const CU_MEMHOSTREGISTER_PORTABLE: c_uint = 1;
/// `CU_EVENT_DISABLE_TIMING`: an event only waited on, never timed
/// (cheaper to record).
pub const CU_EVENT_DISABLE_TIMING: c_uint = 2;

/// `CU_STREAM_NON_BLOCKING`: a stream not ordered with the legacy default
/// stream.
pub const CU_STREAM_NON_BLOCKING: CUflags = 1;

/// `CUmemorytype`: `CU_MEMORYTYPE_HOST`.
pub const CU_MEMORYTYPE_HOST: c_uint = 1;
/// `CUmemorytype`: `CU_MEMORYTYPE_DEVICE`.
pub const CU_MEMORYTYPE_DEVICE: c_uint = 2;

/// `CUpointer_attribute` (`cuPointerGetAttribute[s]`).
pub type CUpointer_attribute = c_int;
/// The context of the allocation (`CUcontext`).
pub const CU_POINTER_ATTRIBUTE_CONTEXT: CUpointer_attribute = 1;
/// `CUmemorytype` (`unsigned int`).
pub const CU_POINTER_ATTRIBUTE_MEMORY_TYPE: CUpointer_attribute = 2;
/// The device address (`CUdeviceptr`).
pub const CU_POINTER_ATTRIBUTE_DEVICE_POINTER: CUpointer_attribute = 3;
/// The host address (`void *`).
pub const CU_POINTER_ATTRIBUTE_HOST_POINTER: CUpointer_attribute = 4;
/// Synchronous memory operations (`unsigned int`, boolean).
pub const CU_POINTER_ATTRIBUTE_SYNC_MEMOPS: CUpointer_attribute = 6;
/// A unique allocation id (`unsigned long long`).
pub const CU_POINTER_ATTRIBUTE_BUFFER_ID: CUpointer_attribute = 7;
/// Managed memory (`unsigned int`, boolean).
pub const CU_POINTER_ATTRIBUTE_IS_MANAGED: CUpointer_attribute = 8;
/// The device ordinal (`int`).
pub const CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: CUpointer_attribute = 9;
/// Legacy CUDA IPC works on it (`unsigned int`, boolean).
pub const CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE: CUpointer_attribute = 10;
/// The allocation's start (`CUdeviceptr`).
pub const CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: CUpointer_attribute = 11;
/// The allocation's size (`size_t`).
pub const CU_POINTER_ATTRIBUTE_RANGE_SIZE: CUpointer_attribute = 12;
/// Mapped (`unsigned int`, boolean).
pub const CU_POINTER_ATTRIBUTE_MAPPED: CUpointer_attribute = 13;
/// Exportable handle types (`unsigned long long` bits).
pub const CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES: CUpointer_attribute = 14;
/// GPUDirect RDMA capable (`unsigned int`, boolean).
pub const CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE: CUpointer_attribute = 15;
/// The current context's access (`unsigned int`, `CUmemAccess_flags`).
pub const CU_POINTER_ATTRIBUTE_ACCESS_FLAGS: CUpointer_attribute = 16;
/// The VMM mapping's size (`size_t`).
pub const CU_POINTER_ATTRIBUTE_MAPPING_SIZE: CUpointer_attribute = 18;
/// The VMM mapping's start (`CUdeviceptr`).
pub const CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR: CUpointer_attribute = 19;
/// A unique memory block id (`unsigned long long`).
pub const CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID: CUpointer_attribute = 20;

/// `CUmemAllocationProp::allocFlags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CUmemAllocationPropFlags {
    /// `compressionType`.
    pub compressionType: u8,
    /// `gpuDirectRDMACapable`.
    pub gpuDirectRDMACapable: u8,
    /// `usage`.
    pub usage: u16,
    /// `reserved`.
    pub reserved: [u8; 4],
}

/// `CUmemAllocationProp`: what `cuMemCreate` makes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CUmemAllocationProp {
    /// `CU_MEM_ALLOCATION_TYPE_*`.
    pub type_: c_uint,
    /// `CU_MEM_HANDLE_TYPE_*` bits.
    pub requestedHandleTypes: c_uint,
    /// Where the memory lives.
    pub location: CUmemLocation,
    /// Windows only.
    pub win32HandleMetaData: *mut c_void,
    /// Allocation flags.
    pub allocFlags: CUmemAllocationPropFlags,
}

/// `CUmemAccessDesc`: one location's access to a mapped range.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CUmemAccessDesc {
    /// Who gets access.
    pub location: CUmemLocation,
    /// `CU_MEM_ACCESS_FLAGS_*`.
    pub flags: c_uint,
}

/// `CUuuid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CUuuid {
    /// The 16 bytes.
    pub bytes: [u8; 16],
}

/// `CUDA_MEMCPY2D`, `CUDA_MEMCPY3D`, `CUDA_MEMCPY3D_PEER`,
/// `CUlaunchConfig` and the batch-copy descriptors: forwarded, never read.
pub type OpaqueParams = *const c_void;

/// `nvmlReturn_t`.
pub type nvmlReturn_t = c_uint;
/// `NVML_SUCCESS`.
pub const NVML_SUCCESS: nvmlReturn_t = 0;
/// `NVML_ERROR_LIBRARY_NOT_FOUND`.
pub const NVML_ERROR_LIBRARY_NOT_FOUND: nvmlReturn_t = 12;
/// `NVML_ERROR_FUNCTION_NOT_FOUND`.
pub const NVML_ERROR_FUNCTION_NOT_FOUND: nvmlReturn_t = 13;
/// `NVML_ERROR_UNKNOWN`.
pub const NVML_ERROR_UNKNOWN: nvmlReturn_t = 999;
/// `nvmlDevice_t` (opaque).
pub type nvmlDevice_t = *mut c_void;

/// `nvmlMemory_t` (`nvmlDeviceGetMemoryInfo`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct nvmlMemory_t {
    /// Installed memory, bytes.
    pub total: u64,
    /// Unallocated memory, bytes.
    pub free: u64,
    /// Allocated memory, bytes.
    pub used: u64,
}

/// `nvmlMemory_v2_t` (`nvmlDeviceGetMemoryInfo_v2`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct nvmlMemory_v2_t {
    /// The structure version the caller set.
    pub version: c_uint,
    /// Installed memory, bytes.
    pub total: u64,
    /// Memory reserved by the system, bytes.
    pub reserved: u64,
    /// Unallocated memory, bytes.
    pub free: u64,
    /// Allocated memory, bytes.
    pub used: u64,
}

/// `cuGetProcAddress` (CUDA 11.3 signature).
pub type CuGetProcAddressV1 = unsafe extern "C" fn(
    symbol: *const std::ffi::c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
) -> CUresult;

/// `cuGetProcAddress_v2` (CUDA 12 signature, with the symbol status).
pub type CuGetProcAddressV2 = unsafe extern "C" fn(
    symbol: *const std::ffi::c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
    symbol_status: *mut CUdriverProcAddressQueryResult,
) -> CUresult;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layouts_match_cuda_h() {
        assert_eq!(std::mem::size_of::<CUmemLocation>(), 8);
        assert_eq!(std::mem::size_of::<CUmemAllocationProp>(), 32);
        assert_eq!(std::mem::size_of::<CUmemAccessDesc>(), 12);
        assert_eq!(std::mem::size_of::<nvmlMemory_v2_t>(), 40);
    }

    #[test]
    fn codes_name_themselves() {
        assert_eq!(
            CUresult::ERROR_OUT_OF_MEMORY.name(),
            "CUDA_ERROR_OUT_OF_MEMORY"
        );
        assert!(CUresult::SUCCESS.is_success());
        assert!(!CUresult(12345).is_success());
    }
}
