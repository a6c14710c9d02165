//! Two data-parallel jobs (two ranks each, one rank per GPU, like PyTorch
//! DDP over NCCL) time-sliced on the same two fake GPUs. Every step ends in
//! a collective kernel that cannot finish until the rank's peer on the
//! other GPU runs its own (`cuda-collective`, fake-cuda's `rendezvous_u64`).
//!
//! Started so that job A holds GPU 0 and job B holds GPU 1, each rank then
//! waits inside a kernel for a peer that is queued behind the other job:
//! their drains cannot finish, so without the scheduler's drain timeout the
//! four programs wait for each other forever.

use nvshare_e2e::worker::Worker;
use nvshare_e2e::{MIB, Sandbox, finish_ok, json_result, wait_until};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Two ranks of 40 MiB do not fit one 64 MiB virtual GPU together.
const DAEMON_ARGS: [&str; 4] = ["--memory-capacity", "64MiB", "--quantum", "200ms"];
const STEPS: u32 = 4;

/// Rank `rank` of job `job`, on GPU `rank`, under the hook in swap mode.
fn rank(sandbox: &Sandbox, job: &str, rank: u32) -> Command {
    let mut command = sandbox.hooked("cuda-collective");
    command
        .env("FAKE_CUDA_DEVICES", "2")
        .env("NVSHARE_NAME", format!("{job}{rank}"))
        .args(["--rank", &rank.to_string(), "--world", "2"])
        .args(["--device", &rank.to_string()])
        .args(["--bytes", &(40 * MIB).to_string()])
        .args(["--steps", &STEPS.to_string(), "--compute-us", "20000"])
        .arg("--rendezvous")
        .arg(sandbox.path().join(format!("{job}.rendezvous")));
    command
}

/// Starts A0 and B1 and waits until each holds its GPU, then A1 and B0,
/// which queue behind the other job: the crossed order that deadlocks.
fn start_crossed(sandbox: &Sandbox) -> Vec<(Child, &'static str)> {
    let a0 = sandbox.spawn(&mut rank(sandbox, "A", 0));
    let b1 = sandbox.spawn(&mut rank(sandbox, "B", 1));
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .client_in_state("A0", "running")
            && sandbox.client_in_state("B1", "running")),
        "A0 and B1 did not get their GPUs: {}",
        sandbox.status()
    );
    let a1 = sandbox.spawn(&mut rank(sandbox, "A", 1));
    let b0 = sandbox.spawn(&mut rank(sandbox, "B", 0));
    vec![(a0, "A0"), (b1, "B1"), (a1, "A1"), (b0, "B0")]
}

/// The step each rank of `job` has reached, from the shared counters.
fn steps_reached(dir: &Path, job: &str) -> Vec<u64> {
    let bytes = std::fs::read(dir.join(format!("{job}.rendezvous"))).unwrap_or_default();
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

#[test]
fn crossed_collective_jobs_finish_through_the_drain_timeout() {
    let sandbox = Sandbox::new();
    let mut args = DAEMON_ARGS.to_vec();
    args.extend(["--drain-timeout", "500ms"]);
    let _daemon = sandbox.daemon(&args);
    let started = Instant::now();
    for (child, name) in start_crossed(&sandbox) {
        let result = json_result(&finish_ok(child, name));
        assert_eq!(result["ok"], true, "{name}: {result}");
        assert_eq!(result["steps"], STEPS, "{name}: {result}");
    }
    let log = std::fs::read_to_string(sandbox.path().join("daemon.log")).unwrap_or_default();
    assert!(
        log.contains("drain overdue"),
        "the jobs finished ({:?}) but no drain was ever overdue: the test did not build the crossed wait",
        started.elapsed()
    );
}

/// The control: the same start with a drain timeout longer than the test
/// really does deadlock, so the test above proves the timeout is what
/// resolves it.
#[test]
fn without_the_drain_timeout_crossed_collective_jobs_wait_for_each_other() {
    let sandbox = Sandbox::new();
    let mut args = DAEMON_ARGS.to_vec();
    args.extend(["--drain-timeout", "60m"]);
    let _daemon = sandbox.daemon(&args);
    let mut ranks = start_crossed(&sandbox);
    // Ten quanta: plenty of time for four steps of 20 ms each.
    std::thread::sleep(Duration::from_secs(2));
    for (child, name) in &mut ranks {
        assert!(
            child.try_wait().expect("poll a rank").is_none(),
            "{name} finished: the crossed start did not deadlock"
        );
    }
    for job in ["A", "B"] {
        let reached = steps_reached(sandbox.path(), job);
        assert!(
            reached.iter().all(|&s| s <= 1),
            "job {job} got past its first collective ({reached:?}): no deadlock to resolve"
        );
    }
    // The sandbox kills the four ranks when dropped.
}

/// A cuda-worker under the hook on `device`: 40 MiB, long enough to be
/// time-sliced a few times.
fn worker_on(sandbox: &Sandbox, name: &str, device: u32) -> Command {
    Worker::new(name)
        .env("FAKE_CUDA_DEVICES", 2)
        .arg("--device", device)
        .bytes(40 * MIB)
        .iterations(30)
        .kernel_ms(20)
        .pause_ms(1)
        .command(sandbox)
}

/// One process drives both GPUs, one thread each, and every step ends in a
/// collective between its two devices (NCCL in a single process). It holds
/// GPU 0 while `one` holds GPU 1; `zero` then waits for GPU 0. The drop of
/// GPU 0 waits for a collective that needs the process's GPU 1 kernel,
/// which needs the grant of GPU 1: the hook must apply that grant while the
/// GPU 0 drain is still waiting (each GPU's messages on its own thread), or
/// the process deadlocks itself. No drain timeout here: the hook alone must
/// get this right.
#[test]
fn a_program_whose_gpus_wait_for_each_other_is_granted_one_while_draining_the_other() {
    let sandbox = Sandbox::new();
    let mut args = DAEMON_ARGS.to_vec();
    args.extend(["--drain-timeout", "60m"]);
    let _daemon = sandbox.daemon(&args);
    let one = sandbox.spawn(&mut worker_on(&sandbox, "one", 1));
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .client_in_state("one", "running")),
        "one did not get GPU 1"
    );
    let mut both = sandbox.hooked("cuda-collective");
    both.env("FAKE_CUDA_DEVICES", "2")
        .env("NVSHARE_NAME", "both")
        .args(["--devices", "0,1", "--bytes", &(40 * MIB).to_string()])
        .args(["--steps", &STEPS.to_string(), "--compute-us", "20000"])
        .arg("--rendezvous")
        .arg(sandbox.path().join("both.rendezvous"));
    let both = sandbox.spawn(&mut both);
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .client_in_state("both", "running")),
        "both did not get GPU 0"
    );
    let zero = sandbox.spawn(&mut worker_on(&sandbox, "zero", 0));
    for (child, name) in [(both, "both"), (one, "one"), (zero, "zero")] {
        let result = json_result(&finish_ok(child, name));
        assert_eq!(result["ok"], true, "{name}: {result}");
    }
}

/// The crossed arrival again (A0, B1, A1, B0), but while a program holds
/// both GPUs, and each job's ranks name their job (`NVSHARE_GROUP`): the
/// scheduler lines the jobs up alike on both GPUs and grants each job's
/// ranks together, so nothing waits for anything and no drain is ever
/// overdue (the timeout here is an hour: it cannot be what saves them).
#[test]
fn grouped_jobs_arriving_crosswise_are_granted_whole() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&[
        "--memory-capacity",
        "64MiB",
        "--quantum",
        "30",
        "--drain-timeout",
        "60m",
    ]);
    let mut blocker = sandbox.hooked("cuda-worker");
    blocker
        .env("FAKE_CUDA_DEVICES", "2")
        .env("NVSHARE_NAME", "blocker")
        .args(["--devices", "0,1", "--bytes", &(40 * MIB).to_string()])
        .args(["--iterations", "150", "--sleep-us", "20000"]);
    let blocker = sandbox.spawn(&mut blocker);
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .client_in_state("blocker", "running")),
        "the blocker never ran"
    );
    let mut ranks = Vec::new();
    for (job, r) in [("A", 0), ("B", 1), ("A", 1), ("B", 0)] {
        let mut command = rank(&sandbox, job, r);
        command.env("NVSHARE_GROUP", job);
        ranks.push((sandbox.spawn(&mut command), format!("{job}{r}")));
        let name = format!("{job}{r}");
        assert!(
            wait_until(Duration::from_secs(20), || sandbox
                .client_in_state(&name, "waiting")),
            "{name} never queued: {}",
            sandbox.status()
        );
    }
    let result = json_result(&finish_ok(blocker, "blocker"));
    assert_eq!(result["ok"], true, "blocker: {result}");
    for (child, name) in ranks {
        let result = json_result(&finish_ok(child, &name));
        assert_eq!(result["ok"], true, "{name}: {result}");
    }
    let log = std::fs::read_to_string(sandbox.path().join("daemon.log")).unwrap_or_default();
    assert!(
        !log.contains("drain overdue"),
        "a drain was overdue: the jobs were granted crosswise"
    );
}
