//! Shared by the integration tests and the handoff benchmark: the real
//! daemon as a child process ([`Daemon`], killed on drop), protocol-speaking
//! hook clients that behave like `libnvshare.so` ([`HookClient`]) and an
//! operator connection ([`Control`]).
#![allow(dead_code)] // each test file uses a different part

use nvshare_proto::{
    ClientMsg, ControlReply, ControlRequest, ErrorReply, FrameBuffer, GpuUuid, Hello, HelloReply,
    Role, SchedulerMsg, decode, encode_frame,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "at once" on a loaded CI
/// machine; tests that bound a latency use their own, tighter, figure.
pub const PATIENCE: Duration = Duration::from_secs(10);
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
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
        let mut daemon = Daemon {
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
        daemon.child.as_mut().unwrap();
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
    let mut command = Command::new(env!("CARGO_BIN_EXE_nvshare-scheduler"));
    command
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("NVSHARE_SOCK")
        .env_remove("NVSHARE_LOG")
        .env_remove("NVSHARE_DEBUG")
        .env_remove("NOTIFY_SOCKET")
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

/// A framed, blocking connection with receive timeouts.
pub struct Wire {
    pub stream: UnixStream,
    frames: FrameBuffer,
}

/// Why a receive returned nothing.
#[derive(Debug)]
pub enum RecvError {
    Timeout,
    /// The daemon closed the connection (EOF or reset).
    Closed,
    Other(String),
}

impl Wire {
    pub fn connect(socket: &Path) -> Wire {
        Wire {
            stream: UnixStream::connect(socket).unwrap(),
            frames: FrameBuffer::new(),
        }
    }

    pub fn send<T: Serialize>(&mut self, msg: &T) {
        self.stream.write_all(&encode_frame(msg).unwrap()).unwrap();
    }

    /// Receives one message within `limit`.
    pub fn recv<T: DeserializeOwned>(&mut self, limit: Duration) -> Result<T, RecvError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(payload) = self
                .frames
                .next_payload()
                .map_err(|e| RecvError::Other(e.to_string()))?
            {
                return decode(payload).map_err(|e| RecvError::Other(e.to_string()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => self.frames.extend(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(RecvError::Closed);
                }
                Err(e) => return Err(RecvError::Other(e.to_string())),
            }
        }
    }

    /// True if the daemon closes the connection within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.recv::<SchedulerMsg>(Duration::from_millis(100)) {
                Err(RecvError::Closed) => return true,
                Err(RecvError::Timeout) => {}
                _ => {}
            }
        }
        false
    }
}

/// Performs the handshake for `role`; returns the connection and its id.
pub fn handshake(socket: &Path, role: Role) -> (Wire, u64) {
    let mut wire = Wire::connect(socket);
    wire.send(&Hello::new(role));
    match wire.recv::<HelloReply>(PATIENCE).unwrap() {
        HelloReply::Accepted { client_id, .. } => (wire, client_id),
        other => panic!("handshake refused: {other:?}"),
    }
}

/// What a [`HookClient`]'s reader saw, in order.
#[derive(Debug, Clone)]
pub enum Notice {
    Welcome {
        quantum_ms: u64,
        capacity: u64,
    },
    /// The lock was granted (and the memory restored).
    Granted(Instant),
    /// A drop was asked for and answered (evicted, released).
    Dropped {
        evict_bytes: u64,
        at: Instant,
    },
    QuantumChanged(u64),
    ShuttingDown,
    Error(ErrorReply),
    /// The daemon closed the connection.
    Closed,
}

/// The client's memory and lock, shared by the test and the reader thread.
struct Shared {
    writer: UnixStream,
    footprint: u64,
    resident: u64,
    holding: bool,
}

impl Shared {
    fn send(&mut self, msg: &ClientMsg) {
        // The daemon may have closed the connection; the reader reports it.
        let _ = self.writer.write_all(&encode_frame(msg).unwrap());
    }

    fn evict(&mut self, bytes: u64) {
        let bytes = bytes.min(self.resident);
        if bytes == 0 {
            return;
        }
        self.resident -= bytes;
        let resident = self.resident;
        self.send(&ClientMsg::Evicted {
            gpu: GPU,
            bytes,
            resident,
            elapsed_us: 2_000,
        });
    }

    fn release(&mut self) {
        self.holding = false;
        let resident = self.resident;
        self.send(&ClientMsg::LockReleased { gpu: GPU, resident });
    }
}

/// A simulated `libnvshare.so` on one GPU, its own reader thread answering
/// the daemon as the hook does: it restores its memory when granted, evicts
/// exactly what it is asked at any time, and answers a drop with eviction
/// and release. The test drives requests and voluntary releases.
pub struct HookClient {
    pub id: u64,
    shared: Arc<Mutex<Shared>>,
    notices: mpsc::Receiver<Notice>,
    /// Notices passed over while waiting for others.
    pub seen: Vec<Notice>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub quantum_ms: u64,
    pub capacity: u64,
}

impl HookClient {
    pub fn connect(socket: &Path, name: &str) -> HookClient {
        let (wire, id) = handshake(
            socket,
            Role::Client {
                name: name.to_owned(),
            },
        );
        let shared = Arc::new(Mutex::new(Shared {
            writer: wire.stream.try_clone().unwrap(),
            footprint: 0,
            resident: 0,
            holding: false,
        }));
        let (tx, notices) = mpsc::channel();
        let reader = {
            let shared = shared.clone();
            std::thread::spawn(move || read_loop(wire, shared, tx))
        };
        HookClient {
            id,
            shared,
            notices,
            seen: Vec::new(),
            reader: Some(reader),
            quantum_ms: 0,
            capacity: 0,
        }
    }

    /// Attaches to [`GPU`] (80 GiB physical) with `footprint` bytes
    /// allocated, none of them resident yet; waits for the welcome.
    pub fn attach(&mut self, footprint: u64) {
        {
            let mut shared = self.shared.lock().unwrap();
            shared.footprint = footprint;
            shared.send(&ClientMsg::Attach {
                gpu: GPU,
                physical_memory: 80 * GIB,
                footprint,
                resident: 0,
                holding: false,
            });
        }
        match self.wait_for(PATIENCE, |n| matches!(n, Notice::Welcome { .. })) {
            Some(Notice::Welcome {
                quantum_ms,
                capacity,
            }) => {
                self.quantum_ms = quantum_ms;
                self.capacity = capacity;
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    pub fn connect_attached(socket: &Path, name: &str, footprint: u64) -> HookClient {
        let mut client = HookClient::connect(socket, name);
        client.attach(footprint);
        client
    }

    pub fn request(&self) {
        self.shared
            .lock()
            .unwrap()
            .send(&ClientMsg::RequestLock { gpu: GPU });
    }

    /// Gives the lock back of its own accord, keeping its memory.
    pub fn release(&self) {
        self.shared.lock().unwrap().release();
    }

    pub fn resident(&self) -> u64 {
        self.shared.lock().unwrap().resident
    }

    pub fn holding(&self) -> bool {
        self.shared.lock().unwrap().holding
    }

    /// The first notice within `limit` that `wanted` accepts; the others are
    /// kept in [`HookClient::seen`].
    pub fn wait_for(
        &mut self,
        limit: Duration,
        wanted: impl Fn(&Notice) -> bool,
    ) -> Option<Notice> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let notice = self.notices.recv_timeout(left).ok()?;
            if wanted(&notice) {
                return Some(notice);
            }
            if let Notice::QuantumChanged(quantum_ms) = notice {
                self.quantum_ms = quantum_ms;
            }
            self.seen.push(notice);
        }
    }

    /// Waits for the grant; returns when it arrived.
    pub fn wait_grant(&mut self, limit: Duration) -> Result<Instant, String> {
        match self.wait_for(limit, |n| matches!(n, Notice::Granted(_))) {
            Some(Notice::Granted(at)) => Ok(at),
            _ => Err(format!(
                "client {} not granted within {limit:?}; saw {:?}",
                self.id, self.seen
            )),
        }
    }

    /// Asserts no grant arrives within `period`.
    pub fn assert_no_grant(&mut self, period: Duration) {
        if let Some(notice) = self.wait_for(period, |n| matches!(n, Notice::Granted(_))) {
            panic!("client {} was granted too early: {notice:?}", self.id);
        }
    }

    /// Waits for a drop request (answered by the reader); returns the bytes
    /// it asked to evict and when it came.
    pub fn wait_drop(&mut self, limit: Duration) -> Result<(u64, Instant), String> {
        match self.wait_for(limit, |n| matches!(n, Notice::Dropped { .. })) {
            Some(Notice::Dropped { evict_bytes, at }) => Ok((evict_bytes, at)),
            _ => Err(format!(
                "client {} not asked to drop within {limit:?}; saw {:?}",
                self.id, self.seen
            )),
        }
    }
}

impl Drop for HookClient {
    fn drop(&mut self) {
        if let Ok(shared) = self.shared.lock() {
            let _ = shared.writer.shutdown(std::net::Shutdown::Both);
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The hook's side of the conversation, run on the reader thread.
fn read_loop(mut wire: Wire, shared: Arc<Mutex<Shared>>, notices: mpsc::Sender<Notice>) {
    loop {
        let msg = match wire.recv::<SchedulerMsg>(Duration::from_secs(3600)) {
            Ok(msg) => msg,
            Err(RecvError::Timeout) => continue,
            Err(_) => {
                let _ = notices.send(Notice::Closed);
                return;
            }
        };
        let notice = {
            let mut shared = shared.lock().unwrap();
            match msg {
                SchedulerMsg::Welcome {
                    quantum_ms,
                    capacity,
                    ..
                } => Notice::Welcome {
                    quantum_ms,
                    capacity,
                },
                SchedulerMsg::LockGranted { .. } => {
                    let at = Instant::now();
                    shared.holding = true;
                    let missing = shared.footprint - shared.resident;
                    if missing > 0 {
                        shared.resident = shared.footprint;
                        let resident = shared.resident;
                        shared.send(&ClientMsg::Restored {
                            gpu: GPU,
                            bytes: missing,
                            resident,
                            elapsed_us: 1_000,
                        });
                    }
                    Notice::Granted(at)
                }
                SchedulerMsg::DropLock { evict_bytes, .. } => {
                    let at = Instant::now();
                    shared.evict(evict_bytes);
                    shared.release();
                    Notice::Dropped { evict_bytes, at }
                }
                SchedulerMsg::Evict { bytes, .. } => {
                    shared.evict(bytes);
                    continue;
                }
                SchedulerMsg::QuantumChanged { quantum_ms } => Notice::QuantumChanged(quantum_ms),
                SchedulerMsg::Error(reply) => Notice::Error(reply),
                SchedulerMsg::ShuttingDown => Notice::ShuttingDown,
            }
        };
        if notices.send(notice).is_err() {
            return;
        }
    }
}

/// An operator connection (what `nvshare-ctl` opens).
pub struct Control {
    pub wire: Wire,
}

impl Control {
    pub fn connect(socket: &Path) -> Control {
        Control {
            wire: handshake(socket, Role::Control).0,
        }
    }

    pub fn request(&mut self, request: &ControlRequest) -> ControlReply {
        self.wire.send(request);
        self.wire.recv(PATIENCE).unwrap()
    }

    pub fn status(&mut self) -> nvshare_proto::StatusReport {
        match self.request(&ControlRequest::Status) {
            ControlReply::Status(report) => report,
            other => panic!("expected a status, got {other:?}"),
        }
    }
}
