//! Swap mode under sustained pressure: three programs whose memory does not
//! fit together on the virtual GPU (any two do) compete through the real
//! daemon with a very short quantum, so their memory goes out to host
//! shadows and back at least a thousand times in all. Each program verifies
//! its own checksum at the end; the cycles are counted from the fake
//! driver's trace (a unit `unmap`ped by an eviction and `map`ped again at
//! the same address by the restore). The evictions themselves (each moving
//! one or more units) are counted from the programs' logs and printed.
//!
//! The programs' shapes (how many buffers, how large; slab-backed small
//! ones and whole-unit large ones) come from a seeded generator, so
//! evictions pick different subsets of units from run to run. The seed is
//! printed; `NVSHARE_SWAP_CYCLES_SEED=<n>` replays a run.

use nvshare_e2e::trace::Trace;
use nvshare_e2e::{PROGRAM_LIMIT, Sandbox, json_result, kill_hard};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// The VMM granularity of the fake driver: the size of a slab, and what a
/// large allocation is rounded up to.
const GRANULE: u64 = 2 * MIB;

/// The largest allocation the hook serves from a slab.
const LARGEST_SMALL: u64 = MIB;

/// The swap-out/swap-in cycles the issue asks for.
const CYCLES_WANTED: usize = 1000;

/// The environment variable that replays a run with a given seed.
const SEED_VARIABLE: &str = "NVSHARE_SWAP_CYCLES_SEED";

/// The programs' names.
const NAMES: [&str; 3] = ["a", "b", "c"];

/// Each program's iterations are drawn from this range: long enough for
/// well over a thousand cycles while all three compete (in a debug build on
/// a 2-core machine about 75 evictions and 150 units move out and back per
/// second, and the three finish in about 16 s), short enough for the test
/// to end well within a minute on a slower or busier machine.
const ITERATIONS: (u64, u64) = (450, 480);

/// The daemon's time slice, shorter than a switch costs in the debug fake
/// (waiting for the holder's iteration, the copies, remapping: 5-20 ms), so
/// switches follow each other as fast as they can; each holder still runs
/// an iteration or so per turn. Measured: about 25% more cycles per second
/// than with 20 ms.
const QUANTUM: &str = "5ms";

/// The running workers; those not yet waited for are killed (and reaped)
/// if the test fails early, so none outlives it.
struct Workers(Vec<Option<Child>>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            kill_hard(child);
        }
    }
}

/// Each program's buffers add up to about this many bytes, drawn from the
/// range: similar amounts of work per iteration, so that the three run for
/// similar times and compete until near the end, however their memory is
/// cut up.
const TOTAL: (u64, u64) = (3 * MIB, 4 * MIB);

/// A tiny xorshift64* generator: reproducible from its seed, no dependency.
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Xorshift(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `low..=high` (the slight modulo bias does not matter here).
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// The seed from [`SEED_VARIABLE`], or a fresh one from the clock.
fn seed() -> u64 {
    match std::env::var(SEED_VARIABLE) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VARIABLE}={text:?} is not an unsigned integer")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos() as u64,
    }
}

/// One program's memory: `buffers` allocations of `bytes` each.
#[derive(Debug, Clone, Copy)]
struct Shape {
    buffers: u64,
    bytes: u64,
}

impl Shape {
    /// Slab-served buffers (at most [`LARGEST_SMALL`]) of about `total`
    /// bytes in all, spread over several slabs.
    fn small(rng: &mut Xorshift, total: u64) -> Shape {
        let bytes = rng.between(LARGEST_SMALL / 2, LARGEST_SMALL) & !3;
        Shape {
            buffers: total.div_ceil(bytes),
            bytes,
        }
    }

    /// Buffers with units of their own, most not a whole number of
    /// granules, of about `total` bytes in all.
    fn large(rng: &mut Xorshift, total: u64) -> Shape {
        let bytes = rng.between(LARGEST_SMALL + 4, 5 * MIB / 2) & !3;
        Shape {
            buffers: total.div_ceil(bytes),
            bytes,
        }
    }

    /// Bounds on the GPU memory the program occupies, `(least, most)`: a
    /// large buffer takes whole granules; small ones share slabs, a slab
    /// holding at most `GRANULE / bytes` of them and at least
    /// `GRANULE / bytes.next_power_of_two()` (the size class of a request is
    /// no larger than the next power of two).
    fn footprint(&self) -> (u64, u64) {
        if self.bytes > LARGEST_SMALL {
            let exact = self.buffers * self.bytes.div_ceil(GRANULE) * GRANULE;
            return (exact, exact);
        }
        let slabs = |per_slab: u64| self.buffers.div_ceil(per_slab) * GRANULE;
        (
            slabs(GRANULE / self.bytes),
            slabs(GRANULE / self.bytes.next_power_of_two()),
        )
    }
}

/// Three shapes (at least one slab-backed, one with whole units, the third
/// either, in a random order) and a capacity in MiB where any two fit
/// together but not all three.
fn draw(rng: &mut Xorshift) -> ([Shape; 3], u64) {
    // Nearly every draw qualifies; the bound only keeps a broken range from
    // hanging the test.
    for _ in 0..1000 {
        let mut total = || rng.between(TOTAL.0, TOTAL.1);
        let totals = [total(), total(), total()];
        let third = if rng.next() % 2 == 0 {
            Shape::small(rng, totals[2])
        } else {
            Shape::large(rng, totals[2])
        };
        let mut shapes = [
            Shape::small(rng, totals[0]),
            Shape::large(rng, totals[1]),
            third,
        ];
        let rotation = rng.between(0, 2) as usize;
        shapes.rotate_left(rotation);
        let most: Vec<u64> = shapes.iter().map(|s| s.footprint().1).collect();
        let least: u64 = shapes.iter().map(|s| s.footprint().0).sum();
        let pairs = [most[0] + most[1], most[0] + most[2], most[1] + most[2]];
        let capacity = pairs.into_iter().max().expect("three pairs");
        if least > capacity {
            return (shapes, capacity / MIB);
        }
    }
    panic!("no three shapes where exactly two fit: check TOTAL and the shapes' ranges");
}

/// Where a worker's log goes: a file, not a pipe, because a thousand
/// swaps log more than a pipe holds while nobody reads it.
fn log_of(sandbox: &Sandbox, name: &str) -> PathBuf {
    sandbox.path().join(format!("{name}.log"))
}

/// A verified worker in swap mode with `shape`'s memory: many short
/// iterations, each synchronized and followed by a 1 ms pause, so a drop
/// request is honoured within about one iteration. It logs each move.
fn worker(sandbox: &Sandbox, name: &str, shape: Shape, iterations: u64, seed: u64) -> Child {
    let log = std::fs::File::create(log_of(sandbox, name)).expect("create a worker's log");
    let mut command = sandbox.hooked("cuda-worker");
    command
        .env("NVSHARE_MODE", "swap")
        .env("NVSHARE_NAME", name)
        .env("NVSHARE_LOG", "info,nvshare::engine::swap=debug")
        .args(["--buffers", &shape.buffers.to_string()])
        .args(["--bytes", &shape.bytes.to_string()])
        .args(["--iterations", &iterations.to_string()])
        .args(["--sleep-us", "500"])
        .args(["--pause-ms", "1"])
        .args(["--seed", &(seed % 1000).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    command.spawn().expect("start cuda-worker")
}

/// Waits for a worker (at most [`PROGRAM_LIMIT`]) and returns its output,
/// failing the test with the end of its log if it runs too long or fails.
fn finish(mut child: Child, name: &str, log: &Path) -> Output {
    let deadline = Instant::now() + PROGRAM_LIMIT;
    let tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    };
    while child.try_wait().expect("poll a worker").is_none() {
        if Instant::now() >= deadline {
            kill_hard(&mut child);
            panic!(
                "worker {name} ran longer than {PROGRAM_LIMIT:?} and was killed; its log ends:\n{}",
                tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collect a worker's output");
    assert!(
        output.status.success(),
        "worker {name} failed ({}): {}\nits log ends:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        tail()
    );
    output
}

/// Per process: how many times a unit came back to the address it was
/// evicted from (an `unmap` followed, later, by a `map` of the same range).
/// The program's own frees at its end are unmaps never followed by a map,
/// and its first mappings follow no unmap: neither counts.
fn cycles_by_pid(trace: &Trace) -> BTreeMap<u32, usize> {
    let mut away: BTreeMap<(u32, String), String> = BTreeMap::new();
    let mut cycles: BTreeMap<u32, usize> = BTreeMap::new();
    for event in &trace.events {
        let (Some(ptr), Some(bytes)) = (event.fields.get("ptr"), event.fields.get("bytes")) else {
            continue;
        };
        let key = (event.pid, ptr.clone());
        match event.name.as_str() {
            "unmap" => {
                away.insert(key, bytes.clone());
            }
            "map" => {
                if let Some(evicted) = away.remove(&key) {
                    assert_eq!(
                        &evicted, bytes,
                        "pid {} got back a different size at {ptr}",
                        event.pid
                    );
                    *cycles.entry(event.pid).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    cycles
}

#[test]
fn contents_survive_a_thousand_swap_cycles_among_three_competing_programs() {
    let seed = seed();
    eprintln!("seed {seed} (replay with {SEED_VARIABLE}={seed})");
    let mut rng = Xorshift::new(seed);
    let (shapes, capacity_mib) = draw(&mut rng);
    eprintln!("capacity {capacity_mib} MiB, programs {shapes:?}");
    let sandbox = Sandbox::new();
    let capacity = format!("{capacity_mib}MiB");
    let _daemon = sandbox.daemon(&["--memory-capacity", &capacity, "--quantum", QUANTUM]);
    let started = Instant::now();
    let mut workers = Workers(
        shapes
            .iter()
            .zip(NAMES)
            .map(|(&shape, name)| {
                let iterations = rng.between(ITERATIONS.0, ITERATIONS.1);
                Some(worker(&sandbox, name, shape, iterations, rng.next()))
            })
            .collect(),
    );
    let pids: Vec<u32> = workers.0.iter().flatten().map(Child::id).collect();
    let mut evictions = 0;
    for (index, name) in NAMES.into_iter().enumerate() {
        let worker = workers.0[index]
            .take()
            .expect("each worker is waited for once");
        let log = log_of(&sandbox, name);
        let result = json_result(&finish(worker, name, &log));
        assert_eq!(result["ok"], true, "{name}'s checksum is wrong: {result}");
        evictions += std::fs::read_to_string(&log)
            .expect("read a worker's log")
            .matches("swapped GPU memory out to host shadows")
            .count();
    }
    let elapsed = started.elapsed();
    let cycles = cycles_by_pid(&sandbox.trace());
    let total: usize = pids
        .iter()
        .map(|pid| cycles.get(pid).copied().unwrap_or(0))
        .sum();
    eprintln!(
        "{total} units swapped out and back in {evictions} evictions in {:.1} s ({cycles:?} by pid)",
        elapsed.as_secs_f64()
    );
    for pid in &pids {
        assert!(
            cycles.get(pid).copied().unwrap_or(0) > 0,
            "pid {pid} was never swapped out and back: the three did not compete"
        );
    }
    assert!(
        total >= CYCLES_WANTED,
        "only {total} units were swapped out and back among the three programs, \
         {CYCLES_WANTED} wanted (seed {seed})"
    );
}
