//! The nvshare scheduler daemon.
//!
//! # Layout
//! - [`policy`]: the pure scheduling state machine (events in, actions out).

pub mod policy;
