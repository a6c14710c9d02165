//! Names and paths that several parties must agree on: the kubelet (API
//! version, socket directory), the hook and the scheduler (socket path, env
//! names), the container image (where files live in it) and the Kubernetes
//! manifests under `docker/k8s/` (checked against these by a test).

/// The extended resource a pod requests: `nvshare.com/gpu: 1`.
pub const RESOURCE_NAME: &str = "nvshare.com/gpu";

/// The extended resource of a job's GPU memory, with `--memory-unit`:
/// `nvshare.com/gpumem: 10` is ten units (10 GiB with `--memory-unit
/// 1GiB`), set into the container as its memory limit.
pub const MEMORY_RESOURCE_NAME: &str = "nvshare.com/gpumem";

/// The device plugin API version this plugin implements.
pub const API_VERSION: &str = "v1beta1";

/// The kubelet's device plugin directory.
pub const DEFAULT_DEVICE_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";

/// The kubelet's Registration socket, inside the device plugin directory.
pub const KUBELET_SOCKET_NAME: &str = "kubelet.sock";

/// This plugin's socket, inside the device plugin directory.
pub const PLUGIN_SOCKET_NAME: &str = "nvshare.sock";

/// The socket of the memory resource ([`MEMORY_RESOURCE_NAME`]), inside
/// the device plugin directory: the kubelet takes one resource per socket.
pub const MEMORY_PLUGIN_SOCKET_NAME: &str = "nvshare-gpumem.sock";

/// The smallest `--memory-unit`: the kubelet receives every unit of every
/// GPU as a device in one message (64 MiB units of an 8-GPU H200 node are
/// 18,000 devices, well within its 4 MiB message limit).
pub const MIN_MEMORY_UNIT: u64 = 64 << 20;

/// Marks a memory unit's device ID: `<GPU uuid>__mem<k>`.
pub const MEMORY_DEVICE_MARK: &str = "mem";

/// The scheduler's socket on the node and in every container (the hook's
/// and the original nvshare's path for root).
pub const SCHEDULER_SOCKET: &str = nvshare_proto::socket::SYSTEM_SOCKET;

/// The directory holding [`SCHEDULER_SOCKET`], shared by the DaemonSet and
/// every container through a hostPath mount.
pub const SCHEDULER_SOCKET_DIR: &str = "/var/run/nvshare";

/// The file name of the hook library.
pub const LIB_FILE_NAME: &str = "libnvshare.so";

/// The node directory the plugin installs libnvshare.so into, and the
/// directory it is mounted at in containers. Not under /var/run: /run is
/// mounted `noexec` on many distributions, and a shared library cannot be
/// mapped from a `noexec` mount (nor from a bind mount of one).
pub const DEFAULT_HOST_LIB_DIR: &str = "/usr/local/lib/nvshare";

/// Where containers find the hook: what `LD_PRELOAD` names.
pub const CONTAINER_LIB_PATH: &str = "/usr/local/lib/nvshare/libnvshare.so";

/// Where the container image keeps the files the plugin installs on the
/// node (a staging directory, so the node's directory can be mounted at
/// [`DEFAULT_HOST_LIB_DIR`] in the plugin container without hiding them).
pub const IMAGE_STAGING_DIR: &str = "/opt/nvshare";

/// Where the image keeps the binaries (on `PATH`).
pub const IMAGE_BIN_DIR: &str = "/usr/local/bin";

/// The image the manifests run, without its tag (the tag is the crate
/// version). A local name: operators push the image to their registry and
/// rename it (`images:` in `docker/k8s/kustomization.yaml`).
pub const IMAGE_REPOSITORY: &str = "nvshare";

/// The scheduler's Prometheus port in the DaemonSet (`--metrics-addr
/// 0.0.0.0:9402`).
pub const METRICS_PORT: u16 = 9402;

/// The shares advertised per GPU when `--replicas` is not given.
pub const DEFAULT_REPLICAS: u32 = 10;

/// Separates the GPU uuid from the share number in a device ID.
pub const DEVICE_ID_SEPARATOR: &str = "__";

/// Device health as the kubelet spells it.
pub const HEALTHY: &str = "Healthy";

/// Device health as the kubelet spells it.
pub const UNHEALTHY: &str = "Unhealthy";

/// Environment set in every container that gets a share.
pub mod env {
    /// Preloads the hook.
    pub const LD_PRELOAD: &str = "LD_PRELOAD";
    /// The scheduler socket the hook connects to.
    pub const NVSHARE_SOCK: &str = nvshare_proto::env::SOCK;
    /// Set to [`SCHEDULER_EXTERNAL`]: a container must use the node's
    /// scheduler, never start its own.
    pub const NVSHARE_SCHEDULER: &str = nvshare_proto::env::SCHEDULER;
    /// The value of [`NVSHARE_SCHEDULER`] in containers.
    pub const SCHEDULER_EXTERNAL: &str = "external";
    /// The physical GPUs the NVIDIA container runtime makes visible.
    pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";
    /// The job name the hook reports; not set by the plugin (the kubelet
    /// does not say which pod an allocation is for), set by the pod spec
    /// from the downward API.
    pub const NVSHARE_NAME: &str = nvshare_proto::env::NAME;
    /// The job's priority; set by the pod spec, e.g. from the
    /// [`annotations::PRIORITY`](super::annotations::PRIORITY) annotation.
    pub const NVSHARE_PRIORITY: &str = nvshare_proto::env::PRIORITY;
    /// The job's weight; set by the pod spec, e.g. from an annotation.
    pub const NVSHARE_WEIGHT: &str = nvshare_proto::env::WEIGHT;
    /// The job's memory limit; set by the pod spec, e.g. from an annotation.
    pub const NVSHARE_MEMORY_LIMIT: &str = nvshare_proto::env::MEMORY_LIMIT;
}

/// Pod annotations that carry a job's own settings. The kubelet does not
/// tell a device plugin which pod it allocates for, so the plugin cannot
/// read them; the pod spec hands each to the hook through the downward API
/// (`valueFrom.fieldRef.fieldPath: metadata.annotations['...']`), and an
/// annotation the pod lacks arrives as an empty value, which the hook
/// takes as unset (see `docker/k8s/example-pod.yaml`).
pub mod annotations {
    /// `NVSHARE_PRIORITY`: `-1000` to `1000`, higher goes first.
    pub const PRIORITY: &str = "nvshare.com/priority";
    /// `NVSHARE_WEIGHT`: the time slice in quanta, `1` to `100`.
    pub const WEIGHT: &str = "nvshare.com/weight";
    /// `NVSHARE_MEMORY_LIMIT`: a size such as `10GiB`.
    pub const MEMORY_LIMIT: &str = "nvshare.com/memory-limit";
}
