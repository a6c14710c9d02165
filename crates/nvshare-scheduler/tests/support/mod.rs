//! Shared by the integration tests and the handoff benchmark: the real
//! daemon as a child process ([`Daemon`], killed on drop), protocol-speaking
//! hook clients that behave like `libnvshare.so` ([`HookClient`]) and an
//! operator connection ([`Control`]).
#![allow(dead_code, unused_imports)] // each test file uses a different part

mod control;
mod hook;
mod wire;

pub use control::Control;
pub use hook::{HookClient, Notice};
pub use wire::{RecvError, Wire, frame_of, handshake};

use nvshare_proto::GpuUuid;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "at once" on a loaded CI
/// machine; tests that bound a latency use their own, tighter, figure.
pub const PATIENCE: Duration = Duration::from_secs(10);
pub use nvshare_proto::units::{GIB, MIB};
/// The GPU every test client attaches to.
pub const GPU: GpuUuid = GpuUuid([0xab; 16]);

/// The daemon binary running on a socket in its own temporary directory.
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon with `args` (plus `--socket`) and waits for its
    /// `READY=1` on a notify socket, as systemd would.
    pub fn start(args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nvshare/scheduler.sock");
        Self::start_at(dir, socket, args)
    }

    /// As [`Daemon::start`] in an existing directory and socket path.
    pub fn start_at(dir: tempfile::TempDir, socket: PathBuf, args: &[&str]) -> Daemon {
        let log = dir.path().join(format!("daemon-{}.log", unique()));
        let notify_path = dir.path().join(format!("notify-{}.sock", unique()));
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_read_timeout(Some(PATIENCE)).unwrap();
        let child = spawn_daemon(&socket, args, &log, Some(&notify_path));
        let daemon = Daemon {
            child: Some(child),
            socket,
            dir,
            log,
        };
        let mut buf = [0u8; 64];
        match notify.recv(&mut buf) {
            Ok(n) if &buf[..n] == b"READY=1" => {}
            other => panic!(
                "the daemon did not report READY=1 ({other:?}); its log:\n{}",
                daemon.logs()
            ),
        }
        assert!(daemon.socket.exists());
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What the daemon wrote to stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether `text` shows up in the log within [`PATIENCE`] (the daemon
    /// writes its log in batches).
    pub fn logged(&self, text: &str) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.logs().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Sends `signal` and waits for the exit.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        wait_exit(child, PATIENCE).expect("the daemon did not exit after the signal")
    }

    /// The daemon's exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// A hook client named `name` on this daemon.
    pub fn client(&self, name: &str) -> HookClient {
        HookClient::connect(&self.socket, name)
    }

    pub fn control(&self) -> Control {
        Control::connect(&self.socket)
    }

    /// The address the metrics responder bound, read from the log.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let logs = self.logs();
            if let Some(line) = logs.lines().find(|l| l.contains("serving metrics")) {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .expect("the metrics log line names its address");
                return addr.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no metrics line in:\n{logs}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the daemon binary without waiting for it.
pub fn spawn_daemon(socket: &Path, args: &[&str], log: &Path, notify: Option<&Path>) -> Child {
    // NVSHARE_SCHEDULER_BIN runs another build (e.g. the benchmark carried
    // to another machine next to its daemon).
    let binary = std::env::var_os("NVSHARE_SCHEDULER_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_nvshare-scheduler").into());
    let mut command = Command::new(binary);
    command
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("NVSHARE_SOCK")
        .env_remove("NVSHARE_LOG")
        .env_remove("NVSHARE_DEBUG")
        .env_remove("NOTIFY_SOCKET")
        // Hermetic: no GPUs of this machine (a test may pass --nvml-library).
        .env("NVSHARE_NVML_LIBRARY", "none")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(notify) = notify {
        command.env("NOTIFY_SOCKET", notify);
    }
    command.spawn().unwrap()
}

/// Waits up to `limit` for `child` to exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Makes `dir` traversable by other users (for tests that connect as
/// another uid).
pub fn open_up(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}
