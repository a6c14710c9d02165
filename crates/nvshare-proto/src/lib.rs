//! Messages and framing shared by `libnvshare.so`, `nvshare-scheduler` and
//! `nvshare-ctl`.
//!
//! No sockets and no threads live here: only types and their encoding over
//! byte streams, so that every side speaks exactly the same protocol.
//!
//! # Layout
//! - [`gpu`]: [`GpuUuid`], the identity of one physical GPU (one scheduling
//!   domain).
//! - [`messages`]: every message of the three conversations: the [`Hello`]
//!   handshake, hook client ⇄ scheduler ([`ClientMsg`], [`SchedulerMsg`]) and
//!   operator ⇄ scheduler ([`ControlRequest`], [`ControlReply`]).
//! - [`frame`]: the wire format. Each frame is a little-endian `u32` payload
//!   length followed by a postcard payload of at most [`MAX_FRAME_LEN`] bytes;
//!   blocking helpers ([`write_msg`], [`read_msg`]) and an incremental
//!   [`FrameBuffer`] for non-blocking readers.
//! - [`error`]: [`ProtoError`], the typed failures of decoding and framing.
//! - [`env`]: the environment variables nvshare reads, and the log filter
//!   rule every program shares.
//! - [`socket`]: the socket path every side agrees on.
//! - [`units`]: sizes and durations as people write and read them.
//!
//! # The conversation
//! 1. The connecting side sends [`Hello`] (magic, [`PROTOCOL_VERSION`], role).
//!    The scheduler answers [`HelloReply`]; on a version mismatch it answers
//!    [`HelloReply::Rejected`] and closes.
//! 2. A hook client then attaches to each GPU it uses ([`ClientBody::Attach`]
//!    → [`SchedulerBody::Welcome`]), reports its memory use, asks for the lock
//!    and follows the scheduler's drop and evict requests.
//! 3. A control client sends [`ControlRequest`]s, each answered by one
//!    [`ControlReply`].

pub mod env;
pub mod error;
pub mod frame;
pub mod gpu;
pub mod messages;
pub mod socket;
pub mod units;

pub use error::ProtoError;
pub use frame::{
    FrameBuffer, HEADER_LEN, MAX_FRAME_LEN, MAX_HELLO_LEN, MAX_REQUEST_LEN, decode, decode_hello,
    encode, encode_frame, read_msg, read_payload, write_msg,
};
pub use gpu::{GpuSelector, GpuUuid};
pub use messages::*;

/// The protocol version this build speaks. Peers must match exactly: the hook,
/// the scheduler and `nvshare-ctl` are released together.
///
/// 2: holders reserve room before growing (`Reserve`, `Reserved`, the room in
/// `LockGranted`).
///
/// 3: host shadow reports (`HostShadows`), and memory moves overlap
/// (`Evicting` progress, `Fetch`/`Fetched`: the next program's restore
/// starts while the last one's eviction frees memory). New messages are
/// appended to their enums, so every earlier message keeps its encoding.
///
/// 4: every GPU message is an envelope naming the GPU once
/// ([`ClientMsg`] `{gpu, body}`, [`SchedulerMsg::Gpu`]).
///
/// 5: per-job settings (`JobSettings`: memory limit, priority, weight, also
/// in each [`ClientStatus`]), per-GPU settings and the GPUs found at start
/// (`SetGpuQuantum`, `SetGpuPolicy`, `Inventory`).
pub const PROTOCOL_VERSION: u32 = 5;

/// First four bytes of every [`Hello`]: tells an nvshare peer from anything
/// else that connects to the socket.
pub const MAGIC: [u8; 4] = *b"NVSH";

/// The most bytes of a job name or group a hook puts in its [`Hello`], so
/// that the hello fits [`MAX_HELLO_LEN`] (the scheduler keeps fewer still).
pub const MAX_HELLO_TEXT: usize = 256;

/// `text` cut to at most [`MAX_HELLO_TEXT`] bytes, at a character boundary.
pub fn hello_text(text: &str) -> String {
    let mut end = text.len().min(MAX_HELLO_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
