//! The lock gate: every call that submits GPU work passes here first.
//!
//! When the process holds a GPU's lock the gate costs one atomic load (plus
//! the in-flight count). Otherwise the calling thread asks the scheduler
//! and blocks until granted; the grant restores the process's memory before
//! any work is admitted. The hook's own driver calls never pass the gate.
//!
//! # Layout
//! - [`admission`]: whether an allocation fits the program's capacity.
//! - [`device`]: one GPU's gate (the lock-free fast path and the drain).
//! - [`session`]: the scheduler conversation (attach, grant, drop, evict,
//!   idle reports, reconnect).
//! - [`platform`]: the few real driver calls the gate itself makes.
//! - [`reserve`]: allocations wait for room made for them.
//! - [`host`]: reports of the host memory kept as shadows.
//! - [`exit`]: at process exit, memory released before detaching.

mod admission;
mod device;
mod exit;
mod host;
mod platform;
mod reserve;
mod session;

pub use admission::admit;
pub use reserve::enter_allocation;

use crate::ffi::{CUdevice, CUresult};
use device::DeviceGate;
use nvshare_proto::{ClientBody, GpuUuid};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Device ordinals this hook tracks; CUDA numbers a process's devices from 0.
pub(crate) const MAX_DEVICES: usize = 64;

/// The process-wide gate state.
pub(crate) struct Gate {
    devices: [OnceLock<DeviceGate>; MAX_DEVICES],
    session: session::Session,
}

impl Gate {
    fn new() -> Self {
        Gate {
            devices: [const { OnceLock::new() }; MAX_DEVICES],
            session: session::Session::new(),
        }
    }

    /// Devices seen so far.
    fn devices(&self) -> impl Iterator<Item = &DeviceGate> {
        self.devices.iter().filter_map(OnceLock::get)
    }

    fn device_by_uuid(&self, uuid: &GpuUuid) -> Option<&DeviceGate> {
        self.devices().find(|d| d.uuid == *uuid)
    }

    /// The gate of `ordinal`, identified on first use.
    fn device(&'static self, ordinal: CUdevice) -> Result<&'static DeviceGate, CUresult> {
        let slot = usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.devices.get(i))
            .ok_or(CUresult::ERROR_INVALID_DEVICE)?;
        if let Some(device) = slot.get() {
            return Ok(device);
        }
        let (uuid, physical_memory) = platform::identify(ordinal)?;
        Ok(slot.get_or_init(|| DeviceGate::new(ordinal, uuid, physical_memory)))
    }
}

/// The gate; replaced by a fresh one in a `fork()` child (the parent's locks
/// and connection are not the child's).
static GATE: AtomicPtr<Gate> = AtomicPtr::new(std::ptr::null_mut());

fn gate() -> &'static Gate {
    let current = GATE.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: a non-null GATE points to a leaked Box<Gate> that is never
        // freed, so the reference is valid for 'static.
        return unsafe { &*current };
    }
    let fresh = Box::into_raw(Box::new(Gate::new()));
    match GATE.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            register_fork_handler();
            // SAFETY: we just published `fresh`, a leaked box never freed.
            unsafe { &*fresh }
        }
        Err(winner) => {
            // SAFETY: `fresh` was never shared; reclaim it.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: `winner` is a published leaked box, never freed.
            unsafe { &*winner }
        }
    }
}

/// The gate if one was made (none in a process that never used CUDA, or in
/// a `fork()` child that has not yet).
fn existing_gate() -> Option<&'static Gate> {
    let current = GATE.load(Ordering::Acquire);
    // SAFETY: a non-null GATE points to a leaked Box<Gate> that is never
    // freed, so the reference is valid for 'static.
    (!current.is_null()).then(|| unsafe { &*current })
}

/// Makes every `fork()` child start as a new client (once per process; the
/// registration is inherited by children).
fn register_fork_handler() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        extern "C" fn in_child() {
            // SAFETY: the pthread_atfork child handler, which runs before
            // the child can start a thread.
            let child = unsafe { crate::fork::InForkChild::assume() };
            forget_after_fork();
            crate::engine::on_fork_child(&child);
        }
        // SAFETY: `in_child` is a plain function that only stores atomics
        // and resets engine state without locking; it is valid for the life
        // of the process since this library is never unloaded while hooked.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            tracing::warn!(rc, "cannot register the fork handler; a forked child that uses CUDA would share its parent's scheduler connection");
        }
    });
}

/// Forgets the parent's gate in a `fork()` child: the child is a new client
/// that holds no lock and owns no connection. The parent's gate is leaked,
/// never touched again (its mutexes may be held by threads that do not exist
/// in the child).
pub(crate) fn forget_after_fork() {
    GATE.store(std::ptr::null_mut(), Ordering::Release);
}

/// Proof that one work-submitting call was admitted; dropping it marks the
/// call finished (the drop path waits for all guards before evicting).
#[must_use]
pub struct WorkGuard {
    device: &'static DeviceGate,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.device.leave();
    }
}

/// Admits one call that submits GPU work on the calling thread's current
/// context: returns at once when the process holds that GPU's lock, else
/// asks the scheduler and blocks until granted. Errors are CUDA errors to
/// return to the program unchanged (e.g. no current context).
pub fn enter() -> Result<WorkGuard, CUresult> {
    enter_device(platform::current_device()?)
}

/// As [`enter`], for a call whose device is known (e.g. from a pointer).
pub fn enter_device(ordinal: CUdevice) -> Result<WorkGuard, CUresult> {
    let gate = gate();
    let device = gate.device(ordinal)?;
    loop {
        if device.try_enter() {
            return Ok(WorkGuard { device });
        }
        wait_for_grant(gate, device);
    }
}

/// The slow path: attach if needed, request the lock once, and sleep until
/// the gate opens.
fn wait_for_grant(gate: &'static Gate, device: &'static DeviceGate) {
    ensure_attached(gate, device);
    let mut state = device.state.lock();
    if device.is_held() {
        return;
    }
    if state.unscheduled {
        device.open(&mut state, u64::MAX);
        return;
    }
    // While a grant or drop is half done the answer comes from it: the
    // grant opens the gate, the drop's end asks again for those waiting.
    if !state.requested && !state.changing_hands {
        state.requested = true;
        gate.session.send(&ClientBody::RequestLock.on(device.uuid));
    }
    state.waiters += 1;
    device.changed.wait(&mut state);
    state.waiters -= 1;
}

/// Attaches `device` to the scheduler once (one thread does it, the others
/// wait for the outcome); on failure marks it unscheduled.
fn ensure_attached(gate: &'static Gate, device: &'static DeviceGate) {
    let mut state = device.state.lock();
    loop {
        if state.attached || state.unscheduled {
            return;
        }
        if !state.attaching {
            break;
        }
        device.changed.wait(&mut state);
    }
    state.attaching = true;
    drop(state);
    let attached = session::attach(gate, device);
    let mut state = device.state.lock();
    state.attaching = false;
    if !attached && !state.attached {
        state.unscheduled = true;
    }
    // Also unscheduled: the handler logs the memory footprint at exit.
    exit::register_once();
    device.changed.notify_all();
}

/// Whether the process holds the lock on `ordinal` now (engines prefetch
/// fresh allocations only then).
pub fn holds(ordinal: CUdevice) -> bool {
    gate()
        .device(ordinal)
        .map(|device| device.is_held())
        .unwrap_or(false)
}

/// The memory the program may use on `device` (the scheduler's capacity),
/// reported as the GPU's total memory; `None` when running unscheduled.
pub fn capacity(ordinal: CUdevice) -> Option<u64> {
    let gate = gate();
    let device = gate.device(ordinal).ok()?;
    ensure_attached(gate, device);
    device.state.lock().capacity
}

/// Tells the scheduler that the program's memory on `device` changed (after
/// an allocation or free). Never blocks on the scheduler beyond the first
/// attach.
pub fn usage_changed(ordinal: CUdevice) {
    report_usage(ordinal, 0);
}

/// Sends the program's usage on `ordinal`, its footprint raised by `extra`
/// bytes about to be allocated. Returns the device's gate, or `None` when it
/// runs unscheduled.
fn report_usage(ordinal: CUdevice, extra: u64) -> Option<&'static DeviceGate> {
    let gate = gate();
    let device = gate.device(ordinal).ok()?;
    ensure_attached(gate, device);
    if device.state.lock().unscheduled {
        return None;
    }
    let usage = crate::engine::current().usage(ordinal);
    gate.session.send(
        &ClientBody::Usage {
            footprint: usage.footprint.saturating_add(extra),
            resident: usage.resident,
        }
        .on(device.uuid),
    );
    host::report(gate, device, false);
    Some(device)
}

/// Waits until the process holds `ordinal`'s lock with room for `extra`
/// more bytes, before a device allocation made without the lock (or one the
/// driver refused because other programs' memory fills the GPU). The
/// scheduler is told the footprint the program will have, so the grant comes
/// with that much memory freed (and that much room). Returns false when the
/// device runs unscheduled.
pub fn wait_for_room(ordinal: CUdevice, extra: u64) -> bool {
    let Some(device) = report_usage(ordinal, extra) else {
        return false;
    };
    tracing::debug!(
        gpu = %device.uuid,
        bytes = extra,
        "allocation waits for this program's turn on the GPU"
    );
    if let Ok(admitted) = enter_device(ordinal) {
        drop(admitted);
    }
    true
}
