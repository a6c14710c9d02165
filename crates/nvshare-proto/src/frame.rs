//! The wire format: a little-endian `u32` payload length, then a postcard
//! payload of at most [`MAX_FRAME_LEN`] bytes.

use crate::error::ProtoError;
use crate::messages::Hello;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};

/// Bytes of the length header in front of each payload.
pub const HEADER_LEN: usize = 4;

/// The largest payload accepted. A status report of a thousand clients fits
/// comfortably; anything larger is a broken or hostile peer.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// The largest [`Hello`] payload accepted: a peer that has not said who it is
/// gets no more buffer than that (job names and groups are cut to fit, see
/// [`crate::MAX_HELLO_TEXT`]).
pub const MAX_HELLO_LEN: usize = 1 << 10;

/// The largest payload a peer that has said hello may send the scheduler:
/// every client message and control request is far smaller. (The
/// scheduler's answers, a status report among them, may use
/// [`MAX_FRAME_LEN`].)
pub const MAX_REQUEST_LEN: usize = 64 << 10;

/// Encodes `msg` as a payload (no header).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    Ok(postcard::to_stdvec(msg)?)
}

/// Encodes `msg` as a complete frame: header then payload.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    let mut frame = postcard::to_extend(msg, vec![0u8; HEADER_LEN])?;
    let len = frame.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(ProtoError::Oversized {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    frame[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(frame)
}

/// Decodes one payload as a `T`, refusing trailing bytes.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtoError> {
    let (msg, rest) = postcard::take_from_bytes::<T>(payload)?;
    if !rest.is_empty() {
        return Err(ProtoError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Decodes a [`Hello`] payload, reporting a wrong magic or version as such
/// even when the rest of the message is laid out differently.
pub fn decode_hello(payload: &[u8]) -> Result<Hello, ProtoError> {
    let (magic, rest) =
        postcard::take_from_bytes::<[u8; 4]>(payload).map_err(|_| ProtoError::BadMagic)?;
    if magic != crate::MAGIC {
        return Err(ProtoError::BadMagic);
    }
    let (version, _) = postcard::take_from_bytes::<u32>(rest)?;
    if version != crate::PROTOCOL_VERSION {
        return Err(ProtoError::VersionMismatch {
            peer: version,
            ours: crate::PROTOCOL_VERSION,
        });
    }
    decode(payload)
}

/// Writes `msg` as one frame, in a single `write_all`.
pub fn write_msg<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), ProtoError> {
    let frame = encode_frame(msg)?;
    w.write_all(&frame)?;
    Ok(())
}

/// Reads one frame's payload from a blocking stream.
pub fn read_payload<R: Read>(r: &mut R) -> Result<Vec<u8>, ProtoError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Err(ProtoError::Closed);
    }
    if got < HEADER_LEN {
        return Err(ProtoError::Truncated {
            expected: HEADER_LEN,
            got,
        });
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(ProtoError::Oversized {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut payload = vec![0u8; len];
    let got = read_full(r, &mut payload)?;
    if got < len {
        return Err(ProtoError::Truncated { expected: len, got });
    }
    Ok(payload)
}

/// Reads and decodes one frame from a blocking stream.
pub fn read_msg<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, ProtoError> {
    decode(&read_payload(r)?)
}

/// Fills `buf` unless the stream ends first; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, ProtoError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

/// Reassembles frames from bytes that arrive in arbitrary pieces (a
/// non-blocking socket). Headers announcing more than the buffer's limit
/// are refused as soon as they arrive, before any payload is buffered.
#[derive(Debug)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    limit: usize,
}

impl Default for FrameBuffer {
    fn default() -> Self {
        Self::with_limit(MAX_FRAME_LEN)
    }
}

impl FrameBuffer {
    /// An empty buffer taking payloads of up to [`MAX_FRAME_LEN`] bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer taking payloads of up to `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        FrameBuffer {
            buf: Vec::new(),
            start: 0,
            limit: limit.min(MAX_FRAME_LEN),
        }
    }

    /// Changes the largest payload taken from here on.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(MAX_FRAME_LEN);
    }

    /// The most bytes worth buffering: one whole frame of the limit. What a
    /// peer sends beyond it can wait in the socket until a frame is taken.
    pub fn capacity(&self) -> usize {
        HEADER_LEN + self.limit
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the next complete payload, if one has arrived.
    pub fn next_payload(&mut self) -> Result<Option<&[u8]>, ProtoError> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            self.compact();
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&avail[..HEADER_LEN]);
        let len = u32::from_le_bytes(header) as usize;
        if len > self.limit {
            return Err(ProtoError::Oversized {
                len,
                max: self.limit,
            });
        }
        if avail.len() < HEADER_LEN + len {
            self.compact();
            return Ok(None);
        }
        let begin = self.start + HEADER_LEN;
        self.start = begin + len;
        Ok(Some(&self.buf[begin..begin + len]))
    }

    /// Drops consumed bytes so the buffer does not grow without bound.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limited_buffer_refuses_a_header_past_its_limit_at_once() {
        let mut frames = FrameBuffer::with_limit(MAX_HELLO_LEN);
        frames.extend(&((MAX_HELLO_LEN + 1) as u32).to_le_bytes());
        assert!(matches!(
            frames.next_payload(),
            Err(ProtoError::Oversized {
                max: MAX_HELLO_LEN,
                ..
            })
        ));
        let mut frames = FrameBuffer::with_limit(MAX_HELLO_LEN);
        let hello = encode_frame(&Hello::new(crate::Role::Control)).unwrap();
        frames.extend(&hello);
        assert!(frames.next_payload().unwrap().is_some());
        frames.set_limit(MAX_REQUEST_LEN);
        assert_eq!(frames.capacity(), HEADER_LEN + MAX_REQUEST_LEN);
    }
    use crate::messages::*;
    use crate::{GpuUuid, MAGIC};

    #[test]
    fn frame_round_trip_blocking() {
        let msg = ClientBody::RequestLock.on(GpuUuid([7; 16]));
        let mut wire = Vec::new();
        write_msg(&mut wire, &msg).unwrap();
        let back: ClientMsg = read_msg(&mut wire.as_slice()).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn empty_stream_is_closed_and_partial_header_truncated() {
        let empty: &[u8] = &[];
        assert!(matches!(
            read_payload(&mut { empty }),
            Err(ProtoError::Closed)
        ));
        let partial: &[u8] = &[1, 0];
        assert!(matches!(
            read_payload(&mut { partial }),
            Err(ProtoError::Truncated {
                expected: 4,
                got: 2
            })
        ));
    }

    #[test]
    fn oversized_header_is_refused_before_reading_payload() {
        let header = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_payload(&mut header.as_slice()),
            Err(ProtoError::Oversized { .. })
        ));
        let mut buffer = FrameBuffer::new();
        buffer.extend(&u32::MAX.to_le_bytes());
        assert!(matches!(
            buffer.next_payload(),
            Err(ProtoError::Oversized { .. })
        ));
    }

    #[test]
    fn truncated_payload_is_reported() {
        let mut wire = encode_frame(&ControlRequest::Status).unwrap();
        wire.extend_from_slice(&10u32.to_le_bytes());
        wire.extend_from_slice(&[1, 2, 3]);
        let mut reader = wire.as_slice();
        let _: ControlRequest = read_msg(&mut reader).unwrap();
        assert!(matches!(
            read_payload(&mut reader),
            Err(ProtoError::Truncated {
                expected: 10,
                got: 3
            })
        ));
    }

    #[test]
    fn hello_version_mismatch_is_named() {
        let mut hello = Hello::new(Role::Control);
        hello.version = 99;
        let payload = encode(&hello).unwrap();
        assert!(matches!(
            decode_hello(&payload),
            Err(ProtoError::VersionMismatch { peer: 99, .. })
        ));
        let mut bad = encode(&Hello::new(Role::Control)).unwrap();
        bad[0] = b'X';
        assert!(matches!(decode_hello(&bad), Err(ProtoError::BadMagic)));
        assert_eq!(
            decode_hello(&encode(&Hello::new(Role::Control)).unwrap())
                .unwrap()
                .magic,
            MAGIC
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut payload = encode(&ControlRequest::Status).unwrap();
        payload.push(0);
        assert!(matches!(
            decode::<ControlRequest>(&payload),
            Err(ProtoError::TrailingBytes(1))
        ));
    }

    #[test]
    fn frame_buffer_reassembles_byte_by_byte() {
        let msgs = vec![
            SchedulerBody::LockGranted { room: 4 << 30 }.on(GpuUuid([1; 16])),
            SchedulerBody::DropLock {
                evict_bytes: 12 << 30,
            }
            .on(GpuUuid([2; 16])),
            SchedulerMsg::ShuttingDown,
        ];
        let wire: Vec<u8> = msgs.iter().flat_map(|m| encode_frame(m).unwrap()).collect();
        let mut buffer = FrameBuffer::new();
        let mut out = Vec::new();
        for byte in wire {
            buffer.extend(&[byte]);
            while let Some(payload) = buffer.next_payload().unwrap() {
                out.push(decode::<SchedulerMsg>(payload).unwrap());
            }
        }
        assert_eq!(out, msgs);
        assert_eq!(buffer.pending(), 0);
    }
}
