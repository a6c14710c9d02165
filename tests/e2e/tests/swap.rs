//! Swap mode end to end: programs under the hook in `NVSHARE_MODE=swap`
//! sharing one oversubscribed fake GPU through the real daemon, their
//! memory swapped out to host shadows and back at the same addresses. The
//! fake driver's trace shows each move (`unmap` when memory leaves the GPU,
//! `map` when it comes back, the hook's `memcpy` chunks in between), and
//! each program verifies its own data at the end.

use cuda_programs::artifacts::{artifact, fake_cuda_command};
use nvshare_e2e::trace::Trace;
use nvshare_e2e::worker::{Worker, finish_verified};
use nvshare_e2e::{MIB, Sandbox, finish_ok, json_result, kill_hard, wait_until};
use std::process::{Child, Command};
use std::time::Duration;

/// Memory of the virtual GPU every test here shares.
const CAPACITY: &str = "64MiB";

fn swap_daemon(sandbox: &Sandbox) -> nvshare_e2e::Daemon {
    sandbox.daemon(&["--memory-capacity", CAPACITY, "--quantum", "200ms"])
}

/// A verified worker in swap mode: `buffers` device buffers of `bytes`
/// each, `iterations` rounds of a `kernel_ms` sleep kernel plus an add,
/// logging each eviction (see [`evictions_logged`]).
fn worker(
    sandbox: &Sandbox,
    name: &str,
    buffers: u32,
    bytes: u64,
    iterations: u32,
    kernel_ms: u64,
) -> Command {
    Worker::swap(name)
        .swap_log()
        .buffers(buffers)
        .bytes(bytes)
        .iterations(iterations)
        .kernel_ms(kernel_ms)
        .pause_ms(1)
        .command(sandbox)
}

/// `(unmaps, maps)` of `pid`'s memory by the hook: unmaps before the
/// program's own frees at the end, maps after its first allocation.
fn swaps_of(trace: &Trace, pid: u32) -> (usize, usize) {
    let unmaps = trace.named("unmap").filter(|e| e.pid == pid).count();
    let maps = trace.named("map").filter(|e| e.pid == pid).count();
    (unmaps, maps)
}

/// The hook's own log lines for each eviction: `(asked, moved)`.
fn evictions_logged(stderr: &str) -> Vec<(u64, u64)> {
    stderr
        .lines()
        .filter(|l| l.contains("swapped GPU memory out to host shadows"))
        .map(|l| {
            let value = |key: &str| -> u64 {
                let start = l
                    .find(&format!("{key}="))
                    .unwrap_or_else(|| panic!("no {key} in {l}"))
                    + key.len()
                    + 1;
                l[start..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{key} is not a number in {l}"))
            };
            (value("asked"), value("moved"))
        })
        .collect()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn contents_survive_repeated_swaps_under_three_competing_programs() {
    let sandbox = Sandbox::new();
    let _daemon = swap_daemon(&sandbox);
    // Three programs of 24 MiB (+ one 2 MiB slab each) on 64 MiB: two fit,
    // so every switch swaps one out. Each checks its checksum at the end.
    let workers: Vec<Child> = ["a", "b", "c"]
        .iter()
        .map(|name| sandbox.spawn(&mut worker(&sandbox, name, 2, 12 * MIB, 60, 5)))
        .collect();
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();
    finish_verified(workers, "a swapped worker");
    let trace = sandbox.trace();
    let mut total_swaps = 0;
    for &pid in &pids {
        let (unmaps, maps) = swaps_of(&trace, pid);
        // Its own frees unmap its 2 buffers and the slab once at the end.
        let swapped_out = unmaps.saturating_sub(3);
        total_swaps += swapped_out;
        assert!(
            maps >= 3 + swapped_out,
            "pid {pid}: {swapped_out} units swapped out but only {maps} mappings made"
        );
    }
    eprintln!("{total_swaps} units swapped out and back among the three programs");
    assert!(
        total_swaps >= 6,
        "expected repeated swapping among the three, saw {total_swaps} units swapped out"
    );
    let copied_out: u64 = pids.iter().map(|&pid| trace.copied_out_by(pid)).sum();
    assert!(
        copied_out >= 6 * 12 * MIB,
        "the hook copied only {copied_out} bytes out"
    );
}

/// The bytes `pid`'s memory lost from the GPU by eviction: every unmap in
/// the trace except the program's own `frees` at its end.
fn unmapped_by_evictions(trace: &Trace, pid: u32, frees: usize) -> u64 {
    let unmaps: Vec<u64> = trace
        .named("unmap")
        .filter(|e| e.pid == pid)
        .map(|e| e.number("bytes"))
        .collect();
    assert!(
        unmaps.len() >= frees,
        "pid {pid} freed less than it allocated"
    );
    unmaps[..unmaps.len() - frees].iter().sum()
}

#[test]
fn partial_eviction_moves_only_what_was_asked_oldest_first() {
    let sandbox = Sandbox::new();
    let _daemon = swap_daemon(&sandbox);
    // A holds four 8 MiB buffers (+ a slab), B one of 40 MiB: B needs only
    // 8-12 MiB of A's 34 to fit beside it, so A gives up one or two units.
    let many = sandbox.spawn(&mut worker(&sandbox, "many", 4, 8 * MIB, 45, 5));
    let one = sandbox.spawn(&mut worker(&sandbox, "one", 1, 40 * MIB, 45, 5));
    let many_pid = many.id();
    let outputs = finish_verified(vec![many, one], "a partially evicted worker");
    let evictions = evictions_logged(&stderr_of(&outputs[0]));
    assert!(!evictions.is_empty(), "A was never asked to evict");
    for &(asked, moved) in &evictions {
        assert!(moved >= asked, "asked {asked}, moved only {moved}");
        assert!(
            moved < asked + 8 * MIB,
            "asked {asked} but moved {moved}: more than one unit beyond the request"
        );
        assert!(moved < 32 * MIB, "asked {asked} but everything moved");
    }
    let logged: u64 = evictions.iter().map(|&(_, moved)| moved).sum();
    let trace = sandbox.trace();
    let copied = trace.copied_out_by(many_pid);
    assert_eq!(
        copied, logged,
        "the driver copied {copied} bytes out of A's memory, the hook reported {logged} evicted"
    );
    assert!(
        trace
            .named("unmap")
            .filter(|e| e.pid == many_pid)
            .all(|e| e.number("bytes") == 8 * MIB || e.number("bytes") == 2 * MIB),
        "units are unmapped whole, one 8 MiB buffer at a time"
    );
}

#[test]
fn pinning_refused_falls_back_to_pageable_shadows_without_loss() {
    let sandbox = Sandbox::new();
    let _daemon = swap_daemon(&sandbox);
    let workers: Vec<Child> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            sandbox.spawn(
                worker(&sandbox, name, 2, 12 * MIB, 30, 5).env("FAKE_CUDA_PINNED_LIMIT", "1MiB"),
            )
        })
        .collect();
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();
    let outputs = finish_verified(workers, "a worker with pageable shadows");
    let trace = sandbox.trace();
    let evicted: u64 = pids
        .iter()
        .map(|&pid| unmapped_by_evictions(&trace, pid, 3))
        .sum();
    assert!(evicted > 0, "nothing was swapped out");
    assert_eq!(
        trace.named("register").count(),
        0,
        "no shadow could have been pinned under a 1 MiB limit"
    );
    let warned = outputs
        .iter()
        .filter(|o| stderr_of(o).contains("cannot pin host memory for swapping"))
        .count();
    assert!(
        warned >= 1,
        "the fallback to pageable memory was not logged"
    );
}

#[test]
fn a_refused_eviction_moves_nothing_and_loses_nothing() {
    let sandbox = Sandbox::new();
    let _daemon = swap_daemon(&sandbox);
    // No shadow fits in 1 MiB of host memory: every eviction is refused,
    // the scheduler lets the programs run oversubscribed instead.
    let workers: Vec<Child> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            sandbox
                .spawn(worker(&sandbox, name, 2, 12 * MIB, 20, 5).env("NVSHARE_HOST_LIMIT", "1MiB"))
        })
        .collect();
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();
    let outputs = finish_verified(workers, "a worker whose evictions are refused");
    let refused = outputs
        .iter()
        .filter(|o| stderr_of(o).contains("host memory for swapped-out GPU memory is exhausted"))
        .count();
    assert!(refused >= 1, "no eviction was refused");
    let trace = sandbox.trace();
    for pid in pids {
        assert_eq!(
            unmapped_by_evictions(&trace, pid, 3),
            0,
            "pid {pid} lost memory"
        );
        assert_eq!(
            trace.copied_out_by(pid),
            0,
            "a refused eviction copied memory out"
        );
    }
}

#[test]
fn a_program_killed_while_swapping_leaves_the_others_and_the_daemon_healthy() {
    let sandbox = Sandbox::new();
    let _daemon = swap_daemon(&sandbox);
    let mut victim = sandbox.spawn(&mut worker(&sandbox, "victim", 2, 12 * MIB, 100_000, 5));
    let others: Vec<Child> = ["a", "b"]
        .iter()
        .map(|name| sandbox.spawn(&mut worker(&sandbox, name, 2, 12 * MIB, 60, 5)))
        .collect();
    let victim_pid = victim.id();
    assert!(
        wait_until(Duration::from_secs(30), || sandbox
            .trace()
            .named("unmap")
            .filter(|e| e.pid == victim_pid)
            .count()
            >= 3),
        "the victim was never swapped out"
    );
    kill_hard(&mut victim);
    finish_verified(others, "a worker beside a killed one");
    let status = sandbox.status();
    assert!(
        status.is_object(),
        "the daemon answers after the kill: {status}"
    );
    let after = sandbox.spawn(&mut worker(&sandbox, "after", 2, 12 * MIB, 10, 1));
    finish_verified(vec![after], "a worker started after the kill");
}

#[test]
fn memory_the_engine_cannot_move_is_never_moved_or_corrupted() {
    let sandbox = Sandbox::new();
    let _daemon = swap_daemon(&sandbox);
    // The program's own VMM mapping (one 24 MiB handle mapped whole with
    // access: swappable like the hook's units, see tests/vmm.rs) and a
    // program's managed memory (counted, never moved) run beside two
    // swapped programs; each verifies its data.
    let mut vmm = worker(&sandbox, "vmm", 1, 24 * MIB, 40, 5);
    vmm.args(["--alloc", "vmm"]);
    let mut managed = worker(&sandbox, "managed", 1, 8 * MIB, 40, 5);
    managed.args(["--alloc", "managed"]);
    let programs = vec![
        sandbox.spawn(&mut vmm),
        sandbox.spawn(&mut managed),
        sandbox.spawn(&mut worker(&sandbox, "a", 2, 12 * MIB, 40, 5)),
        sandbox.spawn(&mut worker(&sandbox, "b", 2, 12 * MIB, 40, 5)),
    ];
    let managed_pid = programs[1].id();
    finish_verified(programs, "a worker beside swapped ones");
    let trace = sandbox.trace();
    // The managed program's own small device allocation (its 8-byte
    // checksum result, in a swappable 2 MiB slab) may be swapped; its
    // managed ranges, known from the prefetch that placed them, never are.
    let managed: std::collections::BTreeSet<(u64, u64)> = trace
        .named("prefetch")
        .filter(|e| e.pid == managed_pid)
        .map(|e| (e.number("ptr"), e.number("bytes")))
        .collect();
    assert!(!managed.is_empty(), "the managed worker placed its buffer");
    let copied_from_managed: u64 = trace
        .named("memcpy")
        .filter(|e| e.pid == managed_pid)
        .filter(|e| {
            let src = e.number("src");
            managed
                .iter()
                .any(|&(base, bytes)| src >= base && src < base + bytes)
        })
        .map(|e| e.number("bytes"))
        .sum();
    assert_eq!(
        copied_from_managed, 0,
        "managed memory is never copied out by the hook"
    );
}

/// On a GPU physically full of a running program's memory, a second
/// program's allocation (within its capacity) does not fail: it waits for
/// its turn, which comes with room made for it, and both finish correct.
#[test]
fn an_allocation_on_a_physically_full_gpu_waits_for_its_turn() {
    let sandbox = Sandbox::new();
    // The fake GPU has 64 MiB in all, shared by both programs like a real
    // card; the virtual capacity is the same 64 MiB.
    let _daemon = sandbox.daemon(&["--memory-capacity", CAPACITY, "--quantum", "200ms"]);
    let spawn = |name: &str| {
        sandbox.spawn(worker(&sandbox, name, 1, 40 * MIB, 12, 20).env("FAKE_CUDA_MEMORY", "64MiB"))
    };
    let first = spawn("first");
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .trace()
            .named("kernel_begin")
            .any(|e| e.pid == first.id())),
        "the first program never ran"
    );
    let second = spawn("second");
    for (child, name) in [(first, "first"), (second, "second")] {
        let result = json_result(&finish_ok(child, name));
        assert_eq!(result["ok"], true, "{name}: {result}");
    }
}

/// Whether the program named `name` is in `state` with `resident` bytes on
/// the GPU if given, after at least `grants` grants.
fn client_is(
    sandbox: &Sandbox,
    name: &str,
    state: &str,
    resident: Option<u64>,
    grants: u64,
) -> bool {
    sandbox.clients_named(name).iter().any(|c| {
        c["state"] == state
            && resident.is_none_or(|r| c["resident"] == r)
            && c["grants"].as_u64().unwrap_or(0) >= grants
    })
}

/// Memory the scheduler counts as free may still be held on the card when a
/// program is granted (a program that just exited, whose memory the driver
/// frees after its socket closes; a co-runner still evicting). The granted
/// program's restore then finds the GPU physically full: it waits and
/// retries instead of opening the gate with its memory missing (its kernels
/// would touch unmapped memory and fault), and finishes correct.
#[test]
fn a_restore_on_a_physically_full_gpu_waits_for_the_memory() {
    let sandbox = Sandbox::new();
    // 100 MiB card, 64 MiB virtual GPU: `small` (20 MiB) and `big` (50 MiB)
    // take turns every second.
    let _daemon = sandbox.daemon(&["--memory-capacity", CAPACITY, "--quantum", "1"]);
    let spawn = |name: &str, bytes: u64| {
        sandbox.spawn(
            worker(&sandbox, name, 1, bytes, 80, 20)
                .env("FAKE_CUDA_MEMORY", "100MiB")
                .env("NVSHARE_LOG", "info"),
        )
    };
    let small = spawn("small", 20 * MIB);
    assert!(
        wait_until(Duration::from_secs(20), || client_is(
            &sandbox, "small", "running", None, 1
        )),
        "small never ran"
    );
    let big = spawn("big", 50 * MIB);
    // Wait until big has run once and is swapped out again, small holding.
    assert!(
        wait_until(Duration::from_secs(30), || client_is(
            &sandbox,
            "big",
            "waiting",
            Some(0),
            1
        ) && client_is(
            &sandbox, "small", "running", None, 2
        )),
        "big was never swapped out while small ran: {}",
        sandbox.status()
    );
    // A program outside nvshare takes 60 MiB of the card for ~1.5 s: big's
    // next restore (50 MiB beside small's 14 and these 60) does not fit.
    let mut outsider = fake_cuda_command(&artifact("cuda-worker"));
    outsider
        // Not hooked; the socket only marks it as this sandbox's to clean up.
        .env("NVSHARE_SOCK", sandbox.socket())
        .env("FAKE_CUDA_MEMORY", "100MiB")
        .env("FAKE_CUDA_STATE_DIR", sandbox.path())
        .env("FAKE_CUDA_TRACE", sandbox.trace_path())
        .args(["--bytes", &(60 * MIB).to_string(), "--iterations", "75"])
        .args(["--sleep-us", "20000"]);
    let outsider = sandbox.spawn(&mut outsider);
    for (child, name) in [(outsider, "outsider"), (small, "small"), (big, "big")] {
        let result = json_result(&finish_ok(child, name));
        assert_eq!(result["ok"], true, "{name}: {result}");
    }
}

/// A CUDA graph captured before its memory is swapped out replays
/// correctly after the memory comes back: the graph's kernels hold device
/// addresses, and swap mode brings memory back to the same ones.
#[test]
fn a_graph_captured_before_a_swap_out_replays_correctly_after_the_swap_in() {
    let sandbox = Sandbox::new();
    let _daemon = swap_daemon(&sandbox);
    let mut graph = sandbox.hooked("cuda-scenario");
    graph
        .env("NVSHARE_MODE", "swap")
        .env("NVSHARE_NAME", "graph")
        .env("NVSHARE_LOG", "info,nvshare::engine::swap=debug")
        .args(["graph", "--launches", "12", "--pause-ms", "60"])
        .args(["--bytes", &(40 * MIB).to_string()]);
    let graph = sandbox.spawn(&mut graph);
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .client_in_state("graph", "running")),
        "the graph program never ran"
    );
    // 40 + 40 MiB do not fit 64 MiB: the worker's turns swap the graph's
    // buffer out between its replays.
    let other = sandbox.spawn(&mut worker(&sandbox, "other", 1, 40 * MIB, 40, 5));
    let outputs = [
        finish_ok(graph, "the graph program"),
        finish_ok(other, "its competitor"),
    ];
    let result = json_result(&outputs[0]);
    assert_eq!(result["wrong_words"], 0, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(json_result(&outputs[1])["ok"], true);
    let evictions = evictions_logged(&stderr_of(&outputs[0]));
    assert!(
        !evictions.is_empty(),
        "the graph's memory was never swapped out between replays: the test proved nothing\n{}",
        stderr_of(&outputs[0])
    );
}
