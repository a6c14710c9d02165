//! The exported driver entry points, one file per area of the API. Every
//! function here is `#[unsafe(no_mangle)] extern "C"` with CUDA's exact
//! signature and runs its body through [`crate::guard::entry`].

#![allow(non_snake_case)]

mod context;
mod copy;
mod device;
mod graph;
mod host;
mod init;
mod managed;
mod memory;
mod module;
mod query;
mod sharing;
mod stream;
mod vmm;

pub use crate::proc_address::{cuGetProcAddress, cuGetProcAddress_v2};
pub use context::*;
pub use copy::*;
pub use device::*;
pub use graph::*;
pub use host::*;
pub use init::*;
pub use managed::*;
pub use memory::*;
pub use module::*;
pub use query::*;
pub use sharing::*;
pub use stream::*;
pub use vmm::*;

use crate::driver::{Driver, driver};
use crate::guard::CuResult;

/// The driver and the current context's device (INVALID_CONTEXT if none).
fn current() -> CuResult<(&'static Driver, usize)> {
    let driver = driver()?;
    Ok((driver, driver.contexts.current_device()?))
}

/// Traces `<event> kind=<kind> ptr=0x.. bytes=N device=D`.
fn trace_region(driver: &Driver, event: &str, kind: &str, ptr: u64, bytes: u64, device: usize) {
    if driver.trace.enabled() {
        driver.trace.event(
            event,
            format_args!("kind={kind} ptr=0x{ptr:x} bytes={bytes} device={device}"),
        );
    }
}
