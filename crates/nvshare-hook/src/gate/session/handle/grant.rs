//! `LockGranted`: restore the program's memory, then open the gate.

use crate::engine;
use crate::gate::Gate;
use crate::gate::device::DeviceGate;
use crate::gate::platform;
use nvshare_proto::ClientBody;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Restores the device's memory, then opens the gate with `room`; a grant
/// received on an earlier connection than the current one is dropped.
pub fn grant(gate: &Gate, device: &DeviceGate, room: u64, generation: u64) {
    {
        let mut state = device.state.lock();
        if generation != gate.session.generation.load(Ordering::SeqCst) {
            tracing::debug!(gpu = %device.uuid, "dropping a grant of the scheduler before the reconnect");
            return;
        }
        if device.is_held() {
            // A confirmation of the hold: its room is at least the one we have.
            device.room.fetch_max(room, Ordering::SeqCst);
            device.changed.notify_all();
            return;
        }
        // From here the program may run: a re-attach says so.
        state.changing_hands = true;
    }
    let started = Instant::now();
    let _current = platform::ContextGuard::enter(device.ordinal);
    let before = engine::current().usage(device.ordinal).resident;
    restore_waiting_for_memory(device);
    let resident = engine::current().usage(device.ordinal).resident;
    let bytes = resident.saturating_sub(before);
    if bytes > 0 {
        let elapsed_us = started.elapsed().as_micros() as u64;
        tracing::debug!(gpu = %device.uuid, bytes, elapsed_us, "memory restored on grant");
        gate.session.send(
            &ClientBody::Restored {
                bytes,
                resident,
                elapsed_us,
            }
            .on(device.uuid),
        );
    }
    device.open(&mut device.state.lock(), room);
}

/// How long a grant waits for device memory that the scheduler counted as
/// free but the driver has not given back yet.
const RESTORE_PATIENCE: Duration = Duration::from_secs(60);

/// Restores everything swapped out of `device`. When the GPU is physically
/// out of memory, memory the scheduler already counts as free is usually on
/// its way back: a program that just exited (the scheduler sees its socket
/// close before the driver has freed its memory) or a co-runner still
/// evicting. Opening the gate with memory missing would let kernels touch
/// unmapped addresses, so the restore is retried (each try restores what
/// fits) for up to [`RESTORE_PATIENCE`]; only then is the failure logged and
/// the gate opened as it is.
fn restore_waiting_for_memory(device: &DeviceGate) {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut warned = false;
    let capacity = device.state.lock().capacity;
    loop {
        match engine::current().restore(device.ordinal, u64::MAX, capacity) {
            Ok(_) => return,
            Err(e) if e.is_out_of_device_memory() && started.elapsed() < RESTORE_PATIENCE => {
                if !warned && started.elapsed() > Duration::from_secs(1) {
                    tracing::warn!(gpu = %device.uuid, error = %e,
                        "the GPU has no room yet for this program's swapped-out memory; waiting for others to free it");
                    warned = true;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(e) => {
                tracing::error!(gpu = %device.uuid, error = %e, waited_ms = started.elapsed().as_millis() as u64,
                    "restoring memory on grant failed; the program's next access to the missing memory may fault");
                return;
            }
        }
    }
}
