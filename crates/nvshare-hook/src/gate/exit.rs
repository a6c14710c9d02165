//! Leaving at process exit: the program's GPU memory goes back to the driver
//! before the scheduler hears that the program is gone.
//!
//! Without this the scheduler learns of the exit when the socket closes, at
//! the same moment the driver starts freeing the dead process's memory
//! (which takes a while for tens of GiB): the next program is granted memory
//! the driver still holds, and its restore finds the GPU full. So an
//! `atexit` handler (registered once, at the first attach) closes each
//! device's gate, waits (bounded) for the calls in flight and the GPU's
//! work, has the engine release its memory, and only then sends `Detach`
//! and closes the connection. Every wait is bounded and every failure only
//! logged: a program must never hang or crash on its way out. Devices whose
//! work does not finish in time keep their memory (unmapping under running
//! work could fault); the driver frees it with the process, as before.
//!
//! The handler first logs each device's requested versus physical bytes
//! (`engine::swap::tally`), also for programs that ran unscheduled.

use super::Gate;
use super::device::DeviceGate;
use super::platform;
use nvshare_proto::ClientBody;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long calls still in flight at exit may take to return.
const DRAIN_PATIENCE: Duration = Duration::from_secs(1);
/// How long the GPU's queued work may take to finish.
const SYNC_PATIENCE: Duration = Duration::from_secs(2);
/// How long a swap in progress may take to end.
const MOVE_PATIENCE: Duration = Duration::from_secs(2);

/// Registers the exit handler once per process (a `fork()` child inherits
/// it; it then acts on the child's own gate).
pub(crate) fn register_once() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: `on_exit` is a plain `extern "C" fn()` that never unwinds
        // (its body runs inside the panic guard) and lives as long as this
        // library, which is never unloaded while hooked.
        let rc = unsafe { libc::atexit(on_exit) };
        if rc != 0 {
            tracing::debug!(
                rc,
                "cannot register the exit handler; the driver frees this program's GPU memory after it exits"
            );
        }
    });
}

/// How long the exit handler waits for the leaving thread in all (its own
/// waits add up to 5 s).
const EXIT_PATIENCE: Duration = Duration::from_secs(8);

/// Set by the leaving thread when it is done.
static LEFT: AtomicBool = AtomicBool::new(false);

/// The `atexit` handler. glibc destroys the exiting thread's thread-locals
/// before it runs the handlers, and Rust code (logging, locks, channels)
/// panics on a destroyed one: so this thread only starts a fresh one (a raw
/// pthread, which touches no thread-local of this thread) to do the work,
/// and waits for it at most [`EXIT_PATIENCE`].
extern "C" fn on_exit() {
    let mut thread: libc::pthread_t = 0;
    // SAFETY: `leaving_thread` has the signature pthread_create expects and
    // ignores its argument; default attributes.
    let rc = unsafe {
        libc::pthread_create(
            &mut thread,
            std::ptr::null(),
            leaving_thread,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return;
    }
    let started = Instant::now();
    while !LEFT.load(Ordering::Acquire) && started.elapsed() < EXIT_PATIENCE {
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: `thread` was created above and is joined or detached once.
    unsafe {
        if LEFT.load(Ordering::Acquire) {
            libc::pthread_join(thread, std::ptr::null_mut());
        } else {
            libc::pthread_detach(thread);
        }
    }
}

extern "C" fn leaving_thread(_: *mut std::ffi::c_void) -> *mut std::ffi::c_void {
    crate::guard::ffi_boundary("atexit", (), || {
        if let Some(gate) = super::existing_gate() {
            leave(gate);
        }
    });
    LEFT.store(true, Ordering::Release);
    std::ptr::null_mut()
}

/// Releases every attached device's memory, then detaches them and closes
/// the connection.
pub(crate) fn leave(gate: &'static Gate) {
    let started = Instant::now();
    let mut detached = Vec::new();
    let mut released = 0u64;
    for device in gate.devices() {
        crate::engine::current().log_footprint(device.ordinal);
        {
            let state = device.state.lock();
            if !state.attached || state.unscheduled {
                continue;
            }
        }
        released += release(device);
        detached.push(device);
    }
    for device in &detached {
        gate.session.send(&ClientBody::Detach.on(device.uuid));
    }
    if !detached.is_empty() {
        gate.session.close();
        tracing::debug!(
            devices = detached.len(),
            released,
            elapsed_us = started.elapsed().as_micros() as u64,
            "GPU memory released at exit, then detached from the scheduler"
        );
    }
}

/// Closes `device`'s gate, waits for its work (bounded) and releases its
/// memory; then lets any later call through unscheduled, so that nothing
/// blocks on a scheduler that no longer serves this process. Returns the
/// bytes released.
fn release(device: &'static DeviceGate) -> u64 {
    let drained = device.close_and_drain_for(DRAIN_PATIENCE);
    let released = if !drained {
        tracing::info!(gpu = %device.uuid, in_flight = device.in_flight(),
            "driver calls still running at exit; leaving this GPU's memory to the driver");
        0
    } else if !synchronize_within(device, SYNC_PATIENCE) {
        tracing::info!(gpu = %device.uuid, "GPU work still running at exit; leaving this GPU's memory to the driver");
        0
    } else {
        let _current = platform::ContextGuard::enter(device.ordinal);
        crate::engine::current().release_at_exit(device.ordinal, MOVE_PATIENCE)
    };
    let mut state = device.state.lock();
    state.unscheduled = true;
    device.open(&mut state, u64::MAX);
    released
}

/// Waits for `device`'s work on a helper thread, at most `patience`.
fn synchronize_within(device: &'static DeviceGate, patience: Duration) -> bool {
    let (done, finished) = mpsc::channel();
    let ordinal = device.ordinal;
    let spawned = std::thread::Builder::new()
        .name("nvshare-exit".into())
        .spawn(move || {
            platform::synchronize(ordinal);
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => finished.recv_timeout(patience).is_ok(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot start a thread to wait for the GPU at exit");
            false
        }
    }
}
