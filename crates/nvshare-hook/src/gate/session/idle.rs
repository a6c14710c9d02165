//! Idle reports: a holder with no GPU work for `NVSHARE_IDLE_MS` says so,
//! once per idle spell, so the scheduler can hand the GPU to a waiter
//! early; busy again, it asks for the lock back.

use crate::config;
use crate::gate::Gate;
use crate::gate::device::DeviceGate;
use nvshare_proto::ClientBody;
use std::time::{Duration, Instant};

/// Reports a holder with no work for `idle_after_ms` as idle, once per idle
/// spell, so the scheduler can hand the GPU to a waiter early.
pub(super) fn spawn_idle_watcher(gate: &'static Gate) {
    let idle_after = Duration::from_millis(config::get().idle_after_ms.max(1));
    let period = (idle_after / 4).max(Duration::from_millis(10));
    let spawned = std::thread::Builder::new()
        .name("nvshare-idle".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                for device in gate.devices() {
                    watch_idle(gate, device, idle_after);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the idle watcher; idle programs keep the GPU for their whole quantum");
    }
}

fn watch_idle(gate: &Gate, device: &DeviceGate, idle_after: Duration) {
    if !device.is_held() {
        return;
    }
    let submissions = device.submissions();
    let mut state = device.state.lock();
    if state.unscheduled {
        return;
    }
    if submissions != state.seen_submissions || device.in_flight() > 0 {
        state.seen_submissions = submissions;
        state.last_activity = Instant::now();
        if state.idle_reported {
            // Busy again: tell the scheduler we want the lock after all.
            state.idle_reported = false;
            gate.session.send(&ClientBody::RequestLock.on(device.uuid));
        }
    } else if !state.idle_reported && state.last_activity.elapsed() >= idle_after {
        state.idle_reported = true;
        gate.session.send(&ClientBody::Idle.on(device.uuid));
    }
}
