//! `status` as tables for people: one block per GPU, one row per program.

use crate::units::human_duration_ms;
use nvshare_proto::units::Bytes;
use nvshare_proto::{
    ClientHostShadows, GpuHostShadows, GpuInfo, GpuStatus, GpuWait, Inventory, StatusReport,
};
use std::fmt::Write;

/// The whole status as text, ending with a newline. `host` is the host
/// shadows the scheduler reported, if it does (else their column is left
/// out); `waits` what the next program on each GPU waits for; `inventory`
/// the GPUs it found at start (their indexes, names and health), if it
/// says.
pub fn status_text(
    report: &StatusReport,
    host: Option<&[GpuHostShadows]>,
    waits: &[GpuWait],
    inventory: Option<&Inventory>,
) -> String {
    let mut out = format!(
        "nvshare-scheduler {}, pid {}, up {}\n",
        report.scheduler_version,
        report.scheduler_pid,
        human_duration_ms(report.uptime_s.saturating_mul(1000)),
    );
    if report.gpus.is_empty() {
        out.push_str("no GPU in use: no program has attached one yet\n");
        if let Some(reason) = inventory.and_then(|i| i.unavailable.as_deref()) {
            let _ = writeln!(out, "(no GPUs found at start: {reason})");
        }
    }
    for gpu in &report.gpus {
        out.push('\n');
        let gpu_host = host.map(|all| {
            all.iter()
                .find(|h| h.uuid == gpu.uuid)
                .cloned()
                .unwrap_or_default()
        });
        let wait = waits.iter().find(|w| w.uuid == gpu.uuid);
        let info = inventory.and_then(|i| i.gpu(&gpu.uuid));
        out.push_str(&gpu_text(gpu, gpu_host.as_ref(), wait, info));
    }
    out
}

/// One GPU's block: its settings and counters, then its programs.
fn gpu_text(
    gpu: &GpuStatus,
    host: Option<&GpuHostShadows>,
    wait: Option<&GpuWait>,
    info: Option<&GpuInfo>,
) -> String {
    let mut out = String::new();
    if let Some(info) = info {
        let _ = write!(out, "GPU {} ({})  ", info.index, info.name);
    }
    let _ = writeln!(
        out,
        "{}  capacity {} (physical {})  policy {}  quantum {}",
        gpu.uuid,
        size(gpu.capacity),
        size(gpu.physical_memory),
        gpu.policy,
        human_duration_ms(gpu.quantum_ms),
    );
    let _ = writeln!(
        out,
        "  resident {}  grants {}  switches {}  swapped out {}, in {} ({})",
        size(gpu.resident),
        gpu.grants,
        gpu.switches,
        size(gpu.bytes_evicted),
        size(gpu.bytes_restored),
        human_duration_ms(gpu.swap_time_us / 1000),
    );
    if let Some(host) = host {
        let _ = writeln!(
            out,
            "  host shadows {} (pinned {}, pageable {})",
            size(host.pinned.saturating_add(host.pageable)),
            size(host.pinned),
            size(host.pageable),
        );
    }
    if let Some(info) = info.filter(|info| info.xids > 0) {
        let last = info
            .last_xid
            .map_or_else(|| "unknown".to_owned(), |code| code.to_string());
        let _ = writeln!(
            out,
            "  health: {} critical XID error(s), the last XID {last}: see the kernel log (dmesg)",
            info.xids
        );
    }
    if let Some(wait) = wait {
        let _ = writeln!(out, "  next: {}", crate::waits::describe(gpu, wait));
    }
    if gpu.clients.is_empty() {
        out.push_str("  no programs\n");
        return out;
    }
    let mut header = vec![
        "ID",
        "PID",
        "NAME",
        "STATE",
        "FOOTPRINT",
        "RESIDENT",
        "SWAPPED",
        "HELD",
        "GRANTS",
    ];
    if host.is_some() {
        header.push("HOST");
    }
    let limits = gpu.clients.iter().any(|c| c.memory_limit.is_some());
    if limits {
        header.push("LIMIT");
    }
    let ranked = gpu.clients.iter().any(|c| {
        c.priority != nvshare_proto::DEFAULT_PRIORITY || c.weight != nvshare_proto::DEFAULT_WEIGHT
    });
    if ranked {
        header.extend(["PRIO", "WEIGHT"]);
    }
    let rows: Vec<Vec<String>> = gpu
        .clients
        .iter()
        .map(|c| {
            let mut row = vec![
                c.client_id.to_string(),
                c.pid.to_string(),
                c.name.clone(),
                c.state.as_str().to_owned(),
                size(c.footprint),
                size(c.resident),
                size(c.footprint.saturating_sub(c.resident)),
                human_duration_ms(c.held_ms),
                c.grants.to_string(),
            ];
            if let Some(host) = host {
                let mine = host
                    .clients
                    .iter()
                    .find(|h| h.client_id == c.client_id)
                    .copied()
                    .unwrap_or_default();
                row.push(host_cell(&mine));
            }
            if limits {
                row.push(c.memory_limit.map_or_else(|| "-".to_owned(), size));
            }
            if ranked {
                row.extend([c.priority.to_string(), c.weight.to_string()]);
            }
            row
        })
        .collect();
    out.push_str(&render(&header, &rows));
    out
}

/// One client's host shadows: the total, and the pageable part if any
/// (pageable shadows swap several times slower).
fn host_cell(host: &ClientHostShadows) -> String {
    let total = size(host.pinned.saturating_add(host.pageable));
    if host.pageable == 0 {
        total
    } else {
        format!("{total} ({} pageable)", size(host.pageable))
    }
}

/// Left-aligned columns two spaces apart, indented by two.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::from(" ");
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, " {cell:<width$} ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A size as the tables print it: `12.0 GiB`.
fn size(bytes: u64) -> String {
    format!("{:#}", Bytes(bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nvshare_proto::{ClientState, ClientStatus, GpuUuid, Policy};

    /// A status with one GPU and two programs.
    pub(crate) fn sample_report() -> StatusReport {
        let client = |client_id, name: &str, state, footprint, resident| ClientStatus {
            client_id,
            pid: 4000 + client_id as u32,
            name: name.into(),
            state,
            footprint,
            resident,
            held_ms: 303_000,
            memory_limit: None,
            priority: 0,
            weight: 1,
            waiting_ms: 0,
            grants: 4,
        };
        StatusReport {
            scheduler_pid: 77,
            scheduler_version: "0.1.0".into(),
            uptime_s: 7_500,
            gpus: vec![GpuStatus {
                uuid: "GPU-12345678-9abc-def0-0123-456789abcdef"
                    .parse::<GpuUuid>()
                    .unwrap(),
                physical_memory: 80 << 30,
                capacity: 16 << 30,
                policy: Policy::Auto,
                quantum_ms: 30_000,
                resident: 16 << 30,
                grants: 12,
                switches: 3,
                bytes_evicted: 4 << 30,
                bytes_restored: 2 << 30,
                swap_time_us: 1_200_000,
                clients: vec![
                    client(1, "train", ClientState::Running, 12 << 30, 12 << 30),
                    client(2, "bert", ClientState::Waiting, 12 << 30, 4 << 30),
                ],
            }],
        }
    }

    #[test]
    fn a_gpu_block_shows_settings_counters_and_programs() {
        let text = status_text(&sample_report(), None, &[], None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "nvshare-scheduler 0.1.0, pid 77, up 2h 05m");
        assert_eq!(
            lines[2],
            "GPU-12345678-9abc-def0-0123-456789abcdef  capacity 16.0 GiB (physical 80.0 GiB)  \
             policy auto  quantum 30.0 s"
        );
        assert_eq!(
            lines[3],
            "  resident 16.0 GiB  grants 12  switches 3  swapped out 4.0 GiB, in 2.0 GiB (1.2 s)"
        );
        assert_eq!(
            lines[4],
            "  ID  PID   NAME   STATE    FOOTPRINT  RESIDENT  SWAPPED  HELD    GRANTS"
        );
        assert_eq!(
            lines[5],
            "  1   4001  train  running  12.0 GiB   12.0 GiB  0 B      5m 03s  4"
        );
        assert_eq!(
            lines[6],
            "  2   4002  bert   waiting  12.0 GiB   4.0 GiB   8.0 GiB  5m 03s  4"
        );
    }

    #[test]
    fn empty_states_say_so() {
        let mut report = sample_report();
        report.gpus[0].clients.clear();
        assert!(status_text(&report, None, &[], None).ends_with("  no programs\n"));
        report.gpus.clear();
        assert!(status_text(&report, None, &[], None).contains("no GPU in use"));
    }

    /// Host shadows of the sample's two programs: one pinned, one partly
    /// pageable.
    pub(crate) fn sample_host() -> Vec<GpuHostShadows> {
        let report = sample_report();
        vec![GpuHostShadows {
            uuid: report.gpus[0].uuid,
            pinned: 12 << 30,
            pageable: 1 << 30,
            clients: vec![
                ClientHostShadows {
                    client_id: 1,
                    pinned: 4 << 30,
                    pageable: 0,
                },
                ClientHostShadows {
                    client_id: 2,
                    pinned: 8 << 30,
                    pageable: 1 << 30,
                },
            ],
        }]
    }

    #[test]
    fn host_shadows_show_per_gpu_and_per_program() {
        let text = status_text(&sample_report(), Some(&sample_host()), &[], None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[4],
            "  host shadows 13.0 GiB (pinned 12.0 GiB, pageable 1.0 GiB)"
        );
        assert!(lines[5].ends_with("GRANTS  HOST"), "{}", lines[5]);
        assert!(lines[6].ends_with("  4       4.0 GiB"), "{}", lines[6]);
        assert!(
            lines[7].ends_with("  4       9.0 GiB (1.0 GiB pageable)"),
            "{}",
            lines[7]
        );
    }

    #[test]
    fn the_next_programs_wait_is_said_under_its_gpu() {
        let report = sample_report();
        let wait = GpuWait {
            uuid: report.gpus[0].uuid,
            next: 2,
            reason: nvshare_proto::WaitReason::Quantum {
                holder: 1,
                remaining_ms: 4_000,
            },
        };
        let text = status_text(&report, None, &[wait], None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[4],
            "  next: bert (2) waits for the time slice of train (1) to end (in 4.0 s)"
        );
    }

    #[test]
    fn a_gpu_missing_from_the_host_report_shows_none() {
        let text = status_text(&sample_report(), Some(&[]), &[], None);
        assert!(text.contains("  host shadows 0 B (pinned 0 B, pageable 0 B)\n"));
    }
}
