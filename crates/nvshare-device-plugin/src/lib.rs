//! The nvshare kubelet device plugin: advertises `--replicas` shares of every
//! GPU on the node as the extended resource `nvshare.com/gpu`, and wires each
//! container that gets a share to the node's nvshare scheduler (libnvshare.so
//! preloaded, the scheduler socket mounted, the physical GPU made visible);
//! with `--memory-unit`, also each GPU's memory as `nvshare.com/gpumem`,
//! whose units a container asks for become its memory limit.
//!
//! # Layout
//!
//! - [`api`]: the kubelet device plugin API v1beta1, generated at build time
//!   from `proto/api.proto` (prost messages, tonic client and server).
//! - [`constants`]: names and paths shared with the kubelet, the hook, the
//!   scheduler and the Kubernetes manifests (the manifest test checks them).
//! - [`config`]: the command line, resolved into a [`config::Config`].
//! - [`error`]: [`error::PluginError`], what can stop the plugin.
//! - [`gpus`]: where the list of physical GPUs comes from (nvidia-smi, a
//!   fixed list, or a file) and how that list is parsed.
//! - [`inventory`]: GPUs seen so far, their health and memory, and the
//!   virtual device IDs (`<GPU uuid>__<k>`, `<GPU uuid>__mem<k>`) derived
//!   from them. Pure, no I/O.
//! - [`monitor`]: the task that rescans GPUs and publishes inventory changes.
//! - [`allocation`]: what a container gets for its devices (mounts, envs).
//! - [`preferred`]: which devices to suggest when the kubelet asks.
//! - [`service`]: the `DevicePlugin` gRPC service the kubelet calls, one
//!   per resource.
//! - [`unix_channel`]: gRPC clients over Unix sockets (kubelet, tests).
//! - [`socket_identity`]: telling a recreated socket file from the old one.
//! - [`stop_signal`]: waiting for a one-shot stop flag.
//! - [`install`]: copying libnvshare.so (and friends) onto the node.
//! - [`plugin`]: the lifecycle: serve, register, re-register when the kubelet
//!   restarts, clean up on shutdown.

/// The kubelet device plugin API v1beta1 (generated; see `proto/api.proto`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod api {
    tonic::include_proto!("v1beta1");
}

pub mod allocation;
pub mod config;
pub mod constants;
pub mod error;
pub mod gpus;
pub mod install;
pub mod inventory;
pub mod monitor;
pub mod plugin;
pub mod preferred;
pub mod service;
pub mod socket_identity;
pub mod stop_signal;
pub mod unix_channel;
