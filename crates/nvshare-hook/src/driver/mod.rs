//! The real CUDA driver: `libcuda.so.1` loaded once, every function the hook
//! wraps or uses resolved into one table (by exact export name through the
//! real `dlsym`, else through the real `cuGetProcAddress`), and safe calls
//! over it for the gate, the client and the engines.
//!
//! The table is built lazily, at the first call a program makes into CUDA
//! through the hook; that call also starts logging. Nothing here runs for a
//! program that never touches CUDA.

mod call;
pub mod ctx;
pub mod device;
mod error;
mod helpers;
pub mod loader;
pub mod mem;
pub mod real;
pub mod stream;
pub mod vmm;

pub use error::CudaError;
pub use helpers::HelperFns;

use crate::ffi::*;
use loader::{open_libcuda, proc_address, real_dlsym};
use real::{ENTRY_POINTS, EntryPoint, RealFns};
use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Everything resolved from the real driver. Intercepted functions are
/// taken by their exact exported names through the real `dlsym` on the
/// `libcuda.so.1` handle (falling back to the real `cuGetProcAddress`);
/// the hook's own overrides are never consulted.
pub struct Driver {
    /// The real `cuGetProcAddress` (CUDA 11.3+).
    pub get_proc_address_v1: Option<CuGetProcAddressV1>,
    /// The real `cuGetProcAddress_v2` (CUDA 12+).
    pub get_proc_address_v2: Option<CuGetProcAddressV2>,
    /// The real functions behind the hook's wrappers.
    pub intercepted: RealFns,
    /// The addresses in `intercepted`, in [`ENTRY_POINTS`] order, to recognize
    /// what the real `cuGetProcAddress` returns.
    real_addresses: Vec<usize>,
    /// Driver functions the hook calls but does not wrap.
    pub helpers: HelperFns,
}

static DRIVER: OnceLock<Result<Driver, CudaError>> = OnceLock::new();

/// The driver table, built on first use. Also the hook's wake-up point:
/// logging starts here.
pub fn table() -> Result<&'static Driver, CudaError> {
    DRIVER
        .get_or_init(|| {
            crate::logging::init();
            let loaded = Driver::load();
            match &loaded {
                Ok(driver) => tracing::debug!(
                    intercepted = ENTRY_POINTS.len(),
                    resolved = driver.real_addresses.iter().filter(|&&a| a != 0).count(),
                    "nvshare hook attached to the CUDA driver"
                ),
                Err(err) => tracing::error!(%err, "nvshare hook cannot use the CUDA driver"),
            }
            loaded
        })
        .as_ref()
        .inspect(|driver| LOADED.store(std::ptr::from_ref(*driver).cast_mut(), Ordering::Release))
        .map_err(Clone::clone)
}

/// The table once built successfully: what the launch fast path reads
/// (one load, where the `OnceLock<Result<..>>` takes a state check and a
/// discriminant check). Null until then.
static LOADED: AtomicPtr<Driver> = AtomicPtr::new(std::ptr::null_mut());

/// The driver table if a program already called into CUDA; never builds it.
#[inline]
pub fn table_if_loaded() -> Option<&'static Driver> {
    let loaded = LOADED.load(Ordering::Acquire);
    // SAFETY: LOADED is null or points into DRIVER's value, which a
    // OnceLock in a static keeps in place, never moved or dropped.
    (!loaded.is_null()).then(|| unsafe { &*loaded })
}

/// What a wrapper returns when the driver lacks the function it wraps.
pub fn missing(name: &'static str) -> CUresult {
    tracing::error!(function = name, "the CUDA driver lacks this function");
    CUresult::ERROR_NOT_FOUND
}

impl Driver {
    fn load() -> Result<Driver, CudaError> {
        let handle = open_libcuda()?;
        let lookup = |name: &CStr| {
            // SAFETY: `handle` is a live dlopen handle and `name` a C string.
            unsafe { real_dlsym(handle, name.as_ptr()) }
        };
        let v2 = lookup(c"cuGetProcAddress_v2");
        let v1 = lookup(c"cuGetProcAddress");
        // SAFETY: these symbols of libcuda have exactly these signatures
        // (cuda.h, CUDA 11.3 and 12.0).
        let (get_proc_address_v2, get_proc_address_v1) = unsafe {
            (
                (!v2.is_null()).then(|| std::mem::transmute::<*mut c_void, CuGetProcAddressV2>(v2)),
                (!v1.is_null()).then(|| std::mem::transmute::<*mut c_void, CuGetProcAddressV1>(v1)),
            )
        };
        let proc = |base: &CStr, version: c_int, flags: u64| {
            proc_address(
                get_proc_address_v1,
                get_proc_address_v2,
                base,
                version,
                flags,
            )
        };
        // The exact export first: a name means one signature, where a
        // (base, version) pair depends on where each driver draws the line
        // between variants. cuGetProcAddress serves functions the driver
        // does not export, where the base has one variant of this kind.
        let intercepted = RealFns::resolve(|symbol: &EntryPoint| {
            let exact = lookup(symbol.name);
            let found = if !exact.is_null() || !real::is_unambiguous(symbol) {
                exact
            } else {
                let flags = if symbol.per_thread {
                    CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
                } else {
                    CU_GET_PROC_ADDRESS_LEGACY_STREAM
                };
                proc(symbol.base, symbol.version, flags)
            };
            // Never resolve to the hook itself: that would recurse forever.
            if loader::in_this_library(found) {
                std::ptr::null_mut()
            } else {
                found
            }
        });
        let real_addresses = intercepted.addresses();
        let helpers = HelperFns::resolve(|base, name, version| {
            let exact = lookup(name);
            if exact.is_null() {
                proc(base, version, CU_GET_PROC_ADDRESS_LEGACY_STREAM)
            } else {
                exact
            }
        });
        Ok(Driver {
            get_proc_address_v1,
            get_proc_address_v2,
            intercepted,
            real_addresses,
            helpers,
        })
    }

    /// The intercepted entry point whose real function is at `address`.
    pub fn entry_for_real(&self, address: *mut c_void) -> Option<&'static EntryPoint> {
        let wanted = address as usize;
        self.real_addresses
            .iter()
            .position(|&a| a == wanted && a != 0)
            .map(|index| &ENTRY_POINTS[index])
    }
}
