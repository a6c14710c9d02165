//! `DropLock`: stop new work, drain, evict what was asked, give the lock
//! back.

use crate::engine;
use crate::gate::Gate;
use crate::gate::device::DeviceGate;
use crate::gate::platform;
use nvshare_proto::ClientBody;
use std::time::Instant;

/// Stops new work, waits for work in flight, evicts what was asked and
/// gives the lock back.
pub fn drop_lock(gate: &Gate, device: &DeviceGate, evict_bytes: u64) {
    let started = Instant::now();
    {
        // Until LockReleased is sent, a re-attach claims the GPU: calls in
        // flight and queued work still run on it.
        let mut state = device.state.lock();
        state.changing_hands |= device.is_held();
    }
    device.close_and_drain();
    platform::synchronize(device.ordinal);
    super::evict::move_out(gate, device, evict_bytes);
    let resident = engine::current().usage(device.ordinal).resident;
    let mut state = device.state.lock();
    gate.session
        .send(&ClientBody::LockReleased { resident }.on(device.uuid));
    state.changing_hands = false;
    state.granted_at = None;
    state.reserving = 0;
    if state.waiters == 0 {
        state.requested = false;
    } else if !state.requested {
        // Threads blocked while the GPU was being given back: ask again
        // (unless one of them already did, during the drain).
        state.requested = true;
        gate.session.send(&ClientBody::RequestLock.on(device.uuid));
    }
    device.changed.notify_all();
    tracing::debug!(gpu = %device.uuid, evict_bytes, elapsed_us = started.elapsed().as_micros() as u64, "lock released");
}
