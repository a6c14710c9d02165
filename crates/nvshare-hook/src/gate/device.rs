//! One GPU's gate: whether this process may submit work to it now.
//!
//! Invariant (the drain handshake): a call is admitted only if it raised
//! `entered` while `held` was true, checked after the raise; every raise of
//! `entered` is matched by one of `left` (when the call returns, or at once
//! if it was not admitted). The drain lowers `held` first and then waits
//! until `left` (read first) equals `entered` (read second): each `left`
//! raise it counts follows its own `entered` raise, so the difference never
//! undercounts the calls still running. Both sides use `SeqCst`, so at least
//! one of them sees the other's write. Two counters instead of one in-flight
//! count make the admitted path two atomic increments, and `entered` doubles
//! as the activity counter of the idle watcher.

use crate::ffi::CUdevice;
use nvshare_proto::GpuUuid;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lock-free part read on every work submission, and the slow-path state.
#[derive(Debug)]
pub(crate) struct DeviceGate {
    /// The device ordinal in this process.
    pub ordinal: CUdevice,
    /// The GPU's UUID (the scheduler's domain).
    pub uuid: GpuUuid,
    /// Its physical memory.
    pub physical_memory: u64,
    held: AtomicBool,
    entered: AtomicU64,
    left: AtomicU64,
    /// While held: the footprint the scheduler made room for (set before the
    /// gate opens, raised by `Reserved`).
    pub room: AtomicU64,
    /// Bytes of allocations admitted within the room and not yet recorded
    /// in the footprint.
    pub growing: AtomicU64,
    /// Slow-path state; never held across a blocking driver or socket call
    /// except the short sends of the session.
    pub state: Mutex<DeviceState>,
    /// Signalled when `held` or `state` changes.
    pub changed: Condvar,
    /// The host shadow bytes (pinned, pageable) last reported.
    pub host_reported: Mutex<Option<(u64, u64)>>,
    /// `DropLock`s and `Evict`s the reader thread received for this device.
    drops: AtomicU64,
    /// `drops` when the reader thread received the last `Prepare`.
    prepare_epoch: AtomicU64,
}

/// What the slow path and the session agree on.
#[derive(Debug)]
pub(crate) struct DeviceState {
    /// The scheduler welcomed this device (on the current connection).
    pub attached: bool,
    /// One thread is attaching this device now.
    pub attaching: bool,
    /// The capacity the scheduler granted; `None` while unscheduled.
    pub capacity: Option<u64>,
    /// A `RequestLock` is outstanding.
    pub requested: bool,
    /// Threads blocked waiting for the lock.
    pub waiters: usize,
    /// The process runs this device without a scheduler.
    pub unscheduled: bool,
    /// `Idle` was reported and no work came since.
    pub idle_reported: bool,
    /// `submissions` when the idle watcher last looked.
    pub seen_submissions: u64,
    /// When the idle watcher last saw work (or the grant).
    pub last_activity: Instant,
    /// When the current grant began.
    pub granted_at: Option<Instant>,
    /// The footprint of the outstanding `Reserve` (0: none); cleared by a
    /// grant or a drop.
    pub reserving: u64,
    /// A grant's restore or a drop's drain is under way: the gate may be
    /// closed, yet the program is about to run work or still has work on the
    /// GPU. A re-attach reports such a device as held, so that a restarted
    /// scheduler never grants its GPU to another program meanwhile.
    pub changing_hands: bool,
}

impl DeviceGate {
    /// A closed gate for a device that has not talked to the scheduler yet.
    pub fn new(ordinal: CUdevice, uuid: GpuUuid, physical_memory: u64) -> Self {
        DeviceGate {
            ordinal,
            uuid,
            physical_memory,
            held: AtomicBool::new(false),
            entered: AtomicU64::new(0),
            left: AtomicU64::new(0),
            room: AtomicU64::new(0),
            growing: AtomicU64::new(0),
            state: Mutex::new(DeviceState {
                attached: false,
                attaching: false,
                capacity: None,
                requested: false,
                waiters: 0,
                unscheduled: false,
                idle_reported: false,
                seen_submissions: 0,
                last_activity: Instant::now(),
                granted_at: None,
                reserving: 0,
                changing_hands: false,
            }),
            changed: Condvar::new(),
            host_reported: Mutex::new(None),
            drops: AtomicU64::new(0),
            prepare_epoch: AtomicU64::new(0),
        }
    }

    /// The fast path: admits a call if the lock is held. On `true` the caller
    /// must call [`DeviceGate::leave`] when its driver call returns.
    #[inline]
    pub fn try_enter(&self) -> bool {
        // No look at `held` before the raise: a holder's calls (the path
        // that matters) then cost one load less; a call the gate refuses
        // raises and lowers once in vain before it blocks anyway.
        self.entered.fetch_add(1, Ordering::SeqCst);
        if self.held.load(Ordering::SeqCst) {
            true
        } else {
            self.leave();
            false
        }
    }

    /// Marks one admitted call finished.
    #[inline]
    pub fn leave(&self) {
        self.left.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the process holds this GPU's lock now.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Whether the program may run work on this GPU now or at once: it holds
    /// the lock, or a grant or drop is half done (`state` is this device's
    /// locked state). What a re-attach claims.
    pub fn may_run(&self, state: &DeviceState) -> bool {
        self.is_held() || state.changing_hands
    }

    /// Opens the gate (a grant, or unscheduled running) with room for a
    /// footprint of `room` bytes, and wakes waiters.
    pub fn open(&self, state: &mut DeviceState, room: u64) {
        self.room.store(room, Ordering::SeqCst);
        state.reserving = 0;
        state.requested = false;
        state.idle_reported = false;
        state.last_activity = Instant::now();
        state.granted_at = Some(Instant::now());
        state.changing_hands = false;
        self.held.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Closes the gate and waits until no admitted call is running. Calls
    /// that arrive meanwhile block in the slow path.
    pub fn close_and_drain(&self) {
        self.held.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let mut warned = false;
        let mut spins = 0u32;
        while self.in_flight() != 0 {
            spins += 1;
            if spins < 100 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
            if !warned && started.elapsed() > Duration::from_secs(1) {
                warned = true;
                tracing::warn!(
                    device = self.ordinal,
                    "a driver call is still running 1 s after the scheduler asked for the GPU back; waiting for it"
                );
            }
        }
    }

    /// The reader thread received a `DropLock` or `Evict` for this device
    /// (called before it is queued for the worker).
    pub fn note_drop(&self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }

    /// The reader thread received a `Prepare`: it belongs to the drops seen
    /// so far.
    pub fn note_prepare(&self) {
        self.prepare_epoch
            .store(self.drops.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The epoch of the last `Prepare` received (see
    /// [`DeviceGate::dropped_since`]).
    pub fn prepare_epoch(&self) -> u64 {
        self.prepare_epoch.load(Ordering::SeqCst)
    }

    /// Whether a drop or eviction was received after the `Prepare` of
    /// `epoch`: the shadows it builds must then stop, so as not to hold up
    /// that drop queued behind it.
    pub fn dropped_since(&self, epoch: u64) -> bool {
        self.drops.load(Ordering::SeqCst) != epoch
    }

    /// As [`DeviceGate::close_and_drain`], giving up after `patience`;
    /// returns whether every admitted call finished.
    pub fn close_and_drain_for(&self, patience: Duration) -> bool {
        self.held.store(false, Ordering::SeqCst);
        let started = Instant::now();
        while self.in_flight() != 0 {
            if started.elapsed() >= patience {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    /// Calls that tried the fast path so far (for idle detection: only a
    /// holder's count, whose calls are all admitted, is looked at).
    pub fn submissions(&self) -> u64 {
        self.entered.load(Ordering::Relaxed)
    }

    /// Calls admitted and not yet finished (an upper bound while calls race
    /// in; exact once the gate is closed).
    pub fn in_flight(&self) -> u64 {
        let left = self.left.load(Ordering::SeqCst);
        let entered = self.entered.load(Ordering::SeqCst);
        entered.saturating_sub(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn closed_gate_admits_nothing_and_open_gate_counts_calls() {
        let gate = DeviceGate::new(0, GpuUuid::default(), 1 << 30);
        assert!(!gate.try_enter());
        assert_eq!(gate.in_flight(), 0, "a refused call is not in flight");
        gate.open(&mut gate.state.lock(), u64::MAX);
        assert!(gate.try_enter());
        assert_eq!(gate.in_flight(), 1);
        gate.leave();
        assert_eq!(gate.submissions(), 2, "both calls tried");
    }

    #[test]
    fn drain_waits_for_admitted_calls_and_admits_none_after() {
        let gate = Arc::new(DeviceGate::new(0, GpuUuid::default(), 1 << 30));
        gate.open(&mut gate.state.lock(), u64::MAX);
        assert!(gate.try_enter());
        let finished = Arc::new(AtomicBool::new(false));
        let worker = {
            let (gate, finished) = (gate.clone(), finished.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                finished.store(true, Ordering::SeqCst);
                gate.leave();
            })
        };
        gate.close_and_drain();
        assert!(
            finished.load(Ordering::SeqCst),
            "drain returned before the call finished"
        );
        assert!(!gate.try_enter());
        worker.join().unwrap();
    }

    #[test]
    fn a_drop_received_after_a_prepare_supersedes_it_and_not_the_next() {
        let gate = DeviceGate::new(0, GpuUuid::default(), 1 << 30);
        gate.note_prepare();
        let first = gate.prepare_epoch();
        assert!(!gate.dropped_since(first));
        gate.note_drop();
        assert!(gate.dropped_since(first), "the drop queued behind it");
        gate.note_prepare();
        let next = gate.prepare_epoch();
        assert!(!gate.dropped_since(next), "a prepare of the next hold");
        assert!(gate.dropped_since(first));
    }

    #[test]
    fn a_bounded_drain_gives_up_on_a_call_that_does_not_return() {
        let gate = DeviceGate::new(0, GpuUuid::default(), 1 << 30);
        gate.open(&mut gate.state.lock(), u64::MAX);
        assert!(gate.try_enter());
        let started = Instant::now();
        assert!(!gate.close_and_drain_for(Duration::from_millis(50)));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!gate.try_enter(), "the gate stays closed");
        gate.leave();
        assert!(gate.close_and_drain_for(Duration::from_millis(50)));
    }

    #[test]
    fn concurrent_entries_never_overlap_a_completed_drain() {
        let gate = Arc::new(DeviceGate::new(0, GpuUuid::default(), 1 << 30));
        let inside_after_drain = Arc::new(AtomicBool::new(false));
        let drained = Arc::new(AtomicBool::new(false));
        gate.open(&mut gate.state.lock(), u64::MAX);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (gate, drained, bad) =
                    (gate.clone(), drained.clone(), inside_after_drain.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if gate.try_enter() {
                            if drained.load(Ordering::SeqCst) {
                                bad.store(true, Ordering::SeqCst);
                            }
                            gate.leave();
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        gate.close_and_drain();
        drained.store(true, Ordering::SeqCst);
        for worker in workers {
            worker.join().unwrap();
        }
        assert!(!inside_after_drain.load(Ordering::SeqCst));
    }
}
