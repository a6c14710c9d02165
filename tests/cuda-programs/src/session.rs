//! A loaded driver with a current context and the built-in kernels: what a
//! test program sets up before doing its work.

use std::ffi::{CString, c_int, c_uint, c_void};

use crate::driver::{Api, Loader};
use crate::error::{Error, check};
use crate::ffi::*;

/// The CUDA version the programs claim, as libcudart 13 does.
pub const CUDA_VERSION: c_int = 13000;

/// A driver, loaded and initialized, with device `device` current.
pub struct Cuda {
    pub loader: Loader,
    pub api: Api,
    pub device: CUdevice,
}

/// The built-in kernels of the fake driver, by function handle.
pub struct Kernels {
    pub fill_u32: CUfunction,
    pub add_u32: CUfunction,
    pub checksum_u32: CUfunction,
    pub sleep_us: CUfunction,
    /// A collective step shared with peer programs (see fake-cuda's kernels).
    pub rendezvous_u64: CUfunction,
}

impl Cuda {
    /// Loads `library`, resolves the API with per-thread default-stream
    /// variants if `per_thread`, initializes and makes the primary context
    /// of `device` current.
    pub fn open(library: &str, per_thread: bool, device: c_int) -> Result<Cuda, Error> {
        let flags = if per_thread {
            CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
        } else {
            CU_GET_PROC_ADDRESS_DEFAULT
        };
        let loader = Loader::open(library, CUDA_VERSION, flags)?;
        let api = Api::resolve(&loader)?;
        let mut cuda = Cuda {
            loader,
            api,
            device: 0,
        };
        // SAFETY: cuInit takes a plain flag.
        check("cuInit", unsafe { (cuda.api.init)(0) })?;
        // SAFETY: a valid out-pointer, per cuda.h.
        check("cuDeviceGet", unsafe {
            (cuda.api.device_get)(&mut cuda.device, device)
        })?;
        let mut ctx = std::ptr::null_mut();
        // SAFETY: a valid out-pointer and the device just found.
        check("cuDevicePrimaryCtxRetain", unsafe {
            (cuda.api.primary_ctx_retain)(&mut ctx, cuda.device)
        })?;
        // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
        check("cuCtxSetCurrent", unsafe {
            (cuda.api.ctx_set_current)(ctx)
        })?;
        Ok(cuda)
    }

    /// (free, total) bytes from `cuMemGetInfo_v2`.
    pub fn mem_info(&self) -> Result<(u64, u64), Error> {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: valid out-pointers.
        check("cuMemGetInfo_v2", unsafe {
            (self.api.mem_get_info)(&mut free, &mut total)
        })?;
        Ok((free as u64, total as u64))
    }

    /// Loads a module and looks up the kernels the programs use.
    pub fn kernels(&self) -> Result<Kernels, Error> {
        let image = b"fake-cuda test module\0";
        let mut module = std::ptr::null_mut();
        // SAFETY: valid out-pointer and image.
        check("cuModuleLoadData", unsafe {
            (self.api.module_load_data)(&mut module, image.as_ptr().cast())
        })?;
        let function = |name: &str| -> Result<CUfunction, Error> {
            let name = CString::new(name).expect("kernel names have no NUL");
            let mut function = std::ptr::null_mut();
            // SAFETY: valid out-pointer, module and C string.
            check("cuModuleGetFunction", unsafe {
                (self.api.module_get_function)(&mut function, module, name.as_ptr())
            })?;
            Ok(function)
        };
        Ok(Kernels {
            fill_u32: function("fill_u32")?,
            add_u32: function("add_u32")?,
            checksum_u32: function("checksum_u32")?,
            sleep_us: function("sleep_us")?,
            rendezvous_u64: function("rendezvous_u64")?,
        })
    }

    /// Launches `function` on `stream` (1 block of 1 thread: the fake's
    /// kernels loop themselves) with `args`, each a pointer to a value.
    #[allow(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "CUDA handles are opaque ids the driver checks; never dereferenced here"
    )]
    pub fn launch(
        &self,
        function: CUfunction,
        stream: CUstream,
        args: &[*mut c_void],
    ) -> Result<(), Error> {
        let mut args = args.to_vec();
        // SAFETY: `args` holds one valid pointer per kernel argument, and
        // the driver copies them before returning.
        check("cuLaunchKernel", unsafe {
            (self.api.launch_kernel)(
                function,
                1,
                1,
                1,
                1,
                1,
                1,
                0,
                stream,
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }

    /// Launches `fill_u32`/`add_u32`-style kernels: (ptr, value, count).
    pub fn launch_u32_op(
        &self,
        function: CUfunction,
        stream: CUstream,
        ptr: u64,
        value: u32,
        count: u64,
    ) -> Result<(), Error> {
        let (mut ptr, mut value, mut count) = (ptr, value, count);
        self.launch(
            function,
            stream,
            &[arg(&mut ptr), arg(&mut value), arg(&mut count)],
        )
    }

    /// A new stream.
    pub fn stream(&self) -> Result<CUstream, Error> {
        let mut stream = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        check("cuStreamCreate", unsafe {
            (self.api.stream_create)(&mut stream, 0 as c_uint)
        })?;
        Ok(stream)
    }

    /// Waits for `stream`.
    #[allow(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "CUDA handles are opaque ids the driver checks; never dereferenced here"
    )]
    pub fn synchronize(&self, stream: CUstream) -> Result<(), Error> {
        // SAFETY: a stream handle from this driver (or NULL).
        check("cuStreamSynchronize", unsafe {
            (self.api.stream_synchronize)(stream)
        })
    }
}

/// A kernel argument: a pointer to the value, as `kernelParams` wants.
pub fn arg<T>(value: &mut T) -> *mut c_void {
    (value as *mut T).cast()
}
