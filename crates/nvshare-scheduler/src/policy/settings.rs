//! Per-GPU settings (an operator's `set-tq`/`set-policy --gpu`), and the
//! GPUs known before any program attaches (found through NVML at start).
//!
//! A GPU's settings outlive its domain: they are the operator's, kept while
//! nobody uses the GPU and applied when a program attaches it again. A
//! setting for every GPU clears the per-GPU ones of that kind.

use super::domain::{Domain, duration_ms};
use super::{Action, MAX_GPUS, PolicyConfig, Scheduler};
use nvshare_proto::{
    ClientState, ErrorCode, ErrorReply, GpuSelector, GpuStatus, GpuUuid, Policy, SchedulerMsg,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// A GPU of this machine found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KnownGpu {
    /// NVML's index.
    pub index: u32,
    /// Total memory.
    pub memory: u64,
}

/// What an operator set for one GPU; `None` follows the daemon's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Overrides {
    pub quantum: Option<Duration>,
    pub policy: Option<Policy>,
}

impl Overrides {
    fn is_empty(&self) -> bool {
        self.quantum.is_none() && self.policy.is_none()
    }
}

/// A fresh domain for `gpu` with the daemon's settings and the operator's
/// overrides of it.
pub(super) fn new_domain(
    config: &PolicyConfig,
    overrides: Option<&Overrides>,
    gpu: GpuUuid,
    physical_memory: u64,
) -> Domain {
    let capacity = config
        .memory_capacity
        .unwrap_or(physical_memory.saturating_sub(config.memory_reserve));
    let overrides = overrides.copied().unwrap_or_default();
    let mut d = Domain::new(
        gpu,
        physical_memory,
        capacity,
        overrides.policy.unwrap_or(config.policy),
        overrides.quantum.unwrap_or(config.quantum),
    );
    d.physical_room = physical_memory.saturating_sub(config.memory_reserve);
    d.priority_step = config.quantum;
    d.drain_timeout = config.drain_timeout;
    d.restore_ahead = config.restore_ahead;
    d
}

/// Makes `d` follow `policy`: under the exclusive policy the longest
/// running holder keeps the GPU and the others give it back.
pub(super) fn apply_policy(d: &mut Domain, policy: Policy, now: Duration, out: &mut Vec<Action>) {
    d.policy = policy;
    if policy != Policy::Exclusive {
        return;
    }
    let mut running: Vec<_> = d
        .members
        .values()
        .filter(|m| m.state == ClientState::Running)
        .map(|m| (m.granted_at, m.client))
        .collect();
    running.sort();
    for (_, client) in running.into_iter().skip(1) {
        d.drop_lock(client, 0, "policy change", now, out);
    }
}

fn invalid(message: String) -> ErrorReply {
    ErrorReply {
        code: ErrorCode::InvalidArgument,
        message,
    }
}

impl Scheduler {
    /// The GPUs of this machine, found at start: `(index, uuid, memory)`.
    /// They are listed by [`Scheduler::status`] before any program attaches,
    /// and operators may address them by index.
    pub fn know_gpus(&mut self, gpus: impl IntoIterator<Item = (u32, GpuUuid, u64)>) {
        self.known = gpus
            .into_iter()
            .take(MAX_GPUS)
            .map(|(index, uuid, memory)| (uuid, KnownGpu { index, memory }))
            .collect();
    }

    /// The GPU an operator means, or why there is no such GPU.
    pub fn resolve_gpu(&self, selector: GpuSelector) -> Result<GpuUuid, ErrorReply> {
        match selector {
            GpuSelector::Index(index) => self
                .known
                .iter()
                .find(|(_, known)| known.index == index)
                .map(|(&uuid, _)| uuid)
                .ok_or_else(|| {
                    invalid(if self.known.is_empty() {
                        format!(
                            "there is no GPU {index}: the scheduler found no GPUs at start (no NVML), so it knows them by UUID only; give the UUID (nvshare-ctl status lists the GPUs in use)"
                        )
                    } else {
                        format!(
                            "there is no GPU {index}: this machine has GPUs 0 to {}; nvshare-ctl status lists them",
                            self.known.len() - 1
                        )
                    })
                }),
            GpuSelector::Uuid(uuid) => {
                let exists = self.known.contains_key(&uuid) || self.domains.contains_key(&uuid);
                if exists || (self.known.is_empty() && self.overrides.contains_key(&uuid)) {
                    return Ok(uuid);
                }
                if !self.known.is_empty() {
                    return Err(invalid(format!(
                        "{uuid} is not a GPU of this machine; nvshare-ctl status lists them"
                    )));
                }
                // Without NVML a GPU may be set before its first program;
                // the count is bounded as the domains are.
                if self.overrides.len() >= MAX_GPUS {
                    return Err(invalid(format!(
                        "settings for {MAX_GPUS} GPUs are kept already; {uuid} is refused"
                    )));
                }
                Ok(uuid)
            }
        }
    }

    /// Sets the quantum of `gpu` alone (operator `set-tq --gpu`); tells the
    /// programs attached to it.
    pub fn set_gpu_quantum(
        &mut self,
        now: Duration,
        gpu: GpuUuid,
        quantum: Duration,
    ) -> Vec<Action> {
        self.overrides.entry(gpu).or_default().quantum = Some(quantum);
        let mut out = Vec::new();
        if let Some(d) = self.domains.get_mut(&gpu) {
            d.quantum = quantum;
            let quantum_ms = duration_ms(quantum);
            out.extend(d.members.keys().map(|&client| Action::Send {
                client,
                msg: SchedulerMsg::QuantumChanged { quantum_ms },
            }));
        }
        self.sweep.touch(gpu);
        self.settle(now, &mut out);
        out
    }

    /// Sets the policy of `gpu` alone (operator `set-policy --gpu`).
    pub fn set_gpu_policy(&mut self, now: Duration, gpu: GpuUuid, policy: Policy) -> Vec<Action> {
        self.overrides.entry(gpu).or_default().policy = Some(policy);
        let mut out = Vec::new();
        if let Some(d) = self.domains.get_mut(&gpu) {
            apply_policy(d, policy, now, &mut out);
        }
        self.sweep.touch(gpu);
        self.settle(now, &mut out);
        out
    }

    /// Forgets what `clear` removes from every GPU's own settings (a
    /// setting for all GPUs was made); GPUs left with none are dropped.
    pub(super) fn clear_overrides(&mut self, clear: impl Fn(&mut Overrides)) {
        for overrides in self.overrides.values_mut() {
            clear(overrides);
        }
        self.overrides.retain(|_, o| !o.is_empty());
    }

    /// Every GPU in use and every GPU known, in UUID order: a known GPU
    /// nobody uses shows its capacity and settings, with no programs.
    pub fn status(&self, now: Duration) -> Vec<GpuStatus> {
        let who = |id| {
            self.clients
                .get(&id)
                .map(|c| (c.pid, c.name.clone()))
                .unwrap_or_default()
        };
        let mut gpus: BTreeMap<GpuUuid, GpuStatus> = self
            .known
            .iter()
            .filter(|(uuid, _)| !self.domains.contains_key(uuid))
            .map(|(&uuid, known)| {
                let idle = new_domain(&self.config, self.overrides.get(&uuid), uuid, known.memory);
                (uuid, idle.status(now, who))
            })
            .collect();
        gpus.extend(self.domains.values().map(|d| (d.uuid, d.status(now, who))));
        gpus.into_values().collect()
    }
}
