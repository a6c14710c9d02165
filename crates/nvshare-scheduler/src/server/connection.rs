//! One accepted connection: its peer's credentials, the frames coming in and
//! the bytes waiting to go out.

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nvshare_proto::{
    ClientId, FrameBuffer, MAX_HELLO_LEN, MAX_REQUEST_LEN, ProtoError, encode_frame,
};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

/// A peer that lets this many bytes pile up unread is disconnected: it is
/// stuck or hostile, and the daemon must not buffer for it without bound.
pub const MAX_PENDING_OUTPUT: usize = 4 << 20;

/// Bytes read from one connection per wake-up before serving the others
/// (epoll is level-triggered, so the rest is read on the next round).
const READ_BUDGET: usize = 256 << 10;

/// Who is on the other end, from `SO_PEERCRED` (never from messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The peer's pid.
    pub pid: u32,
    /// The peer's uid.
    pub uid: u32,
}

/// Where a connection is in its conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the [`nvshare_proto::Hello`].
    AwaitingHello,
    /// A hook client, known to the policy.
    Client,
    /// An operator tool.
    Control,
}

/// What the last read found.
#[derive(Debug)]
pub enum ReadStatus {
    /// The peer may send more.
    Open,
    /// The peer closed its end (after the bytes already buffered).
    Closed,
    /// The socket failed (reset, ...).
    Failed(io::Error),
}

/// An accepted connection.
#[derive(Debug)]
pub struct Connection {
    /// The id given at accept time, also the epoll token.
    pub id: ClientId,
    /// The peer's credentials.
    pub peer: Peer,
    /// Conversation phase.
    pub phase: Phase,
    /// True while epoll also watches for writability.
    pub watching_writes: bool,
    stream: UnixStream,
    frames: FrameBuffer,
    out: Vec<u8>,
    out_start: usize,
}

impl Connection {
    /// Wraps an accepted non-blocking stream, reading its peer credentials.
    pub fn new(id: ClientId, stream: UnixStream) -> io::Result<Self> {
        let creds = getsockopt(&stream, PeerCredentials).map_err(io::Error::from)?;
        Ok(Connection {
            id,
            peer: Peer {
                pid: creds.pid() as u32,
                uid: creds.uid(),
            },
            phase: Phase::AwaitingHello,
            watching_writes: false,
            stream,
            // Until it says who it is, a peer gets room for a hello only.
            frames: FrameBuffer::with_limit(MAX_HELLO_LEN),
            out: Vec::new(),
            out_start: 0,
        })
    }

    /// The socket, for epoll registration.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Moves to `phase`: a peer that said hello may send requests.
    pub fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.frames.set_limit(MAX_REQUEST_LEN);
    }

    /// Reads what has arrived (up to a fairness budget, and never more than
    /// one frame of the phase's limit ahead) into the frame buffer.
    pub fn fill(&mut self, scratch: &mut [u8]) -> ReadStatus {
        let mut total = 0;
        while total < READ_BUDGET {
            let room = self.frames.capacity().saturating_sub(self.frames.pending());
            if room == 0 {
                // A whole frame's worth is buffered: the rest waits in the
                // socket until it is taken.
                break;
            }
            let want = room.min(scratch.len());
            match self.stream.read(&mut scratch[..want]) {
                Ok(0) => return ReadStatus::Closed,
                Ok(n) => {
                    self.frames.extend(&scratch[..n]);
                    total += n;
                    if n < want {
                        // Short read: the socket is drained for now.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return ReadStatus::Failed(e),
            }
        }
        ReadStatus::Open
    }

    /// The next complete frame's payload, if one has arrived.
    pub fn next_payload(&mut self) -> Result<Option<&[u8]>, ProtoError> {
        self.frames.next_payload()
    }

    /// Appends `msg` as one frame to the output (sent by [`Self::flush`]).
    pub fn queue<T: Serialize>(&mut self, msg: &T) -> Result<(), ProtoError> {
        let frame = encode_frame(msg)?;
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        }
        self.out.extend_from_slice(&frame);
        Ok(())
    }

    /// Writes queued output until done or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.out_start < self.out.len() {
            match self.stream.write(&self.out[self.out_start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_start += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        } else if self.out_start > self.out.len() / 2 {
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
        Ok(())
    }

    /// Bytes queued but not yet written.
    pub fn pending_output(&self) -> usize {
        self.out.len() - self.out_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvshare_proto::{SchedulerMsg, read_msg};

    #[test]
    fn reads_credentials_frames_and_writes_queued_output() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut conn = Connection::new(7, ours).unwrap();
        assert_eq!(conn.peer.pid, std::process::id());
        assert_eq!(conn.peer.uid, nix::unistd::getuid().as_raw());

        let frame = encode_frame(&SchedulerMsg::ShuttingDown).unwrap();
        theirs.write_all(&frame[..3]).unwrap();
        let mut scratch = [0u8; 64];
        assert!(matches!(conn.fill(&mut scratch), ReadStatus::Open));
        assert!(conn.next_payload().unwrap().is_none());
        theirs.write_all(&frame[3..]).unwrap();
        conn.fill(&mut scratch);
        assert_eq!(conn.next_payload().unwrap().unwrap(), &frame[4..]);

        conn.queue(&SchedulerMsg::QuantumChanged { quantum_ms: 5 })
            .unwrap();
        assert!(conn.pending_output() > 0);
        conn.flush().unwrap();
        assert_eq!(conn.pending_output(), 0);
        let got: SchedulerMsg = read_msg(&mut theirs).unwrap();
        assert_eq!(got, SchedulerMsg::QuantumChanged { quantum_ms: 5 });

        drop(theirs);
        assert!(matches!(conn.fill(&mut scratch), ReadStatus::Closed));
    }

    #[test]
    fn output_waits_while_the_peer_does_not_read() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut conn = Connection::new(1, ours).unwrap();
        let msg = SchedulerMsg::QuantumChanged { quantum_ms: 1 };
        let frame_len = encode_frame(&msg).unwrap().len();
        let frames = (4 << 20) / frame_len;
        for _ in 0..frames {
            conn.queue(&msg).unwrap();
        }
        conn.flush().unwrap();
        assert!(
            conn.pending_output() > 0,
            "the socket buffer cannot hold 4 MiB"
        );
        drop(theirs);
        assert!(conn.flush().is_err());
    }
}
