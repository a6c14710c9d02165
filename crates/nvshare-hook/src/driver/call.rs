//! The one way the driver layer calls a resolved function: take it out of
//! the table (or report it missing), call it, and turn its `CUresult` into
//! a `Result`.

use super::CudaError;
use crate::ffi::CUresult;

/// `Ok` for success, else the failing function and its code.
pub(super) fn check(function: &'static str, code: CUresult) -> Result<(), CudaError> {
    if code.is_success() {
        Ok(())
    } else {
        Err(CudaError::Failed { function, code })
    }
}

/// Calls `table().<group>.<name>(args)`, the group being `helpers` (driver
/// functions the hook does not wrap) or `intercepted` (the real functions
/// behind its wrappers, which so bypass the gate):
/// `call!(helpers.cuCtxGetDevice(&mut device))`.
macro_rules! call {
    ($group:ident . $name:ident($($arg:expr),* $(,)?)) => {{
        let driver: &$crate::driver::Driver = table()?;
        let function = driver.$group.$name.ok_or(CudaError::Missing {
            function: stringify!($name),
        })?;
        // SAFETY: the driver's own function with the arguments its contract
        // asks for: out-pointers to live locals, plain values, and host
        // pointers whose validity the calling function guarantees.
        $crate::driver::call::check(stringify!($name), unsafe { function($($arg),*) })
    }};
}

pub(super) use call;
