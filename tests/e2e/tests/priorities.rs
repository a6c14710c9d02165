//! Priorities through the real daemon and hook: of two programs waiting
//! for a GPU that one holds, the one with the higher `NVSHARE_PRIORITY`
//! runs first though it asked later (weights and the bound on waiting are
//! the policy's tests, in simulated time).

use nvshare_e2e::worker::Worker;
use nvshare_e2e::{MIB, Sandbox, finish_ok, json_result, wait_until};
use std::time::Duration;

fn worker(name: &str, priority: i32, iterations: u32) -> Worker {
    Worker::swap(name)
        .env("NVSHARE_PRIORITY", priority)
        // Never idle: the GPU moves only at the end of a time slice.
        .env("NVSHARE_IDLE_MS", 600_000)
        .buffers(1)
        .bytes(40 * MIB)
        .iterations(iterations)
        .kernel_ms(20)
}

#[test]
fn the_higher_priority_runs_first_though_it_asked_later() {
    let sandbox = Sandbox::new();
    // 40 MiB each in 64: one at a time, 1 s slices (and priority steps).
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "1"]);
    let first = worker("first", 0, 80).spawn(&sandbox);
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .client_in_state("first", "running")),
        "the first program never ran"
    );
    let low = worker("low", 0, 3).spawn(&sandbox);
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .client_in_state("low", "waiting")),
        "the low-priority program never waited"
    );
    let high = worker("high", 5, 3).spawn(&sandbox);
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .client_in_state("high", "waiting")),
        "the high-priority program never waited"
    );
    let (high_pid, low_pid) = (high.id(), low.id());
    let status = sandbox.status();
    let high_status = &sandbox.clients_named("high")[0];
    assert_eq!(high_status["priority"], 5, "{status}");
    for (child, name) in [(first, "first"), (low, "low"), (high, "high")] {
        assert_eq!(json_result(&finish_ok(child, name))["ok"], true, "{name}");
    }
    let trace = sandbox.trace();
    let first_kernel = |pid: u32| {
        trace
            .named("kernel_begin")
            .find(|e| e.pid == pid)
            .map(|e| e.ns)
            .expect("the program ran kernels")
    };
    assert!(
        first_kernel(high_pid) < first_kernel(low_pid),
        "the low-priority program ran before the high one"
    );
}
