//! The I/O shell around the policy: one thread, one epoll set over the
//! listening socket, every connection and the shutdown signals, with the
//! policy's next deadline as the wait's timeout.
//!
//! Every byte in is turned into an [`Event`] for the [`Scheduler`]; every
//! [`Action`](crate::policy::Action) out is a frame queued on a connection,
//! a close, or a record for logs and metrics. Output is written once per
//! loop round, so several messages to one peer leave in one system call.
//!
//! This file holds the loop and accepting; `inbound` reads and dispatches
//! frames, `outbound` writes, closes and shuts down.

pub mod connection;
pub mod control;
pub mod handshake;
mod inbound;
pub mod listener;
mod outbound;

use crate::error::ServerError;
use crate::observe::Observer;
use crate::policy::{Event, Scheduler};
use crate::signals::ShutdownSignals;
use connection::Connection;
use listener::SocketListener;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use nvshare_proto::ClientId;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

const LISTENER_TOKEN: u64 = u64::MAX;
const SIGNAL_TOKEN: u64 = u64::MAX - 1;
/// How long shutdown waits for clients to take their `ShuttingDown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Read chunk for every connection.
const SCRATCH_LEN: usize = 64 << 10;

/// How much the daemon gives connections before they prove useful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A connection that has not said hello after this long is closed.
    pub hello_timeout: Duration,
    /// Connections one uid may hold open at once; more are closed at once.
    pub per_uid: usize,
}

/// One uid's connections.
#[derive(Debug, Default)]
struct UidConnections {
    open: usize,
    /// Its last connection was refused for the cap (warned once until it
    /// is under the cap again).
    warned: bool,
}

/// How long accepting pauses when the daemon is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The daemon's event loop and everything it owns.
#[derive(Debug)]
pub struct Server {
    epoll: Epoll,
    listener: SocketListener,
    signals: ShutdownSignals,
    scheduler: Scheduler,
    observer: Observer,
    connections: HashMap<ClientId, Connection>,
    /// Connections with output queued this round.
    dirty: Vec<ClientId>,
    next_id: ClientId,
    /// False while out of file descriptors (the listener is not watched).
    accepting: bool,
    /// When to watch the listener again after running out of descriptors.
    resume_accepting_at: Option<Instant>,
    /// A descriptor kept free: when the daemon runs out, it is closed to
    /// accept and at once close one pending connection (its peer sees the
    /// close, rather than waiting unanswered), then opened again.
    spare_fd: Option<std::fs::File>,
    limits: ConnectionLimits,
    /// Connections not yet past their hello, in accept order (so deadline
    /// order); entries of connections gone or past it are skipped.
    hello_deadlines: VecDeque<(Instant, ClientId)>,
    /// Open connections per peer uid.
    per_uid: HashMap<u32, UidConnections>,
    started: Instant,
    daemon_uid: u32,
    scratch: Vec<u8>,
    /// Exit once no program has been connected for this long.
    exit_when_idle: Option<Duration>,
    /// Since when no program has been connected (`None` while some are).
    idle_since: Option<Instant>,
    /// The GPUs found at start, and their health (updated by the XID
    /// watcher's thread).
    inventory: SharedInventory,
    /// When the state gauges are next set from the policy's status; `None`
    /// when no metrics are served (then they are never set).
    mirror_due: Option<Instant>,
}

/// How often the state gauges (per GPU and per job) are set from the
/// policy: a status costs allocations, so not after every message; the
/// loop wakes at least this often while programs are connected (only when
/// metrics are served).
const MIRROR_EVERY: Duration = Duration::from_millis(500);

/// The inventory the daemon found, shared with the thread that records XIDs.
pub type SharedInventory = std::sync::Arc<std::sync::Mutex<nvshare_proto::Inventory>>;

/// Why the event loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT.
    Signal(Signal),
    /// No program was connected for the `--exit-when-idle` time.
    Idle,
}

impl Server {
    /// Registers the listener and the signals with a new epoll set.
    pub fn new(
        listener: SocketListener,
        signals: ShutdownSignals,
        scheduler: Scheduler,
        observer: Observer,
        started: Instant,
        limits: ConnectionLimits,
    ) -> Result<Self, ServerError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(ServerError::system("creating the epoll set"))?;
        epoll
            .add(
                listener.socket(),
                EpollEvent::new(EpollFlags::EPOLLIN, LISTENER_TOKEN),
            )
            .map_err(ServerError::system("watching the listening socket"))?;
        epoll
            .add(&signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNAL_TOKEN))
            .map_err(ServerError::system("watching the signal descriptor"))?;
        Ok(Server {
            epoll,
            listener,
            signals,
            scheduler,
            observer,
            connections: HashMap::new(),
            dirty: Vec::new(),
            next_id: 1,
            accepting: true,
            resume_accepting_at: None,
            spare_fd: spare_fd(),
            limits,
            hello_deadlines: VecDeque::new(),
            per_uid: HashMap::new(),
            started,
            daemon_uid: nix::unistd::geteuid().as_raw(),
            scratch: vec![0; SCRATCH_LEN],
            exit_when_idle: None,
            idle_since: Some(started),
            inventory: SharedInventory::default(),
            mirror_due: None,
        })
    }

    /// Keeps the state gauges set from the policy (when metrics are served).
    pub fn mirror_state(mut self, enabled: bool) -> Self {
        self.mirror_due = enabled.then_some(self.started);
        self
    }

    /// Answers inventory requests from `inventory`.
    pub fn inventory(mut self, inventory: SharedInventory) -> Self {
        self.inventory = inventory;
        self
    }

    /// Makes the loop end once no program has been connected for `idle`.
    pub fn exit_when_idle(mut self, idle: Option<Duration>) -> Self {
        self.exit_when_idle = idle;
        self
    }

    /// Serves until SIGTERM or SIGINT (then tells every client), or until
    /// it has been idle for the `exit_when_idle` time; says which. The
    /// socket file goes when the server is dropped.
    pub fn run(&mut self) -> Result<Stopped, ServerError> {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            // The deadline is computed once per round: events that move it
            // earlier (a request behind a holder whose quantum is over) just
            // make the next wait return at once.
            let mut deadline = self.scheduler.next_deadline();
            let now = self.now();
            if deadline.is_some_and(|d| d <= now) {
                let actions = self.scheduler.handle(now, Event::Tick);
                self.apply(actions);
                self.flush_dirty();
                deadline = self.scheduler.next_deadline();
            }
            let ready = match self.epoll.wait(&mut events, self.loop_timeout(deadline)) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => 0,
                Err(errno) => return Err(ServerError::system("waiting for events")(errno)),
            };
            for event in &events[..ready] {
                match event.data() {
                    LISTENER_TOKEN => self.accept_all(),
                    SIGNAL_TOKEN => {
                        let signal = self
                            .signals
                            .take()
                            .map_err(ServerError::system("reading the signal descriptor"))?;
                        if let Some(signal) = signal {
                            self.shut_down(signal.as_ref());
                            return Ok(Stopped::Signal(signal));
                        }
                    }
                    id => self.serve(id, event.events()),
                }
            }
            let now = Instant::now();
            self.expire_hellos(now);
            if self.resume_accepting_at.is_some_and(|at| now >= at) {
                self.resume_accepting();
            }
            self.flush_dirty();
            self.observer
                .set_load(self.scheduler.client_count(), self.scheduler.queue_len());
            if self.mirror_due.is_some_and(|due| now >= due) {
                self.observer
                    .mirror_state(&self.scheduler.status(self.now()));
                self.mirror_due = Some(now + MIRROR_EVERY);
            }
            if self.idle_long_enough(now) {
                self.shut_down("idle");
                return Ok(Stopped::Idle);
            }
        }
    }

    /// Keeps `idle_since` and says whether the idle time to exit has come.
    fn idle_long_enough(&mut self, now: Instant) -> bool {
        if self.scheduler.client_count() > 0 {
            self.idle_since = None;
            return false;
        }
        self.idle_since.get_or_insert(now);
        let due = self.idle_deadline().is_some_and(|at| now >= at);
        if due {
            info!(
                idle_ms = self
                    .exit_when_idle
                    .map_or(0, |idle| idle.as_millis() as u64),
                "no program has used this scheduler for the --exit-when-idle time: exiting"
            );
        }
        due
    }

    /// The wait until the policy's `deadline`, the next hello deadline or
    /// the end of an accept back-off, whichever comes first.
    fn loop_timeout(&self, deadline: Option<Duration>) -> EpollTimeout {
        let since_start = |at: Instant| at.saturating_duration_since(self.started);
        let shell = self
            .hello_deadlines
            .front()
            .map(|&(at, _)| since_start(at))
            .into_iter()
            .chain(self.resume_accepting_at.map(since_start))
            .chain(self.idle_deadline().map(since_start))
            .chain(
                self.mirror_due
                    .filter(|_| self.scheduler.client_count() > 0 || self.observer.mirrors_jobs())
                    .map(since_start),
            )
            .min();
        let earliest = match (deadline, shell) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.timeout(earliest)
    }

    /// When the daemon exits if nobody connects before.
    fn idle_deadline(&self) -> Option<Instant> {
        Some(self.idle_since? + self.exit_when_idle?)
    }

    /// Closes connections that have not said hello in time.
    fn expire_hellos(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.hello_deadlines.front() {
            let waiting = self
                .connections
                .get(&id)
                .is_some_and(|c| c.phase == connection::Phase::AwaitingHello);
            if waiting && deadline > now {
                return;
            }
            self.hello_deadlines.pop_front();
            if waiting {
                if let Some(conn) = self.connections.get(&id) {
                    debug!(
                        conn = id,
                        pid = conn.peer.pid,
                        uid = conn.peer.uid,
                        "no hello in time"
                    );
                }
                self.observer.metrics().rejected_connections.inc();
                self.close(id, "said no hello in time");
            }
        }
    }

    /// The policy's clock: time since the daemon started.
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Until `deadline` (rounded up to whole milliseconds, epoll's
    /// resolution), or forever.
    fn timeout(&self, deadline: Option<Duration>) -> EpollTimeout {
        let Some(deadline) = deadline else {
            return EpollTimeout::NONE;
        };
        let wait = deadline.saturating_sub(self.now());
        let millis = wait.as_micros().div_ceil(1000);
        u32::try_from(millis)
            .ok()
            .and_then(|ms| EpollTimeout::try_from(ms).ok())
            .unwrap_or(EpollTimeout::MAX)
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok(Some(stream)) => stream,
                Ok(None) => return,
                Err(err) => {
                    if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        self.refuse_one_pending();
                        // The pending connections stay readable: stop
                        // watching the listener (or the loop would spin)
                        // until a connection closes or the back-off ends.
                        self.pause_accepting();
                    }
                    warn!(%err, open = self.connections.len(), "accepting a connection failed");
                    return;
                }
            };
            let id = self.next_id;
            self.next_id += 1;
            let conn = match Connection::new(id, stream) {
                Ok(conn) => conn,
                Err(err) => {
                    warn!(%err, "reading a new connection's credentials failed; dropping it");
                    continue;
                }
            };
            let of_uid = self.per_uid.entry(conn.peer.uid).or_default();
            if of_uid.open >= self.limits.per_uid {
                if !std::mem::replace(&mut of_uid.warned, true) {
                    warn!(
                        uid = conn.peer.uid,
                        limit = self.limits.per_uid,
                        "a user holds as many connections as allowed; closing its new ones until some close (--max-connections-per-uid)"
                    );
                }
                self.observer.metrics().rejected_connections.inc();
                continue;
            }
            if let Err(err) = self.epoll.add(conn.stream(), interest(id, false)) {
                warn!(%err, "watching a new connection failed; dropping it");
                continue;
            }
            // Counted only once it is kept: `close` uncounts it.
            of_uid.open += 1;
            debug!(
                conn = id,
                pid = conn.peer.pid,
                uid = conn.peer.uid,
                "accepted"
            );
            let deadline = Instant::now() + self.limits.hello_timeout;
            self.hello_deadlines.push_back((deadline, id));
            self.connections.insert(id, conn);
        }
    }

    /// Out of descriptors: uses the spare one to accept a pending connection
    /// and close it at once, so its peer hears of it now.
    fn refuse_one_pending(&mut self) {
        if self.spare_fd.take().is_none() {
            return;
        }
        if let Ok(Some(stream)) = self.listener.accept() {
            drop(stream);
            self.observer.metrics().rejected_connections.inc();
        }
        self.spare_fd = spare_fd();
    }

    fn pause_accepting(&mut self) {
        let mut none = EpollEvent::new(EpollFlags::empty(), LISTENER_TOKEN);
        if self.epoll.modify(self.listener.socket(), &mut none).is_ok() {
            self.accepting = false;
            self.resume_accepting_at = Some(Instant::now() + ACCEPT_BACKOFF);
        }
    }

    fn resume_accepting(&mut self) {
        self.resume_accepting_at = None;
        let mut readable = EpollEvent::new(EpollFlags::EPOLLIN, LISTENER_TOKEN);
        if self
            .epoll
            .modify(self.listener.socket(), &mut readable)
            .is_ok()
        {
            self.accepting = true;
        }
    }

    /// A connection of `uid` closed.
    fn forget_peer(&mut self, uid: u32) {
        if let Some(of_uid) = self.per_uid.get_mut(&uid) {
            of_uid.open = of_uid.open.saturating_sub(1);
            of_uid.warned = false;
            if of_uid.open == 0 {
                self.per_uid.remove(&uid);
            }
        }
    }
}

/// A descriptor held in reserve for [`Server::refuse_one_pending`].
fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// What epoll watches on a connection.
fn interest(id: ClientId, writes: bool) -> EpollEvent {
    let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
    if writes {
        flags |= EpollFlags::EPOLLOUT;
    }
    EpollEvent::new(flags, id)
}
