//! The device plugin's integration tests, in one test binary (one link instead of one per file).
//!
//! Each module is one area; the shared helpers are in `common`, `manifest_support`.

mod common;
mod manifest_support;

mod exit_codes;
mod kubelet;
mod manifests;
