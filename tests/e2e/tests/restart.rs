//! Scheduler restarts under oversubscribed programs: the daemon is killed
//! (SIGKILL) and started again on the same socket, 20 times, at moments
//! that fall anywhere in the programs' grants and drains. Programs keep
//! running, reconnect and say what they hold; the new daemon grants nobody
//! else until every holder could do so. The fake driver's trace must show
//! no two programs' kernels at once, and both programs must verify their
//! data.

use nvshare_e2e::{Daemon, MIB, Sandbox, finish_ok, json_result, wait_until};
use std::time::Duration;

const RESTARTS: u64 = 20;
/// Short, so that the programs switch between restarts; the default (3 s)
/// is for real reconnects under load.
const GRACE: &str = "1";

/// The `run`th daemon, logging to `daemon-<run>.log`.
fn start_daemon(sandbox: &Sandbox, run: u64) -> Daemon {
    Daemon::start(
        &sandbox.socket(),
        &[
            "--memory-capacity",
            "64MiB",
            "--quantum",
            "200ms",
            "--recovery-grace",
            GRACE,
        ],
        &daemon_log(sandbox, run),
    )
}

fn daemon_log(sandbox: &Sandbox, run: u64) -> std::path::PathBuf {
    sandbox.path().join(format!("daemon-{run}.log"))
}

fn restarts_never_let_two_programs_run_at_once(mode: &str) {
    let sandbox = Sandbox::new();
    let stop = sandbox.path().join("stop");
    let mut daemon = start_daemon(&sandbox, 0);
    let workers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let mut command = sandbox.hooked("cuda-worker");
            command
                .env("NVSHARE_MODE", mode)
                .env("NVSHARE_NAME", name)
                .args(["--bytes", &(36 * MIB).to_string()])
                .args(["--iterations", "5", "--sleep-us", "20000"])
                // Up to 30 queued kernels: drains of ~0.6 s, where the
                // reported race lived.
                .args(["--sync-every", "30"])
                .arg("--until-file")
                .arg(&stop);
            (sandbox.spawn(&mut command), name)
        })
        .collect();
    let kernels = || sandbox.trace().kernel_runs().len();
    assert!(
        wait_until(Duration::from_secs(30), || kernels() >= 5),
        "the workers never started"
    );
    let mut restarted_at = Vec::new();
    for restart in 0..RESTARTS {
        restarted_at.push(monotonic_ns());
        daemon.kill();
        std::thread::sleep(Duration::from_millis(300));
        daemon = start_daemon(&sandbox, restart + 1);
        let before = kernels();
        assert!(
            wait_until(Duration::from_secs(30), || kernels() >= before + 3),
            "no kernel ran within 30 s of restart {restart}"
        );
        // Past the grace, then a different moment of the time slices each
        // time: a grant, a quantum, a drain.
        std::thread::sleep(Duration::from_millis(1000 + (restart * 137) % 600));
    }
    std::fs::write(&stop, b"").expect("create the stop file");
    for (child, name) in workers {
        let result = json_result(&finish_ok(child, name));
        assert_eq!(result["ok"], true, "{name}: {result}");
    }
    drop(daemon);
    let trace = sandbox.trace();
    let pids: std::collections::BTreeSet<u32> =
        trace.kernel_runs().iter().map(|run| run.pid).collect();
    assert_eq!(pids.len(), 2, "both programs ran kernels");
    let overlaps = trace.cross_process_overlaps();
    let after_kill = |ns: u64| {
        restarted_at
            .iter()
            .rposition(|&at| at <= ns)
            .map(|i| (i, (ns - restarted_at[i]) / 1_000_000))
    };
    if let Some((i, _)) = overlaps
        .first()
        .and_then(|(a, b)| after_kill(a.begin.max(b.begin)))
    {
        let log = std::fs::read_to_string(daemon_log(&sandbox, i as u64 + 1)).unwrap_or_default();
        eprintln!("---- the log of the daemon started after kill {i} ----\n{log}");
    }
    assert!(
        overlaps.is_empty(),
        "{} overlapping kernel pairs across {RESTARTS} restarts; the first \
         began (kill number, ms after it) {:?}: {:?}",
        overlaps.len(),
        overlaps
            .first()
            .map(|(a, b)| after_kill(a.begin.max(b.begin))),
        overlaps.first()
    );
}

/// CLOCK_MONOTONIC, as the fake driver's trace stamps events.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[test]
fn restarts_never_make_two_holders_in_uvm_mode() {
    restarts_never_let_two_programs_run_at_once("uvm");
}

#[test]
fn restarts_never_make_two_holders_in_swap_mode() {
    restarts_never_let_two_programs_run_at_once("swap");
}
