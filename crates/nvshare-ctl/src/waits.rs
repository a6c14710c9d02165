//! What the next program on a GPU waits for, in words.

use crate::units::human_duration_ms;
use nvshare_proto::units::Bytes;
use nvshare_proto::{ClientId, GpuStatus, GpuWait, WaitReason};

/// `waits` for `gpu`'s next program as one sentence, naming programs by
/// their job name and id (`bert (2) waits for ...`).
pub fn describe(gpu: &GpuStatus, wait: &GpuWait) -> String {
    let who = |id: ClientId| match gpu.clients.iter().find(|c| c.client_id == id) {
        Some(c) => format!("{} ({id})", c.name),
        None => format!("program {id}"),
    };
    let next = who(wait.next);
    match &wait.reason {
        WaitReason::Quantum {
            holder,
            remaining_ms,
        } => format!(
            "{next} waits for the time slice of {} to end (in {})",
            who(*holder),
            human_duration_ms(*remaining_ms)
        ),
        WaitReason::Drain {
            holder,
            draining_ms,
            timeout_ms,
        } => format!(
            "{next} waits for {} to finish its queued GPU work and move memory out ({} so far; drain timeout {})",
            who(*holder),
            human_duration_ms(*draining_ms),
            human_duration_ms(*timeout_ms)
        ),
        WaitReason::DrainWithoutRoom {
            holder,
            draining_ms,
        } => format!(
            "{next} waits for the queued GPU work of {} to end ({} so far, past the drain timeout; the GPU has no room to run both: long kernels, or a collective waiting for a peer?)",
            who(*holder),
            human_duration_ms(*draining_ms)
        ),
        WaitReason::Memory { short_bytes } => format!(
            "{next} waits for other programs to move {:#} out of the GPU",
            Bytes(*short_bytes)
        ),
        WaitReason::HolderGrowth { holder } => format!(
            "{next} waits while {}, which holds the GPU, is given room to grow",
            who(*holder)
        ),
        WaitReason::Gang => format!(
            "{next} waits for the rest of its job (its other ranks or GPUs) to be next in line too"
        ),
        WaitReason::Recovery { remaining_ms } => format!(
            "{next} waits: the scheduler restarted and grants no GPU for {} more, while programs that held one reconnect",
            human_duration_ms(*remaining_ms)
        ),
        WaitReason::Priority {
            holder,
            remaining_ms,
        } => format!(
            "{next} waits: {}, of a higher priority, keeps the GPU past its time slice for {} more",
            who(*holder),
            human_duration_ms(*remaining_ms)
        ),
    }
}

/// A short name of the reason, for scripts.
pub fn kind(reason: &WaitReason) -> &'static str {
    match reason {
        WaitReason::Quantum { .. } => "quantum",
        WaitReason::Drain { .. } => "drain",
        WaitReason::DrainWithoutRoom { .. } => "drain_without_room",
        WaitReason::Memory { .. } => "memory",
        WaitReason::HolderGrowth { .. } => "holder_growth",
        WaitReason::Gang => "gang",
        WaitReason::Recovery { .. } => "recovery",
        WaitReason::Priority { .. } => "priority",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::sample_report;

    #[test]
    fn waits_name_the_programs_and_the_times() {
        let report = sample_report();
        let gpu = &report.gpus[0];
        let wait = |reason| GpuWait {
            uuid: gpu.uuid,
            next: 2,
            reason,
        };
        assert_eq!(
            describe(
                gpu,
                &wait(WaitReason::Quantum {
                    holder: 1,
                    remaining_ms: 12_300
                })
            ),
            "bert (2) waits for the time slice of train (1) to end (in 12.3 s)"
        );
        let stuck = describe(
            gpu,
            &wait(WaitReason::DrainWithoutRoom {
                holder: 1,
                draining_ms: 80_000,
            }),
        );
        assert!(
            stuck.starts_with("bert (2) waits for the queued GPU work of train (1) to end (1m 20s so far, past the drain timeout"),
            "{stuck}"
        );
        assert_eq!(
            describe(
                gpu,
                &wait(WaitReason::Memory {
                    short_bytes: 1 << 30
                })
            ),
            "bert (2) waits for other programs to move 1.0 GiB out of the GPU"
        );
        assert!(describe(gpu, &wait(WaitReason::HolderGrowth { holder: 9 })).contains("program 9"));
    }
}
