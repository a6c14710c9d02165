//! The scheduling policy: a pure state machine.
//!
//! Events go in ([`Event`]: a client connected, said something, disconnected,
//! or time passed), actions come out ([`Action`]: send a message, close a
//! connection, record an observation for logs and metrics). There are no
//! sockets, threads or clocks in here: `now` is an input, a [`Duration`]
//! since an arbitrary epoch chosen by the caller, so tests drive it with
//! simulated time.
//!
//! # Layout
//! - `mod.rs` (this file): the contract with the I/O shell and the facade
//!   that routes each event to the GPU it concerns.
//! - `domain`: one GPU's state and the transitions of its lock.
//! - `member`: one client's standing on one GPU.
//! - `messages`: what each client message changes on its GPU.
//! - `grant`: the decisions: whom to grant or drop, and how much memory
//!   the head of the queue needs.
//! - `evictions`: whom to ask memory back from (for a grant or a holder's
//!   growth), least recently run first.
//! - `gang`: tickets that order every queue alike, and granting the
//!   members of a gang (a multi-process job, or one program's GPUs) that
//!   wait together at the same time.
//! - `reserve`: room for holders that grow while they hold the lock.
//! - `fetch`: restoring the next program's memory ahead of its grant, into
//!   memory free now (also while the last holder's eviction frees it).
//! - `recovery`: after a restart, holders' claims and no grants until they
//!   had time to reconnect.
//! - `settings`: per-GPU settings, the GPUs known at start, and the
//!   status of every GPU.
//! - `sweep`: which GPUs an event makes worth scheduling (those it touched,
//!   those whose deadline passed), so idle GPUs cost an event nothing.
//! - `waits`: why the next program on a GPU does not run yet (status).
//! - `tests`: behaviour tests with simulated time.
//!
//! INTERFACE CONTRACT (shared with the I/O shell in `server`): the types and
//! method signatures in this file are what the shell calls. Keep them stable.

mod domain;
mod evictions;
mod fetch;
mod gang;
mod grant;
mod member;
mod messages;
mod recovery;
mod reserve;
mod settings;
mod sweep;
#[cfg(test)]
mod tests;
mod waits;

use domain::{Domain, duration_ms};
use member::Member;
use nvshare_proto::{
    ClientBody, ClientId, ClientMsg, ErrorCode, ErrorReply, GpuHostShadows, GpuUuid, Policy,
    SchedulerBody, SchedulerMsg,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use sweep::Sweep;

/// How the scheduler sizes and shares every GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The policy every GPU starts with.
    pub policy: Policy,
    /// The time-slice quantum.
    pub quantum: Duration,
    /// If set, every GPU's capacity (a virtual GPU smaller than the card).
    pub memory_capacity: Option<u64>,
    /// Bytes of each GPU's physical memory kept back (for the CUDA context,
    /// cuBLAS workspaces, ...) when `memory_capacity` is not set.
    pub memory_reserve: u64,
    /// How long a holder may take to give the lock back before the next
    /// program is let in beside it, where the GPU physically has room. A
    /// drain that long is stuck in a kernel that waits for another program
    /// (an NCCL collective whose peer waits for its own GPU): without this,
    /// two such jobs time-sliced on the same GPUs would wait for each other
    /// forever.
    pub drain_timeout: Duration,
    /// Whether a waiting program's memory is brought back ahead of its
    /// grant, into memory free now (see `fetch`): switches then move both
    /// ways at once. Off, each switch moves out, then in.
    pub restore_ahead: bool,
    /// How long after the daemon's start programs that held a GPU before a
    /// restart are believed when they say so, and (after [`Scheduler::recover`])
    /// how long nobody else is granted one (see `recovery`).
    pub recovery_grace: Duration,
}

/// Something that happened, fed to [`Scheduler::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A hook client completed its handshake.
    Connected {
        /// The id the shell gave it.
        client: ClientId,
        /// Its pid (SO_PEERCRED).
        pid: u32,
        /// Its job name.
        name: String,
        /// The multi-process job it belongs to, if any.
        group: Option<String>,
    },
    /// A hook client sent a message.
    Message {
        /// Who.
        client: ClientId,
        /// What.
        msg: ClientMsg,
    },
    /// A hook client's connection closed (exit, crash, or closed by us).
    Disconnected {
        /// Who.
        client: ClientId,
    },
    /// Time passed; deadlines up to `now` fire.
    Tick,
}

/// Something the shell must do, returned by the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send `msg` to `client`.
    Send {
        /// To whom.
        client: ClientId,
        /// What.
        msg: SchedulerMsg,
    },
    /// Close `client`'s connection (after sending what precedes this action);
    /// the shell then feeds back [`Event::Disconnected`].
    Close {
        /// Whom.
        client: ClientId,
    },
    /// An observation for logs and metrics; nothing to send.
    Record(Record),
}

/// Observations the shell logs (one line each) and turns into metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `client` was granted `gpu` after waiting `waited`.
    Granted {
        /// Who.
        client: ClientId,
        /// Which GPU.
        gpu: GpuUuid,
        /// Time from its request to the grant.
        waited: Duration,
    },
    /// `client` was asked to give `gpu` back, evicting `evict_bytes`.
    DropRequested {
        /// Who.
        client: ClientId,
        /// Which GPU.
        gpu: GpuUuid,
        /// Bytes it must evict first.
        evict_bytes: u64,
        /// Why (quantum expired, idle holder, memory needed, policy change).
        reason: &'static str,
    },
    /// `stuck` has been giving `gpu` back for `draining` (its work does not
    /// finish), so `granted` was let in beside it.
    DrainOverdue {
        /// The holder whose drain is stuck.
        stuck: ClientId,
        /// Which GPU.
        gpu: GpuUuid,
        /// How long it has been draining.
        draining: Duration,
        /// Who was granted beside it.
        granted: ClientId,
    },
    /// `stuck` has been giving `gpu` back for longer than the drain
    /// timeout, and the GPU has no physical room to let the next program in
    /// beside it: the switch waits for its queued work to end. Said once
    /// per drain.
    DrainStuck {
        /// The holder whose drain is stuck.
        stuck: ClientId,
        /// Which GPU.
        gpu: GpuUuid,
        /// How long it has been draining.
        draining: Duration,
    },
    /// `client` re-attached `gpu` after a restart saying it holds it, and
    /// was taken as a holder.
    Resumed {
        /// Who.
        client: ClientId,
        /// Which GPU.
        gpu: GpuUuid,
    },
    /// `client` said it holds `gpu` long after the daemon started: not
    /// believed; it waits in line.
    ClaimRefused {
        /// Who.
        client: ClientId,
        /// Which GPU.
        gpu: GpuUuid,
    },
    /// `client` released `gpu` after holding it for `held`.
    Released {
        /// Who.
        client: ClientId,
        /// Which GPU.
        gpu: GpuUuid,
        /// How long it held the lock this time.
        held: Duration,
    },
    /// The lock on `gpu` moved from one client to another: `latency` is the
    /// time from the drop request to the next grant.
    Switched {
        /// Which GPU.
        gpu: GpuUuid,
        /// Drop request to next grant.
        latency: Duration,
    },
    /// A client reported moving memory out.
    Evicted {
        /// Who.
        client: ClientId,
        /// Which GPU.
        gpu: GpuUuid,
        /// Bytes moved.
        bytes: u64,
        /// How long it took.
        elapsed: Duration,
    },
    /// A client reported moving memory back in.
    Restored {
        /// Who.
        client: ClientId,
        /// Which GPU.
        gpu: GpuUuid,
        /// Bytes moved.
        bytes: u64,
        /// How long it took.
        elapsed: Duration,
        /// Ahead of its grant (a `Fetch`), rather than on it.
        ahead: bool,
    },
    /// The last client left `gpu`: the GPU is forgotten (its metric series
    /// go with it).
    GpuForgotten {
        /// Which GPU.
        gpu: GpuUuid,
    },
    /// The host shadows kept for `gpu`'s memory changed: the new totals of
    /// every client together.
    HostShadows {
        /// Which GPU.
        gpu: GpuUuid,
        /// Page-locked bytes.
        pinned: u64,
        /// Pageable bytes.
        pageable: u64,
    },
}

/// The most GPUs one client may attach: more than any node has.
pub const MAX_GPUS_PER_CLIENT: usize = 64;

/// The most GPUs (scheduling domains) served at once. A domain lives while
/// a client is attached to it, so made-up GPU ids cannot pile up domains.
pub const MAX_GPUS: usize = 256;

/// Where NVML listed this machine's GPUs, the most GPUs it did not list that
/// are served at once: enough for MIG instances (7 on each of 8 GPUs) or a
/// daemon that sees fewer GPUs than its programs, while made-up ids cannot
/// crowd out the GPUs that exist (those are always served).
pub const MAX_UNLISTED_GPUS: usize = 64;

/// The whole scheduling state of one daemon: one domain per GPU UUID.
#[derive(Debug)]
pub struct Scheduler {
    config: PolicyConfig,
    clients: BTreeMap<ClientId, Client>,
    domains: BTreeMap<GpuUuid, Domain>,
    /// The last ticket handed out (see `gang`).
    next_ticket: u64,
    /// Until when nobody is granted a GPU (see `recovery`).
    recovering_until: Option<Duration>,
    /// The GPUs found at start (see `settings`).
    known: BTreeMap<GpuUuid, settings::KnownGpu>,
    /// Settings an operator made for one GPU (see `settings`).
    overrides: BTreeMap<GpuUuid, settings::Overrides>,
    /// The clients that make gangs (in a group, or on several GPUs): while
    /// there are none, `gang` has nothing to do.
    gang_makers: BTreeSet<ClientId>,
    /// The GPUs due for scheduling (see `sweep`).
    sweep: Sweep,
    /// Whether every event schedules every GPU (the reference behaviour
    /// that `sweep` must match; see [`Scheduler::with_full_sweeps`]).
    full_sweeps: bool,
}

/// A connected hook client.
#[derive(Debug)]
struct Client {
    pid: u32,
    name: String,
    group: Option<String>,
    gpus: BTreeSet<GpuUuid>,
}

impl Scheduler {
    /// A scheduler with no clients.
    pub fn new(config: PolicyConfig) -> Self {
        Scheduler {
            config,
            clients: BTreeMap::new(),
            domains: BTreeMap::new(),
            next_ticket: 0,
            recovering_until: None,
            known: BTreeMap::new(),
            overrides: BTreeMap::new(),
            gang_makers: BTreeSet::new(),
            sweep: Sweep::default(),
            full_sweeps: false,
        }
    }

    /// This scheduler, made to schedule every GPU on every event instead
    /// of only those the event touched or whose deadline passed. It decides
    /// exactly the same, only slower: tests run both side by side to show
    /// that nothing due is ever skipped.
    pub fn with_full_sweeps(mut self) -> Self {
        self.full_sweeps = true;
        self
    }

    /// Feeds one event at time `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Connected {
                client,
                pid,
                name,
                group,
            } => {
                let gpus = BTreeSet::new();
                self.clients.entry(client).or_insert(Client {
                    pid,
                    name,
                    group,
                    gpus,
                });
                self.count_gang_maker(client);
            }
            Event::Message { client, msg } => self.on_message(client, msg, now, &mut out),
            Event::Disconnected { client } => {
                if let Some(gone) = self.clients.remove(&client) {
                    self.count_gang_maker(client);
                    // Gone from every GPU before anyone is scheduled: a
                    // schedule in between could grant it another GPU.
                    for gpu in gone.gpus {
                        self.remove_member(client, gpu, now, &mut out);
                    }
                    self.settle(now, &mut out);
                }
            }
            Event::Tick => self.settle(now, &mut out),
        }
        out
    }

    /// Sets the quantum of every GPU (operator `set-tq`), including those
    /// set one by one before; tells every client.
    pub fn set_quantum(&mut self, now: Duration, quantum: Duration) -> Vec<Action> {
        self.config.quantum = quantum;
        self.clear_overrides(|o| o.quantum = None);
        let quantum_ms = duration_ms(quantum);
        let mut out: Vec<Action> = self
            .clients
            .keys()
            .map(|&client| Action::Send {
                client,
                msg: SchedulerMsg::QuantumChanged { quantum_ms },
            })
            .collect();
        for d in self.domains.values_mut() {
            d.quantum = quantum;
            d.priority_step = quantum;
        }
        self.sweep.touch_all(self.domains.keys().copied());
        self.settle(now, &mut out);
        out
    }

    /// Sets the policy of every GPU (operator `set-policy`), including those
    /// set one by one before.
    pub fn set_policy(&mut self, now: Duration, policy: Policy) -> Vec<Action> {
        self.config.policy = policy;
        self.clear_overrides(|o| o.policy = None);
        let mut out = Vec::new();
        for d in self.domains.values_mut() {
            settings::apply_policy(d, policy, now, &mut out);
        }
        self.sweep.touch_all(self.domains.keys().copied());
        self.settle(now, &mut out);
        out
    }

    /// The earliest time at which [`Event::Tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        let recovery_end = self.recovering_until;
        if recovery_end.is_some() {
            // Nothing but the recovery's end moves a queue before it.
            return recovery_end;
        }
        if self.full_sweeps {
            return self.domains.values().filter_map(grant::next_deadline).min();
        }
        self.sweep.next_wakeup()
    }

    /// The host shadows clients keep for each GPU, in UUID order.
    pub fn host_shadows(&self) -> Vec<GpuHostShadows> {
        self.domains.values().map(Domain::host_shadows).collect()
    }

    /// The number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Clients waiting for a lock, summed over GPUs.
    pub fn queue_len(&self) -> usize {
        // Asked after every round of events: only GPUs somebody may wait
        // on are counted, not every GPU.
        self.sweep
            .maybe_queued()
            .filter_map(|gpu| self.domains.get(&gpu))
            .map(|d| d.queue.len())
            .sum()
    }

    /// Handles one message of a connected client.
    fn on_message(
        &mut self,
        client: ClientId,
        msg: ClientMsg,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let ClientMsg { gpu, body } = msg;
        let new_unlisted = matches!(body, ClientBody::Attach { .. })
            && !self.domains.contains_key(&gpu)
            && !self.known.contains_key(&gpu);
        let unlisted_full = new_unlisted.then(|| self.unlisted_gpus_full()).flatten();
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        match body {
            ClientBody::Attach {
                physical_memory,
                footprint,
                resident,
                holding,
            } => {
                let refusal = if !c.gpus.contains(&gpu) && c.gpus.len() >= MAX_GPUS_PER_CLIENT {
                    Some(format!(
                        "this program attached {MAX_GPUS_PER_CLIENT} GPUs already, the most one program may use; {gpu} is refused"
                    ))
                } else {
                    unlisted_full.map(|(limit, what)| {
                        format!(
                            "the scheduler serves {limit} {what} already; {gpu} is refused (is the program sending made-up GPU ids?)"
                        )
                    })
                };
                if let Some(message) = refusal {
                    out.push(protocol_error(client, message));
                    return;
                }
                c.gpus.insert(gpu);
                self.count_gang_maker(client);
                self.attach(
                    client,
                    gpu,
                    physical_memory,
                    footprint,
                    resident,
                    holding,
                    now,
                    out,
                );
            }
            _ if !c.gpus.contains(&gpu) => {
                out.push(protocol_error(
                    client,
                    format!(
                        "this program has not attached {gpu}: send Attach for a GPU before any other message about it"
                    ),
                ));
            }
            ClientBody::Detach => {
                c.gpus.remove(&gpu);
                self.count_gang_maker(client);
                self.leave(client, gpu, now, out);
            }
            body => {
                let Some(d) = self.domains.get_mut(&gpu) else {
                    return;
                };
                messages::apply(d, client, body, now, out);
                self.sweep.touch(gpu);
                self.settle(now, out);
            }
        }
    }

    /// If no more GPUs that NVML did not list may be served: how many there
    /// are, and what they are. GPUs NVML listed are always served; without
    /// NVML every GPU is unlisted.
    fn unlisted_gpus_full(&self) -> Option<(usize, &'static str)> {
        if self.known.is_empty() {
            return (self.domains.len() >= MAX_GPUS)
                .then_some((MAX_GPUS, "GPUs, more than any node has"));
        }
        let unlisted = self
            .domains
            .keys()
            .filter(|gpu| !self.known.contains_key(gpu))
            .count();
        (unlisted >= MAX_UNLISTED_GPUS).then_some((
            MAX_UNLISTED_GPUS,
            "GPUs that NVML does not list (MIG instances, GPUs this daemon cannot see)",
        ))
    }

    /// Counts `client` among the gang makers if it is one now. A client
    /// that starts or stops making a gang changes how every queue is lined
    /// up (marks left by a gang that is gone must be cleared before its
    /// members can be granted alone), so every GPU is due then.
    fn count_gang_maker(&mut self, client: ClientId) {
        let makes_gang = self
            .clients
            .get(&client)
            .is_some_and(|c| c.group.is_some() || c.gpus.len() > 1);
        let changed = if makes_gang {
            self.gang_makers.insert(client)
        } else {
            self.gang_makers.remove(&client)
        };
        if changed {
            self.sweep.touch_all(self.domains.keys().copied());
        }
    }

    /// `client` attached `gpu` (again, after a reconnect, if `holding`).
    #[allow(clippy::too_many_arguments)]
    fn attach(
        &mut self,
        client: ClientId,
        gpu: GpuUuid,
        physical_memory: u64,
        footprint: u64,
        resident: u64,
        holding: bool,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let trusted = self.claims_trusted(now);
        let (config, overrides) = (&self.config, self.overrides.get(&gpu));
        let d = self
            .domains
            .entry(gpu)
            .or_insert_with(|| settings::new_domain(config, overrides, gpu, physical_memory));
        let m = d
            .members
            .entry(client)
            .or_insert_with(|| Member::new(client, footprint, resident));
        m.footprint = footprint;
        m.resident = resident;
        out.push(Action::Send {
            client,
            msg: SchedulerBody::Welcome {
                client_id: client,
                quantum_ms: duration_ms(d.quantum),
                capacity: d.capacity,
            }
            .on(gpu),
        });
        if holding {
            recovery::claim(d, client, trusted, now, out);
        }
        self.sweep.touch(gpu);
        self.settle(now, out);
    }

    /// `client` leaves `gpu`: its lock and memory there are released now.
    fn leave(&mut self, client: ClientId, gpu: GpuUuid, now: Duration, out: &mut Vec<Action>) {
        self.remove_member(client, gpu, now, out);
        self.settle(now, out);
    }

    /// Takes `client` off `gpu`; a GPU nobody is attached to any more is
    /// forgotten (its counters start again; an operator's settings for it
    /// are kept in `overrides`).
    fn remove_member(
        &mut self,
        client: ClientId,
        gpu: GpuUuid,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        if let Some(d) = self.domains.get_mut(&gpu) {
            d.remove(client, now, out);
            if d.members.is_empty() {
                self.domains.remove(&gpu);
                self.sweep.forget(gpu);
                out.push(Action::Record(Record::GpuForgotten { gpu }));
            } else {
                self.sweep.touch(gpu);
            }
        }
    }
}

/// Tells `client` its message broke the protocol, and why.
fn protocol_error(client: ClientId, message: String) -> Action {
    Action::Send {
        client,
        msg: SchedulerMsg::Error(ErrorReply {
            code: ErrorCode::Protocol,
            message,
        }),
    }
}
