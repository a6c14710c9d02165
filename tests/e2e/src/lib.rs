//! Support for the end-to-end tests: each test is a real process tree made of
//! the `nvshare-scheduler` daemon and test programs (`cuda-worker`,
//! `cuda-probe`) running under `LD_PRELOAD=libnvshare.so` against the fake
//! driver (`tests/fake-cuda`).
//!
//! # Layout
//! - [`Sandbox`]: one test's temp dir: socket, trace file, shared fake-GPU
//!   state, and builders for the daemon and the programs.
//! - [`Daemon`]: a running scheduler, killed when dropped.
//! - [`trace`]: parsing the fake driver's event trace.
//! - [`worker`]: the `cuda-worker` command line, built once.
//!
//! Artifacts are found in `target/<profile>` (see
//! `cuda_programs::artifacts`); `cargo build --workspace` builds them.

pub mod trace;
pub mod worker;

use cuda_programs::artifacts::{artifact, fake_cuda_command, wait_with_timeout};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// How long any single test program may run before the test fails.
pub const PROGRAM_LIMIT: Duration = Duration::from_secs(60);

/// One test's private world.
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// Programs started by [`Sandbox::spawn`], killed when the sandbox is
    /// dropped if still running (a test that fails half-way leaves none).
    spawned: std::sync::Mutex<Vec<u32>>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh temp dir.
    pub fn new() -> Self {
        Sandbox {
            dir: fresh_dir(),
            spawned: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The temp dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The scheduler socket of this sandbox.
    pub fn socket(&self) -> PathBuf {
        self.path().join("scheduler.sock")
    }

    /// The fake driver's event trace shared by every program.
    pub fn trace_path(&self) -> PathBuf {
        self.path().join("trace.log")
    }

    /// Starts the daemon with `args` on this sandbox's socket.
    pub fn daemon(&self, args: &[&str]) -> Daemon {
        self.daemon_with_env(args, &[])
    }

    /// As [`Sandbox::daemon`], with `env` added to the daemon's environment.
    pub fn daemon_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_env(&self.socket(), args, env, &self.path().join("daemon.log"))
    }

    /// A command for a test program under the hook, talking to this
    /// sandbox's scheduler, tracing into the shared trace, with the fake GPU
    /// state shared between the programs like one real GPU.
    pub fn hooked(&self, program: &str) -> Command {
        let mut command = fake_cuda_command(&artifact(program));
        command
            .env("LD_PRELOAD", artifact("libnvshare.so"))
            .env("NVSHARE_SOCK", self.socket())
            .env("NVSHARE_SCHEDULER", "external")
            .env("NVSHARE_LOG", "info")
            .env("FAKE_CUDA_TRACE", self.trace_path())
            .env("FAKE_CUDA_STATE_DIR", self.path());
        command
    }

    /// Starts `command` with its output captured.
    pub fn spawn(&self, command: &mut Command) -> Child {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a test program");
        self.spawned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        child
    }

    /// Runs `nvshare-ctl` with `args` against this sandbox's daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(artifact("nvshare-ctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run nvshare-ctl")
    }

    /// Runs `nvshare-ctl status --json` against this sandbox's daemon.
    pub fn status(&self) -> serde_json::Value {
        let output = Command::new(artifact("nvshare-ctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(["status", "--json"])
            .output()
            .expect("run nvshare-ctl");
        assert!(
            output.status.success(),
            "nvshare-ctl status failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("nvshare-ctl prints JSON")
    }

    /// The status entries of the program named `name`: one per GPU it has
    /// attached (`state`, `resident`, `grants`, ...).
    pub fn clients_named(&self, name: &str) -> Vec<serde_json::Value> {
        let status = self.status();
        status["gpus"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|gpu| gpu["clients"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["name"] == name)
            .collect()
    }

    /// Whether the program named `name` is in `state` (`running`,
    /// `waiting`, ...) on some GPU.
    pub fn client_in_state(&self, name: &str, state: &str) -> bool {
        self.clients_named(name).iter().any(|c| c["state"] == state)
    }

    /// The parsed trace so far.
    pub fn trace(&self) -> trace::Trace {
        trace::Trace::read(&self.trace_path())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let socket = self.socket();
        let marker = format!("NVSHARE_SOCK={}", socket.display());
        let spawned = self.spawned.get_mut().unwrap_or_else(|e| e.into_inner());
        for &pid in spawned.iter() {
            // A pid the test already reaped may belong to another process by
            // now: only a process whose environment names this sandbox's
            // socket is ours.
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let ours = environ
                .split(|&b| b == 0)
                .any(|entry| entry == marker.as_bytes());
            if ours {
                // SAFETY: kill(2) with a pid and a signal has no memory effects.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        if std::thread::panicking() {
            // The scheduler's side of a failed test, before the dir goes.
            let log = std::fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(DAEMON_LOG_TAIL)..];
            eprintln!(
                "---- the scheduler's log, last {} lines ----\n{}",
                tail.len(),
                tail.join("\n")
            );
            if std::env::var_os(KEEP_FAILED).is_some() {
                let kept = std::mem::replace(&mut self.dir, fresh_dir()).keep();
                eprintln!(
                    "---- the failed test's sandbox is kept in {} ----",
                    kept.display()
                );
            }
        }
    }
}

/// Set (to anything) to keep a failed test's sandbox (logs, trace, fake GPU
/// state) for a post-mortem instead of deleting it.
pub const KEEP_FAILED: &str = "NVSHARE_E2E_KEEP_FAILED";

fn fresh_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nvshare-e2e-")
        .tempdir()
        .expect("create a temp dir")
}

/// Lines of the scheduler's log a failed test prints.
const DAEMON_LOG_TAIL: usize = 300;

/// Waits for a test program and returns its output, failing the test with
/// its stderr if it does not exit successfully within [`PROGRAM_LIMIT`].
pub fn finish_ok(child: Child, what: &str) -> Output {
    let output = wait_with_timeout(child, PROGRAM_LIMIT);
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The last JSON line a test program printed.
pub fn json_result(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in the program's output: {stdout}"));
    serde_json::from_str(line).expect("the program prints valid JSON")
}

/// A running `nvshare-scheduler`, killed (and reaped) when dropped.
pub struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
}

impl Daemon {
    /// Starts the daemon and waits until its socket accepts connections.
    pub fn start(socket: &Path, args: &[&str], log: &Path) -> Daemon {
        Daemon::start_with_env(socket, args, &[], log)
    }

    /// As [`Daemon::start`], with `env` added to the daemon's environment.
    pub fn start_with_env(
        socket: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Daemon {
        let log = std::fs::File::create(log).expect("create the daemon log");
        let child = Command::new(artifact("nvshare-scheduler"))
            .arg("--socket")
            .arg(socket)
            .args(args)
            // Hermetic: the GPUs are the fake driver's, not this machine's
            // (a test that wants NVML gives --nvml-library, which wins).
            .env("NVSHARE_NVML_LIBRARY", "none")
            .envs(env.iter().copied())
            .env(
                "NVSHARE_LOG",
                std::env::var("E2E_DAEMON_LOG").unwrap_or_else(|_| "debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start nvshare-scheduler");
        let daemon = Daemon {
            child: Some(child),
            socket: socket.to_path_buf(),
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "nvshare-scheduler did not listen on {} within 20 s",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Kills the daemon at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills a child by pid with SIGKILL (a crash, as far as everyone else can
/// tell).
pub fn kill_hard(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `condition` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}
