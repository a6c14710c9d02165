//! Room for allocations: a device allocation is made only while the process
//! holds the GPU with room for the footprint it makes.
//!
//! The scheduler gives each grant a room (the footprint the grant was
//! decided on) and raises it on request. An allocation within the room
//! costs a gate entry and a footprint read, no message. One past it asks
//! for more (`Reserve`) and waits, counted as no work in flight, so a drop
//! can drain and swap out meanwhile; if the lock goes instead, it waits for
//! the program's next turn, which the scheduler grants with room for it.

use super::device::DeviceGate;
use super::{gate, wait_for_room};
use crate::ffi::CUdevice;
use nvshare_proto::ClientBody;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long an allocation waits for `Reserved` before asking again (after
/// a reconnect the new daemon has not heard the request).
const RESERVE_RETRY: Duration = Duration::from_millis(250);

/// Admits one device allocation that grows the footprint by `growth` bytes;
/// dropping it marks the allocation made (and recorded) or abandoned. While
/// it lives the allocation counts as work in flight: a drop waits for it,
/// so its memory is in the resident bytes the drop reports.
#[must_use]
pub struct AllocationGuard {
    device: &'static DeviceGate,
    growth: u64,
}

impl Drop for AllocationGuard {
    fn drop(&mut self) {
        self.device.growing.fetch_sub(self.growth, Ordering::SeqCst);
        self.device.leave();
    }
}

/// Waits until the process holds `ordinal`'s lock with room for `growth`
/// more bytes. `None` when the device runs unscheduled (or cannot be
/// identified): the allocation proceeds as without nvshare.
pub fn enter_allocation(ordinal: CUdevice, growth: u64) -> Option<AllocationGuard> {
    let gate = gate();
    let device = gate.device(ordinal).ok()?;
    loop {
        if device.try_enter() {
            let growing = device.growing.fetch_add(growth, Ordering::SeqCst) + growth;
            let footprint = crate::engine::current().usage(ordinal).footprint;
            let needed = footprint.saturating_add(growing);
            if needed <= device.room.load(Ordering::SeqCst) {
                return Some(AllocationGuard { device, growth });
            }
            // Not in flight while it waits: a drop must be able to drain.
            device.growing.fetch_sub(growth, Ordering::SeqCst);
            device.leave();
            wait_for_reservation(device, needed);
        } else if !wait_for_room(ordinal, growth) {
            return None;
        }
    }
}

/// Asks for room for a footprint of `needed` bytes and sleeps until it is
/// granted or the lock is gone.
fn wait_for_reservation(device: &'static DeviceGate, needed: u64) {
    let gate = gate();
    let mut state = device.state.lock();
    tracing::debug!(gpu = %device.uuid, footprint = needed, "allocation waits for room on the GPU");
    while device.is_held() && device.room.load(Ordering::SeqCst) < needed {
        if state.reserving < needed {
            state.reserving = needed;
            gate.session
                .send(&ClientBody::Reserve { footprint: needed }.on(device.uuid));
        }
        if device
            .changed
            .wait_for(&mut state, RESERVE_RETRY)
            .timed_out()
        {
            state.reserving = 0;
        }
    }
}
