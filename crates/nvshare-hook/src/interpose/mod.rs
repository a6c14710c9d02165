//! The entry points through which programs find driver functions: `dlsym`,
//! `cuGetProcAddress` and `cuGetProcAddress_v2`. Each asks the real one first,
//! so that errors, versions and symbol status stay the driver's, and then
//! swaps in the hook's wrapper where the answer is an intercepted function.
//!
//! `dlsym` runs everywhere in the process (Rust's std and the hook's own
//! code included), so its path allocates nothing, takes no lock, logs nothing
//! and never initializes the hook.

use crate::driver::loader::{real_dlsym, real_dlsym_fn};
use crate::driver::real::{by_name, for_proc_address};
use crate::ffi::*;
use crate::{driver, guard, wrappers};
use exports::{is_own_wrapper, wrapper_of};

pub mod exports;
use std::ffi::{CStr, c_char, c_int, c_void};

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
    if let Some(entry) = by_name(name) {
        return Some(wrapper_of(entry));
    }
    let bytes = name.to_bytes();
    if bytes.starts_with(b"cuGetProcAddress") || bytes.starts_with(b"nvmlDeviceGetMemoryInfo") {
        return own_entry_point(bytes);
    }
    None
}

/// The exported `dlsym` (x86_64). glibc's `dlsym` takes its caller's
/// return address to find "the next object" for `RTLD_NEXT` and the lookup
/// scope of a library opened with `RTLD_LOCAL`; a wrapper that called it
/// would make every lookup in the process look as if libnvshare.so asked.
/// So this entry point jumps (not calls) to the real `dlsym` for
/// `RTLD_NEXT` and for every name the hook does not intercept, leaving the
/// program's return address in place, and only intercepted names take the
/// hook's path ([`dlsym_intercepted`]).
///
/// # Safety
/// As `dlsym(3)`.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    // On entry rsp is 8 mod 16; two pushes and 8 bytes keep calls aligned.
    core::arch::naked_asm!(
        "cmp rdi, -1", // RTLD_NEXT
        "je 2f",
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "mov rdi, rsi",
        "call {is_intercepted}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "test al, al",
        "jz 2f",
        "jmp {intercepted}",
        "2:",
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {real_address}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "test rax, rax",
        "jz 3f",
        "jmp rax",
        "3:",
        "xor eax, eax",
        "ret",
        is_intercepted = sym dlsym_name_is_intercepted,
        intercepted = sym dlsym_intercepted,
        real_address = sym real_dlsym_address,
    )
}

/// The exported `dlsym` elsewhere: the hook's path for every name (exact
/// `RTLD_NEXT` semantics need the x86_64 tail jump).
///
/// # Safety
/// As `dlsym(3)`.
#[cfg(not(target_arch = "x86_64"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    // SAFETY: forwarded under the caller's contract.
    unsafe { dlsym_intercepted(handle, name) }
}

/// Whether `dlsym` must take the hook's path for `name`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
extern "C" fn dlsym_name_is_intercepted(name: *const c_char) -> bool {
    if name.is_null() {
        return false;
    }
    // SAFETY: dlsym's contract makes a non-null `name` a C string.
    replacement(unsafe { CStr::from_ptr(name) }).is_some()
}

/// The real `dlsym`'s address, or null if glibc has none (never in practice).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
extern "C" fn real_dlsym_address() -> *mut c_void {
    real_dlsym_fn().map_or(std::ptr::null_mut(), |f| f as *mut c_void)
}

/// The hook's path: the real lookup, then the hook's wrapper if the name is
/// intercepted and the real lookup found it (so that a program probing for
/// a function the driver lacks still sees it missing).
///
/// # Safety
/// As `dlsym(3)`.
unsafe extern "C" fn dlsym_intercepted(handle: *mut c_void, name: *const c_char) -> *mut c_void {
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
    let Ok(table) = driver::table() else { return };
    // `cuGetProcAddress` at 12000+ means the `_v2` signature: match the
    // lookup functions by the real address too.
    let own = if table
        .get_proc_address_v2
        .is_some_and(|f| f as *mut c_void == found)
    {
        Some(cuGetProcAddress_v2 as *const () as *mut c_void)
    } else if table
        .get_proc_address_v1
        .is_some_and(|f| f as *mut c_void == found)
    {
        Some(cuGetProcAddress as *const () as *mut c_void)
    } else if name == c"cuGetProcAddress" {
        // A driver handing out addresses other than its exports: the
        // signature follows the version (`_v2` since CUDA 12.0).
        Some(if cuda_version >= 12000 {
            cuGetProcAddress_v2 as *const () as *mut c_void
        } else {
            cuGetProcAddress as *const () as *mut c_void
        })
    } else {
        None
    };
    if let Some(own) = own {
        // SAFETY: as above.
        unsafe { *pfn = own };
        return;
    }
    // Recognize the function by address: exact whatever version boundaries
    // this driver draws. Failing that (a driver handing out addresses other
    // than its exports), by name, version and flags.
    let wrapped = table.entry_for_real(found).or_else(|| {
        if is_own_wrapper(found) {
            return None;
        }
        let chosen = for_proc_address(name, cuda_version, flags);
        if let Some(entry) = chosen {
            tracing::debug!(
                symbol = ?name,
                cuda_version,
                flags,
                chosen = ?entry.name,
                "driver address unknown; wrapper chosen by version and flags"
            );
        }
        chosen
    });
    if let Some(wrapped) = wrapped {
        // SAFETY: as above.
        unsafe { *pfn = wrapper_of(wrapped) };
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
    fn exported_dlsym_hands_out_wrappers_only_where_the_name_exists() {
        // SAFETY: RTLD_DEFAULT and literal names. No driver is loaded in
        // unit tests, so even intercepted names are not found.
        let (missing, next) = unsafe {
            (
                dlsym(libc::RTLD_DEFAULT, c"cuMemAlloc_v2".as_ptr()),
                dlsym(libc::RTLD_NEXT, c"getpid".as_ptr()),
            )
        };
        assert!(missing.is_null());
        assert!(!next.is_null());
    }

    #[test]
    fn interception_is_decided_by_name() {
        assert!(dlsym_name_is_intercepted(c"cuLaunchKernel_ptsz".as_ptr()));
        assert!(dlsym_name_is_intercepted(
            c"nvmlDeviceGetMemoryInfo_v2".as_ptr()
        ));
        assert!(!dlsym_name_is_intercepted(c"cuInit".as_ptr()));
        assert!(!dlsym_name_is_intercepted(std::ptr::null()));
    }

    #[test]
    fn own_entry_points_replace_the_lookup_functions() {
        assert_eq!(
            replacement(c"cuGetProcAddress_v2"),
            Some(cuGetProcAddress_v2 as *const () as *mut c_void)
        );
        assert!(replacement(c"cuInit").is_none());
        let wrapped = replacement(c"cuMemAlloc_v2").expect("cuMemAlloc_v2 is intercepted");
        assert_eq!(wrapped, wrapper_of(by_name(c"cuMemAlloc_v2").unwrap()));
    }
}
