//! The listening socket's life: its directory, replacing a stale socket file
//! but never a live one, its mode and group, and removing it on exit.

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
        let lock = take_lock(path)?;
        remove_if_stale(path)?;

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
        })
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
        if ours {
            if let Err(err) = fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), %err, "could not remove the socket file");
            }
        }
    }
}

/// Takes `<socket>.lock`; held by a running daemon, so failing to take it
/// means one is running.
fn take_lock(path: &Path) -> Result<Flock<File>, ServerError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| ServerError::Socket {
            path: PathBuf::from(&lock_path),
            source,
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, Errno::EWOULDBLOCK)) => Err(ServerError::AlreadyRunning(path.to_owned())),
        Err((_, errno)) => Err(ServerError::Socket {
            path: PathBuf::from(lock_path),
            source: errno.into(),
        }),
    }
}

/// Removes a socket file nobody listens on; refuses a live socket and
/// anything that is not a socket.
fn remove_if_stale(path: &Path) -> Result<(), ServerError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
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
        Ok(_) => Err(ServerError::AlreadyRunning(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing the stale socket of a scheduler that is gone");
            fs::remove_file(path).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(ServerError::Socket {
                    path: path.to_owned(),
                    source: e,
                }),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ServerError::Socket {
            path: path.to_owned(),
            source,
        }),
    }
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
        let live = UnixListener::bind(&path).unwrap();
        assert!(matches!(
            SocketListener::bind(&path, None),
            Err(ServerError::AlreadyRunning(_))
        ));
        drop(live); // leaves the file behind, nobody listening: stale
        assert!(path.exists());
        let replaced = SocketListener::bind(&path, None).unwrap();
        assert!(UnixStream::connect(replaced.path()).is_ok());
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
