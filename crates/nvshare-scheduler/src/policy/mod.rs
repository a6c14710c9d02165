//! The scheduling policy: a pure state machine.
//!
//! Events go in ([`Event`]: a client connected, said something, disconnected,
//! or time passed), actions come out ([`Action`]: send a message, close a
//! connection, record an observation for logs and metrics). There are no
//! sockets, threads or clocks in here: `now` is an input, a [`Duration`]
//! since an arbitrary epoch chosen by the caller, so tests drive it with
//! simulated time.
//!
//! INTERFACE CONTRACT (shared with the I/O shell in `server`): the types and
//! method signatures in this file are what the shell calls. Keep them stable.

use nvshare_proto::{ClientId, ClientMsg, GpuStatus, GpuUuid, Policy, SchedulerMsg};
use std::time::Duration;

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
    },
}

/// The whole scheduling state of one daemon: one domain per GPU UUID.
#[derive(Debug)]
pub struct Scheduler {
    // private state
}

impl Scheduler {
    /// A scheduler with no clients.
    pub fn new(config: PolicyConfig) -> Self {
        let _ = config;
        todo!()
    }

    /// Feeds one event at time `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let _ = (now, event);
        todo!()
    }

    /// Sets the quantum of every GPU (operator `set-tq`); tells every client.
    pub fn set_quantum(&mut self, now: Duration, quantum: Duration) -> Vec<Action> {
        let _ = (now, quantum);
        todo!()
    }

    /// Sets the policy of every GPU (operator `set-policy`).
    pub fn set_policy(&mut self, now: Duration, policy: Policy) -> Vec<Action> {
        let _ = (now, policy);
        todo!()
    }

    /// The earliest time at which [`Event::Tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        todo!()
    }

    /// Every GPU's state, in UUID order.
    pub fn status(&self, now: Duration) -> Vec<GpuStatus> {
        let _ = now;
        todo!()
    }

    /// The number of connected clients.
    pub fn client_count(&self) -> usize {
        todo!()
    }

    /// Clients waiting for a lock, summed over GPUs.
    pub fn queue_len(&self) -> usize {
        todo!()
    }
}
