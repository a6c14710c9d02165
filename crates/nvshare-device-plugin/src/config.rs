//! The command line of `nvshare-device-plugin`, resolved into a [`Config`].

use crate::allocation::AllocationSettings;
use crate::constants::{
    DEFAULT_DEVICE_PLUGIN_DIR, DEFAULT_HOST_LIB_DIR, DEFAULT_REPLICAS, LIB_FILE_NAME,
    MEMORY_RESOURCE_NAME, MIN_MEMORY_UNIT, SCHEDULER_SOCKET,
};
use crate::gpus::GpuSource;
use crate::inventory::MemoryResource;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the plugin needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Shares advertised per GPU.
    pub replicas: u32,
    /// The kubelet's device plugin directory (its socket and ours).
    pub device_plugin_dir: PathBuf,
    /// Where the GPU list comes from.
    pub gpu_source: GpuSource,
    /// How often GPUs are rescanned.
    pub rescan_interval: Duration,
    /// How often the kubelet socket is checked for a kubelet restart.
    pub kubelet_poll_interval: Duration,
    /// Files copied into [`Config::host_lib_dir`] before registering.
    pub install: Vec<PathBuf>,
    /// The node directory holding libnvshare.so.
    pub host_lib_dir: PathBuf,
    /// What containers are given.
    pub allocation: AllocationSettings,
    /// The `tracing` filter.
    pub log_filter: String,
    /// XID codes that do not make a GPU unhealthy (errors of one
    /// application, not of the GPU).
    pub ignored_xids: Vec<u64>,
    /// How GPU memory is advertised as `nvshare.com/gpumem`, if it is.
    pub memory_resource: Option<MemoryResource>,
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "nvshare-device-plugin",
    version,
    about = "Kubelet device plugin: advertises shares of each GPU as nvshare.com/gpu and wires containers to the node's nvshare scheduler"
)]
pub struct Cli {
    /// Shares advertised per GPU: how many containers may share one GPU.
    #[arg(long, env = "NVSHARE_REPLICAS", default_value_t = DEFAULT_REPLICAS,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub replicas: u32,

    /// The kubelet's device plugin directory (holds kubelet.sock).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DEVICE_PLUGIN_DIR)]
    pub device_plugin_dir: PathBuf,

    /// Advertise exactly these GPUs (comma-separated uuids) instead of
    /// asking NVML.
    #[arg(
        long,
        value_name = "UUIDS",
        value_delimiter = ',',
        conflicts_with = "gpu_list_file"
    )]
    pub gpu_uuids: Option<Vec<String>>,

    /// Read the GPUs from this file at every rescan (one uuid per line,
    /// nvidia-smi CSV accepted) instead of asking NVML.
    #[arg(long, value_name = "PATH")]
    pub gpu_list_file: Option<PathBuf>,

    /// List the GPUs by running this nvidia-smi program instead of asking
    /// NVML.
    #[arg(long, value_name = "PATH")]
    pub nvidia_smi: Option<PathBuf>,

    /// Where NVML is loaded from to list the GPUs (the scheduler's source
    /// too), unless one of the options above is given.
    #[arg(long, env = "NVSHARE_NVML_LIBRARY", value_name = "PATH",
          default_value = nvshare_gpus::DEFAULT_LIBRARY)]
    pub nvml_library: PathBuf,

    /// XID codes (comma-separated) that do not make a GPU's shares
    /// Unhealthy when NVML reports them: by default those NVIDIA's device
    /// plugin skips, errors of one application rather than of the GPU
    /// (13 graphics exception, 31 memory page fault, 43 stopped, 45
    /// preemptive cleanup, 68 video processor, 109 context-switch timeout).
    #[arg(
        long,
        value_name = "XIDS",
        value_delimiter = ',',
        default_value = "13,31,43,45,68,109"
    )]
    pub ignore_xids: Vec<u64>,

    /// Also advertise each GPU's memory as the resource nvshare.com/gpumem,
    /// in units of this size (e.g. 1GiB, at least 64MiB): a container that
    /// asks for N units is given NVSHARE_MEMORY_LIMIT = N units, what the
    /// hook lets it hold and shows it as the GPU's memory.
    #[arg(long, env = "NVSHARE_MEMORY_UNIT", value_name = "SIZE", value_parser = parse_memory_unit)]
    pub memory_unit: Option<u64>,

    /// The memory of each GPU whose source does not report it (a fixed
    /// list, a list file, nvidia-smi), for nvshare.com/gpumem (e.g. 80GiB).
    #[arg(long, value_name = "SIZE", requires = "memory_unit", value_parser = nvshare_proto::units::parse_size)]
    pub gpu_memory: Option<u64>,

    /// Seconds between GPU rescans (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub rescan_interval: Duration,

    /// Seconds between checks for a restarted kubelet (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
    pub kubelet_poll_interval: Duration,

    /// Copy this file into --host-lib-dir before registering (repeatable):
    /// the DaemonSet installs libnvshare.so and nvshare-ctl from the image.
    #[arg(long, value_name = "FILE")]
    pub install: Vec<PathBuf>,

    /// The node directory holding libnvshare.so, mounted at the same path
    /// in the plugin container.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_HOST_LIB_DIR)]
    pub host_lib_dir: PathBuf,

    /// The scheduler's socket on the node; its directory is mounted into
    /// containers at the same path.
    #[arg(long, env = nvshare_proto::env::SOCK, value_name = "PATH", default_value = SCHEDULER_SOCKET)]
    pub scheduler_socket: PathBuf,

    /// Log filter in tracing's syntax. Default: info, or debug when
    /// NVSHARE_DEBUG=1.
    #[arg(long, env = nvshare_proto::env::LOG, value_name = "FILTER")]
    pub log: Option<String>,
}

impl Cli {
    /// Resolves the command line.
    pub fn into_config(self) -> Config {
        let gpu_source = match (self.gpu_uuids, self.gpu_list_file, self.nvidia_smi) {
            (Some(uuids), _, _) => GpuSource::Fixed(uuids),
            (None, Some(file), _) => GpuSource::File(file),
            (None, None, Some(program)) => GpuSource::NvidiaSmi(program),
            (None, None, None) => GpuSource::Nvml(self.nvml_library),
        };
        let log_filter = nvshare_proto::env::log_filter(self.log, "info");
        Config {
            replicas: self.replicas,
            device_plugin_dir: self.device_plugin_dir,
            gpu_source,
            rescan_interval: self.rescan_interval,
            kubelet_poll_interval: self.kubelet_poll_interval,
            install: self.install,
            allocation: AllocationSettings {
                host_lib_path: self.host_lib_dir.join(LIB_FILE_NAME),
                scheduler_socket: self.scheduler_socket,
            },
            ignored_xids: self.ignore_xids,
            memory_resource: self.memory_unit.map(|unit| MemoryResource {
                unit,
                default_memory: self.gpu_memory,
            }),
            host_lib_dir: self.host_lib_dir,
            log_filter,
        }
    }
}

/// A size of at least [`MIN_MEMORY_UNIT`].
fn parse_memory_unit(text: &str) -> Result<u64, String> {
    let unit = nvshare_proto::units::parse_size(text)?;
    if unit < MIN_MEMORY_UNIT {
        return Err(format!(
            "{text:?} is smaller than {} MiB: every unit of every GPU is a device the kubelet lists, so {MEMORY_RESOURCE_NAME} needs units of at least that (e.g. 1GiB)",
            MIN_MEMORY_UNIT >> 20
        ));
    }
    Ok(unit)
}

/// Seconds, fractions allowed (`5`, `0.2`), or milliseconds (`200ms`).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let parsed = match text.strip_suffix("ms") {
        Some(ms) => ms.trim().parse::<f64>().map(|ms| ms / 1000.0),
        None => text.trim().trim_end_matches('s').parse::<f64>(),
    };
    match parsed {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 3600.0 => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(format!(
            "{text:?} is not a duration between 1ms and 3600s (e.g. 5, 0.5, 200ms)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("nvshare-device-plugin").chain(args.iter().copied()))
            .map(Cli::into_config)
    }

    #[test]
    fn defaults_match_the_kubelet_and_the_daemonset() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.replicas, 10);
        assert_eq!(
            config.device_plugin_dir,
            PathBuf::from("/var/lib/kubelet/device-plugins")
        );
        assert_eq!(
            config.gpu_source,
            GpuSource::Nvml("libnvidia-ml.so.1".into())
        );
        assert_eq!(config.ignored_xids, [13, 31, 43, 45, 68, 109]);
        assert_eq!(
            config.allocation.host_lib_path,
            PathBuf::from("/usr/local/lib/nvshare/libnvshare.so")
        );
        assert_eq!(
            config.allocation.scheduler_socket,
            PathBuf::from("/var/run/nvshare/scheduler.sock")
        );
    }

    #[test]
    fn gpu_sources_and_durations_parse() {
        let config = parse(&["--gpu-uuids", "GPU-a,GPU-b", "--rescan-interval", "200ms"]).unwrap();
        assert_eq!(
            config.gpu_source,
            GpuSource::Fixed(vec!["GPU-a".into(), "GPU-b".into()])
        );
        assert_eq!(config.rescan_interval, Duration::from_millis(200));
        let config = parse(&["--gpu-list-file", "/x", "--kubelet-poll-interval", "0.5"]).unwrap();
        assert_eq!(config.gpu_source, GpuSource::File("/x".into()));
        assert_eq!(config.kubelet_poll_interval, Duration::from_millis(500));
        let config = parse(&["--nvidia-smi", "/usr/bin/nvidia-smi"]).unwrap();
        assert_eq!(
            config.gpu_source,
            GpuSource::NvidiaSmi("/usr/bin/nvidia-smi".into())
        );
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(parse(&["--replicas", "0"]).is_err());
        assert!(parse(&["--rescan-interval", "0"]).is_err());
        assert!(parse(&["--rescan-interval", "soon"]).is_err());
        assert!(parse(&["--gpu-uuids", "GPU-a", "--gpu-list-file", "/x"]).is_err());
        assert!(parse(&["--memory-unit", "1MiB"]).is_err());
        assert!(parse(&["--memory-unit", "lots"]).is_err());
        assert!(
            parse(&["--gpu-memory", "80GiB"]).is_err(),
            "a GPU's memory means nothing without the memory resource"
        );
    }

    #[test]
    fn the_memory_resource_is_off_unless_a_unit_is_given() {
        assert_eq!(parse(&[]).unwrap().memory_resource, None);
        let config = parse(&["--memory-unit", "1GiB", "--gpu-memory", "80GiB"]).unwrap();
        assert_eq!(
            config.memory_resource,
            Some(MemoryResource {
                unit: 1 << 30,
                default_memory: Some(80 << 30)
            })
        );
    }
}
