//! The entry points through which programs find driver functions: `dlsym`,
//! `cuGetProcAddress` and `cuGetProcAddress_v2`. Each asks the real one first,
//! so that errors, versions and symbol status stay the driver's, and then
//! swaps in the hook's wrapper where the answer is an intercepted function.
//!
//! `dlsym` runs everywhere in the process (Rust's std and the hook's own
//! code included), so its path allocates nothing, takes no lock, logs nothing
//! and never initializes the hook.

use crate::ffi::*;
use crate::{driver, guard, symbols, wrappers};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// The real `dlsym`, cached (null until first needed).
static REAL_DLSYM: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// The glibc symbol versions `dlsym` has had: the original for each
/// architecture, then the one glibc 2.34 gave it when libdl merged into libc.
#[cfg(target_arch = "x86_64")]
const DLSYM_VERSIONS: [&CStr; 2] = [c"GLIBC_2.2.5", c"GLIBC_2.34"];
#[cfg(target_arch = "aarch64")]
const DLSYM_VERSIONS: [&CStr; 2] = [c"GLIBC_2.17", c"GLIBC_2.34"];

fn real_dlsym_fn() -> Option<DlsymFn> {
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

/// The hook's own entry points found by name besides the driver table: the
/// lookup functions themselves and the NVML memory queries.
fn own_entry_point(name: &[u8]) -> Option<*mut c_void> {
    Some(match name {
        b"cuGetProcAddress" => cuGetProcAddress as *const () as *mut c_void,
        b"cuGetProcAddress_v2" => cuGetProcAddress_v2 as *const () as *mut c_void,
        b"nvmlDeviceGetMemoryInfo" => {
            wrappers::nvml::nvmlDeviceGetMemoryInfo as *const () as *mut c_void
        }
        b"nvmlDeviceGetMemoryInfo_v2" => {
            wrappers::nvml::nvmlDeviceGetMemoryInfo_v2 as *const () as *mut c_void
        }
        _ => return None,
    })
}

/// The wrapper `dlsym(_, name)` returns in place of the real `found`.
fn replacement(name: &CStr) -> Option<*mut c_void> {
    if let Some(symbol) = symbols::by_name(name) {
        return Some((symbol.wrapper)());
    }
    let bytes = name.to_bytes();
    if bytes.starts_with(b"cuGetProcAddress") || bytes.starts_with(b"nvmlDeviceGetMemoryInfo") {
        return own_entry_point(bytes);
    }
    None
}

/// The exported `dlsym`: the real lookup, then the hook's wrapper if the
/// name is intercepted and the real lookup found it (so that a program
/// probing for a function the driver lacks still sees it missing).
///
/// # Safety
/// As `dlsym(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    // SAFETY: forwarded under the caller's contract.
    let found = unsafe { real_dlsym(handle, name) };
    if found.is_null() || name.is_null() {
        return found;
    }
    // SAFETY: the real dlsym just read `name` as a C string.
    let name = unsafe { CStr::from_ptr(name) };
    replacement(name).unwrap_or(found)
}

/// Replaces the real answer of a `cuGetProcAddress` call by the wrapper of
/// the same function, found by the real address.
fn substitute(symbol: *const c_char, pfn: *mut *mut c_void, cuda_version: c_int, flags: u64) {
    if symbol.is_null() || pfn.is_null() {
        return;
    }
    // SAFETY: the real call succeeded, so `pfn` points to a written pointer
    // and `symbol` is a C string the driver read.
    let (found, name) = unsafe { (*pfn, CStr::from_ptr(symbol)) };
    if found.is_null() || name.is_empty() {
        return;
    }
    if let Some(own) = own_entry_point(name.to_bytes()) {
        // SAFETY: as above.
        unsafe { *pfn = own };
        return;
    }
    let Ok(table) = driver::table() else { return };
    if let Some(wrapped) = table.symbol_for_real(found) {
        // SAFETY: as above.
        unsafe { *pfn = (wrapped.wrapper)() };
    } else if let Some(expected) = symbols::for_proc_address(name, cuda_version, flags) {
        tracing::warn!(
            symbol = ?name,
            cuda_version,
            flags,
            expected = ?expected.name,
            "the driver returned a variant of an intercepted function that the hook does not know; it runs unshared"
        );
    }
}

/// The exported `cuGetProcAddress` (CUDA 11.3 signature).
///
/// # Safety
/// As the driver's `cuGetProcAddress`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
) -> CUresult {
    guard::ffi_boundary("cuGetProcAddress", CUresult::ERROR_UNKNOWN, || {
        let real = match driver::table() {
            Ok(table) => table.get_proc_address_v1,
            Err(err) => return err.code(),
        };
        let Some(real) = real else {
            return driver::missing("cuGetProcAddress");
        };
        // SAFETY: the program's arguments, forwarded unchanged.
        let status = unsafe { real(symbol, pfn, cuda_version, flags) };
        if status.is_success() {
            substitute(symbol, pfn, cuda_version, flags);
        }
        status
    })
}

/// The exported `cuGetProcAddress_v2` (CUDA 12 signature).
///
/// # Safety
/// As the driver's `cuGetProcAddress_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
    symbol_status: *mut CUdriverProcAddressQueryResult,
) -> CUresult {
    guard::ffi_boundary("cuGetProcAddress_v2", CUresult::ERROR_UNKNOWN, || {
        let real = match driver::table() {
            Ok(table) => table.get_proc_address_v2,
            Err(err) => return err.code(),
        };
        let Some(real) = real else {
            return driver::missing("cuGetProcAddress_v2");
        };
        // SAFETY: the program's arguments, forwarded unchanged.
        let status = unsafe { real(symbol, pfn, cuda_version, flags, symbol_status) };
        if status.is_success() {
            substitute(symbol, pfn, cuda_version, flags);
        }
        status
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_dlsym_finds_libc_functions() {
        // SAFETY: RTLD_DEFAULT and a literal name.
        let found = unsafe { real_dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) };
        assert!(!found.is_null());
    }

    #[test]
    fn exported_dlsym_returns_null_for_unknown_names() {
        // SAFETY: RTLD_DEFAULT and a literal name.
        let found = unsafe { dlsym(libc::RTLD_DEFAULT, c"no_such_symbol_anywhere_42".as_ptr()) };
        assert!(found.is_null());
    }

    #[test]
    fn exported_dlsym_passes_other_names_through() {
        // SAFETY: as above.
        let (ours, real) = unsafe {
            (
                dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()),
                real_dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()),
            )
        };
        assert_eq!(ours, real);
    }

    #[test]
    fn own_entry_points_replace_the_lookup_functions() {
        assert_eq!(
            replacement(c"cuGetProcAddress_v2"),
            Some(cuGetProcAddress_v2 as *const () as *mut c_void)
        );
        assert!(replacement(c"cuInit").is_none());
        let wrapped = replacement(c"cuMemAlloc_v2").expect("cuMemAlloc_v2 is intercepted");
        assert_eq!(
            wrapped,
            (symbols::by_name(c"cuMemAlloc_v2").unwrap().wrapper)()
        );
    }
}
