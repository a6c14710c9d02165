//! Peers that send garbage, oversized frames or the wrong protocol version
//! get an error reply and are disconnected; the daemon and its other
//! clients carry on.

use crate::support::{Daemon, HookClient, MIB, Notice, PATIENCE, Wire, handshake};
use nvshare_proto::{
    ClientBody, ErrorCode, Hello, HelloReply, MAX_FRAME_LEN, MAX_HELLO_LEN, PROTOCOL_VERSION, Role,
    SchedulerMsg, encode,
};
use std::io::Write;
use std::time::Duration;

/// Sends raw bytes as the first thing on a fresh connection; returns the
/// daemon's refusal and checks that it then closes the connection.
fn refused_hello(daemon: &Daemon, bytes: &[u8]) -> nvshare_proto::ErrorReply {
    let mut wire = Wire::connect(&daemon.socket);
    // The daemon may close before reading everything we send.
    let _ = wire.stream.write_all(bytes);
    let reply = match wire.recv::<HelloReply>(PATIENCE) {
        Ok(HelloReply::Rejected(reply)) => reply,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert!(wire.closed_within(PATIENCE), "connection left open");
    reply
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// A client holding the lock and another waiting, to prove that bad peers
/// do not disturb them.
fn bystanders(daemon: &Daemon) -> (HookClient, HookClient) {
    let mut holder = HookClient::connect_attached(&daemon.socket, "holder", 800 * MIB);
    let waiter = HookClient::connect_attached(&daemon.socket, "waiter", 800 * MIB);
    holder.request();
    holder.wait_grant(PATIENCE).unwrap();
    waiter.request();
    (holder, waiter)
}

/// The bystanders still work: the lock moves between them on request.
fn assert_unharmed(daemon: &mut Daemon, holder: &mut HookClient, waiter: &mut HookClient) {
    assert!(daemon.try_wait().is_none(), "the daemon died");
    holder.release();
    waiter.wait_grant(PATIENCE).unwrap();
    assert!(
        !holder
            .seen
            .iter()
            .any(|n| matches!(n, Notice::Closed | Notice::Error(_))),
        "{:?}",
        holder.seen
    );
    let status = daemon.control().status();
    for name in ["holder", "waiter"] {
        assert!(
            status.gpus[0].clients.iter().any(|c| c.name == name),
            "{name} is gone: {status:?}"
        );
    }
}

#[test]
fn garbage_hello_is_refused() {
    let mut daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let (mut holder, mut waiter) = bystanders(&daemon);

    let refusal = refused_hello(&daemon, &frame(b"\xff\xfe garbage \x00\x01\x02"));
    assert_eq!(refusal.code, ErrorCode::BadVersion);
    assert!(
        refusal
            .message
            .contains("not speaking the nvshare protocol")
    );

    let refusal = refused_hello(&daemon, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(matches!(
        refusal.code,
        ErrorCode::BadFrame | ErrorCode::BadVersion
    ));

    assert_unharmed(&mut daemon, &mut holder, &mut waiter);
}

#[test]
fn oversized_frames_are_refused_before_being_read() {
    let mut daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let (mut holder, mut waiter) = bystanders(&daemon);

    let header = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
    let refusal = refused_hello(&daemon, &header);
    assert_eq!(refusal.code, ErrorCode::BadFrame);
    assert!(
        refusal.message.contains("exceeds the limit"),
        "{}",
        refusal.message
    );

    // Before its hello, a peer may send no frame longer than a hello: the
    // header is refused before anything is buffered for it.
    let header = ((MAX_HELLO_LEN + 1) as u32).to_le_bytes();
    let refusal = refused_hello(&daemon, &header);
    assert_eq!(refusal.code, ErrorCode::BadFrame);
    assert!(
        refusal
            .message
            .contains(&format!("limit of {MAX_HELLO_LEN}")),
        "{}",
        refusal.message
    );

    // A frame of a hello's maximum length that is not a hello: read, then
    // refused.
    let refusal = refused_hello(&daemon, &frame(&vec![7u8; MAX_HELLO_LEN]));
    assert_eq!(refusal.code, ErrorCode::BadVersion);

    assert_unharmed(&mut daemon, &mut holder, &mut waiter);
}

#[test]
fn a_wrong_protocol_version_is_refused_and_named() {
    let mut daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let (mut holder, mut waiter) = bystanders(&daemon);

    let mut hello = Hello::new(Role::Client {
        name: "from-the-future".into(),
        group: None,
    });
    hello.version = PROTOCOL_VERSION + 1;
    let refusal = refused_hello(&daemon, &frame(&encode(&hello).unwrap()));
    assert_eq!(refusal.code, ErrorCode::BadVersion);
    assert!(
        refusal
            .message
            .contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{}",
        refusal.message
    );

    assert_unharmed(&mut daemon, &mut holder, &mut waiter);
}

#[test]
fn garbage_after_the_handshake_is_refused() {
    let mut daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let (mut holder, mut waiter) = bystanders(&daemon);

    // A third client that attaches, then sends a frame that is no message.
    let (mut rogue, _) = handshake(
        &daemon.socket,
        Role::Client {
            name: "rogue".into(),
            group: None,
        },
    );
    rogue.send(&ClientBody::Idle.on(crate::support::GPU));
    rogue.stream.write_all(&frame(&[0xee; 12])).unwrap();
    match rogue.recv::<SchedulerMsg>(PATIENCE) {
        Ok(SchedulerMsg::Error(reply)) => {
            // `Idle` before `Attach` is a protocol error, then the garbage.
            assert_eq!(reply.code, ErrorCode::Protocol);
        }
        other => panic!("expected an error, got {other:?}"),
    }
    match rogue.recv::<SchedulerMsg>(PATIENCE) {
        Ok(SchedulerMsg::Error(reply)) => assert_eq!(reply.code, ErrorCode::BadFrame),
        other => panic!("expected a bad-frame error, got {other:?}"),
    }
    assert!(rogue.closed_within(PATIENCE));
    assert!(daemon.logged("refusing an invalid frame"));

    assert_unharmed(&mut daemon, &mut holder, &mut waiter);
}

#[test]
fn a_peer_that_vanishes_mid_frame_is_dropped() {
    let mut daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let (mut holder, mut waiter) = bystanders(&daemon);
    for cut in [1, 3, 4, 6] {
        let mut wire = Wire::connect(&daemon.socket);
        let bytes = frame(&encode(&Hello::new(Role::Control)).unwrap());
        wire.stream.write_all(&bytes[..cut]).unwrap();
        drop(wire);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_unharmed(&mut daemon, &mut holder, &mut waiter);
}

#[test]
fn a_peer_that_stops_reading_is_disconnected() {
    let mut daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let (mut holder, mut waiter) = bystanders(&daemon);
    // A few more clients make each status reply a few hundred bytes.
    let _crowd: Vec<HookClient> = (0..6)
        .map(|i| HookClient::connect_attached(&daemon.socket, &format!("crowd-{i}"), MIB))
        .collect();
    let mut greedy = daemon.control();
    let reply_len = encode(&greedy.status()).unwrap().len();
    // Ask for far more than the daemon buffers for one peer (4 MiB), and
    // never read the answers.
    let requests = (8 << 20) / reply_len + 1;
    let request = crate::support::frame_of(&nvshare_proto::ControlRequest::Status);
    let burst: Vec<u8> = request.repeat(requests);
    // The daemon may hang up before taking every request.
    let _ = greedy.wire.stream.write_all(&burst);
    assert!(daemon.logged("disconnecting a peer that stopped reading"));
    assert_unharmed(&mut daemon, &mut holder, &mut waiter);
}
