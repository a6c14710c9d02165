//! The plugin binary's exit codes: 1 when it cannot run (with a message
//! saying what to do), 2 for a bad command line.

use crate::common::{Node, PATIENCE};
use std::process::Command;
use std::time::Instant;

#[test]
fn a_file_that_cannot_be_installed_stops_the_plugin_with_code_1() {
    let node = Node::new(&["GPU-a"]);
    let plugin = node.spawn_plugin(&["--install", "/nonexistent/libnvshare.so"]);
    let deadline = Instant::now() + PATIENCE;
    let status = plugin
        .wait_exit(deadline)
        .expect("the plugin exits on its own");
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(node.log_file()).unwrap();
    assert!(
        log.contains("could not install /nonexistent/libnvshare.so"),
        "{log}"
    );
    assert!(!node.plugin_socket().exists(), "it never served");
    assert!(
        !log.contains('\x1b'),
        "no colour codes in a log that is not a terminal: {log:?}"
    );
}

#[test]
fn a_bad_command_line_exits_2() {
    for args in [
        &["--replicas", "0"][..],
        &["--no-such-flag"],
        &["--rescan-interval", "never"],
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_nvshare-device-plugin"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(status.status.code(), Some(2), "{args:?}");
        assert!(!status.stderr.is_empty(), "{args:?} explains itself");
    }
}
