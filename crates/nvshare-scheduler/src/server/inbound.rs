//! The reading side of the loop: frames in, decoded by the connection's
//! phase, handed to the handshake, the policy or the control handler.

use super::connection::{Connection, MAX_PENDING_OUTPUT, Phase, ReadStatus};
use super::control::{self, DaemonInfo};
use super::{Server, handshake};
use crate::policy::Event;
use nix::sys::epoll::EpollFlags;
use nvshare_proto::{
    ClientId, ClientMsg, ControlReply, ControlRequest, HelloReply, PROTOCOL_VERSION, ProtoError,
    Role, SchedulerMsg, decode, decode_hello,
};
use tracing::{debug, trace, warn};

/// One decoded frame, by the phase it arrived in.
enum Inbound {
    Hello(Role),
    Client(ClientMsg),
    Control(ControlRequest),
}

impl Server {
    /// Handles epoll's report for connection `id`: reads what arrived,
    /// dispatches every complete frame, closes on end of stream or error.
    pub(super) fn serve(&mut self, id: ClientId, flags: EpollFlags) {
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
            if conn.pending_output() > MAX_PENDING_OUTPUT {
                // Requests that each queue a reply (status) must not make
                // the daemon buffer without bound for a peer that does not
                // read: stop here, before the next one.
                self.drop_slow_reader(id);
                return;
            }
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
                trace!(conn = id, ?msg, "from client");
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
                let (reply, actions) = control::answer(
                    request,
                    peer.uid,
                    info,
                    &self.inventory,
                    &mut self.scheduler,
                );
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
        let group = handshake::clean_group(&role);
        conn.enter(if name.is_some() {
            Phase::Client
        } else {
            Phase::Control
        });
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
                    .client_connected(id, peer.pid, peer.uid, &name, group.as_deref());
                let event = Event::Connected {
                    client: id,
                    pid: peer.pid,
                    name,
                    group,
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
