//! A program that exits gives its GPU memory back before the scheduler
//! hears it is gone, so the next program is never granted memory the driver
//! still holds for the dead one.

use nvshare_e2e::trace::Trace;
use nvshare_e2e::worker::Worker;
use nvshare_e2e::{MIB, Sandbox, finish_ok, json_result, wait_until};
use std::process::Command;
use std::time::Duration;

fn worker(sandbox: &Sandbox, name: &str, iterations: u32) -> Command {
    Worker::swap(name)
        // Never idle: the lock moves only when the holder exits.
        .env("NVSHARE_IDLE_MS", 600_000)
        .buffers(1)
        .bytes(40 * MIB)
        .iterations(iterations)
        .kernel_ms(20)
        .command(sandbox)
}

/// Device memory `pid` holds (created, not yet destroyed) at time `ns`.
fn held_by(trace: &Trace, pid: u32, ns: u64) -> i128 {
    trace
        .events
        .iter()
        .filter(|e| e.pid == pid && e.ns <= ns)
        .filter_map(|e| {
            let bytes: i128 = e.fields.get("bytes")?.parse().ok()?;
            match e.name.as_str() {
                "create" => Some(bytes),
                "destroy" => Some(-bytes),
                _ => None,
            }
        })
        .sum()
}

#[test]
fn an_exiting_program_releases_its_memory_before_the_next_is_granted() {
    let sandbox = Sandbox::new();
    // 40 + 40 MiB do not fit in 64: the second program waits for the first
    // to exit (a long quantum, no idle release), which keeps its memory to
    // the end, as PyTorch programs do.
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "60"]);
    let first = sandbox.spawn(worker(&sandbox, "first", 40).arg("--keep-memory"));
    let first_pid = first.id();
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .trace()
            .named("kernel_begin")
            .any(|e| e.pid == first_pid)),
        "the first program never ran"
    );
    let second = sandbox.spawn(&mut worker(&sandbox, "second", 3));
    let second_pid = second.id();
    for (child, name) in [(first, "first"), (second, "second")] {
        assert_eq!(json_result(&finish_ok(child, name))["ok"], true, "{name}");
    }
    let trace = sandbox.trace();
    assert!(
        !trace.named("memcpy").any(|e| e.pid == first_pid
            && e.fields.get("kind").is_some_and(|k| k == "DtoH")
            && e.fields
                .get("bytes")
                .and_then(|b| b.parse::<u64>().ok())
                .unwrap_or(0)
                >= MIB),
        "the first program was swapped out: this test is about its exit"
    );
    let granted = trace
        .named("create")
        .find(|e| e.pid == second_pid)
        .expect("the second program allocated")
        .ns;
    assert_eq!(
        held_by(&trace, first_pid, granted),
        0,
        "the second program was granted while the first still held GPU memory"
    );
    assert!(
        held_by(&trace, first_pid, u64::MAX) == 0,
        "the first program's memory was released at exit"
    );
}

/// The `key=value` numbers of the hook's footprint line in `stderr`.
fn footprint_line(stderr: &str) -> std::collections::BTreeMap<String, f64> {
    let line = stderr
        .lines()
        .find(|l| l.contains("nvshare memory footprint"))
        .unwrap_or_else(|| panic!("no footprint line in\n{stderr}"));
    line.split_whitespace()
        .filter_map(|word| {
            let (key, value) = word.split_once('=')?;
            Some((key.to_owned(), value.trim_matches('"').parse().ok()?))
        })
        .collect()
}

/// The hook logs what the program asked for against what its units took,
/// now and at the peak, at exit (what `benches/gpu` reads).
#[test]
fn the_memory_footprint_is_logged_at_exit() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB"]);
    // 3 MiB take a 4 MiB unit; the 8-byte result buffer takes a 2 MiB slab.
    let mut command = sandbox.hooked("cuda-worker");
    command
        .env("NVSHARE_MODE", "swap")
        .env("NVSHARE_LOG", "info")
        .args(["--bytes", &(3 * MIB).to_string(), "--iterations", "2"]);
    let output = finish_ok(sandbox.spawn(&mut command), "a worker");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let figures = footprint_line(&stderr);
    let get = |key: &str| figures.get(key).copied().unwrap_or(-1.0);
    assert_eq!(get("requested"), 0.0, "everything was freed: {figures:?}");
    assert_eq!(get("peak_physical"), (6 * MIB) as f64, "{figures:?}");
    assert_eq!(get("peak_requested"), (3 * MIB + 8) as f64, "{figures:?}");
    assert_eq!(get("peak_slab_physical"), (2 * MIB) as f64, "{figures:?}");
    assert_eq!(get("peak_slab_requested"), 8.0, "{figures:?}");
    assert!(get("peak_ratio") > 1.9, "{figures:?}");
}
