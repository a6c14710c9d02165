//! Typed failures of framing and decoding.

use thiserror::Error;

/// Everything that can go wrong reading or writing nvshare frames.
///
/// Every variant is a clean error: no input makes the decoder panic.
#[derive(Debug, Error)]
pub enum ProtoError {
    /// The peer closed the connection at a frame boundary.
    #[error("the peer closed the connection")]
    Closed,
    /// The stream ended in the middle of a frame.
    #[error("truncated frame: expected {expected} bytes, the stream ended after {got}")]
    Truncated {
        /// Bytes the frame header announced (or the header's own length).
        expected: usize,
        /// Bytes actually received.
        got: usize,
    },
    /// A frame header announced more than [`crate::MAX_FRAME_LEN`] bytes.
    #[error(
        "frame of {len} bytes exceeds the limit of {max} bytes; the peer is not an nvshare peer or is broken"
    )]
    Oversized {
        /// Announced payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The first frame did not start with [`crate::MAGIC`].
    #[error("the peer is not speaking the nvshare protocol (bad magic)")]
    BadMagic,
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: the peer speaks version {peer}, this build speaks {ours}; \
         run the same nvshare release for libnvshare.so, nvshare-scheduler and nvshare-ctl"
    )]
    VersionMismatch {
        /// The peer's version.
        peer: u32,
        /// [`crate::PROTOCOL_VERSION`].
        ours: u32,
    },
    /// The payload is not a valid encoding of the expected message.
    #[error("malformed message payload: {0}")]
    BadPayload(#[from] postcard::Error),
    /// A payload decoded but left bytes unread.
    #[error("malformed message payload: {0} trailing bytes")]
    TrailingBytes(usize),
    /// The underlying stream failed.
    #[error("socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtoError {
    /// True when the peer simply went away (closed or reset), as opposed to
    /// sending something invalid.
    pub fn is_disconnect(&self) -> bool {
        match self {
            ProtoError::Closed => true,
            ProtoError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}
