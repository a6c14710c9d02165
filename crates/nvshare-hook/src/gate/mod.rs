//! The lock gate: every call that submits GPU work passes here first.
//!
//! When the process holds a GPU's lock the gate costs one atomic load (plus
//! the in-flight count). Otherwise the calling thread asks the scheduler
//! and blocks until granted; the grant restores the process's memory before
//! any work is admitted. The hook's own driver calls never pass the gate.
//!
//! # Layout
//! - [`admission`]: whether an allocation fits the program's limit and
//!   capacity.
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

/// The gate of the process's only device, once a call has used it: most
/// programs see one GPU, and the launch fast path ([`enter_sole_held`])
/// admits their calls through it with no lookup. Null while no call has
/// used it, when several devices are visible, and in a `fork()` child until
/// it makes its own gate.
static SOLE_DEVICE: AtomicPtr<DeviceGate> = AtomicPtr::new(std::ptr::null_mut());

/// The fast path of [`enter`]: admits the call at once if the process sees
/// one GPU and holds it; `None` means "take [`enter`]", which handles all
/// the rest (no gate yet, several devices, the lock not held). It makes no
/// driver call, takes no lock, allocates nothing and cannot panic, so the
/// wrappers run it outside their panic guard: a load of the slot, one
/// atomic increment and a load of `held` (the decrement is the guard's
/// drop).
#[inline]
pub fn enter_sole_held() -> Option<WorkGuard> {
    admit_through(&SOLE_DEVICE)
}

/// Admits a call on the device `slot` points to, if it is set and held.
#[inline]
fn admit_through(slot: &AtomicPtr<DeviceGate>) -> Option<WorkGuard> {
    let device = slot.load(Ordering::Acquire);
    if device.is_null() {
        return None;
    }
    // SAFETY: the slots (SOLE_DEVICE, and the tests' own) only ever point
    // to a device of a published gate or a leaked one, never freed, so the
    // device lives for 'static.
    let device: &'static DeviceGate = unsafe { &*device };
    WorkGuard::try_admit(device)
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
    SOLE_DEVICE.store(std::ptr::null_mut(), Ordering::Release);
    GATE.store(std::ptr::null_mut(), Ordering::Release);
}

/// Proof that one work-submitting call was admitted; dropping it marks the
/// call finished (the drop path waits for all guards before evicting).
#[must_use]
pub struct WorkGuard {
    device: &'static DeviceGate,
}

impl WorkGuard {
    /// The guard of one call admitted on `device`, if it holds the lock.
    /// The only way to make one: dropping a guard marks a call finished, so
    /// a guard made for a call that was not admitted (say, by an eager
    /// `bool::then_some`) would make the drain undercount the calls in
    /// flight and move memory out from under a running kernel.
    #[inline]
    fn try_admit(device: &'static DeviceGate) -> Option<WorkGuard> {
        if device.try_enter() {
            Some(WorkGuard { device })
        } else {
            None
        }
    }
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
    if ordinal == 0
        && platform::single_device()
        && SOLE_DEVICE.load(Ordering::Relaxed).is_null()
        && std::ptr::eq(GATE.load(Ordering::Acquire), gate)
    {
        SOLE_DEVICE.store(std::ptr::from_ref(device).cast_mut(), Ordering::Release);
    }
    loop {
        if let Some(admitted) = WorkGuard::try_admit(device) {
            return Ok(admitted);
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

/// The memory the program may use on `device`, reported as the GPU's total
/// memory: the scheduler's capacity, or the program's own limit
/// (`NVSHARE_MEMORY_LIMIT`) where that is smaller; `None` when running
/// unscheduled with no limit.
pub fn capacity(ordinal: CUdevice) -> Option<u64> {
    let share = share(ordinal)?;
    let bound = share.capacity.unwrap_or(share.physical_memory);
    Some(share.limit.map_or(bound, |limit| limit.min(bound)))
}

/// What bounds a program's memory on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// The scheduler's capacity; `None` when running unscheduled.
    pub capacity: Option<u64>,
    /// The program's own limit, if it has one.
    pub limit: Option<u64>,
    /// The GPU's memory.
    pub physical_memory: u64,
}

/// The bounds on the program's memory on `ordinal`; `None` when it runs
/// unscheduled with no limit of its own.
pub fn share(ordinal: CUdevice) -> Option<Share> {
    let gate = gate();
    let device = gate.device(ordinal).ok()?;
    ensure_attached(gate, device);
    let capacity = device.state.lock().capacity;
    let limit = crate::config::get().memory_limit;
    (capacity.is_some() || limit.is_some()).then_some(Share {
        capacity,
        limit,
        physical_memory: device.physical_memory,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked_device() -> &'static DeviceGate {
        Box::leak(Box::new(DeviceGate::new(0, GpuUuid::default(), 1 << 30)))
    }

    #[test]
    fn a_call_refused_by_a_closed_gate_leaves_the_in_flight_count_alone() {
        let device = leaked_device();
        for _ in 0..3 {
            assert!(WorkGuard::try_admit(device).is_none());
        }
        device.open(&mut device.state.lock(), u64::MAX);
        let admitted = WorkGuard::try_admit(device).expect("the gate is open");
        assert_eq!(
            device.in_flight(),
            1,
            "the refused calls must not count as finished ones"
        );
        // The drain must wait for the admitted call.
        assert!(!device.close_and_drain_for(std::time::Duration::from_millis(20)));
        drop(admitted);
        assert_eq!(device.in_flight(), 0);
        assert!(device.close_and_drain_for(std::time::Duration::from_millis(20)));
    }

    #[test]
    fn the_sole_device_fast_path_refuses_without_counting_a_finished_call() {
        // A slot of the test's own: SOLE_DEVICE is the process's.
        let device = leaked_device();
        let slot = AtomicPtr::new(std::ptr::null_mut());
        assert!(admit_through(&slot).is_none(), "no device yet");
        slot.store(std::ptr::from_ref(device).cast_mut(), Ordering::Release);
        assert!(admit_through(&slot).is_none(), "the gate is closed");
        device.open(&mut device.state.lock(), u64::MAX);
        let admitted = admit_through(&slot).expect("held");
        assert_eq!(
            device.in_flight(),
            1,
            "the refusal counted as a finished call"
        );
        drop(admitted);
        assert_eq!(device.in_flight(), 0);
    }
}
