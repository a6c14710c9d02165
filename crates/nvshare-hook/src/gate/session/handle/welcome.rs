//! `Welcome`: the device is attached; the scheduler says its capacity.

use crate::gate::device::DeviceGate;

/// Records the attach and wakes the thread waiting for it.
pub fn welcome(device: &DeviceGate, capacity: u64, quantum_ms: u64, client_id: u64) {
    let mut state = device.state.lock();
    state.attached = true;
    state.capacity = Some(capacity);
    device.changed.notify_all();
    tracing::debug!(gpu = %device.uuid, client_id, capacity, quantum_ms, "attached");
}
