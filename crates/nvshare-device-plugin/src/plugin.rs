//! The plugin's lifecycle. Forever, until shutdown: wait for the kubelet's
//! socket, serve the DevicePlugin service on our socket, register, then
//! watch both sockets; when the kubelet restarts (its socket is recreated,
//! or ours is removed, as a starting kubelet does) start over. Each
//! resource (shares, and memory with `--memory-unit`) has a lifecycle of
//! its own, on its own socket, over the same inventory.

use crate::allocation::AllocationSettings;
use crate::api::RegisterRequest;
use crate::api::device_plugin_server::DevicePluginServer;
use crate::api::registration_client::RegistrationClient;
use crate::config::Config;
use crate::constants::{API_VERSION, KUBELET_SOCKET_NAME};
use crate::error::{PluginError, RegisterError};
use crate::install::install_files;
use crate::inventory::Inventory;
use crate::monitor::Monitor;
use crate::service::{DevicePluginService, Resource, plugin_options};
use crate::socket_identity::SocketIdentity;
use crate::unix_channel;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;

/// How long a registration call may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest wait between two registration attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// How long a stopping server may take to close its connections.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the plugin until `shutdown` turns true.
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) -> Result<(), PluginError> {
    if !config.install.is_empty() {
        install_files(&config.install, &config.host_lib_dir)?;
    }
    let mut empty = Inventory::new(config.replicas);
    if let Some(resource) = config.memory_resource {
        empty = empty.with_memory_resource(resource);
    }
    let (inventory_tx, inventory) = watch::channel(empty);
    let mut monitor = Monitor::new(config.gpu_source.clone(), inventory_tx);
    monitor.scan_once().await;
    monitor.watch_xids(&config.ignored_xids);
    let monitor = tokio::spawn(monitor.run(config.rescan_interval, shutdown.clone()));

    let lifecycle = |resource: Resource| Lifecycle {
        config: &config,
        resource,
        inventory: inventory.clone(),
        kubelet_socket: config.device_plugin_dir.join(KUBELET_SOCKET_NAME),
        plugin_socket: config.device_plugin_dir.join(resource.socket_name()),
    };
    let result = if config.memory_resource.is_some() {
        let mut memory_shutdown = shutdown.clone();
        let (shares, memory) = (lifecycle(Resource::Shares), lifecycle(Resource::Memory));
        // The first error ends both: a plugin that cannot serve one of its
        // resources exits (and is restarted) rather than limp on.
        tokio::try_join!(shares.run(&mut shutdown), memory.run(&mut memory_shutdown),)
            .map(|((), ())| ())
    } else {
        lifecycle(Resource::Shares).run(&mut shutdown).await
    };
    // The monitor watches `shutdown` too; on an error it must be told.
    monitor.abort();
    let _ = monitor.await;
    tracing::info!("stopped");
    result
}

struct Lifecycle<'a> {
    config: &'a Config,
    resource: Resource,
    inventory: watch::Receiver<Inventory>,
    kubelet_socket: PathBuf,
    plugin_socket: PathBuf,
}

/// Why one generation (serve + register + watch) ended.
enum GenerationEnd {
    Shutdown,
    Restart(&'static str),
}

impl Lifecycle<'_> {
    async fn run(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), PluginError> {
        loop {
            let Some(kubelet) = self.wait_for_kubelet(shutdown).await else {
                return Ok(());
            };
            let server = RunningServer::start(
                self.resource,
                &self.plugin_socket,
                self.inventory.clone(),
                Arc::new(self.config.allocation.clone()),
            )?;
            let end = match self.register(kubelet, &server, shutdown).await {
                Some(end) => end,
                None => self.watch(kubelet, &server, shutdown).await,
            };
            server.stop().await;
            match end {
                GenerationEnd::Shutdown => return Ok(()),
                GenerationEnd::Restart(why) => {
                    tracing::info!("{why}: serving and registering again")
                }
            }
        }
    }

    fn poll(&self) -> Duration {
        self.config.kubelet_poll_interval
    }

    /// Waits until the kubelet's socket exists; None on shutdown.
    async fn wait_for_kubelet(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<SocketIdentity> {
        let mut logged = false;
        loop {
            if let Some(identity) = SocketIdentity::of(&self.kubelet_socket) {
                return Some(identity);
            }
            if !logged {
                tracing::info!(socket = %self.kubelet_socket.display(), "waiting for the kubelet's socket");
                logged = true;
            }
            if sleep_or_shutdown(self.poll(), shutdown).await {
                return None;
            }
        }
    }

    /// Registers, retrying with a growing delay. None once registered,
    /// else why this generation ends.
    async fn register(
        &self,
        kubelet: SocketIdentity,
        server: &RunningServer,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<GenerationEnd> {
        let mut delay = self.poll();
        let mut last_error = String::new();
        loop {
            match register_once(&self.kubelet_socket, self.resource).await {
                Ok(()) => {
                    tracing::info!(
                        resource = self.resource.name(),
                        endpoint = self.resource.socket_name(),
                        "registered with the kubelet"
                    );
                    return None;
                }
                Err(e) => {
                    let text = e.to_string();
                    if text != last_error {
                        tracing::warn!("{text}; retrying");
                        last_error = text;
                    }
                }
            }
            if sleep_or_shutdown(delay, shutdown).await {
                return Some(GenerationEnd::Shutdown);
            }
            if let Some(end) = self.restart_reason(kubelet, server) {
                return Some(end);
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Polls until the kubelet restarts or shutdown.
    async fn watch(
        &self,
        kubelet: SocketIdentity,
        server: &RunningServer,
        shutdown: &mut watch::Receiver<bool>,
    ) -> GenerationEnd {
        loop {
            if sleep_or_shutdown(self.poll(), shutdown).await {
                return GenerationEnd::Shutdown;
            }
            if let Some(end) = self.restart_reason(kubelet, server) {
                return end;
            }
        }
    }

    fn restart_reason(
        &self,
        kubelet: SocketIdentity,
        server: &RunningServer,
    ) -> Option<GenerationEnd> {
        if SocketIdentity::of(&self.kubelet_socket) != Some(kubelet) {
            Some(GenerationEnd::Restart("the kubelet's socket was recreated"))
        } else if SocketIdentity::of(&self.plugin_socket) != Some(server.identity) {
            Some(GenerationEnd::Restart("our socket was removed"))
        } else if server.task.is_finished() {
            Some(GenerationEnd::Restart("our gRPC server stopped"))
        } else {
            None
        }
    }
}

/// Sleeps for `delay`; true if shutdown came first.
async fn sleep_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = crate::stop_signal::stopped(shutdown) => true,
        () = tokio::time::sleep(delay) => false,
    }
}

async fn register_once(kubelet_socket: &Path, resource: Resource) -> Result<(), RegisterError> {
    let attempt = async {
        let channel = unix_channel::connect(kubelet_socket)
            .await
            .map_err(|source| RegisterError::Connect {
                path: kubelet_socket.to_owned(),
                source,
            })?;
        RegistrationClient::new(channel)
            .register(RegisterRequest {
                version: API_VERSION.to_owned(),
                endpoint: resource.socket_name().to_owned(),
                resource_name: resource.name().to_owned(),
                options: Some(plugin_options()),
            })
            .await?;
        Ok(())
    };
    tokio::time::timeout(REGISTER_TIMEOUT, attempt)
        .await
        .unwrap_or(Err(RegisterError::TimedOut))
}

/// One generation's gRPC server on the plugin socket.
struct RunningServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    socket: PathBuf,
    identity: SocketIdentity,
}

impl RunningServer {
    fn start(
        resource: Resource,
        socket: &Path,
        inventory: watch::Receiver<Inventory>,
        settings: Arc<AllocationSettings>,
    ) -> Result<RunningServer, PluginError> {
        let listen_err = |source| PluginError::Listen {
            path: socket.to_owned(),
            source,
        };
        match std::fs::remove_file(socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(listen_err(e)),
            _ => {}
        }
        let listener = UnixListener::bind(socket).map_err(listen_err)?;
        let identity = SocketIdentity::of(socket).ok_or_else(|| {
            listen_err(std::io::Error::other(
                "the socket vanished right after bind",
            ))
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let service = DevicePluginService::new(resource, inventory, settings, stop_rx.clone());
        let mut stop_signal = stop_rx;
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DevicePluginServer::new(service))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    crate::stop_signal::stopped(&mut stop_signal).await;
                }),
        );
        tracing::info!(socket = %socket.display(), resource = resource.name(), "serving the device plugin API");
        Ok(RunningServer {
            stop,
            task,
            socket: socket.to_owned(),
            identity,
        })
    }

    /// Stops serving and removes the socket (if it is still ours).
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(SERVER_STOP_TIMEOUT, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("the gRPC server failed: {e}"),
            Ok(Err(e)) => tracing::warn!("the gRPC server task failed: {e}"),
            Err(_) => {
                tracing::warn!(
                    "the gRPC server did not stop in {SERVER_STOP_TIMEOUT:?}; dropping its connections"
                );
                self.task.abort();
            }
        }
        if SocketIdentity::of(&self.socket) == Some(self.identity) {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}
