//! [`CudaError`]: a failed call into the real driver.

use crate::ffi::CUresult;

/// A failed call into the real CUDA driver.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CudaError {
    /// `libcuda.so.1` could not be loaded.
    #[error(
        "cannot load libcuda.so.1 ({reason}); install the NVIDIA driver or put libcuda.so.1 on the library path"
    )]
    NoDriver {
        /// What `dlopen` said.
        reason: String,
    },
    /// The installed driver lacks a function the hook needs.
    #[error("the CUDA driver lacks {function}; update the NVIDIA driver")]
    Missing {
        /// The function's name.
        function: &'static str,
    },
    /// The driver returned an error.
    #[error("{function} failed with {code}")]
    Failed {
        /// The function's name.
        function: &'static str,
        /// What it returned.
        code: CUresult,
    },
}

impl CudaError {
    /// The CUDA status to hand a program for this failure.
    pub fn code(&self) -> CUresult {
        match self {
            CudaError::NoDriver { .. } => CUresult::ERROR_NOT_INITIALIZED,
            CudaError::Missing { .. } => CUresult::ERROR_NOT_FOUND,
            CudaError::Failed { code, .. } => *code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_the_driver_code() {
        let err = CudaError::Failed {
            function: "cuMemAlloc_v2",
            code: CUresult::ERROR_OUT_OF_MEMORY,
        };
        assert_eq!(err.code(), CUresult::ERROR_OUT_OF_MEMORY);
        assert!(err.to_string().contains("CUDA_ERROR_OUT_OF_MEMORY"));
        let missing = CudaError::Missing {
            function: "cuMemPrefetchAsync",
        };
        assert_eq!(missing.code(), CUresult::ERROR_NOT_FOUND);
    }
}
