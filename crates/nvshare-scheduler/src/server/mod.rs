//! The I/O shell around the policy: one thread, one epoll set over the
//! listening socket, every connection and the shutdown signals, with the
//! policy's next deadline as the wait's timeout.
//!
//! Every byte in is turned into an [`Event`] for the [`Scheduler`]; every
//! [`Action`] out is a frame queued on a connection, a close, or a record for
//! logs and metrics. Output is written once per loop round, so several
//! messages to one peer leave in one system call.

pub mod connection;
pub mod control;
pub mod handshake;
pub mod listener;

use crate::error::ServerError;
use crate::notify::notify;
use crate::observe::Observer;
use crate::policy::{Action, Event, Scheduler};
use crate::signals::ShutdownSignals;
use connection::{Connection, MAX_PENDING_OUTPUT, Phase, ReadStatus};
use control::DaemonInfo;
use listener::SocketListener;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use nvshare_proto::{
    ClientId, ClientMsg, ControlReply, ControlRequest, HelloReply, PROTOCOL_VERSION, ProtoError,
    Role, SchedulerMsg, decode, decode_hello,
};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

const LISTENER_TOKEN: u64 = u64::MAX;
const SIGNAL_TOKEN: u64 = u64::MAX - 1;
/// How long shutdown waits for clients to take their `ShuttingDown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Read chunk for every connection.
const SCRATCH_LEN: usize = 64 << 10;

/// One decoded frame, by the phase it arrived in.
enum Inbound {
    Hello(Role),
    Client(ClientMsg),
    Control(ControlRequest),
}

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
                    warn!(%err, "accepting a connection failed");
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

    fn serve(&mut self, id: ClientId, flags: EpollFlags) {
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.dirty.push(id);
        }
        let readable = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLHUP
            | EpollFlags::EPOLLERR;
        if !flags.intersects(readable) {
            return;
        }
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        let status = conn.fill(&mut self.scratch);
        self.take_frames(id);
        match status {
            ReadStatus::Open => {}
            ReadStatus::Closed => self.close(id, "connection closed by the peer"),
            ReadStatus::Failed(err) => self.close(id, &format!("connection failed: {err}")),
        }
    }

    /// Handles every complete frame `id` has sent.
    fn take_frames(&mut self, id: ClientId) {
        loop {
            let Some(conn) = self.connections.get_mut(&id) else {
                return;
            };
            let inbound = match next_inbound(conn) {
                Ok(Some(inbound)) => inbound,
                Ok(None) => return,
                Err(err) => {
                    self.reject(id, &err);
                    return;
                }
            };
            self.dispatch(id, inbound);
        }
    }

    fn dispatch(&mut self, id: ClientId, inbound: Inbound) {
        match inbound {
            Inbound::Hello(role) => self.welcome(id, role),
            Inbound::Client(msg) => {
                let actions = self
                    .scheduler
                    .handle(self.now(), Event::Message { client: id, msg });
                self.apply(actions);
            }
            Inbound::Control(request) => {
                let Some(peer) = self.connections.get(&id).map(|c| c.peer) else {
                    return;
                };
                let info = DaemonInfo {
                    pid: std::process::id(),
                    uid: self.daemon_uid,
                    uptime: self.now(),
                };
                let (reply, actions) =
                    control::answer(request, peer.uid, info, &mut self.scheduler);
                self.send(id, &reply);
                self.apply(actions);
            }
        }
    }

    fn welcome(&mut self, id: ClientId, role: Role) {
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        let peer = conn.peer;
        let name = handshake::clean_name(&role);
        conn.phase = if name.is_some() {
            Phase::Client
        } else {
            Phase::Control
        };
        self.send(
            id,
            &HelloReply::Accepted {
                client_id: id,
                version: PROTOCOL_VERSION,
            },
        );
        match name {
            Some(name) => {
                self.observer
                    .client_connected(id, peer.pid, peer.uid, &name);
                let event = Event::Connected {
                    client: id,
                    pid: peer.pid,
                    name,
                };
                let actions = self.scheduler.handle(self.now(), event);
                self.apply(actions);
            }
            None => debug!(
                conn = id,
                pid = peer.pid,
                uid = peer.uid,
                "control connection"
            ),
        }
    }

    /// Answers an invalid frame with an error in the connection's current
    /// language, then closes it.
    fn reject(&mut self, id: ClientId, err: &ProtoError) {
        let Some(conn) = self.connections.get(&id) else {
            return;
        };
        let (phase, peer) = (conn.phase, conn.peer);
        warn!(conn = id, pid = peer.pid, uid = peer.uid, error = %err,
              "refusing an invalid frame and closing the connection");
        self.observer.metrics().rejected_connections.inc();
        let refusal = handshake::refusal(err);
        match phase {
            Phase::AwaitingHello => self.send(id, &HelloReply::Rejected(refusal)),
            Phase::Client => self.send(id, &SchedulerMsg::Error(refusal)),
            Phase::Control => self.send(id, &ControlReply::Error(refusal)),
        }
        self.close(id, "sent an invalid frame");
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { client, msg } => self.send(client, &msg),
                Action::Close { client } => self.close(client, "closed by the scheduler"),
                Action::Record(record) => self.observer.record(&record),
            }
        }
    }

    fn send<T: Serialize>(&mut self, id: ClientId, msg: &T) {
        let Some(conn) = self.connections.get_mut(&id) else {
            debug!(conn = id, "dropping a message to a connection that is gone");
            return;
        };
        match conn.queue(msg) {
            Ok(()) => self.dirty.push(id),
            Err(err) => warn!(conn = id, %err, "could not encode a message; it is not sent"),
        }
    }

    /// Writes what was queued this round; drops peers that fail or stopped
    /// reading.
    fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            for id in std::mem::take(&mut self.dirty) {
                let Some(conn) = self.connections.get_mut(&id) else {
                    continue;
                };
                if let Err(err) = conn.flush() {
                    self.close(id, &format!("writing failed: {err}"));
                    continue;
                }
                let pending = conn.pending_output();
                if pending > MAX_PENDING_OUTPUT {
                    self.close(
                        id,
                        &format!("stopped reading ({pending} bytes waiting for it)"),
                    );
                    continue;
                }
                let want_writes = pending > 0;
                if want_writes != conn.watching_writes {
                    let mut event = interest(id, want_writes);
                    match self.epoll.modify(conn.stream(), &mut event) {
                        Ok(()) => conn.watching_writes = want_writes,
                        Err(err) => self.close(id, &format!("epoll failed: {err}")),
                    }
                }
            }
        }
    }

    /// Closes `id` (sending what can be sent at once) and tells the policy.
    fn close(&mut self, id: ClientId, why: &str) {
        let Some(mut conn) = self.connections.remove(&id) else {
            return;
        };
        // Best effort: refusals and final messages are small and the socket
        // buffer is almost always empty, so they leave in this write.
        let _ = conn.flush();
        let _ = self.epoll.delete(conn.stream());
        drop(conn.stream().shutdown(std::net::Shutdown::Both));
        if conn.phase == Phase::Client {
            let actions = self
                .scheduler
                .handle(self.now(), Event::Disconnected { client: id });
            self.apply(actions);
            self.observer.client_gone(id, why);
        } else {
            debug!(conn = id, why, "connection closed");
        }
    }

    fn shut_down(&mut self, signal: Signal) {
        let clients: Vec<ClientId> = self
            .connections
            .values()
            .filter(|c| c.phase == Phase::Client)
            .map(|c| c.id)
            .collect();
        info!(%signal, clients = clients.len(), socket = %self.listener.path().display(),
              "shutting down: telling clients and removing the socket");
        notify("STOPPING=1");
        for id in clients {
            self.send(id, &SchedulerMsg::ShuttingDown);
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        loop {
            let mut waiting = false;
            for conn in self.connections.values_mut() {
                waiting |= conn.flush().is_ok() && conn.pending_output() > 0;
            }
            if !waiting || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.connections.clear();
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

/// Decodes the next complete frame as what the connection's phase expects.
fn next_inbound(conn: &mut Connection) -> Result<Option<Inbound>, ProtoError> {
    let phase = conn.phase;
    let Some(payload) = conn.next_payload()? else {
        return Ok(None);
    };
    Ok(Some(match phase {
        Phase::AwaitingHello => Inbound::Hello(decode_hello(payload)?.role),
        Phase::Client => Inbound::Client(decode(payload)?),
        Phase::Control => Inbound::Control(decode(payload)?),
    }))
}
