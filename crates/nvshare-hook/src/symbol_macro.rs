//! The `intercepted!` macro: from one line per intercepted driver entry point
//! it generates the real-function table, the exported wrapper, and the
//! lookup entry. [`crate::symbols`] invokes it once.
//!
//! A line reads
//!
//! ```text
//! cuMemAlloc_v2 = "cuMemAlloc" @ 3020 legacy => (memory::alloc) (dptr: *mut CUdeviceptr, bytes: usize);
//! ```
//!
//! - the exported symbol name (what `dlsym` and the dynamic linker see),
//! - the base name `cuGetProcAddress` is asked for, the first CUDA version
//!   (`cudaVersion`) that returns this variant, and whether it is the legacy
//!   or the per-thread default stream variant (`legacy` / `per_thread`),
//! - the handler: `work` (admit through the gate, call the real function)
//!   or a parenthesized path to `unsafe fn(real, args...) -> CUresult`,
//! - the C signature.

/// Builds the symbol table; see the module documentation.
macro_rules! intercepted {
    ($(
        $name:ident = $base:literal @ $version:literal $thread:ident
            => $handler:tt ($($arg:ident : $ty:ty),* $(,)?);
    )*) => {
        /// The real driver's function for every intercepted entry point
        /// (`None` where the installed driver lacks it).
        #[allow(non_snake_case)]
        #[derive(Clone, Copy)]
        pub struct RealFns {
            $(
                #[doc = concat!("The real `", stringify!($name), "`.")]
                pub $name: Option<unsafe extern "C" fn($($ty),*) -> CUresult>,
            )*
        }

        impl RealFns {
            /// Resolves every entry with `resolve`, which returns the real
            /// address of a symbol or null.
            pub fn resolve(mut resolve: impl FnMut(&Symbol) -> *mut c_void) -> Self {
                let mut next = SYMBOLS.iter();
                RealFns {
                    $(
                        $name: {
                            let symbol = next.next().expect("one symbol per field");
                            debug_assert_eq!(symbol.name.to_bytes(), stringify!($name).as_bytes());
                            let address = resolve(symbol);
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
        }

        impl RealFns {
            /// Each real function's address (0 where missing), in
            /// [`SYMBOLS`] order.
            pub fn addresses(&self) -> Vec<usize> {
                vec![$(self.$name.map_or(0, |f| f as usize)),*]
            }
        }

        /// The exported wrappers, one per table line.
        pub mod exports {
            #![allow(non_snake_case, clippy::too_many_arguments)]
            use super::*;

            $(
                #[doc = concat!("The hook's `", stringify!($name), "`.")]
                ///
                /// # Safety
                /// The caller upholds the driver function's own contract.
                #[unsafe(no_mangle)]
                pub unsafe extern "C" fn $name($($arg: $ty),*) -> CUresult {
                    $crate::guard::ffi_boundary(stringify!($name), CUresult::ERROR_UNKNOWN, || {
                        let real = match $crate::driver::table() {
                            Ok(table) => table.intercepted.$name,
                            Err(err) => return err.code(),
                        };
                        let Some(real) = real else {
                            return $crate::driver::missing(stringify!($name));
                        };
                        intercepted!(@call $handler, real, ($($arg),*))
                    })
                }
            )*
        }

        /// Every intercepted entry point, in table order.
        pub static SYMBOLS: &[Symbol] = &[
            $(
                Symbol {
                    name: cstr(concat!(stringify!($name), "\0")),
                    base: cstr(concat!($base, "\0")),
                    version: $version,
                    per_thread: intercepted!(@thread $thread),
                    wrapper: || exports::$name as *const () as *mut c_void,
                },
            )*
        ];

        const NAMES: [&[u8]; SYMBOL_COUNT] = [$(stringify!($name).as_bytes()),*];
        const SYMBOL_COUNT: usize = [$(stringify!($name)),*].len();
    };

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

    (@thread legacy) => { false };
    (@thread per_thread) => { true };
}

pub(crate) use intercepted;
