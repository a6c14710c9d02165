//! Programs under the hook sharing one fake GPU through the real daemon.

use nvshare_e2e::worker::{Worker, finish_verified};
use nvshare_e2e::{MIB, Sandbox, finish_ok, json_result, kill_hard, wait_until};
use std::process::{Child, Command};
use std::time::Duration;

/// A worker whose kernels take `kernel_ms` each, `iterations` times.
fn worker_args(bytes: u64, iterations: u32, kernel_ms: u64) -> Vec<String> {
    vec![
        "--bytes".into(),
        bytes.to_string(),
        "--iterations".into(),
        iterations.to_string(),
        "--sleep-us".into(),
        (kernel_ms * 1000).to_string(),
    ]
}

/// A `cuda-worker` under the hook in `mode`, named `name`, with `args`.
fn worker(sandbox: &Sandbox, mode: &str, name: &str, args: &[String]) -> Command {
    let mut command = Worker::new(name).env("NVSHARE_MODE", mode).command(sandbox);
    command.args(args);
    command
}

/// Starts one worker per name under the hook in `mode`.
fn spawn_workers(sandbox: &Sandbox, mode: &str, names: &[&str], args: &[String]) -> Vec<Child> {
    names
        .iter()
        .map(|name| sandbox.spawn(&mut worker(sandbox, mode, name, args)))
        .collect()
}

/// Waits for each named worker and checks it verified its result.
fn finish_all_ok(workers: Vec<(Child, &str)>) {
    for (child, name) in workers {
        finish_verified(vec![child], name);
    }
}

#[test]
fn oversubscribed_programs_never_run_kernels_at_once_and_both_finish() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "300ms"]);
    let workers = spawn_workers(&sandbox, "uvm", &["a", "b"], &worker_args(40 * MIB, 30, 20));
    finish_all_ok(workers.into_iter().zip(["a", "b"]).collect());
    let trace = sandbox.trace();
    let runs = trace.kernel_runs();
    assert!(
        runs.len() >= 60,
        "expected every kernel traced, got {}",
        runs.len()
    );
    let overlaps = trace.cross_process_overlaps();
    assert!(
        overlaps.is_empty(),
        "kernels of two oversubscribed programs ran at once: {overlaps:?}"
    );
}

/// The control for the test above: the same programs under `--policy off`
/// do overlap, so the trace would show it if the gate let them.
#[test]
fn without_scheduling_the_same_programs_overlap() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--policy", "off"]);
    let workers = spawn_workers(&sandbox, "uvm", &["a", "b"], &worker_args(40 * MIB, 15, 40));
    finish_all_ok(workers.into_iter().zip(["a", "b"]).collect());
    assert!(!sandbox.trace().cross_process_overlaps().is_empty());
}

#[test]
fn programs_that_fit_run_together() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "30"]);
    let workers = spawn_workers(
        &sandbox,
        "swap",
        &["a", "b"],
        &worker_args(16 * MIB, 15, 40),
    );
    finish_all_ok(workers.into_iter().zip(["a", "b"]).collect());
    // With a 30 s quantum and no co-running, the second program could only
    // start after the first finished: overlapping kernels prove co-running.
    assert!(
        !sandbox.trace().cross_process_overlaps().is_empty(),
        "two programs that fit together never ran kernels at the same time"
    );
}

#[test]
fn grant_prefetches_every_tracked_allocation_in_uvm_mode() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "200ms"]);
    let workers = spawn_workers(&sandbox, "uvm", &["a", "b"], &worker_args(36 * MIB, 25, 20));
    let pids: Vec<u32> = workers.iter().map(|w| w.id()).collect();
    finish_all_ok(workers.into_iter().zip(["a", "b"]).collect());
    let trace = sandbox.trace();
    for pid in pids {
        let to_gpu: Vec<_> = trace
            .named("prefetch")
            .filter(|e| e.pid == pid && e.fields.get("dst").is_some_and(|d| d != "cpu"))
            .collect();
        let to_host = trace
            .named("prefetch")
            .filter(|e| e.pid == pid && e.fields.get("dst").is_some_and(|d| d == "cpu"))
            .count();
        assert!(
            to_host >= 1,
            "pid {pid} was never evicted: the two did not time-slice"
        );
        // Once when allocated under the lock or on the first grant, and again
        // on every later grant after an eviction.
        assert!(
            to_gpu.len() >= 2,
            "pid {pid}: expected a prefetch to the GPU on each grant, got {}",
            to_gpu.len()
        );
        assert!(
            to_gpu
                .iter()
                .all(|e| e.fields.get("bytes").is_some_and(|b| b != "0")),
            "empty prefetches: {to_gpu:?}"
        );
    }
}

#[test]
fn memory_queries_report_the_virtual_capacity() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "3GiB"]);
    let probe = finish_ok(
        sandbox.spawn(&mut sandbox.hooked("cuda-probe")),
        "cuda-probe",
    );
    let report = json_result(&probe);
    let memory = &report["memory"];
    assert_eq!(memory["total"], 3u64 << 30, "{report}");
    assert_eq!(memory["device_total"], 3u64 << 30, "{report}");
    assert!(memory["free"].as_u64().unwrap() <= 3u64 << 30, "{report}");
}

#[test]
fn a_killed_holder_does_not_block_the_other() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "60"]);
    let mut holder = sandbox.spawn(&mut worker(
        &sandbox,
        "uvm",
        "holder",
        &worker_args(40 * MIB, 100_000, 10),
    ));
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .trace()
            .named("kernel_begin")
            .any(|e| e.pid == holder.id())),
        "the holder never ran a kernel"
    );
    let waiter = sandbox.spawn(&mut worker(
        &sandbox,
        "uvm",
        "waiter",
        &worker_args(40 * MIB, 5, 1),
    ));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !sandbox
            .trace()
            .named("kernel_begin")
            .any(|e| e.pid == waiter.id()),
        "the waiter ran while the holder held a 60 s quantum"
    );
    kill_hard(&mut holder);
    let result = json_result(&finish_ok(waiter, "the waiter"));
    assert_eq!(result["ok"], true);
}

#[test]
fn a_daemon_restart_mid_run_loses_nothing() {
    let sandbox = Sandbox::new();
    let mut daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "200ms"]);
    let workers = spawn_workers(&sandbox, "uvm", &["a", "b"], &worker_args(36 * MIB, 60, 20));
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .trace()
            .kernel_runs()
            .len()
            >= 5),
        "the workers never started"
    );
    daemon.kill();
    std::thread::sleep(Duration::from_millis(300));
    let _restarted = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "200ms"]);
    finish_all_ok(workers.into_iter().zip(["a", "b"]).collect());
}

#[test]
fn a_program_without_a_daemon_starts_one() {
    let sandbox = Sandbox::new();
    let worker = sandbox.spawn(
        sandbox
            .hooked("cuda-worker")
            .env("NVSHARE_SCHEDULER", "auto")
            // The hook looks beside libnvshare.so, then on PATH: the test
            // build of the library may sit in deps/, away from the binaries.
            .env("PATH", search_path_with_binaries())
            .args(worker_args(64 * MIB, 3, 1)),
    );
    let result = json_result(&finish_ok(worker, "a worker with no daemon running"));
    assert_eq!(result["ok"], true);
    assert!(sandbox.socket().exists(), "no scheduler socket appeared");
    let status = sandbox.status();
    let pid = status["scheduler_pid"]
        .as_i64()
        .expect("status names the scheduler's pid");
    // SAFETY: kill(2) with a pid and a signal number has no memory effects.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(
        wait_until(Duration::from_secs(10), || !sandbox.socket().exists()),
        "the autostarted scheduler did not exit on SIGTERM"
    );
}

#[test]
fn a_scheduler_started_on_demand_ends_after_its_last_program() {
    let sandbox = Sandbox::new();
    let worker = |name: &str| {
        sandbox.spawn(
            sandbox
                .hooked("cuda-worker")
                .env("NVSHARE_SCHEDULER", "auto")
                .env("NVSHARE_NAME", name)
                .env("PATH", search_path_with_binaries())
                // The daemon inherits it (instead of the hook's 30 s).
                .env("NVSHARE_EXIT_WHEN_IDLE", "1")
                .args(worker_args(16 * MIB, 20, 20)),
        )
    };
    let first = worker("first");
    assert!(
        wait_until(Duration::from_secs(20), || sandbox.socket().exists()
            && sandbox.client_in_state("first", "running")),
        "the first program never ran"
    );
    let pid = sandbox.status()["scheduler_pid"]
        .as_i64()
        .expect("status names the scheduler's pid");
    let second = worker("second");
    finish_all_ok(vec![(first, "first"), (second, "second")]);
    // Both gone: the daemon they started exits on its own, cleanly.
    assert!(
        wait_until(Duration::from_secs(10), || !sandbox.socket().exists()),
        "the scheduler started on demand outlived its programs"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))),
        "the scheduler process {pid} is still running"
    );
    let lock = sandbox.socket().with_extension("sock.lock");
    assert!(!lock.exists(), "a clean exit leaves no lock file");
}

#[test]
fn a_program_that_never_uses_cuda_never_contacts_the_scheduler() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .hooked("cuda-probe")
        .env("NVSHARE_SCHEDULER", "auto")
        .arg("--no-init")
        .arg("--names")
        .arg("cuInit")
        .output()
        .expect("run cuda-probe");
    assert!(output.status.success(), "{output:?}");
    let shell = std::process::Command::new("sh")
        .args(["-c", "echo dormant"])
        .env(
            "LD_PRELOAD",
            cuda_programs::artifacts::artifact("libnvshare.so"),
        )
        .env("NVSHARE_SOCK", sandbox.socket())
        .output()
        .expect("run a shell under the hook");
    assert_eq!(String::from_utf8_lossy(&shell.stdout), "dormant\n");
    assert!(
        shell.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&shell.stderr)
    );
    assert!(
        !sandbox.socket().exists(),
        "a program that never used CUDA started or contacted a scheduler"
    );
}

/// `PATH` with `target/<profile>` (where `nvshare-scheduler` is) first.
fn search_path_with_binaries() -> std::ffi::OsString {
    let mut dirs = vec![cuda_programs::artifacts::profile_dir()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("paths without ':'")
}

#[test]
fn programs_on_different_gpus_never_wait_for_each_other() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "300ms"]);
    let spawn = |name: &str, device: &str| {
        sandbox.spawn(
            worker(&sandbox, "uvm", name, &worker_args(40 * MIB, 20, 20))
                .env("FAKE_CUDA_DEVICES", "2")
                .args(["--device", device]),
        )
    };
    let first = spawn("gpu0-a", "0");
    let second = spawn("gpu0-b", "0");
    let other = spawn("gpu1", "1");
    let pids = (first.id(), second.id(), other.id());
    // One scheduling domain per GPU while they run (a GPU is forgotten when
    // its last program leaves).
    let gpus = || sandbox.status()["gpus"].as_array().map_or(0, Vec::len);
    assert!(
        wait_until(Duration::from_secs(20), || gpus() == 2),
        "not one scheduling domain per GPU: {}",
        sandbox.status()
    );
    finish_all_ok(vec![(first, "gpu0-a"), (second, "gpu0-b"), (other, "gpu1")]);
    let overlaps = sandbox.trace().cross_process_overlaps();
    let pair = |a: u32, b: u32| {
        overlaps
            .iter()
            .any(|(x, y)| (x.pid, y.pid) == (a, b) || (x.pid, y.pid) == (b, a))
    };
    assert!(
        !pair(pids.0, pids.1),
        "two oversubscribed programs on GPU 0 ran kernels at once"
    );
    assert!(
        pair(pids.0, pids.2) || pair(pids.1, pids.2),
        "the program on GPU 1 never ran beside those on GPU 0"
    );
    assert_eq!(gpus(), 0, "GPUs without programs are forgotten");
}

/// The harness itself: a test that fails half-way must not leave programs
/// running, so a dropped sandbox kills what it started.
#[test]
fn a_dropped_sandbox_leaves_no_program_running() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn(
        sandbox
            .hooked("cuda-worker")
            .env("NVSHARE_SCHEDULER", "off")
            .args(worker_args(MIB, 100_000, 10)),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().expect("poll the worker").is_none());
    drop(sandbox);
    let status = nvshare_e2e::wait_until(Duration::from_secs(10), || {
        child.try_wait().expect("poll the worker").is_some()
    });
    assert!(status, "the worker outlived its sandbox");
}

/// Programs that use both GPUs hold and give back a grant per GPU: two of
/// them, each oversubscribing both GPUs together with the other, plus a
/// one-GPU program, all finish correct (no deadlock between the grants),
/// and no two of them ever run kernels on the same GPU at once.
#[test]
fn programs_using_two_gpus_share_both_without_deadlock() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "200ms"]);
    let spawn = |name: &str, devices: &str| {
        sandbox.spawn(
            worker(&sandbox, "uvm", name, &worker_args(40 * MIB, 20, 10))
                .env("FAKE_CUDA_DEVICES", "2")
                .args(["--devices", devices, "--pause-ms", "1"]),
        )
    };
    let both_a = spawn("both-a", "0,1");
    let both_b = spawn("both-b", "1,0");
    let single = spawn("gpu1-only", "1");
    finish_all_ok(vec![
        (both_a, "both-a"),
        (both_b, "both-b"),
        (single, "gpu1-only"),
    ]);
    let trace = sandbox.trace();
    let devices: std::collections::BTreeSet<u32> =
        trace.kernel_runs().iter().map(|run| run.device).collect();
    assert_eq!(devices.len(), 2, "kernels ran on both GPUs");
    let overlaps = trace.same_device_overlaps();
    assert!(
        overlaps.is_empty(),
        "oversubscribed programs ran kernels on the same GPU at once: {overlaps:?}"
    );
}
