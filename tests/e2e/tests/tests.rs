//! End-to-end tests: the daemon, preloaded programs and the fake driver, in one test binary (one link instead of one per file).
//!
//! Each module is one area.

mod collectives;
mod exit;
mod host_shadows;
mod inventory;
mod limits;
mod overlap;
mod priorities;
mod reserve;
mod restart;
mod sharing;
mod stalls;
mod swap;
mod swap_cycles;
mod unresponsive;
mod vmm;
