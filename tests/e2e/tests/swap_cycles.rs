//! Swap mode under sustained pressure: three programs whose memory does not
//! fit together on the virtual GPU (any two do) compete through the real
//! daemon with a very short quantum, so their memory goes out to host
//! shadows and back at least a thousand times in all. The programs keep
//! working until told to stop: the test reads the fake driver's trace as
//! it grows, counting cycles (a unit `unmap`ped by an eviction and `map`ped
//! again at the same address by the restore), and creates the programs'
//! stop file once a thousand are counted, so the number of cycles no longer
//! depends on the machine's speed (a deadline fails a run that cannot get
//! there). Each program then verifies its own checksum over the iterations
//! it ran. The evictions themselves (each moving one or more units) are
//! counted from the programs' logs and printed.
//!
//! The programs' shapes (how many buffers, how large; slab-backed small
//! ones and whole-unit large ones) come from a seeded generator, so
//! evictions pick different subsets of units from run to run. The seed is
//! printed; `NVSHARE_SWAP_CYCLES_SEED=<n>` replays a run.

use nvshare_e2e::{MIB, PROGRAM_LIMIT, Sandbox, json_result, kill_hard};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

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

/// Each program runs at least this many iterations before it looks for
/// the stop file: all three are surely under way when it appears.
const MIN_ITERATIONS: u64 = 3;

/// How long the three may take to reach [`CYCLES_WANTED`]: in a debug
/// build on a 2-core machine about 150 units move out and back per second
/// (under 10 s for a thousand), so this only fails a run that is stuck or
/// many times slower.
const CYCLES_DEADLINE: Duration = Duration::from_secs(150);

/// How often the trace is read while the programs run.
const POLL: Duration = Duration::from_millis(50);

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
        let third = if rng.next().is_multiple_of(2) {
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

/// A verified worker in swap mode with `shape`'s memory: short iterations,
/// each synchronized and followed by a 1 ms pause, so a drop request is
/// honoured within about one iteration, until `stop` exists. It logs each
/// move.
fn worker(sandbox: &Sandbox, name: &str, shape: Shape, stop: &Path, seed: u64) -> Child {
    let log = std::fs::File::create(log_of(sandbox, name)).expect("create a worker's log");
    let mut command = sandbox.hooked("cuda-worker");
    command
        .env("NVSHARE_MODE", "swap")
        .env("NVSHARE_NAME", name)
        .env("NVSHARE_LOG", "info,nvshare::engine::swap=debug")
        .args(["--buffers", &shape.buffers.to_string()])
        .args(["--bytes", &shape.bytes.to_string()])
        .args(["--iterations", &MIN_ITERATIONS.to_string()])
        .arg("--until-file")
        .arg(stop)
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

/// Counts, per process, how many times a unit came back to the address it
/// was evicted from (an `unmap` followed, later, by a `map` of the same
/// range), reading the trace incrementally as the programs append to it.
/// The programs' own frees at their end are unmaps never followed by a map,
/// and their first mappings follow no unmap: neither counts.
struct CycleCounter {
    path: PathBuf,
    /// Bytes of the trace read so far.
    read: u64,
    /// The start of a line not yet complete when last read.
    partial: Vec<u8>,
    /// Units unmapped and not yet mapped again: (pid, ptr) to bytes.
    away: BTreeMap<(u32, String), String>,
    cycles: BTreeMap<u32, usize>,
}

impl CycleCounter {
    fn new(path: PathBuf) -> Self {
        CycleCounter {
            path,
            read: 0,
            partial: Vec::new(),
            away: BTreeMap::new(),
            cycles: BTreeMap::new(),
        }
    }

    /// Reads what was appended since the last call and counts its cycles.
    fn update(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return; // No event traced yet.
        };
        file.seek(SeekFrom::Start(self.read))
            .expect("seek in the trace");
        let mut fresh = std::mem::take(&mut self.partial);
        let before = fresh.len();
        file.read_to_end(&mut fresh).expect("read the trace");
        self.read += (fresh.len() - before) as u64;
        // A writer may be half-way through a line: keep it for next time.
        let complete = fresh.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.partial = fresh.split_off(complete);
        for line in String::from_utf8_lossy(&fresh).lines() {
            self.event(line);
        }
    }

    /// One trace line: `<pid> <ns> <event> <key=value>...`.
    fn event(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let (Some(pid), Some(_ns), Some(name)) = (words.next(), words.next(), words.next()) else {
            return;
        };
        if name != "map" && name != "unmap" {
            return;
        }
        let Ok(pid) = pid.parse::<u32>() else { return };
        let fields: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
        let (Some(&ptr), Some(&bytes)) = (fields.get("ptr"), fields.get("bytes")) else {
            return;
        };
        let key = (pid, ptr.to_owned());
        if name == "unmap" {
            self.away.insert(key, bytes.to_owned());
        } else if let Some(evicted) = self.away.remove(&key) {
            assert_eq!(
                evicted, bytes,
                "pid {pid} got back a different size at {ptr}"
            );
            *self.cycles.entry(pid).or_default() += 1;
        }
    }

    /// Cycles of one process.
    fn of(&self, pid: u32) -> usize {
        self.cycles.get(&pid).copied().unwrap_or(0)
    }

    /// Cycles of the given processes together.
    fn total(&self, pids: &[u32]) -> usize {
        pids.iter().map(|&pid| self.of(pid)).sum()
    }
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
    let stop = sandbox.path().join("stop");
    let started = Instant::now();
    let mut workers = Workers(
        shapes
            .iter()
            .zip(NAMES)
            .map(|(&shape, name)| Some(worker(&sandbox, name, shape, &stop, rng.next())))
            .collect(),
    );
    let pids: Vec<u32> = workers.0.iter().flatten().map(Child::id).collect();
    let mut counter = CycleCounter::new(sandbox.trace_path());
    loop {
        counter.update();
        let total = counter.total(&pids);
        if total >= CYCLES_WANTED {
            break;
        }
        for (index, name) in NAMES.into_iter().enumerate() {
            let child = workers.0[index].as_mut().expect("not yet waited for");
            if child.try_wait().expect("poll a worker").is_some() {
                let child = workers.0[index].take().expect("just polled");
                // Fails the test with the worker's log if it failed.
                let output = finish(child, name, &log_of(&sandbox, name));
                panic!(
                    "worker {name} ended before it was told to stop, after {total} cycles: {}",
                    String::from_utf8_lossy(&output.stdout)
                );
            }
        }
        assert!(
            started.elapsed() < CYCLES_DEADLINE,
            "only {total} units were swapped out and back among the three programs in \
             {CYCLES_DEADLINE:?}, {CYCLES_WANTED} wanted (seed {seed}; by pid {:?})",
            counter.cycles
        );
        std::thread::sleep(POLL);
    }
    let reached = started.elapsed();
    std::fs::File::create(&stop).expect("create the stop file");
    let mut evictions = 0;
    let mut iterations = Vec::new();
    for (index, name) in NAMES.into_iter().enumerate() {
        let worker = workers.0[index]
            .take()
            .expect("each worker is waited for once");
        let log = log_of(&sandbox, name);
        let result = json_result(&finish(worker, name, &log));
        assert_eq!(result["ok"], true, "{name}'s checksum is wrong: {result}");
        iterations.push(result["iterations"].as_u64().unwrap_or(0));
        evictions += std::fs::read_to_string(&log)
            .expect("read a worker's log")
            .matches("swapped GPU memory out to host shadows")
            .count();
    }
    let elapsed = started.elapsed();
    counter.update();
    let total = counter.total(&pids);
    eprintln!(
        "{total} units swapped out and back in {evictions} evictions in {:.1} s \
         ({CYCLES_WANTED} reached after {:.1} s; {:?} by pid; iterations {iterations:?})",
        elapsed.as_secs_f64(),
        reached.as_secs_f64(),
        counter.cycles
    );
    for &pid in &pids {
        assert!(
            counter.of(pid) > 0,
            "pid {pid} was never swapped out and back: the three did not compete"
        );
    }
    assert!(
        total >= CYCLES_WANTED,
        "only {total} units were swapped out and back among the three programs, \
         {CYCLES_WANTED} wanted (seed {seed})"
    );
}
