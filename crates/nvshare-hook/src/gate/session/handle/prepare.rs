//! `Prepare`: make host room for the eviction expected at the end of this
//! hold, while the program runs.

use crate::engine;
use crate::gate::Gate;
use crate::gate::device::DeviceGate;
use crate::gate::platform;
use std::time::Instant;

/// Makes the host room for an eviction of `bytes` expected at the end of
/// this hold, on the device's worker thread while the program runs. A
/// failure is only logged: the eviction then makes what it needs itself.
pub fn prepare(gate: &Gate, device: &DeviceGate, bytes: u64) {
    let started = Instant::now();
    let _current = platform::ContextGuard::enter(device.ordinal);
    let epoch = device.prepare_epoch();
    let abandon = || device.dropped_since(epoch);
    match engine::current().prepare_until(device.ordinal, bytes, &abandon) {
        Ok(0) => {}
        Ok(prepared) => tracing::debug!(gpu = %device.uuid, asked = bytes, bytes = prepared,
            elapsed_us = started.elapsed().as_micros() as u64, "host shadows prepared"),
        Err(e) => tracing::debug!(gpu = %device.uuid, error = %e,
            "cannot prepare host shadows ahead; the eviction will make them"),
    }
    crate::gate::host::report(gate, device, false);
}
