//! The nvshare scheduler daemon: decides which programs may use each GPU and
//! how much of their memory stays on it.
//!
//! A pure policy (no I/O, no clock) wrapped by a single-threaded I/O shell.
//!
//! # Layout
//! - [`policy`]: the pure scheduling state machine (events in, actions out).
//! - [`server`]: the I/O shell: the epoll event loop ([`server::Server`]),
//!   reading and dispatching frames (`server::inbound`), writing, closing
//!   and shutting down (`server::outbound`), the listening socket's life
//!   ([`server::listener`]), one connection's buffers and credentials
//!   ([`server::connection`]), the handshake's checks and refusals
//!   ([`server::handshake`]) and operator requests ([`server::control`]).
//! - [`daemon`]: startup in order (signals, socket, metrics, readiness, loop).
//! - [`config`]: the command line and environment, parsed once into
//!   [`config::Config`].
//! - [`inventory`]: the GPUs found through NVML at start, and their XIDs.
//! - [`observe`]: the policy's records as log lines and metric updates.
//! - [`logging`]: log output batched by a background thread, so the loop
//!   never waits on stderr.
//! - [`metrics`]: the Prometheus metrics and their HTTP responder
//!   ([`metrics::http`]).
//! - [`signals`]: SIGTERM/SIGINT as a file descriptor for the loop.
//! - [`notify`]: systemd readiness notification (`Type=notify`).
//! - [`error`]: [`error::ServerError`], why the daemon could not run.

pub mod config;
pub mod daemon;
pub mod error;
pub mod inventory;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod policy;
pub mod server;
pub mod signals;
