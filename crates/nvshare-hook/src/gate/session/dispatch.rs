//! Routes each scheduler message once: the GPU it names is looked up here,
//! connection-wide notices are logged on the reader thread, a device's
//! welcome is applied there too (the attaching thread waits for it), and
//! the rest go to that device's worker thread, which applies them in order
//! through one handler each ([`super::handle`]).

use super::handle;
use crate::gate::Gate;
use crate::gate::device::DeviceGate;
use nvshare_proto::{GpuUuid, SchedulerBody, SchedulerMsg};
use std::sync::atomic::Ordering;

/// What a scheduler message is for.
enum Route {
    /// The reader thread applies it.
    Welcome {
        gpu: GpuUuid,
        capacity: u64,
        quantum_ms: u64,
        client_id: u64,
    },
    /// The device's worker thread applies it (never a `Welcome`).
    Device(GpuUuid, SchedulerBody),
    /// Connection-wide: logged.
    Notice(SchedulerMsg),
}

fn route(msg: SchedulerMsg) -> Route {
    match msg {
        SchedulerMsg::Gpu {
            gpu,
            body:
                SchedulerBody::Welcome {
                    capacity,
                    quantum_ms,
                    client_id,
                },
        } => Route::Welcome {
            gpu,
            capacity,
            quantum_ms,
            client_id,
        },
        SchedulerMsg::Gpu { gpu, body } => Route::Device(gpu, body),
        notice => Route::Notice(notice),
    }
}

/// Applies one scheduler message received on the current connection.
pub(super) fn apply(gate: &'static Gate, msg: SchedulerMsg) {
    match route(msg) {
        Route::Welcome {
            gpu,
            capacity,
            quantum_ms,
            client_id,
        } => {
            if let Some(device) = gate.device_by_uuid(&gpu) {
                handle::welcome(device, capacity, quantum_ms, client_id);
            }
        }
        Route::Device(gpu, msg) => {
            let Some(device) = gate.device_by_uuid(&gpu) else {
                return;
            };
            // Before queueing: a shadow build queued ahead stops for it.
            match msg {
                SchedulerBody::DropLock { .. } | SchedulerBody::Evict { .. } => device.note_drop(),
                SchedulerBody::Prepare { .. } => device.note_prepare(),
                _ => {}
            }
            let generation = gate.session.generation.load(Ordering::SeqCst);
            deliver(gate, device, generation, msg);
        }
        Route::Notice(notice) => handle::notice(notice),
    }
}

/// Queues `msg` for `device`'s worker thread, starting it on first use; if
/// no thread can be started, applies the message on this thread instead.
fn deliver(gate: &'static Gate, device: &'static DeviceGate, generation: u64, msg: SchedulerBody) {
    let Some(slot) = gate.session.mailboxes.get(device.ordinal as usize) else {
        return apply_device_msg(gate, device, generation, msg);
    };
    let mailbox = slot.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<(u64, SchedulerBody)>();
        let spawned = std::thread::Builder::new()
            .name(format!("nvshare-gpu{}", device.ordinal))
            .spawn(move || {
                for (generation, msg) in receiver {
                    apply_device_msg(gate, device, generation, msg);
                }
            });
        if let Err(e) = spawned {
            // The receiver is gone with the closure: sends fail below.
            tracing::error!(error = %e, gpu = %device.uuid, "cannot start the GPU's scheduler worker thread; handling its messages on the reader thread");
        }
        sender
    });
    if let Err(std::sync::mpsc::SendError((generation, msg))) = mailbox.send((generation, msg)) {
        apply_device_msg(gate, device, generation, msg);
    }
}

/// Applies a device's message received on connection `generation`.
fn apply_device_msg(gate: &'static Gate, device: &DeviceGate, generation: u64, msg: SchedulerBody) {
    match msg {
        SchedulerBody::LockGranted { room } => handle::grant(gate, device, room, generation),
        SchedulerBody::Reserved { room } => handle::reserved(device, room),
        SchedulerBody::DropLock { evict_bytes } => handle::drop_lock(gate, device, evict_bytes),
        SchedulerBody::Evict { bytes } => handle::evict(gate, device, bytes),
        SchedulerBody::Prepare { bytes } => handle::prepare(gate, device, bytes),
        SchedulerBody::Fetch { bytes } => handle::fetch(gate, device, bytes),
        // Applied on the reader thread (see `route`).
        SchedulerBody::Welcome { .. } => {}
    }
}
