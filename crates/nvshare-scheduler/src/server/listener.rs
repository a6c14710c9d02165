//! The listening socket's life: its directory, replacing a stale socket file
//! but never a live one, its mode and group, and removing it on exit.
//!
//! Beside the socket, `<socket>.lock` is held for the daemon's life. It is
//! removed on a clean exit, unless programs were still connected then (they
//! reconnect to the next daemon): a lock file or socket found at start is a
//! predecessor's, whose programs may still run (see the policy's recovery).

use crate::error::ServerError;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{Mode, umask};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Owner and group may connect; nobody else.
const SOCKET_MODE: u32 = 0o660;
/// Others may traverse the directory (to reach the socket if in its group).
const DIR_MODE: u32 = 0o755;

/// The bound, non-blocking listening socket. Dropping it removes the socket
/// file, if that file is still the one this daemon created.
#[derive(Debug)]
pub struct SocketListener {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file we created.
    identity: (u64, u64),
    /// Held for the daemon's life: two daemons starting at once cannot both
    /// decide the socket is stale.
    _lock: Flock<File>,
    lock_path: PathBuf,
    /// Leave the lock file on exit: programs are still connected.
    keep_lock_file: bool,
    /// A predecessor left its socket or lock file.
    predecessor: bool,
}

impl SocketListener {
    /// Creates the socket at `path`, replacing a stale socket file (nobody
    /// answers) and refusing a live one. `group`, if given, becomes the
    /// socket's group.
    pub fn bind(path: &Path, group: Option<u32>) -> Result<Self, ServerError> {
        let socket_err = |source| ServerError::Socket {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(parent)
                .map_err(|source| ServerError::SocketDir {
                    path: parent.to_owned(),
                    source,
                })?;
        }
        let lock_path = lock_path(path);
        let (lock, lock_left) = take_lock(&lock_path, path)?;
        let stale_socket = remove_if_stale(path)?;

        // The umask closes the window between bind() and chmod() in which
        // the socket would carry the process's default mode.
        let previous = umask(Mode::from_bits_truncate(0o117));
        let bound = UnixListener::bind(path);
        umask(previous);
        let listener = bound.map_err(socket_err)?;
        let configured = (|| {
            fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))?;
            if let Some(gid) = group {
                std::os::unix::fs::chown(path, None, Some(gid))?;
            }
            listener.set_nonblocking(true)?;
            let meta = fs::symlink_metadata(path)?;
            Ok((meta.dev(), meta.ino()))
        })();
        let identity = match configured {
            Ok(identity) => identity,
            Err(source) => {
                let _ = fs::remove_file(path);
                return Err(socket_err(source));
            }
        };
        Ok(SocketListener {
            listener,
            path: path.to_owned(),
            identity,
            _lock: lock,
            lock_path,
            keep_lock_file: false,
            predecessor: lock_left || stale_socket,
        })
    }

    /// Whether an earlier daemon left its socket or lock file here: it
    /// crashed, or stopped while programs were connected.
    pub fn predecessor(&self) -> bool {
        self.predecessor
    }

    /// Keeps the lock file when the daemon exits, telling the next one that
    /// programs connected to this one may still hold GPUs.
    pub fn keep_lock_file(&mut self) {
        self.keep_lock_file = true;
    }

    /// Accepts one pending connection, if any, as a non-blocking stream.
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        match self.listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                Ok(Some(stream))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket, for registration with epoll.
    pub fn socket(&self) -> &UnixListener {
        &self.listener
    }
}

impl Drop for SocketListener {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .map(|meta| (meta.dev(), meta.ino()) == self.identity)
            .unwrap_or(false);
        if ours && let Err(err) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "could not remove the socket file");
        }
        // Removed while still locked: a daemon starting now either fails to
        // lock it, or finds its path gone and makes a new one (take_lock).
        if !self.keep_lock_file
            && let Err(err) = fs::remove_file(&self.lock_path)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.lock_path.display(), %err, "could not remove the lock file");
        }
    }
}

/// `<socket>.lock`.
fn lock_path(socket: &Path) -> PathBuf {
    let mut lock_path = socket.as_os_str().to_owned();
    lock_path.push(".lock");
    PathBuf::from(lock_path)
}

/// Takes the lock file of `socket`; held by a running daemon, so failing to
/// take it means one is running. Also returns whether the file was there
/// before (a predecessor left it).
fn take_lock(lock_path: &Path, socket: &Path) -> Result<(Flock<File>, bool), ServerError> {
    let lock_err = |source| ServerError::Socket {
        path: lock_path.to_owned(),
        source,
    };
    let left_behind = fs::symlink_metadata(lock_path).is_ok();
    // A daemon exiting removes its lock file while it holds the lock: the
    // file locked here may be unlinked by then. Lock again until the locked
    // file is the one at the path.
    for _ in 0..8 {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)
            .map_err(lock_err)?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(ServerError::AlreadyRunning(socket.to_owned()));
            }
            Err((_, errno)) => return Err(lock_err(errno.into())),
        };
        let locked = lock.metadata().map_err(lock_err)?;
        match fs::symlink_metadata(lock_path) {
            Ok(at_path) if (at_path.dev(), at_path.ino()) == (locked.dev(), locked.ino()) => {
                return Ok((lock, left_behind));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(lock_err(e)),
        }
    }
    Err(lock_err(io::Error::other(
        "the lock file kept being replaced while it was taken",
    )))
}

/// Removes a socket file nobody listens on (returning true); refuses a live
/// socket and anything that is not a socket.
fn remove_if_stale(path: &Path) -> Result<bool, ServerError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(ServerError::Socket {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path) {
        Ok(stream) if answers_as_scheduler(&stream) => {
            Err(ServerError::AlreadyRunning(path.to_owned()))
        }
        Ok(_) => Err(ServerError::ForeignListener(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing the stale socket of a scheduler that is gone");
            match fs::remove_file(path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                Err(e) => Err(ServerError::Socket {
                    path: path.to_owned(),
                    source: e,
                }),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ServerError::Socket {
            path: path.to_owned(),
            source,
        }),
    }
}

/// How long a live socket's listener has to answer the probe's hello.
const PROBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether whoever listens on `stream`'s other end answers a hello as an
/// nvshare scheduler does (any version: a reply, even a refusal).
fn answers_as_scheduler(stream: &UnixStream) -> bool {
    use nvshare_proto::{Hello, HelloReply, Role, read_msg, write_msg};
    let mut stream = stream;
    let probe = (|| {
        stream.set_read_timeout(Some(PROBE_PATIENCE)).ok()?;
        stream.set_write_timeout(Some(PROBE_PATIENCE)).ok()?;
        write_msg(&mut stream, &Hello::new(Role::Control)).ok()?;
        read_msg::<_, HelloReply>(&mut stream).ok()
    })();
    probe.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_directory_and_a_0660_socket_and_removes_it_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/nvshare/scheduler.sock");
        let listener = SocketListener::bind(&path, None).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, SOCKET_MODE);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, DIR_MODE);
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_socket_is_refused_and_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let live = SocketListener::bind(&path, None).unwrap();
        // Another daemon on the same path, with its own lock file, answers
        // hellos like a scheduler.
        let other = dir.path().join("other.sock");
        std::fs::rename(&path, &other).unwrap();
        let answering = std::thread::spawn({
            let listener = live.listener.try_clone().unwrap();
            move || answer_one_hello(&listener)
        });
        std::fs::rename(&other, &path).unwrap();
        std::fs::remove_file(lock_path(&path)).unwrap();
        assert!(matches!(
            SocketListener::bind(&path, None),
            Err(ServerError::AlreadyRunning(_))
        ));
        answering.join().unwrap();
        drop(live);

        let foreign = UnixListener::bind(&path).unwrap();
        assert!(matches!(
            SocketListener::bind(&path, None),
            Err(ServerError::ForeignListener(_))
        ));
        drop(foreign); // leaves the file behind, nobody listening: stale
        assert!(path.exists());
        let replaced = SocketListener::bind(&path, None).unwrap();
        assert!(replaced.predecessor(), "a stale socket is a predecessor's");
        assert!(UnixStream::connect(replaced.path()).is_ok());
    }

    /// Accepts one connection on the non-blocking `listener` and answers its
    /// hello as a scheduler.
    fn answer_one_hello(listener: &UnixListener) {
        use nvshare_proto::{Hello, HelloReply, PROTOCOL_VERSION, read_msg, write_msg};
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("no probe came: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let _: Hello = read_msg(&mut stream).unwrap();
        write_msg(
            &mut stream,
            &HelloReply::Accepted {
                client_id: 1,
                version: PROTOCOL_VERSION,
            },
        )
        .unwrap();
    }

    #[test]
    fn the_lock_file_goes_on_a_clean_exit_unless_programs_were_connected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let first = SocketListener::bind(&path, None).unwrap();
        assert!(!first.predecessor(), "nothing was here");
        drop(first);
        assert!(!lock_path(&path).exists(), "the lock file is left");
        let mut second = SocketListener::bind(&path, None).unwrap();
        assert!(!second.predecessor(), "a clean exit leaves no sign");
        second.keep_lock_file();
        drop(second);
        assert!(lock_path(&path).exists());
        let third = SocketListener::bind(&path, None).unwrap();
        assert!(
            third.predecessor(),
            "programs of the last daemon may still run"
        );
    }

    #[test]
    fn a_second_daemon_on_the_same_path_is_refused_by_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _first = SocketListener::bind(&path, None).unwrap();
        assert!(matches!(
            SocketListener::bind(&path, None),
            Err(ServerError::AlreadyRunning(_))
        ));
    }

    #[test]
    fn a_regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        fs::write(&path, b"precious").unwrap();
        assert!(matches!(
            SocketListener::bind(&path, None),
            Err(ServerError::NotASocket(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn a_socket_replaced_by_someone_else_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = SocketListener::bind(&path, None).unwrap();
        fs::remove_file(&path).unwrap();
        let _other = UnixListener::bind(&path).unwrap();
        drop(listener);
        assert!(path.exists());
    }
}
