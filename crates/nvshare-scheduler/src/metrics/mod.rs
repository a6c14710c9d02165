//! Prometheus metrics: what the event loop counts, the gauges that mirror
//! the policy's state per GPU and per job ([`state`]), and (in [`http`])
//! the tiny HTTP responder that serves them.
//!
//! Every metric is an atomic inside `prometheus-client`; the loop updates
//! them, the HTTP thread only reads, so neither ever waits for the other.

pub mod http;
pub mod state;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of per-GPU metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    /// The GPU's UUID, as `nvidia-smi -L` prints it.
    pub gpu: String,
}

/// Labels of per-client metrics (the job name, so series survive restarts
/// of the same job and stay few).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// The GPU.
    pub gpu: String,
    /// The client's job name.
    pub client: String,
}

/// Labels of drop requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// The GPU.
    pub gpu: String,
    /// Why the lock was asked back.
    pub reason: String,
}

/// Labels of host memory metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostMemoryLabels {
    /// The GPU whose memory the host memory holds.
    pub gpu: String,
    /// `pinned` (page-locked) or `pageable`.
    pub memory: String,
}

type SecondsCounter = Counter<f64, AtomicU64>;
type HistogramFamily = Family<GpuLabels, Histogram, fn() -> Histogram>;

/// The daemon's metrics and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Connected hook clients.
    pub clients: Gauge,
    /// Clients waiting for a lock, over all GPUs.
    pub queue_length: Gauge,
    /// Lock grants.
    pub grants: Family<GpuLabels, Counter>,
    /// Lock moves from one client to another.
    pub switches: Family<GpuLabels, Counter>,
    /// Requests to give a lock back.
    pub drop_requests: Family<DropLabels, Counter>,
    /// Seconds each job held each GPU's lock.
    pub held_seconds: Family<ClientLabels, SecondsCounter>,
    /// Bytes clients moved to host memory.
    pub evicted_bytes: Family<GpuLabels, Counter>,
    /// Bytes clients moved back to the GPU.
    pub restored_bytes: Family<GpuLabels, Counter>,
    /// Time from a drop request to the next grant.
    pub switch_latency: HistogramFamily,
    /// Time from a lock request to its grant.
    pub grant_wait: HistogramFamily,
    /// Programs let in beside a holder whose drain was stuck.
    pub overdue_drains: Family<GpuLabels, Counter>,
    /// Connections closed for sending something invalid.
    pub rejected_connections: Counter,
    /// Host memory clients keep as shadows of their GPU memory.
    pub host_shadow_bytes: Family<HostMemoryLabels, Gauge>,
    /// Critical XID events NVML reported, per GPU of this machine (a fixed
    /// set: the GPUs found at start).
    pub xid_errors: Family<GpuLabels, Counter>,
    /// The policy's state per GPU and per job.
    pub state: state::StateGauges,
}

/// One GPU's series in the per-GPU families (shared handles: updating one
/// updates what the registry exports).
#[derive(Debug, Clone)]
pub struct GpuMetrics {
    /// Lock grants.
    pub grants: Counter,
    /// Lock moves between clients.
    pub switches: Counter,
    /// Programs let in beside a stuck drain.
    pub overdue_drains: Counter,
    /// Bytes moved to host memory.
    pub evicted_bytes: Counter,
    /// Bytes moved back.
    pub restored_bytes: Counter,
    /// Drop request to next grant.
    pub switch_latency: Histogram,
    /// Request to grant.
    pub grant_wait: Histogram,
}

fn latency_histogram() -> Histogram {
    // 50 us .. ~52 s: from a lock handoff between idle clients to a full
    // swap of a large job.
    Histogram::new(exponential_buckets(50e-6, 4.0, 11))
}

impl Metrics {
    /// Every metric at zero, registered under the `nvshare_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nvshare");
        let metrics = Metrics {
            clients: Gauge::default(),
            queue_length: Gauge::default(),
            grants: Family::default(),
            switches: Family::default(),
            drop_requests: Family::default(),
            held_seconds: Family::default(),
            evicted_bytes: Family::default(),
            restored_bytes: Family::default(),
            switch_latency: HistogramFamily::new_with_constructor(latency_histogram),
            grant_wait: HistogramFamily::new_with_constructor(latency_histogram),
            overdue_drains: Family::default(),
            rejected_connections: Counter::default(),
            host_shadow_bytes: Family::default(),
            xid_errors: Family::default(),
            state: state::StateGauges::default(),
            registry: Registry::default(),
        };
        registry.register("clients", "Connected hook clients", metrics.clients.clone());
        registry.register(
            "queue_length",
            "Clients waiting for a GPU lock",
            metrics.queue_length.clone(),
        );
        registry.register("grants", "GPU lock grants", metrics.grants.clone());
        registry.register(
            "switches",
            "Times a GPU lock moved from one client to another",
            metrics.switches.clone(),
        );
        registry.register(
            "drop_requests",
            "Requests to a holder to give a GPU lock back, by reason",
            metrics.drop_requests.clone(),
        );
        registry.register(
            "lock_held_seconds",
            "Seconds each job held each GPU lock",
            metrics.held_seconds.clone(),
        );
        registry.register(
            "evicted_bytes",
            "Bytes clients moved from the GPU to host memory",
            metrics.evicted_bytes.clone(),
        );
        registry.register(
            "restored_bytes",
            "Bytes clients moved from host memory back to the GPU",
            metrics.restored_bytes.clone(),
        );
        registry.register(
            "switch_latency_seconds",
            "Time from asking a holder to drop a GPU lock to granting it to the next client",
            metrics.switch_latency.clone(),
        );
        registry.register(
            "grant_wait_seconds",
            "Time from a lock request to its grant",
            metrics.grant_wait.clone(),
        );
        registry.register(
            "overdue_drains",
            "Programs let in beside a lock holder whose drain outlasted the drain timeout (work waiting for another program, e.g. an NCCL collective)",
            metrics.overdue_drains.clone(),
        );
        registry.register(
            "rejected_connections",
            "Connections closed for invalid frames, versions or messages",
            metrics.rejected_connections.clone(),
        );
        registry.register(
            "host_shadow_bytes",
            "Host memory the programs of a GPU keep for their swapped-out (or about to be swapped) GPU memory, pinned or pageable",
            metrics.host_shadow_bytes.clone(),
        );
        registry.register(
            "gpu_xid_errors",
            "Critical XID events (GPU errors reported by the driver through NVML)",
            metrics.xid_errors.clone(),
        );
        metrics.state.register(&mut registry);
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Handles to one GPU's series, looked up once: each update is then a
    /// single atomic operation, with no label hashing.
    pub fn for_gpu(&self, gpu: &str) -> GpuMetrics {
        let labels = GpuLabels {
            gpu: gpu.to_owned(),
        };
        GpuMetrics {
            grants: self.grants.get_or_create(&labels).clone(),
            switches: self.switches.get_or_create(&labels).clone(),
            overdue_drains: self.overdue_drains.get_or_create(&labels).clone(),
            evicted_bytes: self.evicted_bytes.get_or_create(&labels).clone(),
            restored_bytes: self.restored_bytes.get_or_create(&labels).clone(),
            switch_latency: self.switch_latency.get_or_create(&labels).clone(),
            grant_wait: self.grant_wait.get_or_create(&labels).clone(),
        }
    }

    /// Sets `gpu`'s host shadow gauges.
    pub fn set_host_shadows(&self, gpu: &str, pinned: u64, pageable: u64) {
        for (memory, bytes) in [("pinned", pinned), ("pageable", pageable)] {
            self.host_shadow_bytes
                .get_or_create(&HostMemoryLabels {
                    gpu: gpu.to_owned(),
                    memory: memory.to_owned(),
                })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Removes every series of `gpu`: its per-GPU families, its drop
    /// requests for `reasons` and the time held by the jobs named `jobs`.
    /// A GPU nobody uses any more leaves nothing behind, so label sets stay
    /// as few as the GPUs and jobs in use.
    pub fn forget_gpu<'a>(
        &self,
        gpu: &str,
        reasons: impl IntoIterator<Item = &'a str>,
        jobs: impl IntoIterator<Item = &'a str>,
    ) {
        let labels = GpuLabels {
            gpu: gpu.to_owned(),
        };
        self.grants.remove(&labels);
        self.switches.remove(&labels);
        self.overdue_drains.remove(&labels);
        self.evicted_bytes.remove(&labels);
        self.restored_bytes.remove(&labels);
        self.switch_latency.remove(&labels);
        self.grant_wait.remove(&labels);
        for reason in reasons {
            self.drop_requests.remove(&DropLabels {
                gpu: gpu.to_owned(),
                reason: reason.to_owned(),
            });
        }
        for job in jobs {
            self.held_seconds.remove(&ClientLabels {
                gpu: gpu.to_owned(),
                client: job.to_owned(),
            });
        }
        for memory in ["pinned", "pageable"] {
            self.host_shadow_bytes.remove(&HostMemoryLabels {
                gpu: gpu.to_owned(),
                memory: memory.to_owned(),
            });
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_under_its_name() {
        let metrics = Metrics::new();
        let gpu = GpuLabels {
            gpu: "GPU-1".into(),
        };
        metrics.clients.set(3);
        metrics.grants.get_or_create(&gpu).inc();
        metrics.switch_latency.get_or_create(&gpu).observe(0.002);
        metrics
            .held_seconds
            .get_or_create(&ClientLabels {
                gpu: "GPU-1".into(),
                client: "train".into(),
            })
            .inc_by(1.5);
        metrics.set_host_shadows("GPU-1", 3 << 20, 1 << 20);
        let text = metrics.encode();
        for line in [
            "nvshare_clients 3",
            "nvshare_grants_total{gpu=\"GPU-1\"} 1",
            "nvshare_lock_held_seconds_total{gpu=\"GPU-1\",client=\"train\"} 1.5",
            "nvshare_switch_latency_seconds_count{gpu=\"GPU-1\"} 1",
            "# TYPE nvshare_queue_length gauge",
            "# TYPE nvshare_evicted_bytes counter",
            "# TYPE nvshare_restored_bytes counter",
            "# TYPE nvshare_host_shadow_bytes gauge",
            "nvshare_host_shadow_bytes{gpu=\"GPU-1\",memory=\"pinned\"} 3145728",
            "nvshare_host_shadow_bytes{gpu=\"GPU-1\",memory=\"pageable\"} 1048576",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    /// Every series the Grafana dashboard and the alert rules of the Helm
    /// chart query is one the daemon exports: a renamed metric must not
    /// leave an empty panel or a silent alert.
    #[test]
    fn the_dashboard_and_the_alerts_query_only_exported_metrics() {
        let chart =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/nvshare");
        let families: std::collections::BTreeSet<String> = Metrics::new()
            .encode()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        for file in ["dashboards/nvshare.json", "templates/prometheusrule.yaml"] {
            let text = std::fs::read_to_string(chart.join(file)).unwrap();
            let mut queried = 0;
            for (at, _) in text.match_indices("nvshare_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // Series names of the chart itself (labels, release names)
                // are not metrics: only names the daemon could export.
                let family = ["_total", "_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name);
                if !text[at + name.len()..].starts_with(['{', '[', ' ', ')']) {
                    continue;
                }
                queried += 1;
                assert!(
                    families.contains(family),
                    "{file} queries {name}, which the daemon does not export"
                );
            }
            assert!(queried > 0, "{file} queries no nvshare metric");
        }
    }
}
