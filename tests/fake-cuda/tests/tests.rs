//! The fake driver's tests, in one test binary (one link instead of one per file).
//!
//! Each module is one area; the shared helpers are in `common`.

mod common;

mod accounting;
mod faults;
mod memory;
mod proc_address;
mod streams;
mod trace;
