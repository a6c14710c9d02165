//! Modules and kernel launches. Any image loads (there is no real code to
//! load); functions resolve by name from the built-in kernel registry, and
//! launches queue the host kernel on the stream, traced as
//! `kernel_begin`/`kernel_end`.

use std::ffi::{c_char, c_uint, c_void};
use std::sync::Arc;

use super::current;
use crate::driver::driver;
use crate::ffi::*;
use crate::guard::{CuResult, entry, read_in, read_str, write_out};
use crate::kernels::{self, KERNELS};
use crate::stream::DefaultStream::{self, Legacy, PerThread};

/// Function handles are `FUNCTION_BASE + kernel index`.
const FUNCTION_BASE: usize = 0xfc_0000;

fn load(module: *mut CUmodule) -> CuResult {
    let (driver, _) = current()?;
    if module.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let handle = driver.new_handle();
    driver.modules.lock().insert(handle);
    // SAFETY: non-NULL; writable per the entry points' contracts.
    unsafe { write_out(module, handle as CUmodule) }
}

/// # Safety
/// `module` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) -> CUresult {
    entry(|| {
        if image.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        load(module)
    })
}

/// # Safety
/// `module` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleLoadDataEx(
    module: *mut CUmodule,
    image: *const c_void,
    _num_options: c_uint,
    _options: *mut c_void,
    _values: *mut *mut c_void,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    unsafe { cuModuleLoadData(module, image) }
}

/// The file must exist; its contents are not looked at.
///
/// # Safety
/// `module` is NULL or writable; `path` is NULL or a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleLoad(module: *mut CUmodule, path: *const c_char) -> CUresult {
    entry(|| {
        // SAFETY: forwarded caller contract.
        let path = unsafe { read_str(path) }?;
        if !std::path::Path::new(path).is_file() {
            return Err(CUDA_ERROR_FILE_NOT_FOUND);
        }
        load(module)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuModuleUnload(module: CUmodule) -> CUresult {
    entry(|| {
        if driver()?.modules.lock().remove(&(module as usize)) {
            Ok(())
        } else {
            Err(CUDA_ERROR_INVALID_HANDLE)
        }
    })
}

/// # Safety
/// `function` is NULL or writable; `name` is NULL or a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleGetFunction(
    function: *mut CUfunction,
    module: CUmodule,
    name: *const c_char,
) -> CUresult {
    entry(|| {
        let driver = driver()?;
        if !driver.modules.lock().contains(&(module as usize)) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        // SAFETY: forwarded caller contract.
        let name = unsafe { read_str(name) }?;
        let index = kernels::find(name).ok_or(CUDA_ERROR_NOT_FOUND)?;
        // SAFETY: forwarded caller contract.
        unsafe { write_out(function, (FUNCTION_BASE + index) as CUfunction) }
    })
}

/// Queues the kernel `function` with its arguments copied out now.
///
/// # Safety
/// `params` follows CUDA's `kernelParams` contract for the kernel.
unsafe fn launch(
    function: CUfunction,
    grid: [c_uint; 3],
    params: *mut *mut c_void,
    stream: CUstream,
    default: DefaultStream,
) -> CuResult {
    let (driver, device) = current()?;
    let kernel = (function as usize)
        .checked_sub(FUNCTION_BASE)
        .and_then(|index| KERNELS.get(index))
        .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if grid.contains(&0) {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: forwarded caller contract.
    let args = unsafe { kernels::read_args(kernel, params) }?;
    let stream_handle = stream as usize;
    let stream = driver.streams.resolve(stream, device, default)?;
    driver.streams.submit_replayable(
        &stream,
        Arc::new(move || {
            let name = kernel.name;
            if driver.trace.enabled() {
                driver.trace.event(
                    "kernel_begin",
                    format_args!("name={name} device={device} stream=0x{stream_handle:x}"),
                );
            }
            (kernel.run)(&args);
            if driver.trace.enabled() {
                driver.trace.event(
                    "kernel_end",
                    format_args!("name={name} device={device} stream=0x{stream_handle:x}"),
                );
            }
        }),
    )
}

macro_rules! launch_kernel {
    ($($name:ident => $default:ident;)*) => {$(
        /// # Safety
        /// `params` follows CUDA's `kernelParams` contract for the kernel.
        #[unsafe(no_mangle)]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn $name(
            function: CUfunction,
            grid_x: c_uint, grid_y: c_uint, grid_z: c_uint,
            block_x: c_uint, block_y: c_uint, block_z: c_uint,
            _shared_bytes: c_uint,
            stream: CUstream,
            params: *mut *mut c_void,
            _extra: *mut *mut c_void,
        ) -> CUresult {
            entry(|| {
                if [block_x, block_y, block_z].contains(&0) {
                    return Err(CUDA_ERROR_INVALID_VALUE);
                }
                // SAFETY: forwarded caller contract.
                unsafe { launch(function, [grid_x, grid_y, grid_z], params, stream, $default) }
            })
        }
    )*};
}

launch_kernel! {
    cuLaunchKernel => Legacy;
    cuLaunchKernel_ptsz => PerThread;
}

macro_rules! launch_cooperative {
    ($($name:ident => $default:ident;)*) => {$(
        /// # Safety
        /// `params` follows CUDA's `kernelParams` contract for the kernel.
        #[unsafe(no_mangle)]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn $name(
            function: CUfunction,
            grid_x: c_uint, grid_y: c_uint, grid_z: c_uint,
            _block_x: c_uint, _block_y: c_uint, _block_z: c_uint,
            _shared_bytes: c_uint,
            stream: CUstream,
            params: *mut *mut c_void,
        ) -> CUresult {
            // SAFETY: forwarded caller contract.
            entry(|| unsafe { launch(function, [grid_x, grid_y, grid_z], params, stream, $default) })
        }
    )*};
}

launch_cooperative! {
    cuLaunchCooperativeKernel => Legacy;
    cuLaunchCooperativeKernel_ptsz => PerThread;
}

macro_rules! launch_ex {
    ($($name:ident => $default:ident;)*) => {$(
        /// Launch attributes are ignored.
        ///
        /// # Safety
        /// `config` is NULL or readable; `params` as for `cuLaunchKernel`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            config: *const CUlaunchConfig,
            function: CUfunction,
            params: *mut *mut c_void,
            _extra: *mut *mut c_void,
        ) -> CUresult {
            entry(|| {
                // SAFETY: forwarded caller contract.
                let config = unsafe { read_in(config) }?;
                let grid = [config.grid_dim_x, config.grid_dim_y, config.grid_dim_z];
                // SAFETY: forwarded caller contract.
                unsafe { launch(function, grid, params, config.h_stream, $default) }
            })
        }
    )*};
}

launch_ex! {
    cuLaunchKernelEx => Legacy;
    cuLaunchKernelEx_ptsz => PerThread;
}
