//! The connection to the scheduler daemon.
//!
//! One Unix-socket connection per process, opened lazily the first time the
//! program uses a GPU. Writes come from any thread through [`Connection::send`]
//! (one frame per `write_all`, under a mutex); reads happen on one reader
//! thread owned by the gate. If no scheduler answers and the configuration
//! allows it, a per-user `nvshare-scheduler` is started next to
//! `libnvshare.so` (or from `PATH`) and the connection retried.

use crate::config::{HookConfig, SchedulerMode};
use nvshare_proto::{
    ClientId, ClientMsg, Hello, HelloReply, ProtoError, Role, SchedulerMsg, read_msg, write_msg,
};
use parking_lot::Mutex;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long to wait for an autostarted scheduler to open its socket.
const AUTOSTART_WAIT: Duration = Duration::from_secs(5);

/// How long a scheduler the hook starts stays after its last program has
/// gone (`--exit-when-idle`, unless the program's environment sets
/// `NVSHARE_EXIT_WHEN_IDLE`): long enough for the next job of a script to
/// find it, short enough that nothing is left running for nobody.
const AUTOSTART_IDLE_EXIT: &str = "30";

/// How long one attempt waits for the scheduler to take the connection and
/// to answer the hello: a scheduler that does not within this is stuck or
/// overwhelmed, and the program is not left hanging on it.
pub const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Why the hook could not reach a scheduler.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing listens on the socket and starting a scheduler is disabled.
    #[error(
        "no nvshare scheduler at {path}: {source}; start nvshare-scheduler, or unset NVSHARE_SCHEDULER=external to let the hook start one"
    )]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// The `nvshare-scheduler` binary could not be found or started.
    #[error(
        "could not start nvshare-scheduler ({reason}); install it next to libnvshare.so or on PATH, or run it as a service"
    )]
    Autostart {
        /// What failed.
        reason: String,
    },
    /// The scheduler refused the handshake.
    #[error("the nvshare scheduler at {path} refused this program: {message}")]
    Rejected {
        /// The socket path.
        path: PathBuf,
        /// The scheduler's reason.
        message: String,
    },
    /// Something listens on the socket but did not answer in time.
    #[error(
        "the nvshare scheduler at {path} did not answer within {waited:?}: it is stuck or overwhelmed; check `nvshare-ctl status` and the scheduler's log"
    )]
    NoAnswer {
        /// The socket path.
        path: PathBuf,
        /// How long this attempt waited.
        waited: Duration,
    },
    /// The conversation failed.
    #[error("talking to the nvshare scheduler failed: {0}")]
    Proto(#[from] ProtoError),
}

impl ClientError {
    /// Whether trying again later may succeed (the scheduler is there but
    /// slow), rather than failing the same way.
    pub fn is_no_answer(&self) -> bool {
        matches!(self, ClientError::NoAnswer { .. })
    }
}

/// The write half of an open scheduler connection, shared by all threads.
#[derive(Debug)]
pub struct Connection {
    writer: Mutex<UnixStream>,
    client_id: ClientId,
}

impl Connection {
    /// Connects (starting a scheduler if allowed and needed) and completes
    /// the handshake. Returns the connection and the stream to read from.
    pub fn open(config: &HookConfig) -> Result<(Connection, UnixStream), ClientError> {
        let no_answer = || ClientError::NoAnswer {
            path: config.socket.clone(),
            waited: ANSWER_WAIT,
        };
        let stream = match connect_bounded(&config.socket) {
            Err(source) if source.kind() == std::io::ErrorKind::WouldBlock => {
                // The listener's backlog stayed full for the whole wait.
                return Err(no_answer());
            }
            Ok(stream) => stream,
            Err(source) if config.scheduler == SchedulerMode::Auto => {
                tracing::info!(socket = %config.socket.display(), error = %source,
                    "no scheduler answers; starting one");
                start_scheduler(&config.socket)?
            }
            Err(source) => {
                return Err(ClientError::Unreachable {
                    path: config.socket.clone(),
                    source,
                });
            }
        };
        let mut reader = stream.try_clone().map_err(ProtoError::Io)?;
        let mut writer = stream;
        write_msg(
            &mut writer,
            &Hello::new(Role::Client {
                name: nvshare_proto::hello_text(&config.name),
                group: config.group.as_deref().map(nvshare_proto::hello_text),
            }),
        )?;
        reader
            .set_read_timeout(Some(ANSWER_WAIT))
            .map_err(ProtoError::Io)?;
        let reply = match read_msg::<_, HelloReply>(&mut reader) {
            Err(ProtoError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(no_answer());
            }
            other => other?,
        };
        // From here the reader thread blocks on the scheduler's messages.
        reader.set_read_timeout(None).map_err(ProtoError::Io)?;
        match reply {
            HelloReply::Accepted { client_id, .. } => Ok((
                Connection {
                    writer: Mutex::new(writer),
                    client_id,
                },
                reader,
            )),
            HelloReply::Rejected(reply) => Err(ClientError::Rejected {
                path: config.socket.clone(),
                message: reply.message,
            }),
        }
    }

    /// The id the scheduler gave this process.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// Sends one message. Errors mean the scheduler went away; the reader
    /// thread notices the same and reconnects.
    pub fn send(&self, msg: &ClientMsg) -> Result<(), ProtoError> {
        write_msg(&mut *self.writer.lock(), msg)
    }

    /// Shuts the socket down both ways, waking the reader thread.
    pub fn shutdown(&self) {
        let _ = self.writer.lock().shutdown(std::net::Shutdown::Both);
    }
}

/// Connects to `socket`, waiting at most [`ANSWER_WAIT`] for room in the
/// listener's backlog (a blocking connect to a Unix socket whose listener
/// does not accept waits for as long as the socket's send timeout allows:
/// forever by default). A full backlog for that long is `WouldBlock`.
fn connect_bounded(path: &Path) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, UnixAddr, connect, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let wait =
        nix::sys::time::TimeVal::new(ANSWER_WAIT.as_secs() as _, ANSWER_WAIT.subsec_micros() as _);
    setsockopt(&fd, sockopt::SendTimeout, &wait)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(path)?)?;
    // Writes are small frames; no send timeout once connected.
    setsockopt(
        &fd,
        sockopt::SendTimeout,
        &nix::sys::time::TimeVal::new(0, 0),
    )?;
    Ok(UnixStream::from(fd))
}

/// Blocks for the next scheduler message.
pub fn receive(reader: &mut UnixStream) -> Result<SchedulerMsg, ProtoError> {
    read_msg(reader)
}

/// Starts `nvshare-scheduler` on `socket` in its own session (it outlives
/// this program and serves the next ones) and waits for it to listen.
fn start_scheduler(socket: &Path) -> Result<UnixStream, ClientError> {
    let binary = scheduler_binary().ok_or_else(|| ClientError::Autostart {
        reason: "nvshare-scheduler is neither next to libnvshare.so nor on PATH".into(),
    })?;
    let mut command = Command::new(&binary);
    command
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // The daemon must not inherit the hook, nor be killed with the
        // program's process group.
        .env_remove("LD_PRELOAD")
        .process_group(0);
    if std::env::var_os(nvshare_proto::env::EXIT_WHEN_IDLE).is_none() {
        // Started on demand, it ends with its programs.
        command.env(nvshare_proto::env::EXIT_WHEN_IDLE, AUTOSTART_IDLE_EXIT);
    }
    let mut child = command.spawn().map_err(|e| ClientError::Autostart {
        reason: format!("{}: {e}", binary.display()),
    })?;
    tracing::info!(binary = %binary.display(), pid = child.id(), "started nvshare-scheduler");
    let deadline = Instant::now() + AUTOSTART_WAIT;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => {
                // Reap the daemon if it ever exits while we live; it is
                // reparented to init if we exit first.
                std::thread::Builder::new()
                    .name("nvshare-reap".into())
                    .spawn(move || {
                        let _ = child.wait();
                    })
                    .ok();
                return Ok(stream);
            }
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    // Another program may have started one at the same time:
                    // ours then exits because the socket is live.
                    if let Ok(stream) = UnixStream::connect(socket) {
                        return Ok(stream);
                    }
                    return Err(ClientError::Autostart {
                        reason: format!(
                            "it exited with {status} before listening on {}",
                            socket.display()
                        ),
                    });
                }
                if Instant::now() >= deadline {
                    return Err(ClientError::Autostart {
                        reason: format!(
                            "it did not listen on {} within {AUTOSTART_WAIT:?}: {e}",
                            socket.display()
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `nvshare-scheduler` beside the loaded `libnvshare.so`, else on `PATH`.
fn scheduler_binary() -> Option<PathBuf> {
    let beside = crate::driver::loader::this_library_path()
        .and_then(|lib| lib.parent().map(|dir| dir.join("nvshare-scheduler")))
        .filter(|path| path.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nvshare-scheduler"))
                .find(|path| path.is_file())
        })
    })
}
