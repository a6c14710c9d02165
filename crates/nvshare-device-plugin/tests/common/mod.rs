//! Test harness: a fake kubelet (the Registration service on a Unix socket
//! in a temp dir, which, like the real one, dials the plugin back before
//! accepting it) and the real plugin binary run as a child process.

#![allow(dead_code)] // each test file uses part of the harness

use nvshare_device_plugin::api::device_plugin_client::DevicePluginClient;
use nvshare_device_plugin::api::registration_server::{Registration, RegistrationServer};
use nvshare_device_plugin::api::{Empty, ListAndWatchResponse, RegisterRequest};
use nvshare_device_plugin::constants::{
    KUBELET_SOCKET_NAME, MEMORY_PLUGIN_SOCKET_NAME, PLUGIN_SOCKET_NAME,
};
use nvshare_device_plugin::unix_channel;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// How long any single expected event may take on a loaded CI machine.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A temp dir laid out like a node: the kubelet's device plugin directory,
/// the node's nvshare lib directory, a GPU list file and the image's files.
pub struct Node {
    pub root: tempfile::TempDir,
}

impl Node {
    pub fn new(gpus: &[&str]) -> Node {
        let node = Node {
            root: tempfile::tempdir().expect("a temp dir"),
        };
        std::fs::create_dir_all(node.plugin_dir()).unwrap();
        std::fs::create_dir_all(node.image_dir()).unwrap();
        std::fs::write(node.image_dir().join("libnvshare.so"), b"\x7fELF test hook").unwrap();
        node.set_gpus(gpus);
        node
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.root.path().join("device-plugins")
    }
    pub fn kubelet_socket(&self) -> PathBuf {
        self.plugin_dir().join(KUBELET_SOCKET_NAME)
    }
    pub fn plugin_socket(&self) -> PathBuf {
        self.plugin_dir().join(PLUGIN_SOCKET_NAME)
    }
    pub fn lib_dir(&self) -> PathBuf {
        self.root.path().join("node-lib")
    }
    pub fn image_dir(&self) -> PathBuf {
        self.root.path().join("image")
    }
    pub fn gpu_file(&self) -> PathBuf {
        self.root.path().join("gpus")
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.path().join("plugin.log")
    }

    /// Rewrites the GPU list atomically (the plugin never reads half a file).
    pub fn set_gpus(&self, gpus: &[&str]) {
        let temp = self.root.path().join("gpus.tmp");
        std::fs::write(
            &temp,
            gpus.iter().map(|g| format!("{g}\n")).collect::<String>(),
        )
        .unwrap();
        std::fs::rename(&temp, self.gpu_file()).unwrap();
    }

    /// Starts the plugin: 3 shares per GPU, GPUs from the list file, fast
    /// polling, libnvshare.so installed from the "image".
    pub fn spawn_plugin(&self, extra: &[&str]) -> Plugin {
        self.spawn_plugin_with(extra, Setup::default())
    }

    /// Starts the plugin as [`Node::spawn_plugin`], changed by `setup`.
    pub fn spawn_plugin_with(&self, extra: &[&str], setup: Setup) -> Plugin {
        let mut args: Vec<String> = vec![
            "--replicas".into(),
            "3".into(),
            "--device-plugin-dir".into(),
            self.plugin_dir().display().to_string(),
            "--host-lib-dir".into(),
            self.lib_dir().display().to_string(),
            "--rescan-interval".into(),
            "0.1".into(),
            "--kubelet-poll-interval".into(),
            "0.1".into(),
            "--log".into(),
            "debug".into(),
        ];
        if !setup.no_gpu_list_file {
            args.extend([
                "--gpu-list-file".into(),
                self.gpu_file().display().to_string(),
            ]);
        }
        if !setup.no_install {
            let lib = self.image_dir().join("libnvshare.so");
            args.extend(["--install".into(), lib.display().to_string()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = std::fs::File::create(self.log_file()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nvshare-device-plugin"))
            .args(&args)
            .env_remove("NVSHARE_SOCK")
            .env_remove("NVSHARE_REPLICAS")
            .env_remove("NVSHARE_MEMORY_UNIT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the plugin binary starts");
        Plugin {
            child: Some(child),
            log: self.log_file(),
        }
    }

    /// A DevicePlugin client on the plugin's socket, waiting for it.
    pub async fn plugin_client(&self) -> DevicePluginClient<Channel> {
        self.client_on(&self.plugin_socket()).await
    }

    /// A DevicePlugin client on the memory resource's socket, waiting for it.
    pub async fn memory_client(&self) -> DevicePluginClient<Channel> {
        self.client_on(&self.plugin_dir().join(MEMORY_PLUGIN_SOCKET_NAME))
            .await
    }

    async fn client_on(&self, socket: &Path) -> DevicePluginClient<Channel> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(channel) = unix_channel::connect(socket).await {
                return DevicePluginClient::new(channel);
            }
            assert!(
                Instant::now() < deadline,
                "the plugin never served {}",
                socket.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Departures from the usual test setup.
#[derive(Debug, Default, Clone, Copy)]
pub struct Setup {
    /// Do not install libnvshare.so on the node.
    pub no_install: bool,
    /// Do not pass --gpu-list-file (the plugin asks nvidia-smi).
    pub no_gpu_list_file: bool,
}

/// The plugin process; killed on drop so no test leaves it behind.
pub struct Plugin {
    child: Option<Child>,
    log: PathBuf,
}

impl Plugin {
    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the plugin ignored SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the plugin exits on its own, until `deadline`.
    pub fn wait_exit(mut self, deadline: Instant) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("running");
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the plugin logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("plugin log:\n{}", self.log());
            }
        }
    }
}

/// The kubelet's Registration service, recording what registers.
pub struct FakeKubelet {
    registrations: mpsc::UnboundedReceiver<RegisterRequest>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    socket: PathBuf,
}

struct Recorder {
    plugin_dir: PathBuf,
    registrations: mpsc::UnboundedSender<RegisterRequest>,
}

#[tonic::async_trait]
impl Registration for Recorder {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        // As the kubelet does: a plugin that does not answer on its
        // endpoint is not registered.
        let endpoint = self.plugin_dir.join(&request.endpoint);
        let channel = unix_channel::connect(&endpoint).await.map_err(|e| {
            Status::failed_precondition(format!("cannot dial {}: {e}", endpoint.display()))
        })?;
        DevicePluginClient::new(channel)
            .get_device_plugin_options(Empty {})
            .await?;
        let _ = self.registrations.send(request);
        Ok(Response::new(Empty {}))
    }
}

impl FakeKubelet {
    /// Serves Registration at `node`'s kubelet.sock.
    pub fn start(node: &Node) -> FakeKubelet {
        let socket = node.kubelet_socket();
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind kubelet.sock");
        let (tx, registrations) = mpsc::unbounded_channel();
        let (stop, mut stop_rx) = watch::channel(false);
        let recorder = Recorder {
            plugin_dir: node.plugin_dir(),
            registrations: tx,
        };
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RegistrationServer::new(recorder))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    async move {
                        let _ = stop_rx.wait_for(|s| *s).await;
                    },
                ),
        );
        FakeKubelet {
            registrations,
            stop,
            task,
            socket,
        }
    }

    /// The next registration, within [`PATIENCE`].
    pub async fn next_registration(&mut self) -> RegisterRequest {
        tokio::time::timeout(PATIENCE, self.registrations.recv())
            .await
            .expect("the plugin registers in time")
            .expect("the fake kubelet is running")
    }

    /// Whether another registration arrives within `wait`.
    pub async fn registers_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.registrations.recv())
            .await
            .is_ok()
    }

    /// Stops serving and removes kubelet.sock, as a dying kubelet would.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(PATIENCE, self.task).await;
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Reads the next device list from a ListAndWatch stream.
pub async fn next_list(stream: &mut Streaming<ListAndWatchResponse>) -> Vec<(String, String)> {
    let response = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a device list in time")
        .expect("the stream works")
        .expect("the stream stays open");
    response
        .devices
        .into_iter()
        .map(|d| (d.id, d.health))
        .collect()
}

/// Waits until `path` no longer exists.
pub async fn wait_gone(path: &Path) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}
