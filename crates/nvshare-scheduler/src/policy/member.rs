//! One client's standing on one GPU: memory, lock state and history.

use nvshare_proto::{ClientId, ClientState};
use std::collections::VecDeque;
use std::time::Duration;

/// One client on one GPU.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// Who.
    pub client: ClientId,
    /// Every byte it has allocated on the GPU.
    pub footprint: u64,
    /// The part of it on the GPU now, as last reported.
    pub resident: u64,
    /// Idle, waiting, running or releasing.
    pub state: ClientState,
    /// When it last asked for the lock.
    pub requested_at: Duration,
    /// When it was last granted the lock.
    pub granted_at: Duration,
    /// Lock time of finished holds.
    pub held_total: Duration,
    /// Grants so far.
    pub grants: u64,
    /// When it last held the lock (grant or release): eviction goes to the
    /// least recently run first.
    pub last_ran: Duration,
    /// Bytes asked by outstanding `Evict` requests, oldest first: one entry
    /// per request, so each answer settles exactly its own request.
    pub pending_evicts: VecDeque<u64>,
    /// Bytes the outstanding `DropLock` asked it to evict.
    pub drop_evict: u64,
    /// Bytes the eviction in progress already reported freed (`Evicting`),
    /// credited against the outstanding requests until their answer.
    pub evict_progress: u64,
    /// Bytes asked by outstanding `Fetch` requests, oldest first.
    pub pending_fetches: VecDeque<u64>,
    /// Its last fetch brought nothing back; not asked again until its
    /// state changes.
    pub fetch_failed: bool,
    /// Granted with memory swapped out, and not yet reported restored: it
    /// may bring back its whole footprint even after a drop request.
    pub restoring: bool,
    /// When the outstanding `DropLock` was sent.
    pub drop_requested_at: Duration,
    /// Its drain is overdue and the GPU had no room to let the next program
    /// in beside it; not tried again until its state changes.
    pub overdue_refused: bool,
    /// It reported having no GPU work while holding the lock.
    pub idle_hint: bool,
    /// Its last eviction failed; not asked again until its state changes.
    pub evict_failed: bool,
    /// It asked for the lock again while releasing it: queue it on release.
    pub requeue_on_release: bool,
    /// Its place in line while waiting: queues are ordered by ticket, and
    /// the members of one gang waiting together share one (see `gang`).
    /// `None` until the facade gives it one.
    pub ticket: Option<Ticket>,
    /// Waiting, and members of its gang wait on other GPUs too: it is
    /// granted only together with them.
    pub co_waiters: bool,
    /// At the head of its queue with nothing else in its way: its gang may
    /// be granted together (set by `grant::schedule`, read by `gang`).
    pub gang_ready: bool,
    /// Bytes this hold was told (`Prepare`) it will have to move out.
    pub prepared: u64,
    /// While it holds the lock: the footprint it may reach without asking
    /// (its grant's footprint, raised by each `Reserved`). 0 otherwise.
    pub room: u64,
    /// A footprint it asked room for (`Reserve`) and has not been granted;
    /// 0 when none.
    pub wants_room: u64,
    /// Page-locked host shadow bytes it reported (`HostShadows`).
    pub host_pinned: u64,
    /// Pageable host shadow bytes it reported.
    pub host_pageable: u64,
    /// The most it may hold on the GPU, if it said (`JobSettings`).
    pub memory_limit: Option<u64>,
    /// Its priority (`JobSettings`): see [`Ticket`].
    pub priority: i32,
    /// Its weight: its time slice is this many quanta.
    pub weight: u32,
}

/// A place in line, ordering every queue alike (see `gang`): when the
/// member's gang joined the queue, moved earlier by `priority` steps, then
/// the order of issue. A job of priority `p` thus stands in line as if it
/// had asked `p` steps (the daemon's quantum) before it did: it goes ahead
/// of lower ones who asked less than that before it, and behind those who
/// asked longer before, so nobody waits for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ticket {
    /// Microseconds since the epoch of `now`, less `priority x step`.
    pub virtual_us: i128,
    /// The order of issue.
    pub seq: u64,
}

impl Ticket {
    /// The ticket of a gang of `priority` joining the queue at `now`, the
    /// `seq`-th issued; `step` is what one priority level is worth.
    pub fn issue(now: Duration, priority: i32, step: Duration, seq: u64) -> Ticket {
        Ticket {
            virtual_us: now.as_micros() as i128 - i128::from(priority) * step.as_micros() as i128,
            seq,
        }
    }

    /// When a holder of `priority` that would re-join the line now would
    /// stand behind this ticket: until then it keeps the GPU past its time
    /// slice (`step` as in [`Ticket::issue`]).
    pub fn outranked_from(&self, priority: i32, step: Duration) -> Duration {
        let at = self.virtual_us + i128::from(priority) * step.as_micros() as i128;
        Duration::from_micros(u64::try_from(at.max(0)).unwrap_or(u64::MAX))
    }
}

impl Member {
    /// A client that just attached, holding nothing.
    pub fn new(client: ClientId, footprint: u64, resident: u64) -> Self {
        Member {
            client,
            footprint,
            resident,
            state: ClientState::Idle,
            requested_at: Duration::ZERO,
            granted_at: Duration::ZERO,
            held_total: Duration::ZERO,
            grants: 0,
            last_ran: Duration::ZERO,
            pending_evicts: VecDeque::new(),
            drop_evict: 0,
            evict_progress: 0,
            pending_fetches: VecDeque::new(),
            fetch_failed: false,
            restoring: false,
            drop_requested_at: Duration::ZERO,
            overdue_refused: false,
            idle_hint: false,
            evict_failed: false,
            requeue_on_release: false,
            room: 0,
            wants_room: 0,
            ticket: None,
            co_waiters: false,
            gang_ready: false,
            prepared: 0,
            host_pinned: 0,
            host_pageable: 0,
            memory_limit: None,
            priority: nvshare_proto::DEFAULT_PRIORITY,
            weight: nvshare_proto::DEFAULT_WEIGHT,
        }
    }

    /// True while it holds the lock (running, or asked to give it back).
    pub fn is_holder(&self) -> bool {
        matches!(self.state, ClientState::Running | ClientState::Releasing)
    }

    /// Moves to `state`; a new state makes it worth asking to evict again.
    pub fn set_state(&mut self, state: ClientState) {
        self.state = state;
        self.evict_failed = false;
        self.fetch_failed = false;
        self.overdue_refused = false;
    }

    /// When its drain counts as stuck: `timeout` after the drop request, if
    /// it is releasing.
    pub fn drain_deadline(&self, timeout: Duration) -> Option<Duration> {
        (self.state == ClientState::Releasing)
            .then(|| self.drop_requested_at.saturating_add(timeout))
    }

    /// Bytes asked by `Evict` requests not yet answered.
    pub fn pending_evict(&self) -> u64 {
        self.pending_evicts
            .iter()
            .fold(0, |a, &b| a.saturating_add(b))
    }

    /// Total lock time, including the current hold.
    pub fn held(&self, now: Duration) -> Duration {
        if self.is_holder() {
            self.held_total + now.saturating_sub(self.granted_at)
        } else {
            self.held_total
        }
    }

    /// The footprint it may have while it holds the lock: what it has, or
    /// the room it was given to grow into, whichever is larger.
    pub fn reservation(&self) -> u64 {
        self.footprint.max(self.room)
    }

    /// The most GPU memory it may occupy while it holds the lock: a holder
    /// may bring its whole footprint back, and allocate up to its room, at
    /// any time.
    pub fn holder_claim(&self, capacity: u64) -> u64 {
        self.reservation().min(capacity).max(self.resident)
    }

    /// Bytes asked by `Fetch` requests not yet answered.
    pub fn incoming(&self) -> u64 {
        self.pending_fetches
            .iter()
            .fold(0, |a, &b| a.saturating_add(b))
    }

    /// Memory it will occupy once its outstanding evictions and fetches are
    /// done (the part of the evictions already reported freed is already
    /// out of `resident`). An eviction asked for more than is resident
    /// takes what its fetches bring too: the hook applies a program's
    /// messages in order, so a fetch asked before an eviction has landed
    /// when the eviction runs (counted otherwise, the same bytes would be
    /// asked for again at every schedule).
    pub fn resident_after_evictions(&self) -> u64 {
        let leaving = self
            .pending_evict()
            .saturating_add(self.drop_evict)
            .saturating_sub(self.evict_progress);
        self.resident
            .saturating_add(self.incoming())
            .saturating_sub(leaving)
    }

    /// When its time slice (`weight` quanta of `quantum`) ends.
    pub fn slice_end(&self, quantum: Duration) -> Duration {
        self.granted_at
            .saturating_add(quantum.saturating_mul(self.weight.max(1)))
    }

    /// The bytes the eviction an `Evicted` answer settles was asked for.
    pub fn asked_eviction(&self) -> u64 {
        if self.state == ClientState::Releasing && self.drop_evict > 0 {
            self.drop_evict
        } else {
            self.pending_evicts.front().copied().unwrap_or(0)
        }
    }

    /// Settles the oldest outstanding eviction request (an `Evicted` or
    /// `EvictFailed` answer).
    pub fn settle_eviction(&mut self) {
        self.evict_progress = 0;
        if self.state == ClientState::Releasing && self.drop_evict > 0 {
            self.drop_evict = 0;
        } else {
            self.pending_evicts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_counts_the_current_hold() {
        let mut m = Member::new(1, 0, 0);
        m.held_total = Duration::from_secs(5);
        assert_eq!(m.held(Duration::from_secs(100)), Duration::from_secs(5));
        m.state = ClientState::Running;
        m.granted_at = Duration::from_secs(90);
        assert_eq!(m.held(Duration::from_secs(100)), Duration::from_secs(15));
    }

    #[test]
    fn each_answer_settles_one_request() {
        let mut m = Member::new(1, 100, 100);
        m.pending_evicts.extend([10, 20]);
        assert_eq!(m.resident_after_evictions(), 70);
        m.settle_eviction();
        assert_eq!(m.pending_evict(), 20);
        m.state = ClientState::Releasing;
        m.drop_evict = 5;
        m.settle_eviction();
        assert_eq!((m.drop_evict, m.pending_evict()), (0, 20));
    }

    #[test]
    fn progress_and_fetches_count_in_what_it_will_occupy() {
        let mut m = Member::new(1, 100, 100);
        m.state = ClientState::Releasing;
        m.drop_evict = 60;
        assert_eq!(m.resident_after_evictions(), 40);
        // 25 bytes of the 60 reported freed: resident falls, the outcome
        // stays.
        m.resident = 75;
        m.evict_progress = 25;
        assert_eq!(m.resident_after_evictions(), 40);
        m.settle_eviction();
        m.resident = 40;
        assert_eq!((m.evict_progress, m.resident_after_evictions()), (0, 40));
        m.pending_fetches.push_back(30);
        assert_eq!((m.incoming(), m.resident_after_evictions()), (30, 70));
    }

    #[test]
    fn claim_of_a_holder_is_its_footprint_up_to_capacity() {
        let mut m = Member::new(1, 80, 10);
        assert_eq!(m.holder_claim(100), 80);
        assert_eq!(m.holder_claim(50), 50);
        m.resident = 60;
        assert_eq!(m.holder_claim(50), 60);
    }

    #[test]
    fn claim_of_a_holder_includes_its_room() {
        let mut m = Member::new(1, 30, 30);
        m.room = 70;
        assert_eq!(m.reservation(), 70);
        assert_eq!(m.holder_claim(100), 70);
        assert_eq!(m.holder_claim(50), 50);
    }
}
