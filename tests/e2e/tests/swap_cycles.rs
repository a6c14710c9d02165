//! Swap mode under sustained pressure: three programs whose memory does not
//! fit together on the virtual GPU (any two do) compete through the real
//! daemon with a very short quantum, so their memory goes out to host
//! shadows and back at least a thousand times in all. Each program verifies
//! its own checksum at the end; the cycles are counted from the fake
//! driver's trace (a unit `unmap`ped by an eviction and `map`ped again at
//! the same address by the restore).
//!
//! The programs' shapes (how many buffers, how large; slab-backed small
//! ones and whole-unit large ones) come from a seeded generator, so
//! evictions pick different subsets of units from run to run. The seed is
//! printed; `NVSHARE_SWAP_CYCLES_SEED=<n>` replays a run.

use nvshare_e2e::trace::Trace;
use nvshare_e2e::{Sandbox, finish_ok, json_result};
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::Instant;

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
    /// Several slab-served buffers (at most [`LARGEST_SMALL`]) in several
    /// slabs.
    fn small(rng: &mut Xorshift) -> Shape {
        Shape {
            buffers: rng.between(4, 12),
            bytes: rng.between(64 << 10, LARGEST_SMALL) & !3,
        }
    }

    /// A few buffers with units of their own, most not a whole number of
    /// granules.
    fn large(rng: &mut Xorshift) -> Shape {
        Shape {
            buffers: rng.between(2, 4),
            bytes: rng.between(LARGEST_SMALL + 4, 5 * MIB) & !3,
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
    loop {
        let third = if rng.next() % 2 == 0 {
            Shape::small(rng)
        } else {
            Shape::large(rng)
        };
        let mut shapes = [Shape::small(rng), Shape::large(rng), third];
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
}

/// A verified worker in swap mode with `shape`'s memory: many short
/// iterations, each synchronized and followed by a 1 ms pause, so a drop
/// request is honoured within about one iteration.
fn worker(sandbox: &Sandbox, name: &str, shape: Shape, iterations: u64, seed: u64) -> Command {
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
        .args(["--seed", &(seed % 1000).to_string()]);
    command
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
    let _daemon = sandbox.daemon(&["--memory-capacity", &capacity, "--quantum", "20ms"]);
    let started = Instant::now();
    let workers: Vec<Child> = shapes
        .iter()
        .zip(["a", "b", "c"])
        .map(|(&shape, name)| {
            let iterations = rng.between(1400, 1600);
            sandbox.spawn(&mut worker(&sandbox, name, shape, iterations, rng.next()))
        })
        .collect();
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();
    let mut evictions = 0;
    for (worker, name) in workers.into_iter().zip(["a", "b", "c"]) {
        let output = finish_ok(worker, name);
        let result = json_result(&output);
        assert_eq!(result["ok"], true, "{name}'s checksum is wrong: {result}");
        evictions += String::from_utf8_lossy(&output.stderr)
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
