//! The daemon against peers that connect and then do nothing useful: idle
//! connections that never say hello, half-sent frames, one user opening
//! many connections, and the daemon out of file descriptors. Operators and
//! programs that behave must still be served.

use crate::support::{Daemon, PATIENCE};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Raises this test process's own open-file limit (it opens many sockets).
fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// The daemon's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Whether the daemon closed `stream` within `limit` (EOF or reset).
fn closed_within(stream: &UnixStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 64];
    let mut stream = stream;
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => continue, // a refusal frame, then the close
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn connections_that_never_say_hello_are_closed_and_others_served_meanwhile() {
    raise_own_fd_limit();
    let daemon = Daemon::start(&[
        "--hello-timeout",
        "1",
        "--max-connections-per-uid",
        "100000",
    ]);
    // The daemon with the soft and hard limit of a default shell: 256
    // descriptors, far fewer than the idle connections below.
    let limit = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: prlimit with a null old-limit pointer only sets the limit of
    // the process `pid`.
    let set = unsafe {
        libc::prlimit(
            daemon.pid() as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit failed");
    let idle: Vec<UnixStream> = (0..600)
        .filter_map(|_| UnixStream::connect(&daemon.socket).ok())
        .collect();
    assert!(idle.len() > 256, "only {} connections opened", idle.len());
    // An operator and a program are answered within the hello timeout plus
    // a little, though the daemon ran out of descriptors.
    let started = Instant::now();
    let deadline = started + PATIENCE;
    let status = loop {
        match std::panic::catch_unwind(|| daemon.control().status()) {
            Ok(status) => break status,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => panic!("no status within {PATIENCE:?}; log:\n{}", daemon.logs()),
        }
    };
    assert!(status.gpus.is_empty());
    let served_after = started.elapsed();
    let mut client = daemon.client("behaves");
    client.attach(1 << 20);
    // Every idle connection is closed by its deadline.
    for stream in &idle {
        assert!(
            closed_within(stream, Duration::from_secs(5)),
            "an idle connection stayed open"
        );
    }
    eprintln!(
        "idle connections: {}; status answered after {served_after:?}",
        idle.len()
    );
    assert!(daemon.logged("accepting a connection failed"));
}

#[test]
fn half_sent_frames_before_hello_cost_the_daemon_no_memory() {
    raise_own_fd_limit();
    let daemon = Daemon::start(&[
        "--hello-timeout",
        "30",
        "--max-connections-per-uid",
        "100000",
    ]);
    let before = rss_bytes(daemon.pid());
    let mut streams = Vec::new();
    for i in 0..1000 {
        let mut stream = UnixStream::connect(&daemon.socket).unwrap();
        stream.set_nonblocking(true).unwrap();
        // Half the connections announce a 1 MiB frame, the others a frame
        // of a hello's size; both send half of it and stop.
        let announced: u32 = if i % 2 == 0 { 1 << 20 } else { 1000 };
        let _ = stream.write_all(&announced.to_le_bytes());
        let _ = stream.write(&vec![0x5a; announced as usize / 2]);
        streams.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut control = daemon.control();
    control.status();
    let after = rss_bytes(daemon.pid());
    let grown = after.saturating_sub(before);
    eprintln!(
        "daemon RSS {} KiB before, {} KiB after 1000 half-sent frames",
        before / 1024,
        after / 1024
    );
    assert!(
        grown < 32 << 20,
        "the daemon grew by {} MiB for 1000 connections before hello",
        grown >> 20
    );
    // The 1 MiB announcements were refused at their header.
    let refused = streams
        .iter()
        .step_by(2)
        .filter(|s| {
            s.set_nonblocking(false).unwrap();
            closed_within(s, Duration::from_secs(2))
        })
        .count();
    assert_eq!(refused, 500);
}

#[test]
fn one_user_cannot_hold_more_than_its_connections() {
    let daemon = Daemon::start(&["--max-connections-per-uid", "20"]);
    let mut held: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&daemon.socket).unwrap())
        .collect();
    // Give the daemon time to accept them all before the next one.
    std::thread::sleep(Duration::from_millis(200));
    let extra = UnixStream::connect(&daemon.socket).unwrap();
    assert!(
        closed_within(&extra, PATIENCE),
        "a connection past the cap stayed open"
    );
    assert!(daemon.logged("closing its new ones until some close"));
    held.truncate(10);
    std::thread::sleep(Duration::from_millis(200));
    // Back under the cap: served again.
    assert!(daemon.control().status().gpus.is_empty());
}
