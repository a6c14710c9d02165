//! Driver functions the hook calls for itself but does not wrap, each with
//! the CUDA version whose signature it is declared with.

use crate::ffi::*;
use std::ffi::{CStr, c_int, c_uint, c_void};

macro_rules! helpers {
    ($($name:ident / $export:literal @ $version:literal ($($ty:ty),* $(,)?);)*) => {
        /// The real helper functions (`None` where the driver lacks one).
        #[allow(non_snake_case)]
        pub struct HelperFns {
            $(
                #[doc = concat!("`", stringify!($name), "` as of CUDA version ", stringify!($version), ".")]
                pub $name: Option<unsafe extern "C" fn($($ty),*) -> CUresult>,
            )*
        }

        impl HelperFns {
            /// Resolves each helper with `resolve(base name, exported name, version)`; the
            /// exported name is the fallback for drivers before `cuGetProcAddress`.
            pub(super) fn resolve(
                mut resolve: impl FnMut(&CStr, &CStr, c_int) -> *mut c_void,
            ) -> Self {
                HelperFns {
                    $(
                        $name: {
                            let base = CStr::from_bytes_with_nul(
                                concat!(stringify!($name), "\0").as_bytes(),
                            ).expect("literal without inner NUL");
                            let export = CStr::from_bytes_with_nul(
                                concat!($export, "\0").as_bytes(),
                            ).expect("literal without inner NUL");
                            let address = resolve(base, export, $version);
                            // SAFETY: the driver's entry point for this name
                            // at this version has the declared signature.
                            (!address.is_null()).then(|| unsafe {
                                std::mem::transmute::<
                                    *mut c_void,
                                    unsafe extern "C" fn($($ty),*) -> CUresult,
                                >(address)
                            })
                        },
                    )*
                }
            }
        }
    };
}

helpers! {
    cuInit / "cuInit" @ 2000 (c_uint);
    cuDriverGetVersion / "cuDriverGetVersion" @ 2020 (*mut c_int);
    cuCtxGetCurrent / "cuCtxGetCurrent" @ 4000 (*mut CUcontext);
    cuCtxSetCurrent / "cuCtxSetCurrent" @ 4000 (CUcontext);
    cuCtxPushCurrent / "cuCtxPushCurrent_v2" @ 4000 (CUcontext);
    cuCtxPopCurrent / "cuCtxPopCurrent_v2" @ 4000 (*mut CUcontext);
    cuCtxGetDevice / "cuCtxGetDevice" @ 2000 (*mut CUdevice);
    cuCtxSynchronize / "cuCtxSynchronize" @ 2000 ();
    cuDevicePrimaryCtxRetain / "cuDevicePrimaryCtxRetain" @ 7000 (*mut CUcontext, CUdevice);
    cuDevicePrimaryCtxRelease / "cuDevicePrimaryCtxRelease_v2" @ 11000 (CUdevice);
    cuDeviceGet / "cuDeviceGet" @ 2000 (*mut CUdevice, c_int);
    cuDeviceGetCount / "cuDeviceGetCount" @ 2000 (*mut c_int);
    cuDeviceGetUuid / "cuDeviceGetUuid" @ 9020 (*mut CUuuid, CUdevice);
    cuStreamCreate / "cuStreamCreate" @ 2000 (*mut CUstream, c_uint);
    cuStreamSynchronize / "cuStreamSynchronize" @ 2000 (CUstream);
    cuStreamDestroy / "cuStreamDestroy_v2" @ 4000 (CUstream);
    cuEventCreate / "cuEventCreate" @ 2000 (*mut CUevent, c_uint);
    cuEventRecord / "cuEventRecord" @ 2000 (CUevent, CUstream);
    cuEventSynchronize / "cuEventSynchronize" @ 2000 (CUevent);
    cuEventDestroy / "cuEventDestroy_v2" @ 4000 (CUevent);
    cuMemGetAddressRange / "cuMemGetAddressRange_v2" @ 3020 (*mut CUdeviceptr, *mut usize, CUdeviceptr);
    cuPointerGetAttribute / "cuPointerGetAttribute" @ 4000 (*mut c_void, c_int, CUdeviceptr);
    // Virtual memory management and pinning (the swap engine).
    cuMemGetAllocationGranularity / "cuMemGetAllocationGranularity" @ 10020 (*mut usize, *const CUmemAllocationProp, c_int);
    cuMemAddressReserve / "cuMemAddressReserve" @ 10020 (*mut CUdeviceptr, usize, usize, CUdeviceptr, u64);
    cuMemAddressFree / "cuMemAddressFree" @ 10020 (CUdeviceptr, usize);
    cuMemCreate / "cuMemCreate" @ 10020 (*mut CUmemGenericAllocationHandle, usize, *const CUmemAllocationProp, u64);
    cuMemRelease / "cuMemRelease" @ 10020 (CUmemGenericAllocationHandle);
    cuMemMap / "cuMemMap" @ 10020 (CUdeviceptr, usize, usize, CUmemGenericAllocationHandle, u64);
    cuMemUnmap / "cuMemUnmap" @ 10020 (CUdeviceptr, usize);
    cuMemSetAccess / "cuMemSetAccess" @ 10020 (CUdeviceptr, usize, *const CUmemAccessDesc, usize);
    cuMemHostRegister / "cuMemHostRegister_v2" @ 6050 (*mut c_void, usize, c_uint);
    cuMemHostUnregister / "cuMemHostUnregister" @ 4000 (*mut c_void);
}
