//! How the hook reaches the real driver past its own exports: the real
//! `dlsym` (glibc's, found with `dlvsym(RTLD_NEXT)`, since the hook exports
//! its own), `libcuda.so.1` opened once, the real `cuGetProcAddress`, and
//! the check that an address is not the hook's own code.

use super::CudaError;
use crate::ffi::*;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The library the hook loads (the name libcudart loads too).
const LIBCUDA: &CStr = c"libcuda.so.1";

/// The C signature of `dlsym`.
pub type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// The real `dlsym`, cached (null until first needed).
static REAL_DLSYM: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// The glibc symbol versions `dlsym` has had: the original for each
/// architecture, then the one glibc 2.34 gave it when libdl merged into libc.
#[cfg(target_arch = "x86_64")]
const DLSYM_VERSIONS: [&CStr; 2] = [c"GLIBC_2.2.5", c"GLIBC_2.34"];
#[cfg(target_arch = "aarch64")]
const DLSYM_VERSIONS: [&CStr; 2] = [c"GLIBC_2.17", c"GLIBC_2.34"];

/// The real `dlsym` as a function, found once (`None` if glibc has none).
pub fn real_dlsym_fn() -> Option<DlsymFn> {
    let mut address = REAL_DLSYM.load(Ordering::Acquire);
    if address.is_null() {
        for version in DLSYM_VERSIONS {
            // SAFETY: dlvsym with RTLD_NEXT and NUL-terminated literals;
            // it is not interposed, so this cannot recurse.
            address = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), version.as_ptr()) };
            if !address.is_null() {
                break;
            }
        }
        if address.is_null() {
            return None;
        }
        // Racing threads store the same value.
        REAL_DLSYM.store(address, Ordering::Release);
    }
    // SAFETY: `address` is glibc's `dlsym`, which has this signature.
    Some(unsafe { std::mem::transmute::<*mut c_void, DlsymFn>(address) })
}

/// The real `dlsym`: every lookup the hook itself makes goes through here,
/// never through the exported override.
///
/// # Safety
/// As `dlsym(3)`: `handle` is a handle from `dlopen` or a pseudo-handle and
/// `name` a NUL-terminated string.
pub unsafe fn real_dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    match real_dlsym_fn() {
        // SAFETY: forwarded under the caller's contract.
        Some(dlsym) => unsafe { dlsym(handle, name) },
        None => std::ptr::null_mut(),
    }
}

/// Whether `address` lies in the object the hook itself was loaded from
/// (`libnvshare.so`, or the test binary the hook is linked into): resolving
/// a driver function to it would make a wrapper call itself forever.
pub fn in_this_library(address: *mut c_void) -> bool {
    if address.is_null() {
        return false;
    }
    let own = object_of(in_this_library as *const () as *const c_void).map(|o| o.dli_fbase);
    own.is_some() && object_of(address).map(|o| o.dli_fbase) == own
}

/// The loaded object that contains `address` (`dladdr`), if any.
fn object_of(address: *const c_void) -> Option<libc::Dl_info> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the loader's tables for `address` (never
    // dereferencing it) and fills `info`; a zero return leaves `info`
    // unread.
    let found = unsafe { libc::dladdr(address, info.as_mut_ptr()) };
    // SAFETY: dladdr returned non-zero, so it initialised `info`.
    (found != 0).then(|| unsafe { info.assume_init() })
}

/// The file the hook was loaded from (`libnvshare.so`, or the program it
/// is linked into).
pub fn this_library_path() -> Option<PathBuf> {
    let info = object_of(this_library_path as *const () as *const c_void)?;
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated, valid while the library is loaded.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    use std::os::unix::ffi::OsStrExt;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

/// `libcuda.so.1`, loaded by the program already or now.
pub fn open_libcuda() -> Result<*mut c_void, CudaError> {
    // A program that calls the driver has usually loaded it already.
    for mode in [
        libc::RTLD_NOW | libc::RTLD_NOLOAD,
        libc::RTLD_NOW | libc::RTLD_GLOBAL,
    ] {
        // SAFETY: a literal library name and valid flags.
        let handle = unsafe { libc::dlopen(LIBCUDA.as_ptr(), mode) };
        if !handle.is_null() {
            return Ok(handle);
        }
    }
    // SAFETY: dlerror returns null or a C string valid until the next dl call.
    let reason = unsafe {
        let message = libc::dlerror();
        if message.is_null() {
            "unknown error".to_owned()
        } else {
            CStr::from_ptr(message).to_string_lossy().into_owned()
        }
    };
    Err(CudaError::NoDriver { reason })
}

/// Asks the real `cuGetProcAddress` (the `_v2` one where present).
pub fn proc_address(
    v1: Option<CuGetProcAddressV1>,
    v2: Option<CuGetProcAddressV2>,
    base: &CStr,
    version: c_int,
    flags: u64,
) -> *mut c_void {
    let mut found: *mut c_void = std::ptr::null_mut();
    let mut status: CUdriverProcAddressQueryResult = CU_GET_PROC_ADDRESS_SUCCESS;
    // SAFETY: the real functions with valid out-pointers and a C string.
    let result = unsafe {
        match (v2, v1) {
            (Some(v2), _) => v2(base.as_ptr(), &mut found, version, flags, &mut status),
            (None, Some(v1)) => v1(base.as_ptr(), &mut found, version, flags),
            (None, None) => return std::ptr::null_mut(),
        }
    };
    if result.is_success() && status == CU_GET_PROC_ADDRESS_SUCCESS {
        found
    } else {
        std::ptr::null_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_dlsym_finds_libc_functions() {
        // SAFETY: a pseudo-handle and a literal name.
        let found = unsafe { real_dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) };
        assert!(!found.is_null());
    }

    #[test]
    fn this_library_is_told_apart_from_others() {
        assert!(in_this_library(in_this_library as *const () as *mut c_void));
        assert!(!in_this_library(libc::getpid as *const () as *mut c_void));
        assert!(!in_this_library(std::ptr::null_mut()));
    }
}
