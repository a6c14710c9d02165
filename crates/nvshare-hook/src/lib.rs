//! `libnvshare.so`: the hook preloaded into every CUDA program that shares a
//! GPU through nvshare. It interposes the driver entry points through which
//! programs reach the GPU, admits their work through a lock gate driven by
//! the scheduler daemon, accounts and moves their memory, and virtualizes
//! the memory they see. It stays dormant until the program calls into CUDA.
//!
//! # Layout
//! - [`ffi`]: raw CUDA and NVML types and constants.
//! - [`entry_points`]: the table of intercepted entry points, one line
//!   each (the one place to add one).
//! - [`driver`]: the real driver, loaded once past the hook's own exports
//!   (`loader`), its function for every table line and the lookups by name
//!   and by `cuGetProcAddress` version (`real`), and safe calls into it.
//! - [`interpose`]: the exported `dlsym`, `cuGetProcAddress` and
//!   `cuGetProcAddress_v2`, which hand out the hook's wrappers, and the
//!   wrappers themselves (`exports`).
//! - [`guard`]: the panic guard of every `extern "C"` entry point.
//! - [`logging`]: stderr logging (`NVSHARE_LOG`, `NVSHARE_DEBUG`), started
//!   at the first CUDA call.
//! - [`registry`]: the allocation registry and per-device footprint.
//! - [`engine`]: memory engines (swap: VMM units swapped to host shadows,
//!   the program's own VMM mappings among them, its handles virtualized;
//!   uvm: managed memory) behind the `MemoryEngine` trait the gate calls to
//!   evict and restore.
//! - [`wrappers`]: handlers of allocation, the program's own VMM calls,
//!   memory and pointer queries, and NVML.
//! - [`gate`]: the lock gate every work-submitting call passes.
//! - [`client`]: the connection to the scheduler daemon.
//! - [`config`]: the environment configuration.

pub mod client;
pub mod config;
pub mod driver;
pub mod engine;
pub mod entry_points;
pub mod ffi;
pub mod gate;
pub mod guard;
pub mod interpose;
pub mod logging;
pub mod registry;
pub mod wrappers;
