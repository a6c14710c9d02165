//! Fuzz every decoder of outside input: the frame reassembler and each
//! message type the scheduler, hook and nvshare-ctl read off a socket.
//! Invariant: any byte string yields a value or a typed error, never a
//! panic, and whatever decodes re-encodes to a payload that decodes equal.
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
});
