//! The writing side of the loop: queueing frames, flushing them once per
//! round, closing connections (and telling the policy) and shutting down.

use super::connection::{MAX_PENDING_OUTPUT, Phase};
use super::{SHUTDOWN_GRACE, Server, interest};
use crate::notify::notify;
use crate::policy::{Action, Event};
use nvshare_proto::{ClientId, SchedulerMsg};
use serde::Serialize;
use std::time::{Duration, Instant};
use tracing::{debug, info, trace, warn};

impl Server {
    /// Carries out the policy's actions, in order.
    pub(super) fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { client, msg } => {
                    trace!(conn = client, ?msg, "to client");
                    self.send(client, &msg)
                }
                Action::Close { client } => self.close(client, "closed by the scheduler"),
                Action::Record(record) => self.observer.record(&record),
            }
        }
    }

    /// Queues `msg` for `id`; [`Server::flush_dirty`] writes it.
    pub(super) fn send<T: Serialize>(&mut self, id: ClientId, msg: &T) {
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
    pub(super) fn flush_dirty(&mut self) {
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
                    self.drop_slow_reader(id);
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

    /// Disconnects a peer whose unread messages passed
    /// [`MAX_PENDING_OUTPUT`].
    pub(super) fn drop_slow_reader(&mut self, id: ClientId) {
        if let Some(conn) = self.connections.get(&id) {
            warn!(
                conn = id,
                pid = conn.peer.pid,
                pending = conn.pending_output(),
                "disconnecting a peer that stopped reading its messages"
            );
        }
        self.close(id, "stopped reading its messages");
    }

    /// Closes `id` (sending what can be sent at once) and tells the policy.
    pub(super) fn close(&mut self, id: ClientId, why: &str) {
        let Some(mut conn) = self.connections.remove(&id) else {
            return;
        };
        // Best effort: refusals and final messages are small and the socket
        // buffer is almost always empty, so they leave in this write.
        let _ = conn.flush();
        let _ = self.epoll.delete(conn.stream());
        drop(conn.stream().shutdown(std::net::Shutdown::Both));
        let (phase, uid) = (conn.phase, conn.peer.uid);
        drop(conn);
        self.forget_peer(uid);
        if !self.accepting {
            self.resume_accepting();
        }
        if phase == Phase::Client {
            let actions = self
                .scheduler
                .handle(self.now(), Event::Disconnected { client: id });
            self.apply(actions);
            self.observer.client_gone(id, why);
        } else {
            debug!(conn = id, why, "connection closed");
        }
    }

    /// Tells every hook client the scheduler is going away, gives the
    /// messages [`SHUTDOWN_GRACE`] to leave, and closes every connection.
    pub(super) fn shut_down(&mut self, why: &str) {
        let clients: Vec<ClientId> = self
            .connections
            .values()
            .filter(|c| c.phase == Phase::Client)
            .map(|c| c.id)
            .collect();
        info!(why, clients = clients.len(), socket = %self.listener.path().display(),
              "shutting down: telling clients and removing the socket");
        notify("STOPPING=1");
        if !clients.is_empty() {
            // They reconnect to the next daemon, which must wait for them.
            self.listener.keep_lock_file();
        }
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
