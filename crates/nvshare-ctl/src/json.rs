//! The JSON shape of `status --json`, for scripts.
//!
//! A shape of its own rather than the wire types': UUIDs, policies and
//! states are strings as people write them, and the wire format may change
//! between releases while this must not.

use nvshare_proto::{
    ClientHostShadows, ClientStatus, GpuHostShadows, GpuInfo, GpuStatus, GpuWait, Inventory,
    StatusReport, WaitReason,
};
use serde::Serialize;

/// The whole status.
#[derive(Debug, Serialize)]
pub struct JsonStatus {
    /// The scheduler's pid.
    pub scheduler_pid: u32,
    /// The scheduler's version.
    pub scheduler_version: String,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Why the scheduler found no GPUs at start (null if it found some, or
    /// does not say).
    pub gpus_unavailable: Option<String>,
    /// One entry per GPU.
    pub gpus: Vec<JsonGpu>,
}

/// One GPU.
#[derive(Debug, Serialize)]
pub struct JsonGpu {
    /// `GPU-xxxxxxxx-...`, as nvidia-smi prints it.
    pub uuid: String,
    /// Its index as nvidia-smi numbers it (null if the scheduler found no
    /// GPUs at start).
    pub index: Option<u32>,
    /// Its product name (null as `index`).
    pub name: Option<String>,
    /// Critical XID errors the driver reported since the scheduler started
    /// (null as `index`).
    pub xid_errors: Option<u64>,
    /// The last XID code (null if none, or unknown).
    pub last_xid: Option<u64>,
    /// Physical memory in bytes.
    pub physical_memory: u64,
    /// Memory shared out, in bytes.
    pub capacity: u64,
    /// `auto`, `exclusive` or `off`.
    pub policy: String,
    /// The quantum in milliseconds.
    pub quantum_ms: u64,
    /// Bytes on the GPU now, all clients together.
    pub resident: u64,
    /// Lock grants so far.
    pub grants: u64,
    /// Lock switches so far.
    pub switches: u64,
    /// Bytes moved to host memory so far.
    pub bytes_evicted: u64,
    /// Bytes moved back so far.
    pub bytes_restored: u64,
    /// Microseconds spent moving them.
    pub swap_time_us: u64,
    /// Host memory its programs keep for its memory, page-locked (null if
    /// the scheduler does not report it).
    pub host_pinned: Option<u64>,
    /// The same, pageable.
    pub host_pageable: Option<u64>,
    /// What the program next in line waits for (null if nobody waits).
    pub next: Option<JsonWait>,
    /// The programs using it.
    pub clients: Vec<JsonClient>,
}

/// What the program next in line for a GPU waits for.
#[derive(Debug, Serialize)]
pub struct JsonWait {
    /// The waiting program's client id.
    pub client_id: u64,
    /// `quantum`, `drain`, `drain_without_room`, `memory`,
    /// `holder_growth`, `gang`, `recovery` or `priority`.
    pub reason: &'static str,
    /// The holder it waits for, where one is in the way.
    pub holder: Option<u64>,
    /// Milliseconds until the holder's quantum (or the recovery) ends.
    pub remaining_ms: Option<u64>,
    /// Milliseconds the holder has been giving the GPU back.
    pub draining_ms: Option<u64>,
    /// The drain timeout in milliseconds.
    pub drain_timeout_ms: Option<u64>,
    /// Bytes still to be moved out for it.
    pub short_bytes: Option<u64>,
    /// The same in words, as `status` prints it.
    pub description: String,
}

impl JsonWait {
    fn new(gpu: &GpuStatus, wait: &GpuWait) -> Self {
        let mut json = JsonWait {
            client_id: wait.next,
            reason: crate::waits::kind(&wait.reason),
            holder: None,
            remaining_ms: None,
            draining_ms: None,
            drain_timeout_ms: None,
            short_bytes: None,
            description: crate::waits::describe(gpu, wait),
        };
        match wait.reason {
            WaitReason::Quantum {
                holder,
                remaining_ms,
            } => (json.holder, json.remaining_ms) = (Some(holder), Some(remaining_ms)),
            WaitReason::Drain {
                holder,
                draining_ms,
                timeout_ms,
            } => {
                json.holder = Some(holder);
                json.draining_ms = Some(draining_ms);
                json.drain_timeout_ms = Some(timeout_ms);
            }
            WaitReason::DrainWithoutRoom {
                holder,
                draining_ms,
            } => (json.holder, json.draining_ms) = (Some(holder), Some(draining_ms)),
            WaitReason::Memory { short_bytes } => json.short_bytes = Some(short_bytes),
            WaitReason::HolderGrowth { holder } => json.holder = Some(holder),
            WaitReason::Gang => {}
            WaitReason::Recovery { remaining_ms } => json.remaining_ms = Some(remaining_ms),
            WaitReason::Priority {
                holder,
                remaining_ms,
            } => (json.holder, json.remaining_ms) = (Some(holder), Some(remaining_ms)),
        }
        json
    }
}

/// One program on one GPU.
#[derive(Debug, Serialize)]
pub struct JsonClient {
    /// The scheduler's id for it.
    pub client_id: u64,
    /// Its pid.
    pub pid: u32,
    /// Its job name.
    pub name: String,
    /// `running`, `waiting`, `idle` or `releasing`.
    pub state: String,
    /// Bytes allocated.
    pub footprint: u64,
    /// Bytes on the GPU.
    pub resident: u64,
    /// Bytes in host memory (footprint - resident).
    pub swapped: u64,
    /// Milliseconds it has held the lock.
    pub held_ms: u64,
    /// Times it was granted the lock.
    pub grants: u64,
    /// Page-locked host memory it keeps as shadows of its memory on this
    /// GPU (null if the scheduler does not report it).
    pub host_pinned: Option<u64>,
    /// The same, pageable.
    pub host_pageable: Option<u64>,
    /// The most it may hold on this GPU (`NVSHARE_MEMORY_LIMIT`; null when
    /// it has no limit of its own).
    pub memory_limit: Option<u64>,
    /// Its priority (higher goes first).
    pub priority: i32,
    /// Its weight (its time slice in quanta).
    pub weight: u32,
    /// While waiting: milliseconds since it asked for the GPU (0 otherwise).
    pub waiting_ms: u64,
}

impl JsonStatus {
    /// The status, with the host shadows if the scheduler reported them,
    /// and what each GPU's next program waits for.
    pub fn new(
        r: &StatusReport,
        host: Option<&[GpuHostShadows]>,
        waits: &[GpuWait],
        inventory: Option<&Inventory>,
    ) -> Self {
        JsonStatus {
            scheduler_pid: r.scheduler_pid,
            scheduler_version: r.scheduler_version.clone(),
            uptime_s: r.uptime_s,
            gpus_unavailable: inventory.and_then(|i| i.unavailable.clone()),
            gpus: r
                .gpus
                .iter()
                .map(|g| {
                    let gpu_host = host.map(|all| {
                        all.iter()
                            .find(|h| h.uuid == g.uuid)
                            .cloned()
                            .unwrap_or_default()
                    });
                    let wait = waits.iter().find(|w| w.uuid == g.uuid);
                    let info = inventory.and_then(|i| i.gpu(&g.uuid));
                    JsonGpu::new(g, gpu_host.as_ref(), wait, info)
                })
                .collect(),
        }
    }
}

impl JsonGpu {
    fn new(
        g: &GpuStatus,
        host: Option<&GpuHostShadows>,
        wait: Option<&GpuWait>,
        info: Option<&GpuInfo>,
    ) -> Self {
        JsonGpu {
            uuid: g.uuid.to_string(),
            index: info.map(|i| i.index),
            name: info.map(|i| i.name.clone()),
            xid_errors: info.map(|i| i.xids),
            last_xid: info.and_then(|i| i.last_xid),
            physical_memory: g.physical_memory,
            capacity: g.capacity,
            policy: g.policy.to_string(),
            quantum_ms: g.quantum_ms,
            resident: g.resident,
            grants: g.grants,
            switches: g.switches,
            bytes_evicted: g.bytes_evicted,
            bytes_restored: g.bytes_restored,
            swap_time_us: g.swap_time_us,
            host_pinned: host.map(|h| h.pinned),
            host_pageable: host.map(|h| h.pageable),
            next: wait.map(|w| JsonWait::new(g, w)),
            clients: g
                .clients
                .iter()
                .map(|c| {
                    let mine = host.map(|h| {
                        h.clients
                            .iter()
                            .find(|m| m.client_id == c.client_id)
                            .copied()
                            .unwrap_or_default()
                    });
                    JsonClient::new(c, mine)
                })
                .collect(),
        }
    }
}

impl JsonClient {
    fn new(c: &ClientStatus, host: Option<ClientHostShadows>) -> Self {
        JsonClient {
            client_id: c.client_id,
            pid: c.pid,
            name: c.name.clone(),
            state: c.state.as_str().to_owned(),
            footprint: c.footprint,
            resident: c.resident,
            swapped: c.footprint.saturating_sub(c.resident),
            held_ms: c.held_ms,
            grants: c.grants,
            host_pinned: host.map(|h| h.pinned),
            host_pageable: host.map(|h| h.pageable),
            memory_limit: c.memory_limit,
            priority: c.priority,
            weight: c.weight,
            waiting_ms: c.waiting_ms,
        }
    }
}

/// The status as pretty-printed JSON; `host` as in
/// [`crate::table::status_text`].
pub fn status_json(
    report: &StatusReport,
    host: Option<&[GpuHostShadows]>,
    waits: &[GpuWait],
    inventory: Option<&Inventory>,
) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&JsonStatus::new(report, host, waits, inventory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{sample_host, sample_report};

    #[test]
    fn the_shape_uses_readable_strings() {
        let text = status_json(&sample_report(), None, &[], None).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let gpu = &value["gpus"][0];
        assert_eq!(gpu["uuid"], "GPU-12345678-9abc-def0-0123-456789abcdef");
        assert_eq!(gpu["policy"], "auto");
        assert_eq!(gpu["capacity"], 16u64 << 30);
        let client = &gpu["clients"][1];
        assert_eq!(client["state"], "waiting");
        assert_eq!(client["name"], "bert");
        assert_eq!(client["swapped"], 8u64 << 30);
        assert_eq!(value["scheduler_version"], "0.1.0");
    }

    #[test]
    fn the_next_programs_wait_has_its_reason_and_numbers() {
        let report = sample_report();
        let wait = GpuWait {
            uuid: report.gpus[0].uuid,
            next: 2,
            reason: WaitReason::Drain {
                holder: 1,
                draining_ms: 5_000,
                timeout_ms: 10_000,
            },
        };
        let text = status_json(&report, None, &[wait], None).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let next = &value["gpus"][0]["next"];
        assert_eq!(next["client_id"], 2);
        assert_eq!(next["reason"], "drain");
        assert_eq!(next["holder"], 1);
        assert_eq!(next["draining_ms"], 5_000);
        assert_eq!(next["drain_timeout_ms"], 10_000);
        assert!(next["short_bytes"].is_null());
        assert!(next["description"].as_str().unwrap().contains("train (1)"));
        let idle = status_json(&report, None, &[], None).unwrap();
        let value: serde_json::Value = serde_json::from_str(&idle).unwrap();
        assert!(value["gpus"][0]["next"].is_null());
    }

    #[test]
    fn host_shadows_per_gpu_and_program_or_null_when_unknown() {
        let text = status_json(&sample_report(), Some(&sample_host()), &[], None).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let gpu = &value["gpus"][0];
        assert_eq!(gpu["host_pinned"], 12u64 << 30);
        assert_eq!(gpu["host_pageable"], 1u64 << 30);
        assert_eq!(gpu["clients"][0]["host_pinned"], 4u64 << 30);
        assert_eq!(gpu["clients"][1]["host_pageable"], 1u64 << 30);
        let unknown = status_json(&sample_report(), None, &[], None).unwrap();
        let value: serde_json::Value = serde_json::from_str(&unknown).unwrap();
        assert!(value["gpus"][0]["host_pinned"].is_null());
        assert!(value["gpus"][0]["clients"][0]["host_pageable"].is_null());
    }
}
