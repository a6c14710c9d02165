//! The hook's exported wrapper of every intercepted entry point, made from
//! the [`crate::entry_points`] table: each admits its call through the gate
//! (`work`) or hands it to its handler in [`crate::wrappers`], with the real
//! function from the driver table. [`WRAPPERS`] holds their addresses in
//! table order, for `dlsym` and `cuGetProcAddress` to hand out.

use crate::driver::real::{ENTRY_POINT_COUNT, EntryPoint};
use crate::ffi::*;
use std::ffi::{c_int, c_uint, c_void};

/// Makes the exported wrappers and [`WRAPPERS`] from the table's lines.
macro_rules! exports {
    ($(
        $name:ident = $base:literal @ $version:literal $thread:ident
            => $handler:tt ($($arg:ident : $ty:ty),* $(,)?);
    )*) => {
        /// The exported wrappers, one per table line.
        pub mod exports {
            #![allow(non_snake_case, clippy::too_many_arguments)]
            use super::*;
            use crate::wrappers::{info, memory, pointer, vmm};

            $(
                #[doc = concat!("The hook's `", stringify!($name), "`.")]
                ///
                /// # Safety
                /// The caller upholds the driver function's own contract.
                #[unsafe(no_mangle)]
                pub unsafe extern "C" fn $name($($arg: $ty),*) -> CUresult {
                    // The guarded path, out of line and taking the arguments
                    // by value: the fast path above it then keeps them in
                    // their registers instead of spilling them for a closure
                    // (12 of the 48 instructions a launch cost).
                    #[cold]
                    #[inline(never)]
                    unsafe fn guarded($($arg: $ty),*) -> CUresult {
                        $crate::guard::ffi_boundary(stringify!($name), CUresult::ERROR_UNKNOWN, || {
                            let real = match $crate::driver::table() {
                                Ok(table) => table.intercepted.$name,
                                Err(err) => return err.code(),
                            };
                            let Some(real) = real else {
                                return $crate::driver::missing(stringify!($name));
                            };
                            exports!(@call $handler, real, ($($arg),*))
                        })
                    }
                    exports!(@fast $handler, $name, ($($arg),*));
                    // SAFETY: the program's arguments, under its contract.
                    unsafe { guarded($($arg),*) }
                }
            )*
        }

        /// Each wrapper's address, in table order.
        pub static WRAPPERS: [fn() -> *mut c_void; ENTRY_POINT_COUNT] = [
            $(|| exports::$name as *const () as *mut c_void,)*
        ];
    };

    // Work by a program that holds its only GPU (the launch path): admitted
    // with no lookup, outside the panic guard, since nothing on this path
    // can panic; anything else takes the guarded path below.
    (@fast work, $name:ident, ($($arg:ident),*)) => {
        if let Some(admitted) = $crate::gate::enter_sole_held()
            && let Some(real) =
                $crate::driver::table_if_loaded().and_then(|table| table.intercepted.$name)
        {
            // SAFETY: the arguments come unchanged from the program, which
            // called this entry point under the driver's contract.
            let result = unsafe { real($($arg),*) };
            drop(admitted);
            return result;
        }
    };
    (@fast ($($handler:tt)*), $name:ident, ($($arg:ident),*)) => {};
    (@call work, $real:ident, ($($arg:ident),*)) => {{
        let _admitted = match $crate::gate::enter() {
            Ok(guard) => guard,
            Err(code) => return code,
        };
        // SAFETY: the arguments come unchanged from the program, which
        // called this entry point under the driver's contract.
        unsafe { $real($($arg),*) }
    }};
    (@call ($($handler:tt)*), $real:ident, ($($arg:ident),*)) => {
        // SAFETY: as above; the handler forwards the program's arguments.
        unsafe { $($handler)*($real, $($arg),*) }
    };
}

crate::entry_points::entry_points!(exports);

/// The hook's wrapper of `entry`.
pub fn wrapper_of(entry: &EntryPoint) -> *mut c_void {
    WRAPPERS[entry.index]()
}

/// Whether `address` is one of the hook's own wrappers.
pub fn is_own_wrapper(address: *mut c_void) -> bool {
    !address.is_null() && WRAPPERS.iter().any(|wrapper| wrapper() == address)
}

#[cfg(test)]
mod tests;
