//! A simulated `libnvshare.so`: a hook client with its own reader thread.

use super::wire::{RecvError, Wire, handshake};
use super::{GIB, GPU, PATIENCE};
use nvshare_proto::{
    ClientBody, ClientMsg, ErrorReply, Role, SchedulerBody, SchedulerMsg, encode_frame,
};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

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
        self.send(
            &ClientBody::Evicted {
                bytes,
                resident,
                elapsed_us: 2_000,
            }
            .on(GPU),
        );
    }

    fn release(&mut self) {
        self.holding = false;
        let resident = self.resident;
        self.send(&ClientBody::LockReleased { resident }.on(GPU));
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
                group: None,
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
            shared.send(
                &ClientBody::Attach {
                    physical_memory: 80 * GIB,
                    footprint,
                    resident: 0,
                    holding: false,
                }
                .on(GPU),
            );
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

    /// Sends any message, as the hook would.
    pub fn send(&self, msg: &ClientMsg) {
        self.shared.lock().unwrap().send(msg);
    }

    pub fn request(&self) {
        self.shared
            .lock()
            .unwrap()
            .send(&ClientBody::RequestLock.on(GPU));
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
                SchedulerMsg::Gpu {
                    body:
                        SchedulerBody::Welcome {
                            quantum_ms,
                            capacity,
                            ..
                        },
                    ..
                } => Notice::Welcome {
                    quantum_ms,
                    capacity,
                },
                SchedulerMsg::Gpu {
                    body: SchedulerBody::LockGranted { .. },
                    ..
                } => {
                    let at = Instant::now();
                    shared.holding = true;
                    let missing = shared.footprint - shared.resident;
                    if missing > 0 {
                        shared.resident = shared.footprint;
                        let resident = shared.resident;
                        shared.send(
                            &ClientBody::Restored {
                                bytes: missing,
                                resident,
                                elapsed_us: 1_000,
                            }
                            .on(GPU),
                        );
                    }
                    Notice::Granted(at)
                }
                SchedulerMsg::Gpu {
                    body: SchedulerBody::DropLock { evict_bytes, .. },
                    ..
                } => {
                    let at = Instant::now();
                    shared.evict(evict_bytes);
                    shared.release();
                    Notice::Dropped { evict_bytes, at }
                }
                SchedulerMsg::Gpu {
                    body: SchedulerBody::Evict { bytes, .. },
                    ..
                } => {
                    shared.evict(bytes);
                    continue;
                }
                SchedulerMsg::Gpu {
                    body: SchedulerBody::Fetch { bytes, .. },
                    ..
                } => {
                    let moved = bytes.min(shared.footprint - shared.resident);
                    shared.resident += moved;
                    let resident = shared.resident;
                    shared.send(
                        &ClientBody::Fetched {
                            bytes: moved,
                            resident,
                            elapsed_us: 1_000,
                        }
                        .on(GPU),
                    );
                    continue;
                }
                // This simulated hook never sends Reserve, and needs no
                // host room made ahead of an eviction.
                SchedulerMsg::Gpu {
                    body: SchedulerBody::Reserved { .. },
                    ..
                }
                | SchedulerMsg::Gpu {
                    body: SchedulerBody::Prepare { .. },
                    ..
                } => continue,
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
