//! A framed, blocking connection to the daemon with receive timeouts, and
//! the handshake.

use nvshare_proto::{FrameBuffer, Hello, HelloReply, Role, SchedulerMsg, decode, encode_frame};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::PATIENCE;

/// A framed, blocking connection with receive timeouts.
pub struct Wire {
    pub stream: UnixStream,
    frames: FrameBuffer,
}

/// Why a receive returned nothing.
#[derive(Debug)]
pub enum RecvError {
    Timeout,
    /// The daemon closed the connection (EOF or reset).
    Closed,
    Other(String),
}

impl Wire {
    pub fn connect(socket: &Path) -> Wire {
        Wire {
            stream: UnixStream::connect(socket).unwrap(),
            frames: FrameBuffer::new(),
        }
    }

    pub fn send<T: Serialize>(&mut self, msg: &T) {
        self.stream.write_all(&encode_frame(msg).unwrap()).unwrap();
    }

    /// Receives one message within `limit`.
    pub fn recv<T: DeserializeOwned>(&mut self, limit: Duration) -> Result<T, RecvError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(payload) = self
                .frames
                .next_payload()
                .map_err(|e| RecvError::Other(e.to_string()))?
            {
                return decode(payload).map_err(|e| RecvError::Other(e.to_string()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => self.frames.extend(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(RecvError::Closed);
                }
                Err(e) => return Err(RecvError::Other(e.to_string())),
            }
        }
    }

    /// True if the daemon closes the connection within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.recv::<SchedulerMsg>(Duration::from_millis(100)) {
                Err(RecvError::Closed) => return true,
                Err(RecvError::Timeout) => {}
                _ => {}
            }
        }
        false
    }
}

/// Performs the handshake for `role`; returns the connection and its id.
pub fn handshake(socket: &Path, role: Role) -> (Wire, u64) {
    let mut wire = Wire::connect(socket);
    wire.send(&Hello::new(role));
    match wire.recv::<HelloReply>(PATIENCE).unwrap() {
        HelloReply::Accepted { client_id, .. } => (wire, client_id),
        other => panic!("handshake refused: {other:?}"),
    }
}

/// `msg` as one complete frame.
pub fn frame_of<T: Serialize>(msg: &T) -> Vec<u8> {
    encode_frame(msg).unwrap()
}
