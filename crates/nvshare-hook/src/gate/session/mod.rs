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
//!
//! # Layout
//! - this module: the connection (open, reconnect, the reader thread,
//!   attach); what it receives goes to [`dispatch`].
//! - [`dispatch`]: each message routed once to its device's worker.
//! - [`handle`]: one handler per message.
//! - [`idle`]: idle reports of holders with no work.

mod dispatch;
mod handle;
mod idle;

use super::device::DeviceGate;
use super::{Gate, MAX_DEVICES};
use crate::client::{self, Connection};
use crate::config;
use crate::engine;
use nvshare_proto::{ClientBody, ClientMsg, JobSettings, SchedulerBody};
use parking_lot::Mutex;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
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
    /// Each device's worker thread's queue, by ordinal (started at the
    /// device's first grant, drop or eviction); each message carries the
    /// generation of the connection it came on.
    mailboxes: [OnceLock<Sender<(u64, SchedulerBody)>>; MAX_DEVICES],
}

impl Session {
    /// No connection yet; the first [`Session::connection`] opens it.
    pub const fn new() -> Self {
        Session {
            connection: Mutex::new(None),
            unscheduled: AtomicBool::new(false),
            started: std::sync::Once::new(),
            generation: AtomicU64::new(0),
            mailboxes: [const { OnceLock::new() }; MAX_DEVICES],
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
                    idle::spawn_idle_watcher(gate);
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
        gate.session.send(
            &ClientBody::Attach {
                physical_memory: device.physical_memory,
                footprint: usage.footprint,
                resident: usage.resident,
                holding,
            }
            .on(device.uuid),
        );
        let config = crate::config::get();
        let settings = JobSettings {
            memory_limit: config.memory_limit,
            priority: config.priority,
            weight: config.weight,
        };
        if settings != JobSettings::default() {
            gate.session
                .send(&ClientBody::JobSettings(settings).on(device.uuid));
        }
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
            Ok(msg) => dispatch::apply(gate, msg),
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
                        gate.session.send(&ClientBody::RequestLock.on(device.uuid));
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
