//! What can stop the plugin. Registration failures are not here: the plugin
//! keeps retrying them, since the kubelet may come up after it.

use crate::install::InstallError;
use std::io;
use std::path::PathBuf;

/// An error that ends the plugin (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// libnvshare.so (or another file) could not be copied onto the node.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The plugin's own socket could not be created.
    #[error(
        "could not listen on {path}: {source}; check that the kubelet's device plugin directory is mounted writable"
    )]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Why one registration attempt failed (logged, then retried).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The kubelet's socket did not answer.
    #[error("could not reach the kubelet at {path}: {source}")]
    Connect {
        /// The kubelet socket.
        path: PathBuf,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The kubelet answered with an error (e.g. another plugin owns the
    /// resource name, or the API version is not supported).
    #[error("the kubelet refused the registration: {0}")]
    Refused(#[from] tonic::Status),
    /// The kubelet took too long to answer.
    #[error("the kubelet did not answer the registration in time")]
    TimedOut,
}
