//! Fuzz every decoder of outside input: the frame reassembler and each
//! message type the scheduler, hook and nvshare-ctl read off a socket, and
//! the scheduler's path before a peer has said hello.
//! Invariants: any byte string yields a value or a typed error, never a
//! panic, and whatever decodes re-encodes to a payload that decodes equal;
//! before hello nothing past one hello-sized frame is ever buffered, and a
//! first frame that is not a hello ends the conversation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvshare_proto::*;

fn check<T>(payload: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(msg) = decode::<T>(payload) {
        let again = encode(&msg).expect("a decoded message re-encodes");
        assert_eq!(decode::<T>(&again).expect("re-encoded decodes"), msg);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buffer = FrameBuffer::new();
    buffer.extend(data);
    while let Ok(Some(payload)) = buffer.next_payload() {
        let payload = payload.to_vec();
        let _ = decode_hello(&payload);
        check::<HelloReply>(&payload);
        check::<ClientMsg>(&payload);
        check::<SchedulerMsg>(&payload);
        check::<ControlRequest>(&payload);
        check::<ControlReply>(&payload);
    }
    let _ = read_payload(&mut { data });
    pre_hello(data);
});

/// The scheduler's read path for a new peer: room for one hello-sized
/// frame, filled as the socket delivers (the first byte of the input sets
/// the piece size); the hello decided first; requests only after it.
fn pre_hello(data: &[u8]) {
    let Some((&piece, mut rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut frames = FrameBuffer::with_limit(MAX_HELLO_LEN);
    let mut said_hello = false;
    while !rest.is_empty() {
        let room = frames.capacity().saturating_sub(frames.pending());
        let take = room.min(piece).min(rest.len());
        if take == 0 && !said_hello {
            // A whole frame of hello size is buffered and is no hello.
            assert!(frames.pending() <= HEADER_LEN + MAX_HELLO_LEN);
            return;
        }
        frames.extend(&rest[..take]);
        rest = &rest[take..];
        if !said_hello {
            assert!(frames.pending() <= HEADER_LEN + MAX_HELLO_LEN);
        }
        loop {
            match frames.next_payload() {
                Ok(Some(payload)) if !said_hello => {
                    if decode_hello(payload).is_err() {
                        return;
                    }
                    said_hello = true;
                }
                Ok(Some(payload)) => {
                    let payload = payload.to_vec();
                    check::<ClientMsg>(&payload);
                    check::<ControlRequest>(&payload);
                }
                Ok(None) => break,
                Err(_) => return,
            }
            if said_hello {
                frames.set_limit(MAX_REQUEST_LEN);
            }
        }
        if take == 0 {
            return;
        }
    }
}
