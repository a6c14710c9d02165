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
//! - [`fork`]: the parent's tables emptied in a `fork()` child.
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

// Unsafe code lives only where the hook meets C: the FFI types, the driver
// layer, the interposed entry points and their handlers (which read and
// write the program's raw pointers), the process hooks of the gate (fork,
// exit), the fork-child proof, and the swap engine's host shadows and raw
// copies. Everywhere else it does not compile.
#![deny(unsafe_code)]

pub(crate) mod client;
pub mod config;
#[allow(unsafe_code)]
pub mod driver;
pub mod engine;
pub(crate) mod entry_points;
#[allow(unsafe_code)]
pub mod ffi;
#[allow(unsafe_code)]
pub(crate) mod fork;
#[allow(unsafe_code)]
pub(crate) mod gate;
pub(crate) mod guard;
#[allow(unsafe_code)]
pub mod interpose;
pub(crate) mod logging;
pub mod registry;
#[allow(unsafe_code)]
pub(crate) mod wrappers;
