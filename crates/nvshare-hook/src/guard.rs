//! The panic guard around every `extern "C"` entry point: a bug in the hook
//! becomes an error code and a log line, never an abort of the program.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `body`; if it panics, logs the panic and returns `on_panic` (the
/// entry point's natural failure code, e.g. `CUDA_ERROR_UNKNOWN`).
pub fn ffi_boundary<R>(function: &'static str, on_panic: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            tracing::error!(
                function,
                panic = message,
                "bug in the nvshare hook: the call fails with an error instead of crashing the program; please report this line"
            );
            on_panic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::CUresult;

    #[test]
    fn a_panic_becomes_the_failure_code() {
        let result = ffi_boundary("test", CUresult::ERROR_UNKNOWN, || -> CUresult {
            panic!("deliberate test panic")
        });
        assert_eq!(result, CUresult::ERROR_UNKNOWN);
    }

    #[test]
    fn a_formatted_panic_becomes_the_failure_code() {
        let value = 7;
        let result = ffi_boundary("test", 42u32, || -> u32 {
            panic!("deliberate panic {value}")
        });
        assert_eq!(result, 42);
    }

    #[test]
    fn normal_results_pass_through() {
        assert_eq!(
            ffi_boundary("test", CUresult::ERROR_UNKNOWN, || CUresult::SUCCESS),
            CUresult::SUCCESS
        );
    }
}
