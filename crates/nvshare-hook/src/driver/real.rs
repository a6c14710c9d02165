//! The bottom of the hook: from the [`crate::entry_points`] table, the real
//! driver's function for every intercepted entry point ([`RealFns`]), the
//! entry points' names and versions ([`ENTRY_POINTS`]), and the
//! allocation-free, lock-free lookups over them by exported name
//! ([`by_name`], run inside every `dlsym` of the process) and by
//! `cuGetProcAddress` base, version and flags ([`for_proc_address`]).

#![allow(non_snake_case)]

use crate::ffi::*;
use std::ffi::{CStr, c_int, c_uint, c_void};

/// One intercepted entry point.
#[derive(Debug)]
pub struct EntryPoint {
    /// The exported name (`cuMemcpyHtoD_v2_ptds`).
    pub name: &'static CStr,
    /// The name `cuGetProcAddress` is asked for (`cuMemcpyHtoD`).
    pub base: &'static CStr,
    /// The first CUDA version (`cudaVersion`, e.g. 3020) that means this variant.
    pub version: c_int,
    /// Whether this is the per-thread default stream variant.
    pub per_thread: bool,
    /// Its place in [`ENTRY_POINTS`] (and in the interposition layer's
    /// table of wrappers).
    pub index: usize,
}

/// Makes [`RealFns`] and [`ENTRY_POINTS`] from the table's lines.
macro_rules! real_fns {
    ($(
        $name:ident = $base:literal @ $version:literal $thread:ident
            => $handler:tt ($($arg:ident : $ty:ty),* $(,)?);
    )*) => {
        /// The real driver's function for every intercepted entry point
        /// (`None` where the installed driver lacks it).
        #[derive(Clone, Copy)]
        pub struct RealFns {
            $(
                #[doc = concat!("The real `", stringify!($name), "`.")]
                pub $name: Option<unsafe extern "C" fn($($ty),*) -> CUresult>,
            )*
        }

        impl RealFns {
            /// Resolves every entry with `resolve`, which returns the real
            /// address of an entry point or null.
            pub fn resolve(mut resolve: impl FnMut(&EntryPoint) -> *mut c_void) -> Self {
                RealFns {
                    $(
                        $name: {
                            let address = resolve(&ENTRY_POINTS[Index::$name as usize]);
                            if address.is_null() {
                                None
                            } else {
                                // SAFETY: `address` is the driver's entry
                                // point for this name and version, whose C
                                // signature is the one declared on this line
                                // of the table (taken from cuda.h).
                                Some(unsafe {
                                    std::mem::transmute::<
                                        *mut c_void,
                                        unsafe extern "C" fn($($ty),*) -> CUresult,
                                    >(address)
                                })
                            }
                        },
                    )*
                }
            }

            /// Each real function's address (0 where missing), in
            /// [`ENTRY_POINTS`] order.
            pub fn addresses(&self) -> Vec<usize> {
                vec![$(self.$name.map_or(0, |f| f as usize)),*]
            }
        }

        /// Each entry point's place in the table.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        enum Index {
            $($name,)*
        }

        /// Every intercepted entry point, in table order.
        pub static ENTRY_POINTS: &[EntryPoint] = &[
            $(
                EntryPoint {
                    name: cstr(concat!(stringify!($name), "\0")),
                    base: cstr(concat!($base, "\0")),
                    version: $version,
                    per_thread: real_fns!(@thread $thread),
                    index: Index::$name as usize,
                },
            )*
        ];

        /// How many entry points the table has.
        pub const ENTRY_POINT_COUNT: usize = [$(stringify!($name)),*].len();

        const NAMES: [&[u8]; ENTRY_POINT_COUNT] = [$(stringify!($name).as_bytes()),*];
    };

    (@thread legacy) => { false };
    (@thread per_thread) => { true };
}

crate::entry_points::entry_points!(real_fns);

/// `cstr(concat!(name, "\0"))`: a `&CStr` from a literal, checked at compile time.
const fn cstr(with_nul: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(with_nul.as_bytes()) {
        Ok(name) => name,
        Err(_) => panic!("symbol names are NUL-terminated literals without inner NULs"),
    }
}

/// Indices of [`ENTRY_POINTS`] in byte order of their names, computed at compile
/// time so that [`by_name`] is a binary search with no initialization.
static BY_NAME: [u16; ENTRY_POINT_COUNT] = sorted_order(&NAMES);

const fn bytes_less(a: &[u8], b: &[u8]) -> bool {
    let mut i = 0;
    while i < a.len() && i < b.len() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

const fn sorted_order<const N: usize>(names: &[&[u8]; N]) -> [u16; N] {
    assert!(N <= u16::MAX as usize);
    let mut order = [0u16; N];
    let mut i = 0;
    while i < N {
        order[i] = i as u16;
        i += 1;
    }
    // Insertion sort: a few hundred names, once, at compile time.
    let mut i = 1;
    while i < N {
        let mut j = i;
        while j > 0 && bytes_less(names[order[j] as usize], names[order[j - 1] as usize]) {
            let swap = order[j];
            order[j] = order[j - 1];
            order[j - 1] = swap;
            j -= 1;
        }
        i += 1;
    }
    order
}

/// The intercepted entry point exported as `name`, if any. Allocation-free
/// and lock-free: this runs inside every `dlsym` of the process.
pub fn by_name(name: &CStr) -> Option<&'static EntryPoint> {
    let wanted = name.to_bytes();
    // Every intercepted name starts with "cu": reject the rest in one compare.
    if !wanted.starts_with(b"cu") {
        return None;
    }
    BY_NAME
        .binary_search_by(|&index| ENTRY_POINTS[index as usize].name.to_bytes().cmp(wanted))
        .ok()
        .map(|position| &ENTRY_POINTS[BY_NAME[position] as usize])
}

/// The variant `cuGetProcAddress(base, cuda_version, flags)` means, if the
/// base name is intercepted: the highest version not above `cuda_version`,
/// per-thread variants first when `flags` asks for them (and not also for
/// the legacy ones).
pub fn for_proc_address(
    base: &CStr,
    cuda_version: c_int,
    flags: u64,
) -> Option<&'static EntryPoint> {
    // Legacy wins when both stream flags are set.
    let per_thread = flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM != 0
        && flags & CU_GET_PROC_ADDRESS_LEGACY_STREAM == 0;
    ENTRY_POINTS
        .iter()
        .filter(|s| s.base == base && s.version <= cuda_version)
        .filter(|s| per_thread || !s.per_thread)
        .max_by_key(|s| (s.per_thread == per_thread, s.version))
}

/// Whether `entry` is the only variant of its base with its stream kind,
/// so that `cuGetProcAddress(base, version, flags)` cannot mean another.
pub fn is_unambiguous(entry: &EntryPoint) -> bool {
    ENTRY_POINTS
        .iter()
        .filter(|s| s.base == entry.base && s.per_thread == entry.per_thread)
        .count()
        == 1
}

#[cfg(test)]
mod tests;
