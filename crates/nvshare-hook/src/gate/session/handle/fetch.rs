//! `Fetch`: bring memory back ahead of the grant, into room the scheduler
//! counts free.

use crate::engine;
use crate::gate::Gate;
use crate::gate::device::DeviceGate;
use crate::gate::platform;
use nvshare_proto::ClientBody;
use std::time::Instant;

/// Brings up to `bytes` of the device's memory back ahead of the grant
/// (the scheduler's `Fetch`: memory it counts free while this program
/// waits), and answers with what came back. The program's work still waits
/// for the grant, whose restore brings the rest.
pub fn fetch(gate: &Gate, device: &DeviceGate, bytes: u64) {
    let started = Instant::now();
    let _current = platform::ContextGuard::enter(device.ordinal);
    let before = engine::current().usage(device.ordinal).resident;
    let capacity = device.state.lock().capacity;
    // A holder has everything back already (its grant restored it).
    if !device.is_held()
        && let Err(e) = engine::current().restore(device.ordinal, bytes, capacity)
    {
        tracing::debug!(gpu = %device.uuid, error = %e,
            "restoring ahead of the grant stopped short; the grant restores the rest");
    }
    let resident = engine::current().usage(device.ordinal).resident;
    let moved = resident.saturating_sub(before);
    let elapsed_us = started.elapsed().as_micros() as u64;
    tracing::debug!(gpu = %device.uuid, asked = bytes, bytes = moved, elapsed_us, "memory restored ahead of the grant");
    gate.session.send(
        &ClientBody::Fetched {
            bytes: moved,
            resident,
            elapsed_us,
        }
        .on(device.uuid),
    );
}
