//! The hook's integration tests, in one test binary (one link instead of one per file).
//!
//! Each module is one area; the shared helpers are in `support`.

mod support;

mod exit_release;
mod interpose;
mod prepare_abort;
mod swap_engine;
mod swap_segments;
mod uvm_engine;
mod vmm_mapped;
