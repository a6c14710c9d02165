//! Overlapped switches end to end: while one program's eviction frees the
//! GPU piece by piece, the next program's restore already fills what is
//! free (`Evicting` progress, `Fetch` ahead of the grant), and memory free
//! beside a holder is filled before the switch. Measured on the fake
//! driver's trace: the next program maps memory before the last one has
//! released all of its own, the GPU never holds more than the capacity,
//! and both programs verify their data.

use nvshare_e2e::trace::Trace;
use nvshare_e2e::worker::Worker;
use nvshare_e2e::{MIB, Sandbox, finish_ok, json_result};
use std::process::{Child, Command};

const CAPACITY_MIB: u64 = 64;

/// Rounding the scheduler cannot see coming: one 2 MiB granule.
const SLACK: u64 = 2 * MIB;

/// A verified swap-mode worker of two 20 MiB buffers in 4 MiB segments
/// (+ a 2 MiB slab): two of them do not fit on 64 MiB together.
fn worker(sandbox: &Sandbox, name: &str) -> Command {
    Worker::swap(name)
        .env("NVSHARE_SWAP_SEGMENT_MIB", 4)
        .buffers(2)
        .bytes(20 * MIB)
        .iterations(40)
        .kernel_ms(5)
        .pause_ms(1)
        .command(sandbox)
}

/// The evictions of any of `pids` during which another of them made
/// memory: an eviction is a burst of one program's `destroy`s (memory
/// released) with no `create` of its own between them, followed later by
/// one of its `create`s (it came back, so this was no exit), and it is
/// overlapped when another program's `create` falls strictly inside it.
fn overlapped_evictions(trace: &Trace, pids: &[u32]) -> usize {
    let moves: Vec<_> = trace
        .events
        .iter()
        .filter(|e| pids.contains(&e.pid) && (e.name == "create" || e.name == "destroy"))
        .collect();
    let mut overlapped = 0;
    for &pid in pids {
        let mut burst: Option<(u64, u64)> = None;
        for event in moves.iter().filter(|e| e.pid == pid) {
            match (event.name.as_str(), burst) {
                ("destroy", None) => burst = Some((event.ns, event.ns)),
                ("destroy", Some((first, _))) => burst = Some((first, event.ns)),
                ("create", Some((first, last))) => {
                    let inside = moves
                        .iter()
                        .any(|e| e.pid != pid && e.name == "create" && e.ns > first && e.ns < last);
                    overlapped += usize::from(inside);
                    burst = None;
                }
                _ => {}
            }
        }
    }
    overlapped
}

#[test]
fn the_next_restore_runs_while_the_last_eviction_frees_memory() {
    let sandbox = Sandbox::new();
    let capacity = format!("{CAPACITY_MIB}MiB");
    let _daemon = sandbox.daemon(&["--memory-capacity", &capacity, "--quantum", "200ms"]);
    let workers: Vec<Child> = ["a", "b"]
        .iter()
        .map(|name| sandbox.spawn(&mut worker(&sandbox, name)))
        .collect();
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();
    for child in workers {
        let result = json_result(&finish_ok(child, "an overlapped worker"));
        assert_eq!(result["ok"], true, "{result}");
    }
    let log = std::fs::read_to_string(sandbox.path().join("daemon.log")).unwrap_or_default();
    let ahead = log
        .lines()
        .filter(|l| l.contains("memory restored") && l.contains("ahead=true"))
        .count();
    let trace = sandbox.trace();
    let overlapped = overlapped_evictions(&trace, &pids);
    let peak = trace.peak_device_memory();
    eprintln!(
        "{ahead} restores ahead of a grant, {overlapped} evictions overlapped by a restore, peak {} MiB",
        peak / MIB
    );
    assert!(
        ahead >= 2,
        "no memory was restored ahead of a grant:\n{log}"
    );
    assert!(
        overlapped >= 1,
        "no restore ran while an eviction was freeing memory"
    );
    assert!(
        peak <= CAPACITY_MIB * MIB + SLACK,
        "the GPU held {} MiB at once on a {CAPACITY_MIB} MiB virtual GPU",
        peak / MIB
    );
}
