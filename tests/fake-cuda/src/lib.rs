//! `libcuda.so.1` as a test double: the part of the CUDA driver API that
//! libnvshare.so and the test programs use, implemented with host memory as
//! device memory and host threads as streams, so that the hook can be tested
//! on machines without a GPU. It follows CUDA's behaviour (error codes,
//! asynchrony, VMM semantics as measured on an H100), not the hook's
//! expectations. Settings come from `FAKE_CUDA_*` variables (see
//! [`config`]); events can be traced to a file (see [`trace`]).
//!
//! # Layout
//! - `ffi`: the C types and constants of `cuda.h` used at the boundary.
//! - `guard`: the entry-point wrapper (no panic crosses into C) and out-pointer helpers.
//! - `config`: the `FAKE_CUDA_*` environment settings.
//! - `trace`: the `FAKE_CUDA_TRACE` event log.
//! - `accounting`: per-device memory use and capacity, per process or machine-wide.
//! - `driver`: the process-wide state created by `cuInit`.
//! - `context`: contexts and each thread's current-context stack.
//! - `stream`: streams as worker threads, with legacy-stream implicit sync.
//! - `event`: events recorded into streams.
//! - `graph`: graphs as recorded stream captures, replayed by `cuGraphLaunch`.
//! - `os`: the mmap/memfd operations that play device memory.
//! - `registry`: what lies at each address (allocations, reservations, VMM handles).
//! - `kernels`: the built-in host "kernels" modules hand out by name.
//! - `exports`: every exported entry point by name.
//! - `proc_address`: `cuGetProcAddress[_v2]` name/version/flag resolution.
//! - `api`: the exported entry points, one file per API area.

mod accounting;
mod api;
pub mod config;
mod context;
mod driver;
mod event;
mod exports;
mod ffi;
mod graph;
mod guard;
mod kernels;
mod os;
mod proc_address;
mod registry;
mod stream;
pub mod trace;
