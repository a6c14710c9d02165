//! One GPU's scheduling state: its members, wait queue and counters, and the
//! state transitions of a lock (request, grant, drop, release, leave).

use super::member::Member;
use super::{Action, Record};
use nvshare_proto::{
    ClientHostShadows, ClientId, ClientState, ClientStatus, GpuHostShadows, GpuStatus, GpuUuid,
    Policy, SchedulerBody,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// One GPU (one scheduling domain).
#[derive(Debug)]
pub(super) struct Domain {
    /// The GPU.
    pub uuid: GpuUuid,
    /// Physical memory, as the first client reported it.
    pub physical_memory: u64,
    /// Memory shared out.
    pub capacity: u64,
    /// Policy in force.
    pub policy: Policy,
    /// Time-slice quantum.
    pub quantum: Duration,
    /// What one priority level is worth in line (the daemon's quantum; see
    /// `member::Ticket`).
    pub priority_step: Duration,
    /// Physical memory programs may use (the card's minus the reserve):
    /// what may be held beside a holder whose drain is stuck.
    pub physical_room: u64,
    /// How long a drain may take before it counts as stuck.
    pub drain_timeout: Duration,
    /// Whether waiting programs restore ahead of their grants.
    pub restore_ahead: bool,
    /// Every attached client.
    pub members: BTreeMap<ClientId, Member>,
    /// Waiting clients, first come first.
    pub queue: VecDeque<ClientId>,
    /// When the first drop request of the switch in progress was sent.
    pub drop_started: Option<Duration>,
    /// Grants so far.
    pub grants: u64,
    /// Switches so far.
    pub switches: u64,
    /// Bytes reported evicted.
    pub bytes_evicted: u64,
    /// Bytes reported restored.
    pub bytes_restored: u64,
    /// Microseconds reported swapping.
    pub swap_time_us: u64,
}

impl Domain {
    /// A GPU with no clients.
    pub fn new(
        uuid: GpuUuid,
        physical_memory: u64,
        capacity: u64,
        policy: Policy,
        quantum: Duration,
    ) -> Self {
        Domain {
            uuid,
            physical_memory,
            capacity,
            policy,
            quantum,
            priority_step: quantum,
            physical_room: physical_memory,
            drain_timeout: Duration::MAX,
            restore_ahead: true,
            members: BTreeMap::new(),
            queue: VecDeque::new(),
            drop_started: None,
            grants: 0,
            switches: 0,
            bytes_evicted: 0,
            bytes_restored: 0,
            swap_time_us: 0,
        }
    }

    /// Ids of the clients holding the lock (running or releasing).
    pub fn holders(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| m.is_holder())
    }

    /// `client` wants the lock: an idle client joins the queue's tail.
    pub fn request(&mut self, client: ClientId, now: Duration) {
        let Some(m) = self.members.get_mut(&client) else {
            return;
        };
        match m.state {
            ClientState::Idle => {
                m.set_state(ClientState::Waiting);
                m.requested_at = now;
                m.ticket = None;
                self.queue.push_back(client);
            }
            ClientState::Releasing => m.requeue_on_release = true,
            ClientState::Waiting | ClientState::Running => {}
        }
    }

    /// Orders the queue by ticket (stable: equal tickets keep their order).
    pub fn sort_queue(&mut self) {
        let members = &self.members;
        self.queue.make_contiguous().sort_by_key(|c| {
            let ticket = members.get(c).and_then(|m| m.ticket);
            (ticket.is_none(), ticket)
        });
    }

    /// Gives `client` the lock, unless members of its gang wait on other
    /// GPUs: then it is only marked ready, and the facade grants the whole
    /// gang at once when every member is (see `gang`). Returns whether it
    /// was granted.
    pub fn grant_or_hold(
        &mut self,
        client: ClientId,
        now: Duration,
        out: &mut Vec<Action>,
    ) -> bool {
        if let Some(m) = self.members.get_mut(&client)
            && m.co_waiters
        {
            m.gang_ready = true;
            return false;
        }
        self.grant(client, now, out);
        true
    }

    /// Gives `client` the lock.
    pub fn grant(&mut self, client: ClientId, now: Duration, out: &mut Vec<Action>) {
        self.queue.retain(|&c| c != client);
        let Some(m) = self.members.get_mut(&client) else {
            return;
        };
        m.ticket = None;
        m.co_waiters = false;
        m.gang_ready = false;
        m.prepared = 0;
        m.set_state(ClientState::Running);
        m.granted_at = now;
        m.last_ran = now;
        m.grants += 1;
        m.idle_hint = false;
        m.requeue_on_release = false;
        m.restoring = m.resident < m.footprint;
        // Its claim covers what it was fetching; the answers still come.
        m.pending_fetches.clear();
        // The grant was decided on this footprint: that is its room.
        m.room = m.footprint;
        m.wants_room = 0;
        let room = m.room;
        self.grants += 1;
        out.push(Action::Send {
            client,
            msg: SchedulerBody::LockGranted { room }.on(self.uuid),
        });
        out.push(Action::Record(Record::Granted {
            client,
            gpu: self.uuid,
            waited: now.saturating_sub(m.requested_at),
        }));
        if let Some(started) = self.drop_started.take() {
            self.switches += 1;
            out.push(Action::Record(Record::Switched {
                gpu: self.uuid,
                latency: now.saturating_sub(started),
            }));
        }
    }

    /// Takes `client`, which says it already holds the lock (a program that
    /// reconnected after a restart), as a holder, without a grant message:
    /// it runs already, or finishes a drop whose release follows.
    pub fn resume(&mut self, client: ClientId, now: Duration, out: &mut Vec<Action>) {
        self.queue.retain(|&c| c != client);
        let Some(m) = self.members.get_mut(&client) else {
            return;
        };
        m.ticket = None;
        m.set_state(ClientState::Running);
        m.granted_at = now;
        m.last_ran = now;
        m.restoring = m.resident < m.footprint;
        m.room = m.footprint;
        out.push(Action::Record(Record::Resumed {
            client,
            gpu: self.uuid,
        }));
    }

    /// Asks the running `client` to give the lock back after evicting
    /// `evict_bytes`.
    pub fn drop_lock(
        &mut self,
        client: ClientId,
        evict_bytes: u64,
        reason: &'static str,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let Some(m) = self.members.get_mut(&client) else {
            return;
        };
        if m.state != ClientState::Running {
            return;
        }
        m.set_state(ClientState::Releasing);
        m.drop_evict = evict_bytes;
        m.drop_requested_at = now;
        // Its allocation waits for the lock again, announcing its footprint.
        m.wants_room = 0;
        self.drop_started.get_or_insert(now);
        out.push(Action::Send {
            client,
            msg: SchedulerBody::DropLock { evict_bytes }.on(self.uuid),
        });
        out.push(Action::Record(Record::DropRequested {
            client,
            gpu: self.uuid,
            evict_bytes,
            reason,
        }));
    }

    /// Asks the non-holding `client` to move `bytes` to host memory.
    pub fn evict(&mut self, client: ClientId, bytes: u64, out: &mut Vec<Action>) {
        let Some(m) = self.members.get_mut(&client) else {
            return;
        };
        m.pending_evicts.push_back(bytes);
        out.push(Action::Send {
            client,
            msg: SchedulerBody::Evict { bytes }.on(self.uuid),
        });
    }

    /// Asks the waiting `client` to bring up to `bytes` of its memory back
    /// ahead of its grant.
    pub fn fetch(&mut self, client: ClientId, bytes: u64, out: &mut Vec<Action>) {
        let Some(m) = self.members.get_mut(&client) else {
            return;
        };
        m.pending_fetches.push_back(bytes);
        out.push(Action::Send {
            client,
            msg: SchedulerBody::Fetch { bytes }.on(self.uuid),
        });
    }

    /// Counts memory `client` reported moving back in.
    pub fn restored(
        &mut self,
        client: ClientId,
        bytes: u64,
        elapsed_us: u64,
        ahead: bool,
        out: &mut Vec<Action>,
    ) {
        self.bytes_restored = self.bytes_restored.saturating_add(bytes);
        self.swap_time_us = self.swap_time_us.saturating_add(elapsed_us);
        out.push(Action::Record(Record::Restored {
            client,
            gpu: self.uuid,
            bytes,
            elapsed: Duration::from_micros(elapsed_us),
            ahead,
        }));
    }

    /// `client` stopped using the lock, keeping `resident` bytes on the GPU.
    pub fn released(
        &mut self,
        client: ClientId,
        resident: u64,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let Some(m) = self.members.get_mut(&client) else {
            return;
        };
        m.resident = resident;
        if !m.is_holder() {
            return;
        }
        let held = now.saturating_sub(m.granted_at);
        m.held_total += held;
        m.last_ran = now;
        m.drop_evict = 0;
        m.evict_progress = 0;
        m.restoring = false;
        m.idle_hint = false;
        m.room = 0;
        m.wants_room = 0;
        m.set_state(ClientState::Idle);
        out.push(Action::Record(Record::Released {
            client,
            gpu: self.uuid,
            held,
        }));
        if std::mem::take(&mut m.requeue_on_release) {
            self.request(client, now);
        }
    }

    /// `client` left the GPU (detach or disconnect): its lock and memory are
    /// gone at once.
    pub fn remove(&mut self, client: ClientId, now: Duration, out: &mut Vec<Action>) {
        self.queue.retain(|&c| c != client);
        let Some(m) = self.members.remove(&client) else {
            return;
        };
        if m.is_holder() {
            out.push(Action::Record(Record::Released {
                client,
                gpu: self.uuid,
                held: now.saturating_sub(m.granted_at),
            }));
        }
        if m.host_pinned > 0 || m.host_pageable > 0 {
            out.push(self.host_shadows_record());
        }
    }

    /// The host shadows every member keeps for its memory of this GPU.
    pub fn host_shadows(&self) -> GpuHostShadows {
        let clients: Vec<ClientHostShadows> = self
            .members
            .values()
            .map(|m| ClientHostShadows {
                client_id: m.client,
                pinned: m.host_pinned,
                pageable: m.host_pageable,
            })
            .collect();
        GpuHostShadows {
            uuid: self.uuid,
            pinned: clients.iter().fold(0, |a, c| a.saturating_add(c.pinned)),
            pageable: clients.iter().fold(0, |a, c| a.saturating_add(c.pageable)),
            clients,
        }
    }

    /// A record of this GPU's host shadow totals (for the metrics).
    pub fn host_shadows_record(&self) -> Action {
        let totals = self.host_shadows();
        Action::Record(Record::HostShadows {
            gpu: self.uuid,
            pinned: totals.pinned,
            pageable: totals.pageable,
        })
    }

    /// This GPU's state for `status`; `who` gives a client's pid and name.
    pub fn status(&self, now: Duration, who: impl Fn(ClientId) -> (u32, String)) -> GpuStatus {
        GpuStatus {
            uuid: self.uuid,
            physical_memory: self.physical_memory,
            capacity: self.capacity,
            policy: self.policy,
            quantum_ms: duration_ms(self.quantum),
            resident: self
                .members
                .values()
                .fold(0, |a, m| a.saturating_add(m.resident)),
            grants: self.grants,
            switches: self.switches,
            bytes_evicted: self.bytes_evicted,
            bytes_restored: self.bytes_restored,
            swap_time_us: self.swap_time_us,
            clients: self
                .members
                .values()
                .map(|m| {
                    let (pid, name) = who(m.client);
                    ClientStatus {
                        client_id: m.client,
                        pid,
                        name,
                        state: m.state,
                        footprint: m.footprint,
                        resident: m.resident,
                        held_ms: duration_ms(m.held(now)),
                        grants: m.grants,
                        memory_limit: m.memory_limit,
                        priority: m.priority,
                        weight: m.weight,
                        waiting_ms: if m.state == ClientState::Waiting {
                            duration_ms(now.saturating_sub(m.requested_at))
                        } else {
                            0
                        },
                    }
                })
                .collect(),
        }
    }
}

/// Milliseconds of `d`, saturating.
pub(super) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
