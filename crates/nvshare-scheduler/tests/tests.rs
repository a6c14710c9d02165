//! The scheduler's integration tests, in one test binary (one link instead of one per file).
//!
//! Each module is one area; the shared helpers are in `support`.

mod support;

mod control;
mod hostile;
mod lifecycle;
mod metrics;
mod policy_props;
mod robustness;
mod scheduling;
