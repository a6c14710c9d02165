//! Reservations end to end: programs that grow while they hold the GPU
//! never make more memory on it than the scheduler's capacity, measured on
//! the fake driver's trace of physical memory (`create`/`destroy`).

use nvshare_e2e::worker::Worker;
use nvshare_e2e::{MIB, Sandbox, finish_ok, json_result, wait_until};
use std::process::{Child, Command};
use std::time::Duration;

const CAPACITY_MIB: u64 = 64;

/// Rounding the scheduler cannot see coming: one 2 MiB granule.
const SLACK: u64 = 2 * MIB;

fn daemon(sandbox: &Sandbox) -> nvshare_e2e::Daemon {
    let capacity = format!("{CAPACITY_MIB}MiB");
    sandbox.daemon(&["--memory-capacity", &capacity, "--quantum", "200ms"])
}

/// A verified swap-mode worker of `buffers` buffers of `bytes`, allocated
/// one after the other: it asks for the GPU with its first buffer and grows
/// while it holds it.
fn worker(sandbox: &Sandbox, name: &str, buffers: u32, bytes: u64) -> Command {
    Worker::swap(name)
        .buffers(buffers)
        .bytes(bytes)
        .iterations(20)
        .arg("--sleep-us", 3000)
        .pause_ms(1)
        .command(sandbox)
}

#[test]
fn programs_growing_past_half_the_capacity_never_overcommit_the_gpu() {
    let sandbox = Sandbox::new();
    let _daemon = daemon(&sandbox);
    // Four programs of 5 x 8 MiB (+ a 2 MiB slab) on 64 MiB: each is granted
    // at its first 8 MiB and grows to 42 MiB, more than half the capacity.
    let workers: Vec<Child> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| sandbox.spawn(&mut worker(&sandbox, name, 5, 8 * MIB)))
        .collect();
    for child in workers {
        let result = json_result(&finish_ok(child, "a growing worker"));
        assert_eq!(result["ok"], true, "{result}");
    }
    let trace = sandbox.trace();
    let peak = trace.peak_device_memory();
    eprintln!("peak device memory: {} MiB", peak / MIB);
    assert!(
        peak <= CAPACITY_MIB * MIB + SLACK,
        "the GPU held {} MiB at once on a {CAPACITY_MIB} MiB virtual GPU (at ns, bytes per pid: {:?}); scheduler log:\n{}",
        peak / MIB,
        trace.holdings_at_peak(),
        std::fs::read_to_string(sandbox.path().join("daemon.log")).unwrap_or_default()
    );
}

#[test]
fn a_single_allocation_bigger_than_the_capacity_still_fails_at_once() {
    let sandbox = Sandbox::new();
    let _daemon = daemon(&sandbox);
    // As before reservations: refused with an out-of-memory error by the
    // hook, never sent to the scheduler as a reservation to wait for.
    let mut big = sandbox.spawn(&mut worker(&sandbox, "big", 1, 80 * MIB));
    let exited = wait_until(Duration::from_secs(20), || {
        big.try_wait().ok().flatten().is_some()
    });
    assert!(exited, "an allocation past the capacity waited");
    let output = big.wait_with_output().expect("reap the program");
    assert!(!output.status.success(), "80 MiB on a 64 MiB GPU succeeded");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OUT_OF_MEMORY") || stderr.contains("out of memory"),
        "not an out-of-memory error: {stderr}"
    );
    // The hook says why, as a warning, with the numbers and what to change.
    let refusal = stderr
        .lines()
        .find(|l| l.contains("is refused with CUDA_ERROR_OUT_OF_MEMORY"))
        .unwrap_or_else(|| panic!("the refusal is not explained: {stderr}"));
    for part in ["WARN", "80.0 MiB", "may use 64.0 MiB", "--memory-capacity"] {
        assert!(refusal.contains(part), "{part:?} missing in {refusal}");
    }
    // The daemon still serves others.
    let next = sandbox.spawn(&mut worker(&sandbox, "next", 2, 8 * MIB));
    assert_eq!(
        json_result(&finish_ok(next, "a worker after it"))["ok"],
        true
    );
}
