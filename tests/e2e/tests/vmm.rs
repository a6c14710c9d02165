//! Programs that map GPU memory with CUDA's virtual memory API themselves,
//! the way PyTorch's expandable segments do (a large reservation grown in
//! 2 MiB and larger segments, each created, mapped and given access on its
//! own), sharing one oversubscribed fake GPU through the real daemon in swap
//! mode: their memory is counted in the footprint the scheduler sees,
//! swapped out to host shadows and back at the same addresses like the
//! hook's own allocations, and the GPU never holds more than the capacity.
//! Each program verifies its data at the end.

use nvshare_e2e::trace::{Event, Trace};
use nvshare_e2e::worker::Worker;
use nvshare_e2e::{MIB, Sandbox, finish_ok, json_result, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::time::Duration;

const CAPACITY_MIB: u64 = 64;

/// Rounding the scheduler cannot see coming: one 2 MiB granule.
const SLACK: u64 = 2 * MIB;

/// A verified worker whose one buffer of `bytes` is grown like an
/// expandable segment (`alloc`: `expandable` or `expandable-released`), in
/// segments alternating 2 MiB and `segment` bytes (the caller adds
/// `--iterations`).
fn worker(sandbox: &Sandbox, name: &str, alloc: &str, bytes: u64, segment: u64) -> Command {
    Worker::swap(name)
        .swap_log()
        .arg("--alloc", alloc)
        .bytes(bytes)
        .arg("--chunk", segment)
        .kernel_ms(5)
        .pause_ms(1)
        .command(sandbox)
}

/// How many times each address of `pid` was mapped.
fn maps_by_address(trace: &Trace, pid: u32) -> BTreeMap<u64, usize> {
    let mut maps = BTreeMap::new();
    for event in trace.named("map").filter(|e| e.pid == pid) {
        *maps.entry(event.number("ptr")).or_default() += 1;
    }
    maps
}

/// Swap-ins of `pids`' memory so far: every mapping of an address after
/// its first.
fn remaps(trace: &Trace, pids: &[u32]) -> usize {
    pids.iter()
        .flat_map(|&pid| maps_by_address(trace, pid).into_values())
        .map(|count| count - 1)
        .sum()
}

/// How many times, at least, the three programs' segments come back from
/// host memory before they are told to stop.
const REMAPS_WANTED: usize = 60;

#[test]
fn expandable_segments_are_counted_swapped_at_their_addresses_and_intact() {
    let sandbox = Sandbox::new();
    let capacity = format!("{CAPACITY_MIB}MiB");
    let _daemon = sandbox.daemon(&["--memory-capacity", &capacity, "--quantum", "200ms"]);
    // Three programs of 22-24 MiB of segments (+ a 2 MiB slab each for the
    // result) on 64 MiB: two fit, so every switch swaps one out. One keeps
    // its handles, one releases each right after mapping it, one grows in
    // 20 MiB segments as PyTorch does.
    let shapes = [
        ("keeps", "expandable", 24 * MIB, 6 * MIB),
        ("released", "expandable-released", 24 * MIB, 6 * MIB),
        ("large", "expandable", 22 * MIB, 20 * MIB),
    ];
    // They run until told to stop, once their segments have come back from
    // host memory REMAPS_WANTED times, however fast this machine is.
    let stop = sandbox.path().join("stop");
    let workers: Vec<Child> = shapes
        .iter()
        .map(|&(name, alloc, bytes, segment)| {
            sandbox.spawn(
                worker(&sandbox, name, alloc, bytes, segment)
                    .args(["--iterations", "3"])
                    .arg("--until-file")
                    .arg(&stop),
            )
        })
        .collect();
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();

    // The scheduler sees each program's segments in its footprint.
    let mut counted = BTreeSet::new();
    let all_counted = wait_until(Duration::from_secs(30), || {
        for &(name, _, bytes, _) in &shapes {
            let footprint = sandbox
                .clients_named(name)
                .iter()
                .filter_map(|c| c["footprint"].as_u64())
                .max()
                .unwrap_or(0);
            if footprint >= bytes {
                counted.insert(name);
            }
        }
        counted.len() == shapes.len()
    });
    assert!(
        all_counted,
        "only {counted:?} had their VMM memory counted: {}",
        sandbox.status()
    );

    let swapped_enough = wait_until(Duration::from_secs(120), || {
        remaps(&sandbox.trace(), &pids) >= REMAPS_WANTED
    });
    std::fs::write(&stop, b"").expect("create the stop file");
    for worker in workers {
        let output = finish_ok(worker, "a program with expandable segments");
        assert_eq!(json_result(&output)["ok"], true);
    }
    let trace = sandbox.trace();
    let remapped = remaps(&trace, &pids);
    eprintln!("{remapped} segments came back from host memory at their addresses");
    assert!(
        swapped_enough,
        "only {remapped} segments came back from host memory within 120 s"
    );
    let copied: Vec<u64> = pids.iter().map(|&pid| trace.copied_out_by(pid)).collect();
    eprintln!("copied out per program: {copied:?}");
    assert!(
        copied.iter().filter(|&&bytes| bytes > 0).count() >= 2,
        "the programs' own VMM memory was not swapped: {copied:?}"
    );
    assert!(
        copied.iter().sum::<u64>() >= 3 * 22 * MIB,
        "too little was swapped: {copied:?}"
    );
    let peak = trace.peak_device_memory();
    eprintln!("peak device memory: {} MiB", peak / MIB);
    assert!(
        peak <= CAPACITY_MIB * MIB + SLACK,
        "the GPU held {} MiB at once on a {CAPACITY_MIB} MiB virtual GPU",
        peak / MIB
    );
}

#[test]
fn a_program_whose_segments_exceed_the_capacity_gets_out_of_memory_at_once() {
    let sandbox = Sandbox::new();
    let capacity = format!("{CAPACITY_MIB}MiB");
    let _daemon = sandbox.daemon(&["--memory-capacity", &capacity, "--quantum", "200ms"]);
    // cuMemCreate is admitted against the capacity like cuMemAlloc.
    let mut big = sandbox.spawn(
        worker(&sandbox, "big", "expandable", 80 * MIB, 20 * MIB).args(["--iterations", "40"]),
    );
    let exited = wait_until(Duration::from_secs(20), || {
        big.try_wait().ok().flatten().is_some()
    });
    assert!(exited, "segments past the capacity waited");
    let output = big.wait_with_output().expect("reap the program");
    assert!(!output.status.success(), "80 MiB on a 64 MiB GPU succeeded");
    let result = json_result(&output);
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.contains("cuMemCreate") && e.contains("OUT_OF_MEMORY")),
        "not an out-of-memory error from cuMemCreate: {result}"
    );
}

#[test]
fn exported_segments_stay_on_the_gpu_and_intact_beside_swapped_programs() {
    let sandbox = Sandbox::new();
    let capacity = format!("{CAPACITY_MIB}MiB");
    let _daemon = sandbox.daemon(&["--memory-capacity", &capacity, "--quantum", "200ms"]);
    // A program whose 12 MiB of segments are exported (shared with other
    // processes: they must never move) beside two that swap: 12 + 30 + 30
    // MiB (+ 2 MiB each for the hook's own result memory) do not fit on 64
    // MiB.
    let mut exported = worker(&sandbox, "exported", "expandable", 12 * MIB, 4 * MIB);
    exported.args(["--export", "--iterations", "40"]);
    let workers = vec![
        sandbox.spawn(&mut exported),
        sandbox.spawn(
            worker(&sandbox, "a", "expandable", 30 * MIB, 6 * MIB).args(["--iterations", "40"]),
        ),
        sandbox.spawn(
            worker(&sandbox, "b", "expandable-released", 30 * MIB, 6 * MIB)
                .args(["--iterations", "40"]),
        ),
    ];
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();
    for worker in workers {
        let output = finish_ok(worker, "a program with expandable segments");
        assert_eq!(json_result(&output)["ok"], true);
    }
    let trace = sandbox.trace();
    // Each segment was exported after it was mapped (it may have moved
    // before): from then on it is never unmapped but by the program's own
    // free at the end, and never mapped again.
    let exports: Vec<&Event> = trace.named("export").filter(|e| e.pid == pids[0]).collect();
    assert_eq!(exports.len(), 4, "2 + 4 + 2 + 4 MiB of segments exported");
    for export in exports {
        let handle = export.fields["handle"].clone();
        let segment = trace
            .named("map")
            .filter(|e| e.pid == pids[0] && e.ns <= export.ns && e.fields["handle"] == handle)
            .last()
            .map(|e| e.number("ptr"))
            .expect("an exported handle was mapped");
        let after = |name: &'static str| {
            trace
                .named(name)
                .filter(|e| e.pid == pids[0] && e.ns > export.ns && e.number("ptr") == segment)
                .count()
        };
        assert_eq!(
            (after("unmap"), after("map")),
            (1, 0),
            "the exported segment at 0x{segment:x} moved after its export"
        );
    }
    let copied = [trace.copied_out_by(pids[1]), trace.copied_out_by(pids[2])];
    eprintln!("copied out of the swapping programs: {copied:?}");
    assert!(
        copied.iter().sum::<u64>() > 0,
        "the other two programs were swapped"
    );
}
