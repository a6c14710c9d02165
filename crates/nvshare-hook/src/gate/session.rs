//! The gate's side of the scheduler conversation: attaching devices,
//! following grants, drops and evictions, reporting idleness, and
//! reconnecting when the daemon restarts.
//!
//! One reader thread per connection receives the scheduler's messages and
//! hands each device's grants, drops and evictions to that device's worker
//! thread, which applies them in order. A drain that waits for a kernel on
//! one GPU therefore never holds up a grant on another: a program whose
//! kernels on two GPUs wait for each other (a collective across its own
//! devices) would otherwise deadlock inside the hook. Grants restore memory
//! before the gate opens; drops close the gate, wait for calls in flight,
//! synchronize the device and evict before answering.

use super::Gate;
use super::device::DeviceGate;
use super::platform;
use crate::client::{self, Connection};
use crate::config;
use crate::engine;
use nvshare_proto::{ClientMsg, SchedulerMsg};
use parking_lot::Mutex;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The live connection, if any. `None` while (re)connecting or unscheduled.
#[derive(Debug)]
pub(crate) struct Session {
    connection: Mutex<Option<Arc<Connection>>>,
    /// Set once the first connection attempt failed for good: the process
    /// then runs unscheduled (logged once).
    unscheduled: AtomicBool,
    started: std::sync::Once,
    /// Counts connections: raised when a reconnect is installed. A grant
    /// that arrived on an earlier connection is stale (its scheduler is
    /// gone, and the new one did not grant it) and is not applied.
    generation: AtomicU64,
}

impl Session {
    /// No connection yet; the first [`Session::connection`] opens it.
    pub const fn new() -> Self {
        Session {
            connection: Mutex::new(None),
            unscheduled: AtomicBool::new(false),
            started: std::sync::Once::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// The connection, opening it (and the reader and idle threads) on first
    /// use. `None` means run unscheduled.
    pub fn connection(&self, gate: &'static Gate) -> Option<Arc<Connection>> {
        if self.unscheduled.load(Ordering::Acquire) {
            return None;
        }
        self.started.call_once(|| {
            let cfg = config::get();
            if cfg.scheduler == config::SchedulerMode::Off {
                tracing::warn!("NVSHARE_SCHEDULER=off: this program runs unshared, without a scheduler");
                self.unscheduled.store(true, Ordering::Release);
                return;
            }
            match open_patiently(cfg) {
                Ok((connection, reader)) => {
                    tracing::debug!(client_id = connection.client_id(), socket = %cfg.socket.display(), "connected to the scheduler");
                    *self.connection.lock() = Some(Arc::new(connection));
                    spawn_reader(gate, reader);
                    spawn_idle_watcher(gate);
                }
                Err(e) => {
                    tracing::warn!("{e}; this program runs unshared");
                    self.unscheduled.store(true, Ordering::Release);
                }
            }
        });
        self.connection.lock().clone()
    }

    /// Closes the connection for good (the process exits): nothing is sent
    /// after this, and the reader thread does not reconnect.
    pub fn close(&self) {
        self.unscheduled.store(true, Ordering::Release);
        if let Some(connection) = self.connection.lock().take() {
            connection.shutdown();
        }
    }

    /// Sends `msg` if connected; a failure is left to the reader thread,
    /// which sees the same broken socket and reconnects.
    pub fn send(&self, msg: &ClientMsg) {
        let connection = self.connection.lock().clone();
        if let Some(connection) = connection
            && let Err(e) = connection.send(msg)
        {
            tracing::debug!(error = %e, "send to the scheduler failed; reconnecting");
        }
    }
}

/// How long the first connection keeps trying a scheduler that is there but
/// does not answer; the program's first CUDA call waits meanwhile, and then
/// runs unshared.
const FIRST_CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// Opens the first connection, trying again with back-off while a scheduler
/// listens but does not answer (each try bounded by
/// [`client::ANSWER_WAIT`]), for up to [`FIRST_CONNECT_PATIENCE`]; warns
/// once when it starts waiting.
fn open_patiently(
    cfg: &config::HookConfig,
) -> Result<(Connection, UnixStream), client::ClientError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match Connection::open(cfg) {
            Err(e) if e.is_no_answer() && started.elapsed() < FIRST_CONNECT_PATIENCE => {
                if !warned {
                    tracing::warn!(
                        "{e}; this program's CUDA calls wait while it tries again, for up to {FIRST_CONNECT_PATIENCE:?}, and then run unshared"
                    );
                    warned = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Sends `Attach` for `device` and waits for the scheduler's welcome.
/// Returns false if the process must run this device unscheduled.
pub(crate) fn attach(gate: &'static Gate, device: &DeviceGate) -> bool {
    let Some(_connection) = gate.session.connection(gate) else {
        return false;
    };
    send_attach(gate, device);
    let mut state = device.state.lock();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.attached {
        if device.changed.wait_until(&mut state, deadline).timed_out() {
            tracing::warn!(gpu = %device.uuid, "the scheduler did not answer Attach within 10 s; running this GPU unshared");
            return false;
        }
    }
    true
}

/// Sends `Attach` for `device`. The claim (`holding`) is decided and sent
/// under the device's state lock, as are the start of a grant and the end of
/// a drop (`LockReleased`): a restarted scheduler thus hears either that the
/// program may run work on the GPU, or that it gave the GPU back, never
/// neither while it still runs.
fn send_attach(gate: &Gate, device: &DeviceGate) {
    let usage = engine::current().usage(device.ordinal);
    {
        let mut state = device.state.lock();
        let holding = device.may_run(&state);
        if holding {
            // The claim stands for any request made to the last daemon:
            // asking the new one now would be answered with a confirmation
            // that re-opens the gate after a drain in progress. Threads
            // still waiting when that drain ends ask then (`drop_lock`).
            state.requested = false;
        }
        gate.session.send(&ClientMsg::Attach {
            gpu: device.uuid,
            physical_memory: device.physical_memory,
            footprint: usage.footprint,
            resident: usage.resident,
            holding,
        });
    }
    super::host::report(gate, device, true);
}

fn spawn_reader(gate: &'static Gate, reader: UnixStream) {
    let spawned = std::thread::Builder::new()
        .name("nvshare-client".into())
        .spawn(move || reader_loop(gate, reader));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the scheduler reader thread");
    }
}

fn reader_loop(gate: &'static Gate, mut reader: UnixStream) {
    loop {
        match client::receive(&mut reader) {
            Ok(msg) => apply(gate, msg),
            Err(_) if gate.session.unscheduled.load(Ordering::Acquire) => {
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "lost the connection to the scheduler; reconnecting");
                reader = reconnect(gate);
            }
        }
    }
}

/// Reopens the connection (starting a scheduler if allowed), then tells the
/// new daemon what this process holds, uses and waits for.
fn reconnect(gate: &'static Gate) -> UnixStream {
    // Devices stay attached in our books: the new daemon learns them again
    // from the Attach sent below, and its Welcome refreshes the capacity.
    *gate.session.connection.lock() = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        std::thread::sleep(backoff);
        match Connection::open(config::get()) {
            Ok((connection, reader)) => {
                tracing::info!(
                    client_id = connection.client_id(),
                    "reconnected to the scheduler"
                );
                *gate.session.connection.lock() = Some(Arc::new(connection));
                // Before any claim is made: grants still queued from the
                // last connection are stale from here on.
                gate.session.generation.fetch_add(1, Ordering::SeqCst);
                for device in gate.devices() {
                    if device.state.lock().unscheduled {
                        continue;
                    }
                    send_attach(gate, device);
                    let state = device.state.lock();
                    if state.requested && !device.is_held() {
                        gate.session
                            .send(&ClientMsg::RequestLock { gpu: device.uuid });
                    }
                }
                return reader;
            }
            Err(e) => {
                tracing::debug!(error = %e, "scheduler still unreachable");
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Applies one scheduler message: connection-wide ones here, a device's
/// ones on that device's worker thread.
fn apply(gate: &'static Gate, msg: SchedulerMsg) {
    let device_msg_gpu = match &msg {
        SchedulerMsg::LockGranted { gpu, .. }
        | SchedulerMsg::Reserved { gpu, .. }
        | SchedulerMsg::DropLock { gpu, .. }
        | SchedulerMsg::Prepare { gpu, .. }
        | SchedulerMsg::Fetch { gpu, .. }
        | SchedulerMsg::Evict { gpu, .. } => Some(*gpu),
        _ => None,
    };
    match device_msg_gpu {
        Some(gpu) => {
            if let Some(device) = gate.device_by_uuid(&gpu) {
                // Before queueing: a shadow build queued ahead stops for it.
                match &msg {
                    SchedulerMsg::DropLock { .. } | SchedulerMsg::Evict { .. } => {
                        device.note_drop()
                    }
                    SchedulerMsg::Prepare { .. } => device.note_prepare(),
                    _ => {}
                }
                let generation = gate.session.generation.load(Ordering::SeqCst);
                deliver(gate, device, generation, msg);
            }
        }
        None => apply_here(gate, msg),
    }
}

/// Queues `msg` for `device`'s worker thread, starting it on first use; if
/// no thread can be started, applies the message on this thread instead.
fn deliver(gate: &'static Gate, device: &'static DeviceGate, generation: u64, msg: SchedulerMsg) {
    let mailbox = device.mailbox.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<(u64, SchedulerMsg)>();
        let spawned = std::thread::Builder::new()
            .name(format!("nvshare-gpu{}", device.ordinal))
            .spawn(move || {
                for (generation, msg) in receiver {
                    apply_device_msg(gate, generation, msg);
                }
            });
        if let Err(e) = spawned {
            // The receiver is gone with the closure: sends fail below.
            tracing::error!(error = %e, gpu = %device.uuid, "cannot start the GPU's scheduler worker thread; handling its messages on the reader thread");
        }
        sender
    });
    if let Err(std::sync::mpsc::SendError((generation, msg))) = mailbox.send((generation, msg)) {
        apply_device_msg(gate, generation, msg);
    }
}

/// Applies a device's message received on connection `generation`, unless
/// it is a grant from a scheduler that is gone: its successor did not grant
/// it, and the program waits for the successor's own grant.
fn apply_device_msg(gate: &'static Gate, generation: u64, msg: SchedulerMsg) {
    if let SchedulerMsg::LockGranted { gpu, room } = msg {
        if let Some(device) = gate.device_by_uuid(&gpu) {
            grant(gate, device, room, generation);
        }
        return;
    }
    apply_here(gate, msg);
}

/// Applies one scheduler message on the calling thread.
fn apply_here(gate: &'static Gate, msg: SchedulerMsg) {
    match msg {
        SchedulerMsg::Welcome {
            gpu,
            capacity,
            quantum_ms,
            client_id,
        } => {
            if let Some(device) = gate.device_by_uuid(&gpu) {
                let mut state = device.state.lock();
                state.attached = true;
                state.capacity = Some(capacity);
                device.changed.notify_all();
                tracing::debug!(%gpu, client_id, capacity, quantum_ms, "attached");
            }
        }
        SchedulerMsg::LockGranted { gpu, room } => {
            if let Some(device) = gate.device_by_uuid(&gpu) {
                let generation = gate.session.generation.load(Ordering::SeqCst);
                grant(gate, device, room, generation);
            }
        }
        SchedulerMsg::Reserved { gpu, room } => {
            if let Some(device) = gate.device_by_uuid(&gpu) {
                let _state = device.state.lock();
                // Room belongs to the grant it was asked in: one that
                // arrives after a drop is stale (the next grant brings its
                // own).
                if device.is_held() {
                    device.room.fetch_max(room, Ordering::SeqCst);
                    device.changed.notify_all();
                }
            }
        }
        SchedulerMsg::DropLock { gpu, evict_bytes } => {
            if let Some(device) = gate.device_by_uuid(&gpu) {
                drop_lock(gate, device, evict_bytes);
            }
        }
        SchedulerMsg::Evict { gpu, bytes } => {
            if let Some(device) = gate.device_by_uuid(&gpu) {
                if device.is_held() {
                    // Evict is for programs that do not run: moving memory
                    // out from under running work would fault. Decline; the
                    // scheduler asks others or drops the lock instead.
                    gate.session.send(&ClientMsg::EvictFailed {
                        gpu,
                        resident: engine::current().usage(device.ordinal).resident,
                        reason: "the program holds the GPU; drop the lock first".into(),
                    });
                } else {
                    evict(gate, device, bytes);
                }
            }
        }
        SchedulerMsg::Prepare { gpu, bytes } => {
            if let Some(device) = gate.device_by_uuid(&gpu)
                && device.is_held()
            {
                prepare(gate, device, bytes);
            }
        }
        SchedulerMsg::Fetch { gpu, bytes } => {
            if let Some(device) = gate.device_by_uuid(&gpu) {
                fetch(gate, device, bytes);
            }
        }
        SchedulerMsg::QuantumChanged { quantum_ms } => {
            tracing::debug!(quantum_ms, "the scheduler's quantum changed");
        }
        SchedulerMsg::Error(reply) => {
            tracing::warn!(code = ?reply.code, "the scheduler refused a message: {}", reply.message);
        }
        SchedulerMsg::ShuttingDown => {
            tracing::info!(
                "the scheduler is shutting down; this program keeps what it holds and reconnects"
            );
        }
    }
}

/// Restores the device's memory, then opens the gate with `room`; a grant
/// received on an earlier connection than the current one is dropped.
fn grant(gate: &Gate, device: &DeviceGate, room: u64, generation: u64) {
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
        gate.session.send(&ClientMsg::Restored {
            gpu: device.uuid,
            bytes,
            resident,
            elapsed_us,
        });
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

/// Brings up to `bytes` of the device's memory back ahead of the grant
/// (the scheduler's `Fetch`: memory it counts free while this program
/// waits), and answers with what came back. The program's work still waits
/// for the grant, whose restore brings the rest.
fn fetch(gate: &Gate, device: &DeviceGate, bytes: u64) {
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
    gate.session.send(&ClientMsg::Fetched {
        gpu: device.uuid,
        bytes: moved,
        resident,
        elapsed_us,
    });
}

/// Makes the host room for an eviction of `bytes` expected at the end of
/// this hold, on the device's worker thread while the program runs. A
/// failure is only logged: the eviction then makes what it needs itself.
fn prepare(gate: &Gate, device: &DeviceGate, bytes: u64) {
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
    super::host::report(gate, device, false);
}

/// Stops new work, waits for work in flight, evicts what was asked and
/// gives the lock back.
fn drop_lock(gate: &Gate, device: &DeviceGate, evict_bytes: u64) {
    let started = Instant::now();
    {
        // Until LockReleased is sent, a re-attach claims the GPU: calls in
        // flight and queued work still run on it.
        let mut state = device.state.lock();
        state.changing_hands |= device.is_held();
    }
    device.close_and_drain();
    platform::synchronize(device.ordinal);
    evict(gate, device, evict_bytes);
    let resident = engine::current().usage(device.ordinal).resident;
    let mut state = device.state.lock();
    gate.session.send(&ClientMsg::LockReleased {
        gpu: device.uuid,
        resident,
    });
    state.changing_hands = false;
    state.granted_at = None;
    state.reserving = 0;
    if state.waiters == 0 {
        state.requested = false;
    } else if !state.requested {
        // Threads blocked while the GPU was being given back: ask again
        // (unless one of them already did, during the drain).
        state.requested = true;
        gate.session
            .send(&ClientMsg::RequestLock { gpu: device.uuid });
    }
    device.changed.notify_all();
    tracing::debug!(gpu = %device.uuid, evict_bytes, elapsed_us = started.elapsed().as_micros() as u64, "lock released");
}

fn evict(gate: &Gate, device: &DeviceGate, bytes: u64) {
    if bytes == 0 {
        return;
    }
    let started = Instant::now();
    let _current = platform::ContextGuard::enter(device.ordinal);
    let before = engine::current().usage(device.ordinal).resident;
    // Each piece freed is reported at once: the scheduler lets the next
    // program's restore into it while the rest is still being copied.
    let mut report = |released: u64| {
        gate.session.send(&ClientMsg::Evicting {
            gpu: device.uuid,
            resident: before.saturating_sub(released),
        });
    };
    match engine::current().evict(device.ordinal, bytes, &mut report) {
        Ok(moved) => {
            let usage = engine::current().usage(device.ordinal);
            let elapsed_us = started.elapsed().as_micros() as u64;
            tracing::debug!(gpu = %device.uuid, bytes = moved, elapsed_us, "memory evicted");
            gate.session.send(&ClientMsg::Evicted {
                gpu: device.uuid,
                bytes: moved,
                resident: usage.resident,
                elapsed_us,
            });
        }
        Err(e) => {
            tracing::warn!(gpu = %device.uuid, error = %e, "eviction failed; the memory stays on the GPU");
            let usage = engine::current().usage(device.ordinal);
            gate.session.send(&ClientMsg::EvictFailed {
                gpu: device.uuid,
                resident: usage.resident,
                reason: e.to_string(),
            });
        }
    }
    super::host::report(gate, device, false);
}

/// Reports a holder with no work for `idle_after_ms` as idle, once per idle
/// spell, so the scheduler can hand the GPU to a waiter early.
fn spawn_idle_watcher(gate: &'static Gate) {
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
            gate.session
                .send(&ClientMsg::RequestLock { gpu: device.uuid });
        }
    } else if !state.idle_reported && state.last_activity.elapsed() >= idle_after {
        state.idle_reported = true;
        gate.session.send(&ClientMsg::Idle { gpu: device.uuid });
    }
}
