//! Loading the driver the way libcudart 13 does: `dlopen("libcuda.so.1")`,
//! `dlsym("cuGetProcAddress_v2")`, a probe with an empty name, then every
//! function through `cuGetProcAddress_v2` with the chosen stream flag, and a
//! few versioned names (`cuMemAlloc_v2`, `cuMemGetInfo_v2`) by plain `dlsym`.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};

use crate::error::Error;
use crate::ffi::*;

/// `cuGetProcAddress_v2`'s signature (CUDA 12).
pub type GetProcAddressV2 =
    unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64, *mut c_int) -> CUresult;

/// What one `cuGetProcAddress_v2` call answered.
#[derive(Clone, Copy, Debug)]
pub struct Lookup {
    pub result: CUresult,
    pub status: c_int,
    pub pointer: *mut c_void,
}

/// An opened driver library.
pub struct Loader {
    handle: *mut c_void,
    get_proc_address: GetProcAddressV2,
    /// The CUDA version passed to every lookup (like libcudart's own).
    pub cuda_version: c_int,
    /// `CU_GET_PROC_ADDRESS_*` flags for the typed table.
    pub flags: u64,
    /// What the empty-name probe answered.
    pub probe: Lookup,
}

impl Loader {
    /// Opens `library` and takes `cuGetProcAddress_v2` from it.
    pub fn open(library: &str, cuda_version: c_int, flags: u64) -> Result<Loader, Error> {
        let load_error = |reason: String| Error::Load {
            library: library.to_string(),
            reason,
        };
        let name = CString::new(library).map_err(|e| load_error(e.to_string()))?;
        // SAFETY: `name` is a valid C string; dlopen has no other preconditions.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(load_error(dl_error()));
        }
        let get_proc_address =
            raw_dlsym(handle, "cuGetProcAddress_v2").ok_or_else(|| Error::Missing {
                name: "cuGetProcAddress_v2".into(),
                how: "dlsym".into(),
            })?;
        // SAFETY: the driver exports cuGetProcAddress_v2 with this signature.
        let get_proc_address =
            unsafe { std::mem::transmute::<*mut c_void, GetProcAddressV2>(get_proc_address) };
        let mut loader = Loader {
            handle,
            get_proc_address,
            cuda_version,
            flags,
            probe: Lookup {
                result: CUDA_SUCCESS,
                status: 0,
                pointer: std::ptr::null_mut(),
            },
        };
        loader.probe = loader.lookup("", CU_GET_PROC_ADDRESS_DEFAULT);
        Ok(loader)
    }

    /// `dlsym(handle, name)` on the driver.
    pub fn dlsym(&self, name: &str) -> Option<*mut c_void> {
        raw_dlsym(self.handle, name)
    }

    /// `cuGetProcAddress_v2(name, .., cuda_version, flags, ..)`.
    pub fn lookup(&self, name: &str, flags: u64) -> Lookup {
        let name = CString::new(name).expect("driver function names have no NUL");
        let mut pointer = std::ptr::null_mut();
        let mut status: c_int = -1;
        // SAFETY: valid C string and out-pointers, as the API requires.
        let result = unsafe {
            (self.get_proc_address)(
                name.as_ptr(),
                &mut pointer,
                self.cuda_version,
                flags,
                &mut status,
            )
        };
        Lookup {
            result,
            status,
            pointer,
        }
    }

    fn by_proc_address(&self, name: &str) -> Result<*mut c_void, Error> {
        let found = self.lookup(name, self.flags);
        if found.result != CUDA_SUCCESS || found.pointer.is_null() {
            return Err(Error::Missing {
                name: name.into(),
                how: format!(
                    "cuGetProcAddress_v2 returned {} with status {}",
                    found.result, found.status
                ),
            });
        }
        Ok(found.pointer)
    }

    fn by_dlsym(&self, name: &str) -> Result<*mut c_void, Error> {
        self.dlsym(name).ok_or_else(|| Error::Missing {
            name: name.into(),
            how: "dlsym".into(),
        })
    }
}

fn raw_dlsym(handle: *mut c_void, name: &str) -> Option<*mut c_void> {
    let name = CString::new(name).ok()?;
    // SAFETY: `handle` came from dlopen and `name` is a valid C string.
    let pointer = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!pointer.is_null()).then_some(pointer)
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a valid C string owned by libc.
    let text = unsafe { libc::dlerror() };
    if text.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-NULL C string from dlerror.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }
}

/// The file of the shared object that contains the address `pointer`
/// (`dladdr`; the address is only compared, never dereferenced).
pub fn library_of(pointer: *mut c_void) -> Option<String> {
    let pointer = pointer as *const c_void;
    // SAFETY: an all-zero Dl_info is a valid value to be overwritten.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    if pointer.is_null()
        // SAFETY: dladdr only reads the address value and writes `info`.
        || unsafe { libc::dladdr(pointer, &mut info) } == 0
        || info.dli_fname.is_null()
    {
        return None;
    }
    // SAFETY: dli_fname is a valid C string when dladdr succeeds.
    Some(
        unsafe { CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned(),
    )
}

macro_rules! api {
    ($($field:ident = $how:ident($name:literal): ($($arg:ty),*);)*) => {
        /// The driver functions the test programs call, typed.
        pub struct Api {
            $(pub $field: unsafe extern "C" fn($($arg),*) -> CUresult,)*
        }

        impl Api {
            /// Resolves every function, failing on the first missing one.
            pub fn resolve(loader: &Loader) -> Result<Api, Error> {
                Ok(Api {
                    $($field: {
                        let pointer = loader.$how($name)?;
                        // SAFETY: the driver's function of this name has this
                        // signature (cuda.h, for the version we ask for).
                        unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($arg),*) -> CUresult>(pointer) }
                    },)*
                })
            }
        }
    };
}

api! {
    init = by_proc_address("cuInit"): (c_uint);
    device_get = by_proc_address("cuDeviceGet"): (*mut CUdevice, c_int);
    device_get_count = by_proc_address("cuDeviceGetCount"): (*mut c_int);
    device_get_uuid = by_proc_address("cuDeviceGetUuid"): (*mut CUuuid, CUdevice);
    device_total_mem = by_proc_address("cuDeviceTotalMem"): (*mut usize, CUdevice);
    primary_ctx_retain = by_proc_address("cuDevicePrimaryCtxRetain"): (*mut CUcontext, CUdevice);
    ctx_set_current = by_proc_address("cuCtxSetCurrent"): (CUcontext);
    ctx_synchronize = by_proc_address("cuCtxSynchronize"): ();
    mem_alloc = by_dlsym("cuMemAlloc_v2"): (*mut CUdeviceptr, usize);
    mem_get_info = by_dlsym("cuMemGetInfo_v2"): (*mut usize, *mut usize);
    mem_free = by_proc_address("cuMemFree"): (CUdeviceptr);
    mem_alloc_managed = by_proc_address("cuMemAllocManaged"): (*mut CUdeviceptr, usize, c_uint);
    mem_prefetch = by_proc_address("cuMemPrefetchAsync"): (CUdeviceptr, usize, CUmemLocation, c_uint, CUstream);
    mem_get_granularity = by_proc_address("cuMemGetAllocationGranularity"): (*mut usize, *const CUmemAllocationProp, c_int);
    mem_address_reserve = by_proc_address("cuMemAddressReserve"): (*mut CUdeviceptr, usize, usize, CUdeviceptr, u64);
    mem_address_free = by_proc_address("cuMemAddressFree"): (CUdeviceptr, usize);
    mem_create = by_proc_address("cuMemCreate"): (*mut CUmemGenericAllocationHandle, usize, *const CUmemAllocationProp, u64);
    mem_release = by_proc_address("cuMemRelease"): (CUmemGenericAllocationHandle);
    mem_map = by_proc_address("cuMemMap"): (CUdeviceptr, usize, usize, CUmemGenericAllocationHandle, u64);
    mem_unmap = by_proc_address("cuMemUnmap"): (CUdeviceptr, usize);
    mem_set_access = by_proc_address("cuMemSetAccess"): (CUdeviceptr, usize, *const CUmemAccessDesc, usize);
    mem_export = by_proc_address("cuMemExportToShareableHandle"): (*mut c_void, CUmemGenericAllocationHandle, c_int, u64);
    mem_import = by_proc_address("cuMemImportFromShareableHandle"): (*mut CUmemGenericAllocationHandle, *mut c_void, c_int);
    ipc_get_mem_handle = by_proc_address("cuIpcGetMemHandle"): (*mut [u8; 64], CUdeviceptr);
    mem_host_alloc = by_proc_address("cuMemHostAlloc"): (*mut *mut c_void, usize, c_uint);
    mem_free_host = by_proc_address("cuMemFreeHost"): (*mut c_void);
    mem_host_register = by_proc_address("cuMemHostRegister"): (*mut c_void, usize, c_uint);
    mem_host_unregister = by_proc_address("cuMemHostUnregister"): (*mut c_void);
    device_get_name = by_proc_address("cuDeviceGetName"): (*mut c_char, c_int, CUdevice);
    stream_begin_capture = by_proc_address("cuStreamBeginCapture"): (CUstream, c_int);
    stream_end_capture = by_proc_address("cuStreamEndCapture"): (CUstream, *mut *mut c_void);
    graph_instantiate = by_proc_address("cuGraphInstantiate"): (*mut *mut c_void, *mut c_void, u64);
    graph_launch = by_proc_address("cuGraphLaunch"): (*mut c_void, CUstream);
    graph_exec_destroy = by_proc_address("cuGraphExecDestroy"): (*mut c_void);
    graph_destroy = by_proc_address("cuGraphDestroy"): (*mut c_void);
    memcpy_htod = by_proc_address("cuMemcpyHtoD"): (CUdeviceptr, *const c_void, usize);
    memcpy_dtoh = by_proc_address("cuMemcpyDtoH"): (*mut c_void, CUdeviceptr, usize);
    memset_d8 = by_proc_address("cuMemsetD8"): (CUdeviceptr, u8, usize);
    pointer_get_attribute = by_proc_address("cuPointerGetAttribute"): (*mut c_void, c_uint, CUdeviceptr);
    mem_get_address_range = by_proc_address("cuMemGetAddressRange"): (*mut CUdeviceptr, *mut usize, CUdeviceptr);
    module_load_data = by_proc_address("cuModuleLoadData"): (*mut CUmodule, *const c_void);
    module_get_function = by_proc_address("cuModuleGetFunction"): (*mut CUfunction, CUmodule, *const c_char);
    launch_kernel = by_proc_address("cuLaunchKernel"): (CUfunction, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, CUstream, *mut *mut c_void, *mut *mut c_void);
    stream_create = by_proc_address("cuStreamCreate"): (*mut CUstream, c_uint);
    stream_synchronize = by_proc_address("cuStreamSynchronize"): (CUstream);
    stream_query = by_proc_address("cuStreamQuery"): (CUstream);
    stream_destroy = by_proc_address("cuStreamDestroy"): (CUstream);
    event_create = by_proc_address("cuEventCreate"): (*mut CUevent, c_uint);
    event_record = by_proc_address("cuEventRecord"): (CUevent, CUstream);
    event_query = by_proc_address("cuEventQuery"): (CUevent);
    event_destroy = by_proc_address("cuEventDestroy"): (CUevent);
}
