//! `Reserved`: room the scheduler made for a holder's growing memory.

use crate::gate::device::DeviceGate;
use std::sync::atomic::Ordering;

/// Raises the holder's room and wakes allocations waiting for it.
pub fn reserved(device: &DeviceGate, room: u64) {
    let _state = device.state.lock();
    // Room belongs to the grant it was asked in: one that arrives after a
    // drop is stale (the next grant brings its own).
    if device.is_held() {
        device.room.fetch_max(room, Ordering::SeqCst);
        device.changed.notify_all();
    }
}
