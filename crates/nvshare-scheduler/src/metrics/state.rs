//! Gauges that mirror the policy's state, per GPU (capacity, resident
//! memory, holders, waiters, quantum) and per job on a GPU (memory, swapped
//! out, limit, holding, time held and waiting). The event loop refreshes
//! them from the policy's status ([`StateMirror::refresh`]); a series goes
//! when its GPU or job does, so the label sets stay as few as the GPUs and
//! the jobs connected.

use super::GpuLabels;
use nvshare_proto::{ClientState, GpuStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

/// Labels of one job's series on one GPU.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The GPU.
    pub gpu: String,
    /// The job name.
    pub client: String,
    /// The scheduler's client id (two jobs may share a name).
    pub id: String,
}

type SecondsGauge = Gauge<f64, AtomicU64>;

/// The state gauges (registered by [`StateGauges::register`]).
#[derive(Debug, Default)]
pub struct StateGauges {
    /// Memory shared out per GPU.
    pub gpu_capacity: Family<GpuLabels, Gauge>,
    /// Physical memory per GPU.
    pub gpu_physical: Family<GpuLabels, Gauge>,
    /// Bytes on the GPU, every job together.
    pub gpu_resident: Family<GpuLabels, Gauge>,
    /// Jobs holding the GPU.
    pub gpu_holders: Family<GpuLabels, Gauge>,
    /// Jobs waiting for the GPU.
    pub gpu_waiting: Family<GpuLabels, Gauge>,
    /// The GPU's quantum.
    pub gpu_quantum: Family<GpuLabels, SecondsGauge>,
    /// Bytes a job allocated.
    pub job_footprint: Family<JobLabels, Gauge>,
    /// Bytes of it on the GPU.
    pub job_resident: Family<JobLabels, Gauge>,
    /// Bytes of it in host memory.
    pub job_swapped: Family<JobLabels, Gauge>,
    /// Its own memory limit (only jobs with one).
    pub job_memory_limit: Family<JobLabels, Gauge>,
    /// 1 while it holds the GPU (the current holders), else 0.
    pub job_holding: Family<JobLabels, Gauge>,
    /// Its priority.
    pub job_priority: Family<JobLabels, Gauge>,
    /// Its weight.
    pub job_weight: Family<JobLabels, Gauge>,
    /// Seconds it held the GPU in all.
    pub job_held: Family<JobLabels, SecondsGauge>,
    /// Seconds it has been waiting for the GPU (0 when not waiting).
    pub job_waiting: Family<JobLabels, SecondsGauge>,
}

impl StateGauges {
    /// Registers every gauge in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let gpu = [
            (
                "gpu_capacity_bytes",
                "Memory the scheduler shares out on the GPU",
                &self.gpu_capacity,
            ),
            (
                "gpu_physical_memory_bytes",
                "The GPU's memory",
                &self.gpu_physical,
            ),
            (
                "gpu_resident_bytes",
                "Bytes on the GPU, every program together",
                &self.gpu_resident,
            ),
            (
                "gpu_holders",
                "Programs holding the GPU now",
                &self.gpu_holders,
            ),
            (
                "gpu_waiting",
                "Programs waiting for the GPU now",
                &self.gpu_waiting,
            ),
        ];
        for (name, help, family) in gpu {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "gpu_quantum_seconds",
            "The GPU's time-slice quantum",
            self.gpu_quantum.clone(),
        );
        let job = [
            (
                "job_footprint_bytes",
                "GPU memory the job allocated",
                &self.job_footprint,
            ),
            (
                "job_resident_bytes",
                "The part of it on the GPU now",
                &self.job_resident,
            ),
            (
                "job_swapped_bytes",
                "The part of it in host memory now",
                &self.job_swapped,
            ),
            (
                "job_memory_limit_bytes",
                "The job's own memory limit (NVSHARE_MEMORY_LIMIT), for jobs with one",
                &self.job_memory_limit,
            ),
            (
                "job_holding",
                "1 while the job holds the GPU (its current holders), else 0",
                &self.job_holding,
            ),
            (
                "job_priority",
                "The job's priority (NVSHARE_PRIORITY; higher goes first)",
                &self.job_priority,
            ),
            (
                "job_weight",
                "The job's weight (NVSHARE_WEIGHT: its time slice in quanta)",
                &self.job_weight,
            ),
        ];
        for (name, help, family) in job {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "job_held_seconds",
            "Seconds the job has held the GPU in all",
            self.job_held.clone(),
        );
        registry.register(
            "job_waiting_seconds",
            "Seconds the job has been waiting for the GPU (0 when not waiting)",
            self.job_waiting.clone(),
        );
    }
}

fn bytes(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Which series the last refresh set: those of GPUs and jobs gone since
/// are removed by the next.
#[derive(Debug, Default)]
pub struct StateMirror {
    gpus: HashSet<GpuLabels>,
    jobs: HashSet<JobLabels>,
    limited: HashSet<JobLabels>,
}

impl StateMirror {
    /// Whether the last refresh set series of any job (the next refresh
    /// must come, if only to remove them).
    pub fn has_jobs(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Sets every gauge from `status` (the policy's, every GPU) and removes
    /// the series of GPUs and jobs no longer in it.
    pub fn refresh(&mut self, gauges: &StateGauges, status: &[GpuStatus]) {
        let mut gpus = HashSet::new();
        let mut jobs = HashSet::new();
        let mut limited = HashSet::new();
        for gpu in status {
            let labels = GpuLabels {
                gpu: gpu.uuid.to_string(),
            };
            let count = |wanted: &[ClientState]| {
                gpu.clients
                    .iter()
                    .filter(|c| wanted.contains(&c.state))
                    .count() as i64
            };
            gauges
                .gpu_capacity
                .get_or_create(&labels)
                .set(bytes(gpu.capacity));
            gauges
                .gpu_physical
                .get_or_create(&labels)
                .set(bytes(gpu.physical_memory));
            gauges
                .gpu_resident
                .get_or_create(&labels)
                .set(bytes(gpu.resident));
            gauges
                .gpu_holders
                .get_or_create(&labels)
                .set(count(&[ClientState::Running, ClientState::Releasing]));
            gauges
                .gpu_waiting
                .get_or_create(&labels)
                .set(count(&[ClientState::Waiting]));
            gauges
                .gpu_quantum
                .get_or_create(&labels)
                .set(gpu.quantum_ms as f64 / 1e3);
            for client in &gpu.clients {
                let job = JobLabels {
                    gpu: labels.gpu.clone(),
                    client: client.name.clone(),
                    id: client.client_id.to_string(),
                };
                gauges
                    .job_footprint
                    .get_or_create(&job)
                    .set(bytes(client.footprint));
                gauges
                    .job_resident
                    .get_or_create(&job)
                    .set(bytes(client.resident));
                gauges
                    .job_swapped
                    .get_or_create(&job)
                    .set(bytes(client.footprint.saturating_sub(client.resident)));
                let holding = matches!(client.state, ClientState::Running | ClientState::Releasing);
                gauges
                    .job_holding
                    .get_or_create(&job)
                    .set(i64::from(holding));
                gauges
                    .job_priority
                    .get_or_create(&job)
                    .set(i64::from(client.priority));
                gauges
                    .job_weight
                    .get_or_create(&job)
                    .set(i64::from(client.weight));
                gauges
                    .job_held
                    .get_or_create(&job)
                    .set(client.held_ms as f64 / 1e3);
                gauges
                    .job_waiting
                    .get_or_create(&job)
                    .set(client.waiting_ms as f64 / 1e3);
                if let Some(limit) = client.memory_limit {
                    gauges
                        .job_memory_limit
                        .get_or_create(&job)
                        .set(bytes(limit));
                    limited.insert(job.clone());
                }
                jobs.insert(job);
            }
            gpus.insert(labels);
        }
        for gone in self.gpus.difference(&gpus) {
            gauges.gpu_capacity.remove(gone);
            gauges.gpu_physical.remove(gone);
            gauges.gpu_resident.remove(gone);
            gauges.gpu_holders.remove(gone);
            gauges.gpu_waiting.remove(gone);
            gauges.gpu_quantum.remove(gone);
        }
        for gone in self.jobs.difference(&jobs) {
            gauges.job_footprint.remove(gone);
            gauges.job_resident.remove(gone);
            gauges.job_swapped.remove(gone);
            gauges.job_holding.remove(gone);
            gauges.job_priority.remove(gone);
            gauges.job_weight.remove(gone);
            gauges.job_held.remove(gone);
            gauges.job_waiting.remove(gone);
        }
        for gone in self.limited.difference(&limited) {
            gauges.job_memory_limit.remove(gone);
        }
        *self = StateMirror {
            gpus,
            jobs,
            limited,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvshare_proto::{ClientStatus, GpuUuid, Policy};

    fn gpu(uuid: u8, clients: Vec<ClientStatus>) -> GpuStatus {
        GpuStatus {
            uuid: GpuUuid([uuid; 16]),
            physical_memory: 80 << 30,
            capacity: 16 << 30,
            policy: Policy::Auto,
            quantum_ms: 500,
            resident: clients.iter().map(|c| c.resident).sum(),
            grants: 0,
            switches: 0,
            bytes_evicted: 0,
            bytes_restored: 0,
            swap_time_us: 0,
            clients,
        }
    }

    fn job(id: u64, state: ClientState, limit: Option<u64>) -> ClientStatus {
        ClientStatus {
            client_id: id,
            pid: 100,
            name: format!("job{id}"),
            state,
            footprint: 12 << 30,
            resident: 4 << 30,
            held_ms: 2500,
            grants: 1,
            memory_limit: limit,
            priority: 0,
            weight: 1,
            waiting_ms: if state == ClientState::Waiting {
                1500
            } else {
                0
            },
        }
    }

    fn encode(gauges: &StateGauges) -> String {
        let mut registry = Registry::with_prefix("nvshare");
        gauges.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn gauges_follow_the_status_and_series_go_with_their_jobs_and_gpus() {
        let gauges = StateGauges::default();
        let mut mirror = StateMirror::default();
        mirror.refresh(
            &gauges,
            &[
                gpu(
                    1,
                    vec![
                        job(1, ClientState::Running, Some(20 << 30)),
                        job(2, ClientState::Waiting, None),
                    ],
                ),
                gpu(2, vec![]),
            ],
        );
        let text = encode(&gauges);
        let uuid = GpuUuid([1; 16]).to_string();
        let series = |name: &str, id: u64| {
            format!("{name}{{gpu=\"{uuid}\",client=\"job{id}\",id=\"{id}\"}}")
        };
        for (line, value) in [
            (
                series("nvshare_job_swapped_bytes", 1),
                (8u64 << 30).to_string(),
            ),
            (
                series("nvshare_job_memory_limit_bytes", 1),
                (20u64 << 30).to_string(),
            ),
            (series("nvshare_job_holding", 1), "1".into()),
            (series("nvshare_job_holding", 2), "0".into()),
            (series("nvshare_job_waiting_seconds", 2), "1.5".into()),
            (format!("nvshare_gpu_holders{{gpu=\"{uuid}\"}}"), "1".into()),
            (format!("nvshare_gpu_waiting{{gpu=\"{uuid}\"}}"), "1".into()),
            (
                format!("nvshare_gpu_quantum_seconds{{gpu=\"{uuid}\"}}"),
                "0.5".into(),
            ),
        ] {
            assert!(
                text.contains(&format!("{line} {value}\n")),
                "{line} {value} in\n{text}"
            );
        }
        assert!(!text.contains(&series("nvshare_job_memory_limit_bytes", 2)));

        // Job 1 leaves and GPU 2 is gone: their series go.
        mirror.refresh(&gauges, &[gpu(1, vec![job(2, ClientState::Running, None)])]);
        let text = encode(&gauges);
        assert!(!text.contains("client=\"job1\""), "{text}");
        assert!(!text.contains(&GpuUuid([2; 16]).to_string()), "{text}");
        assert!(text.contains(&format!("{} 1\n", series("nvshare_job_holding", 2))));
    }
}
