//! Test programs that reach the CUDA driver exactly the way libcudart does
//! (see `driver`), and the helpers tests use to find and run them.
//!
//! # Layout
//! - `ffi`: the `cuda.h` types and constants the programs need.
//! - `error`: the programs' error type and status checking.
//! - `driver`: loading `libcuda.so.1` like libcudart (dlopen, `cuGetProcAddress_v2`, dlsym).
//! - `session`: an initialized driver with a current context and the built-in kernels.
//! - `buffer`: device buffers allocated the device / managed / VMM way.
//! - `artifacts`: locating `libcuda.so` and the programs from a test, and running them.
//!
//! Binaries: `cuda-probe` (symbol resolution and memory queries),
//! `cuda-worker` (a verified compute job), `cuda-scenario` (single driver
//! behaviours for the fake's own tests).

pub mod artifacts;
pub mod buffer;
pub mod driver;
pub mod error;
pub mod ffi;
pub mod session;
