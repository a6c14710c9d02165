//! The daemon's life: socket creation, a stale socket replaced and a live
//! one refused, systemd readiness, and a clean exit on SIGTERM/SIGINT.

use crate::support::{Daemon, HookClient, MIB, Notice, PATIENCE, spawn_daemon, wait_exit};
use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;

#[test]
fn the_socket_is_created_0660_in_a_new_directory() {
    let daemon = Daemon::start(&[]);
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    let dir = daemon.socket.parent().unwrap();
    let dir_mode = std::fs::metadata(dir).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o755);
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("scheduler.sock");
    // A socket file nobody listens on, as a crashed daemon leaves it.
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let daemon = Daemon::start_at(dir, socket, &[]);
    let _client = HookClient::connect_attached(&daemon.socket, "after-crash", MIB);
    assert!(daemon.logged("replacing the stale socket"));
}

#[test]
fn a_live_socket_is_not_taken_over() {
    let mut first = Daemon::start(&[]);
    let log = first.dir.path().join("second.log");
    let mut second = spawn_daemon(&first.socket, &[], &log, None);
    let status = wait_exit(&mut second, PATIENCE).expect("the second daemon kept running");
    assert_eq!(status.code(), Some(1));
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(
        message.contains("already listening on") && message.contains("--socket"),
        "{message}"
    );
    // The first daemon still serves.
    assert!(first.try_wait().is_none());
    let _client = HookClient::connect_attached(&first.socket, "still-served", MIB);
}

#[test]
fn sigterm_tells_clients_removes_the_socket_and_exits_0() {
    let mut daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let mut holder = HookClient::connect_attached(&daemon.socket, "holder", 800 * MIB);
    let mut waiter = HookClient::connect_attached(&daemon.socket, "waiter", 800 * MIB);
    holder.request();
    holder.wait_grant(PATIENCE).unwrap();
    waiter.request();

    let status = daemon.stop_with(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.logs());
    for client in [&mut holder, &mut waiter] {
        assert!(
            client
                .wait_for(PATIENCE, |n| matches!(n, Notice::ShuttingDown))
                .is_some(),
            "no ShuttingDown: {:?}",
            client.seen
        );
        assert!(
            client
                .wait_for(PATIENCE, |n| matches!(n, Notice::Closed))
                .is_some()
        );
    }
    assert!(!daemon.socket.exists(), "the socket file was left behind");
    assert!(daemon.logged("shutting down"));
}

#[test]
fn sigint_exits_0_too() {
    let mut daemon = Daemon::start(&[]);
    let status = daemon.stop_with(Signal::SIGINT);
    assert_eq!(status.code(), Some(0));
    assert!(!daemon.socket.exists());
}

#[test]
fn a_bad_command_line_exits_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut child = spawn_daemon(
        &dir.path().join("s.sock"),
        &["--memory-capacity", "lots"],
        &log,
        None,
    );
    let status = wait_exit(&mut child, PATIENCE).unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("invalid size")
    );
}
