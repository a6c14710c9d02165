//! The simulated world: the scheduler, clients that obey it, and the
//! invariants checked on every message it sends.

use nvshare_proto::{
    ClientBody, ClientId, ClientMsg, GpuUuid, Policy, SchedulerBody, SchedulerMsg,
};
use nvshare_scheduler::policy::{Action, Event, PolicyConfig, Scheduler};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// The capacity of every simulated GPU.
pub const CAPACITY: u64 = 100;
/// The simulated GPUs.
pub const GPUS: [GpuUuid; 2] = [GpuUuid([1; 16]), GpuUuid([2; 16])];

/// One simulated client's memory and lock on one GPU.
#[derive(Debug, Default, Clone)]
pub struct Mem {
    pub footprint: u64,
    pub resident: u64,
    /// Granted and the release not yet delivered to the scheduler.
    pub holding: bool,
    /// Asked for the lock and not yet granted.
    pub waiting_since: Option<Duration>,
    /// The footprint it may reach while holding (`LockGranted`, `Reserved`).
    pub room: u64,
    /// Bytes of an allocation waiting for room.
    pub growing: u64,
    /// Asked to drop the lock and not yet granted again.
    pub dropping: bool,
}

/// The scheduler, the clients around it and the checks on what it does.
pub struct World {
    pub sched: Scheduler,
    /// The same scheduler scheduling every GPU on every event: whatever
    /// `sched` decides, it must decide too (nothing due is skipped).
    pub reference: Scheduler,
    pub now: Duration,
    pub policy: Policy,
    /// Policies set for one GPU since `policy` was set for all.
    pub gpu_policies: BTreeMap<GpuUuid, Policy>,
    pub quantum: Duration,
    /// Clients connected now, by id, with their GPUs.
    pub clients: BTreeMap<ClientId, BTreeMap<GpuUuid, Mem>>,
    pub gone: BTreeSet<ClientId>,
    pub next_id: ClientId,
    /// Client answers not yet delivered, in order.
    pub replies: VecDeque<(ClientId, ClientMsg)>,
    /// Answers to fetches, delivered only when time next passes: the
    /// memory is on the GPU at once, its report comes later, so other
    /// clients act in between (as they do against the real hook).
    pub late: Vec<(ClientId, ClientMsg)>,
    /// Whether clients re-request the lock as soon as they release it.
    pub always_busy: bool,
    /// Whether memory invariants are checked (clients obey, no `off`).
    pub check_memory: bool,
    /// The longest a request has waited for its grant.
    pub longest_wait: Duration,
}

/// How long after the start the scheduler believes claims to hold a GPU.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(3);

impl World {
    pub fn new(policy: Policy, quantum_ms: u64, always_busy: bool) -> Self {
        let quantum = Duration::from_millis(quantum_ms);
        let config = PolicyConfig {
            policy,
            quantum,
            memory_capacity: Some(CAPACITY),
            memory_reserve: 0,
            drain_timeout: Duration::from_secs(10),
            restore_ahead: true,
            recovery_grace: RECOVERY_GRACE,
        };
        World {
            sched: Scheduler::new(config.clone()),
            reference: Scheduler::new(config).with_full_sweeps(),
            now: Duration::ZERO,
            policy,
            gpu_policies: BTreeMap::new(),
            quantum,
            clients: BTreeMap::new(),
            gone: BTreeSet::new(),
            next_id: 1,
            replies: VecDeque::new(),
            late: Vec::new(),
            always_busy,
            check_memory: policy != Policy::Off,
            longest_wait: Duration::ZERO,
        }
    }

    /// The policy `gpu` runs under.
    pub fn policy_of(&self, gpu: GpuUuid) -> Policy {
        self.gpu_policies.get(&gpu).copied().unwrap_or(self.policy)
    }

    pub fn pick(&self, index: usize) -> Option<ClientId> {
        let ids: Vec<_> = self.clients.keys().copied().collect();
        (!ids.is_empty()).then(|| ids[index % ids.len()])
    }

    pub fn connect(&mut self) -> ClientId {
        self.connect_in(None)
    }

    /// Connects a client of `group` (a multi-process job), if any.
    pub fn connect_in(&mut self, group: Option<String>) -> ClientId {
        let id = self.next_id;
        self.next_id += 1;
        self.clients.insert(id, BTreeMap::new());
        let name = format!("job{id}");
        self.feed(Event::Connected {
            client: id,
            pid: id as u32,
            name,
            group,
        });
        id
    }

    pub fn send(&mut self, client: ClientId, msg: ClientMsg) {
        self.deliver_held(client);
        self.feed(Event::Message { client, msg });
        self.drain();
    }

    /// Delivers `client`'s answers held back: they go before anything it
    /// sends next, as a client's messages arrive in the order it sent them.
    pub fn deliver_held(&mut self, client: ClientId) {
        let (held, rest): (Vec<_>, Vec<_>) = self.late.drain(..).partition(|(c, _)| *c == client);
        self.late = rest;
        for (client, msg) in held {
            self.feed(Event::Message { client, msg });
        }
    }

    pub fn feed(&mut self, event: Event) {
        let now = self.now;
        let actions = self.decide(|sched| sched.handle(now, event.clone()));
        self.apply(actions);
    }

    /// Runs `step` on the scheduler and on its full-sweep reference, checks
    /// that both decided the same, and returns the decision.
    pub fn decide(&mut self, step: impl Fn(&mut Scheduler) -> Vec<Action>) -> Vec<Action> {
        let actions = step(&mut self.sched);
        let expected = step(&mut self.reference);
        assert_eq!(
            actions, expected,
            "scheduling only the GPUs due decided otherwise than scheduling all at {:?}",
            self.now
        );
        assert_eq!(
            self.sched.queue_len(),
            self.reference.queue_len(),
            "the queues counted from the GPUs waited on are not all queues at {:?}",
            self.now
        );
        actions
    }

    /// The scheduler's next deadline, checked against the reference's.
    pub fn next_deadline(&self) -> Option<Duration> {
        let deadline = self.sched.next_deadline();
        assert_eq!(
            deadline,
            self.reference.next_deadline(),
            "the deadline index disagrees with the GPUs' deadlines at {:?}",
            self.now
        );
        deadline
    }

    pub fn drain(&mut self) {
        for _ in 0..10_000 {
            let Some((client, msg)) = self.replies.pop_front() else {
                return;
            };
            if !self.clients.contains_key(&client) {
                continue;
            }
            if let ClientMsg {
                gpu,
                body: ClientBody::LockReleased { .. },
            } = msg
            {
                let mem = self
                    .clients
                    .get_mut(&client)
                    .unwrap()
                    .get_mut(&gpu)
                    .unwrap();
                mem.holding = false;
                if self.always_busy {
                    mem.waiting_since = Some(self.now);
                    reply(
                        &mut self.replies,
                        &mut self.late,
                        (client, ClientBody::RequestLock.on(gpu)),
                    );
                }
            }
            trace_message("<-", client, &msg);
            self.feed(Event::Message { client, msg });
        }
        panic!("the scheduler and its clients never settle");
    }

    /// Lets simulated time reach `target`, ticking at every deadline on the
    /// way as the daemon's shell does.
    pub fn advance_to(&mut self, target: Duration) {
        self.replies.extend(self.late.drain(..));
        self.drain();
        while let Some(deadline) = self.next_deadline() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            let before = self.next_deadline();
            self.feed(Event::Tick);
            self.drain();
            if self.next_deadline() == before && before.is_some_and(|d| d <= self.now) {
                panic!("a tick at {:?} left deadline {before:?} in place", self.now);
            }
        }
        self.now = self.now.max(target);
        self.feed(Event::Tick);
        self.drain();
    }

    pub fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            let Action::Send { client, msg } = action else {
                continue;
            };
            assert!(
                !self.gone.contains(&client),
                "{msg:?} sent to disconnected client {client}"
            );
            trace_message("->", client, &msg);
            let Some(gpus) = self.clients.get_mut(&client) else {
                panic!("{msg:?} sent to client {client} that never connected");
            };
            match msg {
                SchedulerMsg::Gpu {
                    gpu,
                    body: SchedulerBody::LockGranted { room },
                } => {
                    if !gpus.contains_key(&gpu) {
                        // A GPU only a nonsense message attached: the model
                        // does not follow it (a case the tests found).
                        continue;
                    }
                    let others: Vec<Mem> = self
                        .clients
                        .iter()
                        .filter(|(id, _)| **id != client)
                        .filter_map(|(_, g)| g.get(&gpu))
                        .filter(|m| m.holding)
                        .cloned()
                        .collect();
                    let policy = self.policy_of(gpu);
                    let mem = self
                        .clients
                        .get_mut(&client)
                        .unwrap()
                        .get_mut(&gpu)
                        .unwrap();
                    if mem.holding {
                        mem.room = mem.room.max(room);
                        continue; // A repeated grant confirms a hold.
                    }
                    assert!(
                        !self.check_memory || room >= mem.footprint,
                        "granted room {room} below the footprint {}",
                        mem.footprint
                    );
                    mem.room = room;
                    mem.dropping = false;
                    check_grant(policy, self.check_memory, mem, &others);
                    let since = mem.waiting_since.take().expect("granted without asking");
                    self.longest_wait = self.longest_wait.max(self.now - since);
                    mem.holding = true;
                    let restored = mem.footprint.min(CAPACITY).saturating_sub(mem.resident);
                    if restored > 0 {
                        mem.resident += restored;
                        let resident = mem.resident;
                        reply(
                            &mut self.replies,
                            &mut self.late,
                            (
                                client,
                                ClientBody::Restored {
                                    bytes: restored,
                                    resident,
                                    elapsed_us: 10,
                                }
                                .on(gpu),
                            ),
                        );
                    }
                }
                SchedulerMsg::Gpu {
                    gpu,
                    body: SchedulerBody::Reserved { room },
                } => {
                    let mem = gpus.get_mut(&gpu).expect("room on an attached GPU");
                    assert!(
                        mem.holding && !mem.dropping,
                        "room for a client that does not run"
                    );
                    mem.room = mem.room.max(room);
                    let footprint = mem.footprint + mem.growing;
                    if mem.growing > 0 && footprint <= mem.room {
                        mem.footprint = footprint;
                        mem.resident += std::mem::take(&mut mem.growing);
                        let resident = mem.resident;
                        reply(
                            &mut self.replies,
                            &mut self.late,
                            (
                                client,
                                ClientBody::Usage {
                                    footprint,
                                    resident,
                                }
                                .on(gpu),
                            ),
                        );
                    }
                }
                SchedulerMsg::Gpu {
                    gpu,
                    body: SchedulerBody::DropLock { evict_bytes },
                } => {
                    let mem = gpus.get_mut(&gpu).expect("dropped on an attached GPU");
                    assert!(mem.holding, "drop of a client that does not hold the lock");
                    mem.dropping = true;
                    let moved = evict_bytes.min(mem.resident);
                    mem.resident -= moved;
                    let resident = mem.resident;
                    if moved > 1 {
                        // The first half is reported freed while the rest
                        // is still on its way out, as the hook does.
                        reply(
                            &mut self.replies,
                            &mut self.late,
                            (
                                client,
                                ClientBody::Evicting {
                                    resident: resident + moved / 2,
                                }
                                .on(gpu),
                            ),
                        );
                    }
                    if moved > 0 {
                        reply(
                            &mut self.replies,
                            &mut self.late,
                            (
                                client,
                                ClientBody::Evicted {
                                    bytes: moved,
                                    resident,
                                    elapsed_us: 10,
                                }
                                .on(gpu),
                            ),
                        );
                    }
                    self.replies
                        .push_back((client, ClientBody::LockReleased { resident }.on(gpu)));
                    if mem.growing > 0 {
                        // The allocation waits for the lock again,
                        // announcing the footprint it will make.
                        mem.footprint += std::mem::take(&mut mem.growing);
                        mem.waiting_since.get_or_insert(self.now);
                        let footprint = mem.footprint;
                        reply(
                            &mut self.replies,
                            &mut self.late,
                            (
                                client,
                                ClientBody::Usage {
                                    footprint,
                                    resident,
                                }
                                .on(gpu),
                            ),
                        );
                        self.replies
                            .push_back((client, ClientBody::RequestLock.on(gpu)));
                    }
                }
                SchedulerMsg::Gpu {
                    gpu,
                    body: SchedulerBody::Fetch { bytes },
                } => {
                    // Nonsense (a raw Attach the model did not follow) can
                    // leave the scheduler a member the model does not know.
                    let Some(mem) = gpus.get_mut(&gpu) else {
                        continue;
                    };
                    assert!(!mem.holding, "fetch for a client that holds the lock");
                    let moved = bytes.min(mem.footprint.min(CAPACITY).saturating_sub(mem.resident));
                    mem.resident += moved;
                    let resident = mem.resident;
                    self.late.push((
                        client,
                        ClientBody::Fetched {
                            bytes: moved,
                            resident,
                            elapsed_us: 10,
                        }
                        .on(gpu),
                    ));
                }
                SchedulerMsg::Gpu {
                    gpu,
                    body: SchedulerBody::Evict { bytes },
                } => {
                    let mem = gpus.get_mut(&gpu).expect("evict on an attached GPU");
                    let moved = bytes.min(mem.resident);
                    mem.resident -= moved;
                    let resident = mem.resident;
                    reply(
                        &mut self.replies,
                        &mut self.late,
                        (
                            client,
                            ClientBody::Evicted {
                                bytes: moved,
                                resident,
                                elapsed_us: 10,
                            }
                            .on(gpu),
                        ),
                    );
                }
                _ => {}
            }
        }
        if self.check_memory {
            for gpu in GPUS {
                let mems = self.clients.values().filter_map(|g| g.get(&gpu));
                let running: u64 = mems.clone().filter(|m| m.holding).map(|m| m.resident).sum();
                let all: u64 = mems.map(|m| m.resident).sum();
                assert!(running <= CAPACITY, "running clients hold {running} bytes");
                assert!(
                    all <= CAPACITY,
                    "clients hold {all} bytes on a {CAPACITY}-byte GPU"
                );
            }
        }
        if self.check_memory {
            // Invariant (6): the running holders' reservations fit together.
            for gpu in GPUS
                .into_iter()
                .filter(|&g| self.policy_of(g) == Policy::Auto)
            {
                let running: Vec<&Mem> = self
                    .clients
                    .values()
                    .filter_map(|g| g.get(&gpu))
                    .filter(|m| m.holding && !m.dropping)
                    .collect();
                let reserved: u64 = running
                    .iter()
                    .map(|m| m.room.max(m.footprint).min(CAPACITY))
                    .sum();
                assert!(
                    running.len() <= 1 || reserved <= CAPACITY,
                    "running holders reserve {reserved} bytes on a {CAPACITY}-byte GPU: {running:?}"
                );
            }
        }
    }
}

/// Invariants (1) and (2) at a grant.
fn check_grant(policy: Policy, check_memory: bool, grantee: &Mem, others: &[Mem]) {
    match policy {
        Policy::Exclusive => assert!(others.is_empty(), "exclusive grant beside {others:?}"),
        Policy::Auto if check_memory => {
            let together: u64 = others.iter().map(|m| m.footprint).sum();
            assert!(
                others.is_empty() || together + grantee.footprint.min(CAPACITY) <= CAPACITY,
                "grant of {grantee:?} beside {others:?} exceeds the capacity"
            );
        }
        _ => {}
    }
}

/// With `PROPS_TRACE` set, prints every message between the scheduler and
/// the model's clients (`->` to a client, `<-` from it): how a failing case
/// the property tests found is read.
fn trace_message(direction: &str, client: ClientId, msg: &dyn std::fmt::Debug) {
    if std::env::var_os("PROPS_TRACE").is_some() {
        eprintln!("{direction} {client}: {msg:?}");
    }
}

/// Queues a client's answer, after any of its own answers held back in
/// `late`: one client's messages arrive in the order it sent them.
fn reply(
    replies: &mut VecDeque<(ClientId, ClientMsg)>,
    late: &mut Vec<(ClientId, ClientMsg)>,
    answer: (ClientId, ClientMsg),
) {
    let (held, rest): (Vec<_>, Vec<_>) = late.drain(..).partition(|(c, _)| *c == answer.0);
    *late = rest;
    replies.extend(held);
    replies.push_back(answer);
}
