//! What can go wrong when a test program drives CUDA.

use crate::ffi::{CUresult, error_name};

/// A failure of a test program, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `libcuda.so.1` could not be loaded.
    #[error(
        "cannot load {library}: {reason}; put a libcuda.so.1 on LD_LIBRARY_PATH (or pass --library)"
    )]
    Load { library: String, reason: String },
    /// A driver function could not be resolved.
    #[error("cannot resolve {name} ({how}); the driver does not offer it")]
    Missing { name: String, how: String },
    /// A driver call returned an error.
    #[error("{call} failed: {} ({code})", error_name(*.code))]
    Cuda { call: &'static str, code: CUresult },
    /// The result computed on the device differs from the host's.
    #[error(
        "wrong result: device checksum {device} != host checksum {host}; device memory was corrupted"
    )]
    Mismatch { device: u64, host: u64 },
    /// Words of device memory differ from what the host expects.
    #[error(
        "wrong result: {bad} of {total} words differ from the expected value; device memory was corrupted"
    )]
    Corrupted { bad: u64, total: u64 },
    /// A file the program needs could not be used.
    #[error("cannot use {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The CUDA status, for driver errors.
    pub fn code(&self) -> Option<CUresult> {
        match self {
            Error::Cuda { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Turns a status into a `Result`, naming the call.
pub fn check(call: &'static str, code: CUresult) -> Result<(), Error> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Cuda { call, code })
    }
}
