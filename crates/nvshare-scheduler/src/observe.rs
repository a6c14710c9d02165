//! Turns the policy's [`Record`]s into one log line each and metric updates.

use crate::metrics::state::StateMirror;
use crate::metrics::{ClientLabels, DropLabels, GpuMetrics, Metrics};
use crate::policy::Record;
use nvshare_proto::units::Bytes;
use nvshare_proto::{ClientId, GpuStatus, GpuUuid};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Logs and counts what the policy reports; knows each client's name.
#[derive(Debug)]
pub struct Observer {
    metrics: Arc<Metrics>,
    names: HashMap<ClientId, String>,
    /// Each GPU's label and metric handles, made once: formatting a UUID
    /// and hashing labels cost more than the rest of a lock handoff.
    gpus: HashMap<GpuUuid, GpuEntry>,
    /// The state gauges' series set by the last mirror.
    mirror: StateMirror,
}

#[derive(Debug)]
struct GpuEntry {
    label: String,
    metrics: GpuMetrics,
    /// The drop reasons and job names that have series for this GPU.
    reasons: BTreeSet<&'static str>,
    jobs: BTreeSet<String>,
}

impl Observer {
    /// An observer updating `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Observer {
            metrics,
            names: HashMap::new(),
            gpus: HashMap::new(),
            mirror: StateMirror::default(),
        }
    }

    /// The metrics this observer updates.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Remembers a client's name for later lines.
    pub fn client_connected(
        &mut self,
        client: ClientId,
        pid: u32,
        uid: u32,
        name: &str,
        group: Option<&str>,
    ) {
        info!(client, name, pid, uid, group, "client connected");
        self.names.insert(client, name.to_owned());
    }

    /// Forgets a client (after its disconnection's records were observed).
    pub fn client_gone(&mut self, client: ClientId, why: &str) {
        let name = self.names.remove(&client).unwrap_or_default();
        info!(client, name, why, "client disconnected");
    }

    /// Updates the gauges that mirror the policy's state.
    pub fn set_load(&self, clients: usize, queue_length: usize) {
        self.metrics.clients.set(clients as i64);
        self.metrics.queue_length.set(queue_length as i64);
    }

    /// Whether the state gauges show any job (see `StateMirror::has_jobs`).
    pub fn mirrors_jobs(&self) -> bool {
        self.mirror.has_jobs()
    }

    /// Sets the state gauges from the policy's status of every GPU.
    pub fn mirror_state(&mut self, status: &[GpuStatus]) {
        self.mirror.refresh(&self.metrics.state, status);
    }

    fn name(&self, client: ClientId) -> &str {
        self.names.get(&client).map_or("?", String::as_str)
    }

    /// One log line and the metric updates for `record`.
    pub fn record(&mut self, record: &Record) {
        if let Record::GpuForgotten { gpu } = record {
            if let Some(entry) = self.gpus.remove(gpu) {
                let reasons = entry.reasons.iter().copied();
                let jobs = entry.jobs.iter().map(String::as_str);
                self.metrics.forget_gpu(&entry.label, reasons, jobs);
                info!(gpu = entry.label, "GPU forgotten: its last program left");
            }
            return;
        }
        let gpu = match record {
            Record::Granted { gpu, .. }
            | Record::Resumed { gpu, .. }
            | Record::ClaimRefused { gpu, .. }
            | Record::DropRequested { gpu, .. }
            | Record::Released { gpu, .. }
            | Record::Switched { gpu, .. }
            | Record::DrainOverdue { gpu, .. }
            | Record::DrainStuck { gpu, .. }
            | Record::Evicted { gpu, .. }
            | Record::Restored { gpu, .. }
            | Record::HostShadows { gpu, .. }
            | Record::GpuForgotten { gpu } => *gpu,
        };
        let metrics = &self.metrics;
        self.gpus.entry(gpu).or_insert_with(|| {
            let label = gpu.to_string();
            GpuEntry {
                metrics: metrics.for_gpu(&label),
                label,
                reasons: BTreeSet::new(),
                jobs: BTreeSet::new(),
            }
        });
        match record {
            Record::DropRequested { reason, .. } => {
                let entry = self.gpus.get_mut(&gpu).expect("made above");
                entry.reasons.insert(reason);
            }
            Record::Released { client, .. } => {
                let name = self.names.get(client).map_or("?", String::as_str);
                let entry = self.gpus.get_mut(&gpu).expect("made above");
                if !entry.jobs.contains(name) {
                    entry.jobs.insert(name.to_owned());
                }
            }
            _ => {}
        }
        let entry = &self.gpus[&gpu];
        let (label, g, m) = (entry.label.as_str(), &entry.metrics, &*self.metrics);
        match record {
            Record::Granted {
                client,
                gpu: _,
                waited,
            } => {
                info!(
                    client,
                    name = self.name(*client),
                    gpu = label,
                    waited_ms = ms(*waited),
                    "lock granted"
                );
                g.grants.inc();
                g.grant_wait.observe(waited.as_secs_f64());
            }
            Record::DropRequested {
                client,
                gpu: _,
                evict_bytes,
                reason,
            } => {
                info!(client, name = self.name(*client), gpu = label,
                      evict = %Bytes(*evict_bytes), reason, "lock drop requested");
                m.drop_requests
                    .get_or_create(&DropLabels {
                        gpu: label.to_owned(),
                        reason: (*reason).to_owned(),
                    })
                    .inc();
            }
            Record::Resumed { client, .. } => {
                info!(
                    client,
                    name = self.name(*client),
                    gpu = label,
                    "holder resumed after a restart: it keeps the GPU it held"
                );
            }
            Record::ClaimRefused { client, .. } => {
                warn!(
                    client,
                    name = self.name(*client),
                    gpu = label,
                    "a program says it holds this GPU, but claims are believed only within the recovery grace after a restart; it waits in line"
                );
            }
            Record::Released { client, held, .. } => {
                let name = self.name(*client);
                info!(
                    client,
                    name,
                    gpu = label,
                    held_ms = ms(*held),
                    "lock released"
                );
                m.held_seconds
                    .get_or_create(&ClientLabels {
                        client: name.to_owned(),
                        gpu: label.to_owned(),
                    })
                    .inc_by(held.as_secs_f64());
            }
            Record::Switched { latency, .. } => {
                info!(gpu = label, latency_ms = ms(*latency), "lock switched");
                g.switches.inc();
                g.switch_latency.observe(latency.as_secs_f64());
            }
            Record::DrainOverdue {
                stuck,
                gpu: _,
                draining,
                granted,
            } => {
                warn!(
                    client = stuck,
                    name = self.name(*stuck),
                    gpu = label,
                    draining_ms = ms(*draining),
                    granted = granted,
                    granted_name = self.name(*granted),
                    "drain overdue: the program's queued GPU work has not finished within the drain timeout (long kernels, or a collective waiting for a peer on another GPU); the GPU has room, so the next program runs beside it"
                );
                g.overdue_drains.inc();
            }
            Record::DrainStuck {
                stuck,
                gpu: _,
                draining,
            } => {
                warn!(
                    client = stuck,
                    name = self.name(*stuck),
                    gpu = label,
                    draining_ms = ms(*draining),
                    "drain overdue: the program's queued GPU work has not finished within the drain timeout (long kernels, or a collective waiting for a peer on another GPU), and the GPU has no room to run the next program beside it: the switch waits for that work to end; `nvshare-ctl status` shows the wait"
                );
            }
            Record::Evicted {
                client,
                gpu: _,
                bytes,
                elapsed,
            } => {
                info!(client, name = self.name(*client), gpu = label,
                      bytes = %Bytes(*bytes), elapsed_ms = ms(*elapsed),
                      gb_per_s = rate(*bytes, *elapsed), "memory evicted");
                g.evicted_bytes.inc_by(*bytes);
            }
            Record::Restored {
                client,
                gpu: _,
                bytes,
                elapsed,
                ahead,
            } => {
                info!(client, name = self.name(*client), gpu = label,
                      bytes = %Bytes(*bytes), elapsed_ms = ms(*elapsed),
                      gb_per_s = rate(*bytes, *elapsed), ahead, "memory restored");
                g.restored_bytes.inc_by(*bytes);
            }
            Record::GpuForgotten { .. } => {}
            Record::HostShadows {
                pinned, pageable, ..
            } => {
                tracing::debug!(
                    gpu = label,
                    pinned = %Bytes(*pinned),
                    pageable = %Bytes(*pageable),
                    "host shadows changed"
                );
                m.set_host_shadows(label, *pinned, *pageable);
            }
        }
    }
}

/// Milliseconds with microsecond resolution, for log fields.
fn ms(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1_000.0
}

/// GB/s, rounded to 0.1 (0 for an instant transfer).
fn rate(bytes: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds == 0.0 {
        return 0.0;
    }
    (bytes as f64 / seconds / 1e8).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_update_the_metrics_under_the_clients_name() {
        let metrics = Arc::new(Metrics::new());
        let mut observer = Observer::new(metrics.clone());
        let gpu = GpuUuid([1; 16]);
        observer.client_connected(4, 100, 0, "train", None);
        observer.record(&Record::Granted {
            client: 4,
            gpu,
            waited: Duration::from_millis(3),
        });
        observer.record(&Record::Released {
            client: 4,
            gpu,
            held: Duration::from_millis(2500),
        });
        observer.record(&Record::Evicted {
            client: 4,
            gpu,
            bytes: 1 << 30,
            elapsed: Duration::from_millis(20),
        });
        observer.record(&Record::Switched {
            gpu,
            latency: Duration::from_millis(30),
        });
        observer.client_gone(4, "closed");
        observer.set_load(1, 0);
        let text = metrics.encode();
        let uuid = gpu.to_string();
        for line in [
            format!("nvshare_grants_total{{gpu=\"{uuid}\"}} 1"),
            format!("nvshare_lock_held_seconds_total{{gpu=\"{uuid}\",client=\"train\"}} 2.5"),
            format!("nvshare_evicted_bytes_total{{gpu=\"{uuid}\"}} 1073741824"),
            format!("nvshare_switches_total{{gpu=\"{uuid}\"}} 1"),
            "nvshare_clients 1".to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_forgotten_gpu_leaves_no_series_and_others_keep_theirs() {
        let metrics = Arc::new(Metrics::new());
        let mut observer = Observer::new(metrics.clone());
        let (gone, kept) = (GpuUuid([1; 16]), GpuUuid([2; 16]));
        observer.client_connected(4, 100, 0, "train", None);
        for gpu in [gone, kept] {
            observer.record(&Record::Granted {
                client: 4,
                gpu,
                waited: Duration::from_millis(3),
            });
            observer.record(&Record::DropRequested {
                client: 4,
                gpu,
                evict_bytes: 0,
                reason: "quantum expired",
            });
            observer.record(&Record::Released {
                client: 4,
                gpu,
                held: Duration::from_millis(2500),
            });
            observer.record(&Record::HostShadows {
                gpu,
                pinned: 1,
                pageable: 2,
            });
        }
        observer.record(&Record::GpuForgotten { gpu: gone });
        let text = metrics.encode();
        assert!(
            !text.contains(&gone.to_string()),
            "series of a forgotten GPU:\n{text}"
        );
        for line in [
            format!("nvshare_grants_total{{gpu=\"{kept}\"}} 1"),
            format!("nvshare_lock_held_seconds_total{{gpu=\"{kept}\",client=\"train\"}} 2.5"),
            format!("nvshare_drop_requests_total{{gpu=\"{kept}\",reason=\"quantum expired\"}} 1"),
            format!("nvshare_host_shadow_bytes{{gpu=\"{kept}\",memory=\"pageable\"}} 2"),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        // A GPU used again starts its series again.
        observer.record(&Record::Granted {
            client: 4,
            gpu: gone,
            waited: Duration::ZERO,
        });
        let line = format!("nvshare_grants_total{{gpu=\"{gone}\"}} 1");
        assert!(metrics.encode().contains(&line));
    }

    #[test]
    fn rates_and_durations_for_logs() {
        assert_eq!(rate(50_000_000_000, Duration::from_secs(1)), 50.0);
        assert_eq!(rate(1, Duration::ZERO), 0.0);
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
