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
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

const LISTENER_TOKEN: u64 = u64::MAX;
const SIGNAL_TOKEN: u64 = u64::MAX - 1;
/// How long shutdown waits for clients to take their `ShuttingDown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Read chunk for every connection.
const SCRATCH_LEN: usize = 64 << 10;

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
    started: Instant,
    daemon_uid: u32,
    scratch: Vec<u8>,
}

impl Server {
    /// Registers the listener and the signals with a new epoll set.
    pub fn new(
        listener: SocketListener,
        signals: ShutdownSignals,
        scheduler: Scheduler,
        observer: Observer,
        started: Instant,
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
            started,
            daemon_uid: nix::unistd::geteuid().as_raw(),
            scratch: vec![0; SCRATCH_LEN],
        })
    }

    /// Serves until SIGTERM or SIGINT; then tells every client, and returns
    /// the signal. The socket file goes when the server is dropped.
    pub fn run(&mut self) -> Result<Signal, ServerError> {
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
            let ready = match self.epoll.wait(&mut events, self.timeout(deadline)) {
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
                            self.shut_down(signal);
                            return Ok(signal);
                        }
                    }
                    id => self.serve(id, event.events()),
                }
            }
            self.flush_dirty();
            self.observer
                .set_load(self.scheduler.client_count(), self.scheduler.queue_len());
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
                        // The pending connection stays readable: stop
                        // watching the listener (or the loop would spin)
                        // until a connection closes and frees a descriptor.
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
            if let Err(err) = self.epoll.add(conn.stream(), interest(id, false)) {
                warn!(%err, "watching a new connection failed; dropping it");
                continue;
            }
            debug!(
                conn = id,
                pid = conn.peer.pid,
                uid = conn.peer.uid,
                "accepted"
            );
            self.connections.insert(id, conn);
        }
    }

    fn pause_accepting(&mut self) {
        let mut none = EpollEvent::new(EpollFlags::empty(), LISTENER_TOKEN);
        if self.epoll.modify(self.listener.socket(), &mut none).is_ok() {
            self.accepting = false;
        }
    }

    fn resume_accepting(&mut self) {
        let mut readable = EpollEvent::new(EpollFlags::EPOLLIN, LISTENER_TOKEN);
        if self
            .epoll
            .modify(self.listener.socket(), &mut readable)
            .is_ok()
        {
            self.accepting = true;
        }
    }
}

/// What epoll watches on a connection.
fn interest(id: ClientId, writes: bool) -> EpollEvent {
    let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
    if writes {
        flags |= EpollFlags::EPOLLOUT;
    }
    EpollEvent::new(flags, id)
}
