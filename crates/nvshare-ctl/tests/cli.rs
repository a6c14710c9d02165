//! Runs the real `nvshare-ctl` binary against a missing socket and against a
//! small protocol-speaking server in this test, checking what it sends,
//! prints and exits with.

use nvshare_proto::{
    ClientHostShadows, ClientState, ClientStatus, ControlReply, ControlRequest, ErrorCode,
    ErrorReply, GpuHostShadows, GpuInfo, GpuStatus, GpuUuid, HelloReply, Inventory, Policy, Role,
    StatusReport, decode, decode_hello, read_payload, write_msg,
};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

fn nvshare_ctl(socket: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nvshare-ctl"));
    cmd.args(args)
        .env_remove("NVSHARE_SOCK")
        .env_remove("NVSHARE_DEBUG");
    if let Some(socket) = socket {
        cmd.env("NVSHARE_SOCK", socket);
    }
    cmd.output().expect("nvshare-ctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn report() -> StatusReport {
    StatusReport {
        scheduler_pid: 4321,
        scheduler_version: "9.9.9".into(),
        uptime_s: 61,
        gpus: vec![GpuStatus {
            uuid: GpuUuid([0xab; 16]),
            physical_memory: 80 << 30,
            capacity: 10 << 30,
            policy: Policy::Exclusive,
            quantum_ms: 30_000,
            resident: 6 << 30,
            grants: 5,
            switches: 2,
            bytes_evicted: 3 << 30,
            bytes_restored: 1 << 30,
            swap_time_us: 90_000,
            clients: vec![ClientStatus {
                client_id: 17,
                pid: 999,
                name: "resnet".into(),
                state: ClientState::Releasing,
                footprint: 8 << 30,
                resident: 6 << 30,
                held_ms: 2_500,
                grants: 3,
                memory_limit: Some(12 << 30),
                priority: 2,
                weight: 3,
                waiting_ms: 0,
            }],
        }],
    }
}

/// A server speaking the scheduler's control protocol on a temporary
/// socket: it answers `Status` with [`report`], refuses `SetPolicy { Off }`
/// and accepts the rest, and reports every request it got.
struct FakeScheduler {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    requests: Receiver<ControlRequest>,
}

impl FakeScheduler {
    fn start() -> Self {
        Self::start_reporting(true)
    }

    /// As [`FakeScheduler::start`]; without `host_shadows` it refuses
    /// `HostShadows` as a scheduler that does not know it would.
    fn start_reporting(host_shadows: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("scheduler.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (tx, requests) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let hello = decode_hello(&read_payload(&mut stream).unwrap()).unwrap();
                assert_eq!(hello.role, Role::Control);
                let accepted = HelloReply::Accepted {
                    client_id: 1,
                    version: hello.version,
                };
                write_msg(&mut stream, &accepted).unwrap();
                while let Ok(payload) = read_payload(&mut stream) {
                    let request: ControlRequest = decode(&payload).unwrap();
                    let reply = match request {
                        ControlRequest::Status => ControlReply::Status(report()),
                        ControlRequest::HostShadows if host_shadows => {
                            ControlReply::HostShadows(vec![GpuHostShadows {
                                uuid: GpuUuid([0xab; 16]),
                                pinned: 2 << 30,
                                pageable: 0,
                                clients: vec![ClientHostShadows {
                                    client_id: 17,
                                    pinned: 2 << 30,
                                    pageable: 0,
                                }],
                            }])
                        }
                        ControlRequest::Inventory if host_shadows => {
                            ControlReply::Inventory(Inventory {
                                unavailable: None,
                                gpus: vec![GpuInfo {
                                    index: 3,
                                    uuid: GpuUuid([0xab; 16]),
                                    name: "NVIDIA H100 80GB HBM3".into(),
                                    memory: 80 << 30,
                                    xids: 2,
                                    last_xid: Some(79),
                                }],
                            })
                        }
                        ControlRequest::HostShadows | ControlRequest::Inventory => {
                            ControlReply::Error(ErrorReply {
                                code: ErrorCode::BadFrame,
                                message: "unknown request".into(),
                            })
                        }
                        ControlRequest::SetPolicy {
                            policy: Policy::Off,
                        } => ControlReply::Error(ErrorReply {
                            code: ErrorCode::PermissionDenied,
                            message: "changing settings needs root or the scheduler's user".into(),
                        }),
                        _ => ControlReply::Done,
                    };
                    let _ = tx.send(request);
                    write_msg(&mut stream, &reply).unwrap();
                }
            }
        });
        FakeScheduler {
            _dir: dir,
            socket,
            requests,
        }
    }

    /// Every request received so far.
    fn received(&self) -> Vec<ControlRequest> {
        // The binary has exited, so its requests were all answered.
        let mut got = Vec::new();
        while let Ok(r) = self.requests.recv_timeout(Duration::from_millis(200)) {
            got.push(r);
        }
        got
    }
}

#[test]
fn a_missing_daemon_is_one_line_naming_the_socket_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody-listens.sock");
    for args in [
        &["status"][..],
        &["-T", "5"],
        &["--socket", socket.to_str().unwrap()],
    ] {
        let out = nvshare_ctl(Some(&socket), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "nvshare-ctl: cannot reach the nvshare scheduler at {}: ",
                socket.display()
            )),
            "{stderr}"
        );
        assert!(
            stderr.trim_end().ends_with("is nvshare-scheduler running?"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn status_prints_tables() {
    let fake = FakeScheduler::start();
    let out = nvshare_ctl(Some(&fake.socket), &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("nvshare-scheduler 9.9.9, pid 4321, up 1m 01s\n"),
        "{stdout}"
    );
    assert!(stdout.contains(&GpuUuid([0xab; 16]).to_string()));
    assert!(stdout.contains("capacity 10.0 GiB"));
    assert!(stdout.contains("policy exclusive"));
    assert!(
        stdout.contains(&format!(
            "GPU 3 (NVIDIA H100 80GB HBM3)  {}",
            GpuUuid([0xab; 16])
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("health: 2 critical XID error(s), the last XID 79"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.contains("resnet"))
        .expect("a row per program");
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "17",
            "999",
            "resnet",
            "releasing",
            "8.0 GiB",
            "6.0 GiB",
            "2.0 GiB",
            "2.5 s",
            "3",
            "2.0 GiB",
            "12.0 GiB",
            "2",
            "3"
        ]
    );
    assert!(stdout.contains("host shadows 2.0 GiB (pinned 2.0 GiB, pageable 0 B)"));
    assert_eq!(
        fake.received(),
        vec![
            ControlRequest::Status,
            ControlRequest::HostShadows,
            ControlRequest::Waits,
            ControlRequest::Inventory
        ]
    );
}

#[test]
fn status_from_a_scheduler_without_host_shadows_leaves_them_out() {
    let fake = FakeScheduler::start_reporting(false);
    let out = nvshare_ctl(Some(&fake.socket), &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("host shadows"), "{stdout}");
    assert!(!stdout.contains("HOST"), "{stdout}");
    let out = nvshare_ctl(Some(&fake.socket), &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert!(value["gpus"][0]["host_pinned"].is_null());
    assert!(value["gpus"][0]["index"].is_null());
}

#[test]
fn status_json_is_for_scripts() {
    let fake = FakeScheduler::start();
    let out = nvshare_ctl(
        None,
        &[
            "status",
            "--json",
            "--socket",
            fake.socket.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(value["scheduler_pid"], 4321);
    let gpu = &value["gpus"][0];
    assert_eq!(gpu["policy"], "exclusive");
    assert_eq!(gpu["switches"], 2);
    assert_eq!(gpu["clients"][0]["state"], "releasing");
    assert_eq!(gpu["clients"][0]["swapped"], 2u64 << 30);
    assert_eq!(gpu["clients"][0]["host_pinned"], 2u64 << 30);
    assert_eq!(gpu["clients"][0]["memory_limit"], 12u64 << 30);
    assert_eq!(gpu["clients"][0]["priority"], 2);
    assert_eq!(gpu["clients"][0]["weight"], 3);
    assert_eq!(gpu["host_pageable"], 0);
    assert_eq!(gpu["index"], 3);
    assert_eq!(gpu["name"], "NVIDIA H100 80GB HBM3");
    assert_eq!(gpu["xid_errors"], 2);
    assert_eq!(gpu["last_xid"], 79);
    assert_eq!(
        fake.received(),
        vec![
            ControlRequest::Status,
            ControlRequest::HostShadows,
            ControlRequest::Waits,
            ControlRequest::Inventory
        ]
    );
}

#[test]
fn settings_send_the_right_requests() {
    let quantum = |quantum_ms| ControlRequest::SetQuantum { quantum_ms };
    let policy = |policy| ControlRequest::SetPolicy { policy };
    let cases: Vec<(&[&str], Vec<ControlRequest>, &str)> = vec![
        (
            &["set-tq", "45"],
            vec![quantum(45_000)],
            "time quantum set to 45.0 s\n",
        ),
        (
            &["-T", "2"],
            vec![quantum(2_000)],
            "time quantum set to 2.0 s\n",
        ),
        (
            &["--set-tq=0.5"],
            vec![quantum(500)],
            "time quantum set to 500 ms\n",
        ),
        (
            &["set-policy", "auto"],
            vec![policy(Policy::Auto)],
            "policy set to auto\n",
        ),
        (
            &["-S", "on"],
            vec![policy(Policy::Exclusive)],
            "policy set to exclusive\n",
        ),
    ];
    for (args, expected, printed) in cases {
        let fake = FakeScheduler::start();
        let out = nvshare_ctl(Some(&fake.socket), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), printed, "{args:?}");
        assert_eq!(fake.received(), expected, "{args:?}");
    }
}

#[test]
fn a_refusal_prints_the_daemons_message_and_exits_1() {
    let fake = FakeScheduler::start();
    let out = nvshare_ctl(Some(&fake.socket), &["--anti-thrash=off"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "nvshare-ctl: changing settings needs root or the scheduler's user\n"
    );
    assert_eq!(
        fake.received(),
        vec![ControlRequest::SetPolicy {
            policy: Policy::Off
        }]
    );
}

#[test]
fn debug_logs_go_to_stderr_only() {
    let fake = FakeScheduler::start();
    let out = Command::new(env!("CARGO_BIN_EXE_nvshare-ctl"))
        .args(["status", "--json"])
        .env("NVSHARE_SOCK", &fake.socket)
        .env("NVSHARE_DEBUG", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout is only JSON");
    assert!(text(&out.stderr).contains("DEBUG"), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains('\x1b'),
        "no colour codes where stderr is not a terminal: {:?}",
        text(&out.stderr)
    );
}

#[test]
fn a_bad_command_line_exits_64_apart_from_an_unreachable_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody-listens.sock");
    for args in [&["frobnicate"][..], &["set-tq"], &["status", "--bogus"]] {
        let out = nvshare_ctl(Some(&socket), args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(text(&out.stderr).contains("Usage"), "{args:?}");
    }
    let help = nvshare_ctl(Some(&socket), &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("status"));
}

#[test]
fn status_watch_refreshes_one_json_document_per_line() {
    let fake = FakeScheduler::start();
    let started = std::time::Instant::now();
    let out = nvshare_ctl(
        Some(&fake.socket),
        &["status", "--json", "--watch", "100ms", "--count", "3"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "two pauses between three refreshes"
    );
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(value["gpus"][0]["clients"][0]["name"], "resnet");
    }
    let statuses = fake
        .received()
        .into_iter()
        .filter(|r| *r == ControlRequest::Status)
        .count();
    assert_eq!(statuses, 3, "one status request per refresh");
}

#[test]
fn top_redraws_tables_until_stopped_and_a_bad_interval_is_a_usage_error() {
    let fake = FakeScheduler::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nvshare-ctl"))
        .args(["top", "--every", "50ms"])
        .env("NVSHARE_SOCK", &fake.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert!(
        stdout.matches("nvshare-scheduler 9.9.9").count() >= 3,
        "several refreshes of the tables:\n{stdout}"
    );
    assert!(
        !stdout.contains('\x1b'),
        "no screen control codes into a pipe"
    );
    let bad = nvshare_ctl(Some(&fake.socket), &["status", "--watch", "0"]);
    assert_eq!(bad.status.code(), Some(64));
}
