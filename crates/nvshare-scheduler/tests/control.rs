//! Operator requests through the real daemon: status for anyone; quantum
//! and policy changes for root (or the daemon's user) only.

use crate::support::{Daemon, HookClient, MIB, Notice, PATIENCE, open_up};
use nvshare_proto::{
    ClientBody, ClientHostShadows, ControlReply, ControlRequest, ErrorCode, GpuHostShadows, Hello,
    HelloReply, Policy, Role, WaitReason, decode, encode_frame,
};
use std::io::Read;
use std::os::fd::AsRawFd;

#[test]
fn status_reports_the_daemon_gpus_and_clients() {
    let daemon = Daemon::start(&["--memory-capacity", "2GiB", "--quantum", "7"]);
    let mut a = HookClient::connect_attached(&daemon.socket, "alpha", 300 * MIB);
    let _b = HookClient::connect_attached(&daemon.socket, "beta", 300 * MIB);
    a.request();
    a.wait_grant(PATIENCE).unwrap();

    let status = daemon.control().status();
    assert_eq!(status.scheduler_pid, daemon.pid());
    assert_eq!(status.scheduler_version, env!("CARGO_PKG_VERSION"));
    let gpu = &status.gpus[0];
    assert_eq!(gpu.uuid, crate::support::GPU);
    assert_eq!(gpu.capacity, 2 << 30);
    assert_eq!(gpu.quantum_ms, 7_000);
    assert_eq!(gpu.policy, Policy::Auto);
    let names: Vec<&str> = gpu.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    // Peer pids come from SO_PEERCRED: the test process itself.
    assert!(gpu.clients.iter().all(|c| c.pid == std::process::id()));
}

/// What the next program waits for, through the real daemon: the holder's
/// quantum, then nothing once it is granted (the drain and the other
/// reasons: the policy's tests).
#[test]
fn waits_say_what_the_next_program_waits_for() {
    let daemon = Daemon::start(&["--memory-capacity", "512MiB", "--quantum", "1"]);
    let mut a = HookClient::connect_attached(&daemon.socket, "alpha", 300 * MIB);
    let mut b = HookClient::connect_attached(&daemon.socket, "beta", 300 * MIB);
    a.request();
    a.wait_grant(PATIENCE).unwrap();
    let mut control = daemon.control();
    let waits =
        |control: &mut crate::support::Control| match control.request(&ControlRequest::Waits) {
            ControlReply::Waits(waits) => waits,
            other => panic!("expected waits, got {other:?}"),
        };
    assert_eq!(waits(&mut control), vec![], "nobody waits");
    b.request();
    let deadline = std::time::Instant::now() + PATIENCE;
    let first = loop {
        let now = waits(&mut control);
        if !now.is_empty() || std::time::Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].next, b.id);
    assert!(
        matches!(first[0].reason, WaitReason::Quantum { holder, remaining_ms }
            if holder == a.id && remaining_ms <= 1000),
        "{first:?}"
    );
    // alpha's quantum ends; it gives the GPU back (the test client answers
    // the drop at once) and beta no longer waits.
    a.wait_drop(PATIENCE).unwrap();
    b.wait_grant(PATIENCE).unwrap();
    assert_eq!(waits(&mut control), vec![]);
}

/// The host shadows each client reports are answered per client and
/// totalled per GPU, and a client that leaves takes its share away.
#[test]
fn host_shadows_are_reported_per_client_and_per_gpu() {
    let daemon = Daemon::start(&["--memory-capacity", "2GiB"]);
    let a = HookClient::connect_attached(&daemon.socket, "alpha", 300 * MIB);
    let b = HookClient::connect_attached(&daemon.socket, "beta", 300 * MIB);
    a.send(
        &ClientBody::HostShadows {
            pinned: 64 * MIB,
            pageable: 0,
        }
        .on(crate::support::GPU),
    );
    b.send(
        &ClientBody::HostShadows {
            pinned: 16 * MIB,
            pageable: 8 * MIB,
        }
        .on(crate::support::GPU),
    );
    let mut control = daemon.control();
    let expected = GpuHostShadows {
        uuid: crate::support::GPU,
        pinned: 80 * MIB,
        pageable: 8 * MIB,
        clients: vec![
            ClientHostShadows {
                client_id: a.id,
                pinned: 64 * MIB,
                pageable: 0,
            },
            ClientHostShadows {
                client_id: b.id,
                pinned: 16 * MIB,
                pageable: 8 * MIB,
            },
        ],
    };
    let host = |control: &mut crate::support::Control| match control
        .request(&ControlRequest::HostShadows)
    {
        ControlReply::HostShadows(gpus) => gpus,
        other => panic!("expected host shadows, got {other:?}"),
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while host(&mut control) != vec![expected.clone()] && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(host(&mut control), vec![expected]);
    drop(a);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let gpus = host(&mut control);
        if gpus[0].clients.len() == 1 {
            assert_eq!((gpus[0].pinned, gpus[0].pageable), (16 * MIB, 8 * MIB));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alpha never left: {gpus:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn root_sets_the_quantum_and_policy_and_clients_hear_of_it() {
    let daemon = Daemon::start(&["--memory-capacity", "2GiB"]);
    let mut client = HookClient::connect_attached(&daemon.socket, "job", 100 * MIB);
    let mut control = daemon.control();

    assert_eq!(
        control.request(&ControlRequest::SetQuantum { quantum_ms: 5_000 }),
        ControlReply::Done
    );
    assert!(
        client
            .wait_for(PATIENCE, |n| matches!(n, Notice::QuantumChanged(5_000)))
            .is_some()
    );
    assert_eq!(
        control.request(&ControlRequest::SetPolicy {
            policy: Policy::Exclusive
        }),
        ControlReply::Done
    );
    let gpu = &control.status().gpus[0];
    assert_eq!((gpu.quantum_ms, gpu.policy), (5_000, Policy::Exclusive));

    match control.request(&ControlRequest::SetQuantum { quantum_ms: 0 }) {
        ControlReply::Error(reply) => assert_eq!(reply.code, ErrorCode::InvalidArgument),
        other => panic!("a zero quantum was accepted: {other:?}"),
    }
}

/// The uid of `nobody`, which the unprivileged peer becomes.
const NOBODY: u32 = 65534;

#[test]
fn an_unprivileged_user_may_not_change_settings() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED an_unprivileged_user_may_not_change_settings: it needs root to run a peer \
             as another uid (the permission rule itself is unit-tested in server::control)"
        );
        return;
    }
    let daemon = Daemon::start(&["--socket-group", &NOBODY.to_string()]);
    open_up(daemon.dir.path());

    let replies = exchange_as_nobody(
        &daemon.socket,
        &[
            encode_frame(&Hello::new(Role::Control)).unwrap(),
            encode_frame(&ControlRequest::SetQuantum { quantum_ms: 1 }).unwrap(),
            encode_frame(&ControlRequest::SetPolicy {
                policy: Policy::Off,
            })
            .unwrap(),
            encode_frame(&ControlRequest::Status).unwrap(),
        ],
    );
    assert!(matches!(
        decode::<HelloReply>(&replies[0]).unwrap(),
        HelloReply::Accepted { .. }
    ));
    for refused in &replies[1..3] {
        match decode::<ControlReply>(refused).unwrap() {
            ControlReply::Error(reply) => {
                assert_eq!(reply.code, ErrorCode::PermissionDenied);
                assert!(reply.message.contains("only root"), "{}", reply.message);
                assert!(reply.message.contains(&format!("uid {NOBODY}")));
            }
            other => panic!("an unprivileged change was not refused: {other:?}"),
        }
    }
    // Reading the status is for everyone.
    assert!(matches!(
        decode::<ControlReply>(&replies[3]).unwrap(),
        ControlReply::Status(_)
    ));
    assert!(daemon.logged("refused an unprivileged request"));
    // Nothing changed: a root client still sees the defaults.
    let mut client = HookClient::connect_attached(&daemon.socket, "job", MIB);
    assert_eq!(client.quantum_ms, 30_000);
    assert!(
        client
            .wait_for(std::time::Duration::from_millis(100), |_| true)
            .is_none()
    );
}

/// Connects to `socket` from a child process running as `nobody`, sends
/// `frames`, and returns one reply payload per frame.
fn exchange_as_nobody(socket: &std::path::Path, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    // Everything the child needs is prepared here: after fork it makes raw
    // system calls only, no allocation.
    let request: Vec<u8> = frames.concat();
    let expected = frames.len();
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = socket.as_os_str().as_bytes();
    assert!(path.len() < addr.sun_path.len());
    for (slot, byte) in addr.sun_path.iter_mut().zip(path) {
        *slot = *byte as libc::c_char;
    }
    let (pipe_read, pipe_write) = nix::unistd::pipe().unwrap();
    let mut reply = [0u8; 8192];

    // SAFETY: the child runs only async-signal-safe raw system calls on
    // memory prepared before the fork, then `_exit`s.
    match unsafe { nix::unistd::fork() }.unwrap() {
        // SAFETY: as above: raw system calls on memory prepared before the
        // fork, each checked, then `_exit`.
        nix::unistd::ForkResult::Child => unsafe {
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                || libc::syscall(libc::SYS_setgid, NOBODY) != 0
                || libc::syscall(libc::SYS_setuid, NOBODY) != 0
            {
                fail(10);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if fd < 0 || libc::connect(fd, (&raw const addr).cast(), len) != 0 {
                fail(11);
            }
            if libc::write(fd, request.as_ptr().cast(), request.len()) != request.len() as isize {
                fail(12);
            }
            // Read until `expected` complete frames have arrived.
            let mut got = 0usize;
            loop {
                let mut offset = 0usize;
                let mut frames = 0usize;
                while offset + 4 <= got {
                    let len = u32::from_le_bytes([
                        reply[offset],
                        reply[offset + 1],
                        reply[offset + 2],
                        reply[offset + 3],
                    ]) as usize;
                    if offset + 4 + len > got {
                        break;
                    }
                    offset += 4 + len;
                    frames += 1;
                }
                if frames >= expected {
                    break;
                }
                let n = libc::read(fd, reply.as_mut_ptr().add(got).cast(), reply.len() - got);
                if n <= 0 {
                    fail(13);
                }
                got += n as usize;
            }
            libc::write(pipe_write.as_raw_fd(), reply.as_ptr().cast(), got);
            libc::_exit(0);
        },
        nix::unistd::ForkResult::Parent { child } => {
            drop(pipe_write);
            let mut bytes = Vec::new();
            std::fs::File::from(pipe_read)
                .read_to_end(&mut bytes)
                .unwrap();
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(
                status,
                nix::sys::wait::WaitStatus::Exited(child, 0),
                "the unprivileged peer failed (10: setuid, 11: connect, 12: write, 13: read)"
            );
            let mut frames = nvshare_proto::FrameBuffer::new();
            frames.extend(&bytes);
            let mut replies = Vec::new();
            while let Some(payload) = frames.next_payload().unwrap() {
                replies.push(payload.to_vec());
            }
            assert_eq!(replies.len(), expected);
            replies
        }
    }
}

/// Ends the forked child with `code` (what failed).
fn fail(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and is async-signal-safe.
    unsafe { libc::_exit(code) }
}
