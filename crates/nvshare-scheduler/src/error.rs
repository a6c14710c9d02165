//! Why the daemon could not start or had to stop.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A fatal daemon error; `main` prints it and exits with status 1.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another scheduler answers on the socket.
    #[error(
        "another nvshare-scheduler is already listening on {0}: stop it first, \
         or start this one with a different --socket"
    )]
    AlreadyRunning(PathBuf),
    /// Something that is not an nvshare scheduler listens on the socket.
    #[error(
        "{0} is a live socket, but what listens on it does not answer as an nvshare-scheduler: \
         stop that program or start this one with a different --socket"
    )]
    ForeignListener(PathBuf),
    /// Something that is not a socket sits at the socket path.
    #[error("{0} exists and is not a socket: remove it or choose another --socket")]
    NotASocket(PathBuf),
    /// The socket's directory could not be created.
    #[error(
        "cannot create the socket directory {path}: {source} (check permissions or choose another --socket)"
    )]
    SocketDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The socket could not be created, probed or configured.
    #[error(
        "cannot set up the socket {path}: {source} (check permissions or choose another --socket)"
    )]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The metrics port could not be opened.
    #[error("cannot serve metrics on {addr}: {source} (choose a free --metrics-addr)")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The event loop's own machinery (epoll, signalfd) failed.
    #[error("{what} failed: {source}")]
    System {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: nix::Error,
    },
}

impl ServerError {
    /// Wraps a system call failure with what was being done.
    pub fn system(what: &'static str) -> impl FnOnce(nix::Error) -> ServerError {
        move |source| ServerError::System { what, source }
    }
}
