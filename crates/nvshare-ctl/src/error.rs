//! What can go wrong talking to the scheduler, and the exit code of each.

use nvshare_proto::ProtoError;
use std::path::PathBuf;
use thiserror::Error;

/// A failed `nvshare-ctl` command.
#[derive(Debug, Error)]
pub enum CtlError {
    /// Nothing answers at the socket (no daemon, or no permission).
    #[error(
        "cannot reach the nvshare scheduler at {path}: {source}; is nvshare-scheduler running?"
    )]
    Unreachable {
        /// The socket tried.
        path: PathBuf,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The conversation with the daemon broke off or made no sense.
    #[error(
        "the nvshare scheduler at {path} did not answer properly: {source}; \
         check that nvshare-ctl and nvshare-scheduler come from the same release"
    )]
    Protocol {
        /// The socket used.
        path: PathBuf,
        /// What went wrong.
        source: ProtoError,
    },
    /// The daemon answered with a message of the wrong kind.
    #[error(
        "the nvshare scheduler at {path} sent an unexpected answer ({got}); \
         check that nvshare-ctl and nvshare-scheduler come from the same release"
    )]
    UnexpectedReply {
        /// The socket used.
        path: PathBuf,
        /// What arrived, for the operator.
        got: String,
    },
    /// The daemon refused the request; its message says why.
    #[error("{0}")]
    Refused(String),
    /// The status could not be written as JSON.
    #[error("cannot write the status as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The exit code for a bad command line (sysexits' `EX_USAGE`), apart from
/// 2, which scripts of the original nvsharectl read as "no scheduler".
pub const EXIT_USAGE: u8 = 64;

impl CtlError {
    /// The process exit code: 2 when the daemon cannot be reached (as the
    /// original nvsharectl scripts expect), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Unreachable { .. } => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_names_the_socket_and_exits_2() {
        let err = CtlError::Unreachable {
            path: "/run/x.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let text = err.to_string();
        assert!(text.starts_with("cannot reach the nvshare scheduler at /run/x.sock: "));
        assert!(text.ends_with("; is nvshare-scheduler running?"));
        assert_eq!(err.exit_code(), 2);
        assert_eq!(CtlError::Refused("no".into()).exit_code(), 1);
    }
}
