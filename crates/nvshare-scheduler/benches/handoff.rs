//! Lock handoff through the real daemon over its socket.
//!
//! Eight clients (threads, one connection each) on one GPU under the
//! exclusive policy loop: request the lock, wait for the grant, release it.
//! The handoff latency is the time from one client's release to the next
//! client receiving its grant (the lock is idle that long); the throughput
//! is grants per second. A second run measures one uncontended client's
//! request → grant round trip.
//!
//! Run: `cargo bench -p nvshare-scheduler --bench handoff`
//! (`NVSHARE_BENCH_SECS` sets the measured seconds per run, default 5).

#[path = "../tests/support/mod.rs"]
mod support;

use nvshare_proto::{ClientBody, Role, SchedulerBody, SchedulerMsg};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{Daemon, GIB, GPU, PATIENCE, Wire, handshake};

const CLIENTS: usize = 8;
const WARMUP: Duration = Duration::from_millis(500);

/// An attached client on a plain blocking connection.
fn attached(daemon: &Daemon, name: &str) -> Wire {
    let (mut wire, _) = handshake(
        &daemon.socket,
        Role::Client {
            name: name.into(),
            group: None,
        },
    );
    wire.send(
        &ClientBody::Attach {
            physical_memory: 80 * GIB,
            footprint: 0,
            resident: 0,
            holding: false,
        }
        .on(GPU),
    );
    match wire.recv::<SchedulerMsg>(PATIENCE) {
        Ok(SchedulerMsg::Gpu {
            body: SchedulerBody::Welcome { .. },
            ..
        }) => wire,
        other => panic!("expected a welcome, got {other:?}"),
    }
}

fn wait_grant(wire: &mut Wire) {
    match wire.recv::<SchedulerMsg>(PATIENCE) {
        Ok(SchedulerMsg::Gpu {
            body: SchedulerBody::LockGranted { .. },
            ..
        }) => {}
        other => panic!("expected a grant, got {other:?}"),
    }
}

struct Summary {
    samples: Vec<u64>,
    elapsed: Duration,
    /// The daemon's CPU time (user + system) over the measured period.
    daemon_cpu: Duration,
}

/// CPU time used so far by process `pid` (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

impl Summary {
    fn percentile_us(&self, p: f64) -> f64 {
        let index = ((self.samples.len() - 1) as f64 * p).round() as usize;
        self.samples[index] as f64 / 1_000.0
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what}: {} samples in {:.2} s = {:.0}/s; p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, \
             max {:.1} us; daemon CPU {:.1} us each",
            self.samples.len(),
            self.elapsed.as_secs_f64(),
            self.samples.len() as f64 / self.elapsed.as_secs_f64(),
            self.percentile_us(0.50),
            self.percentile_us(0.99),
            self.percentile_us(0.999),
            *self.samples.last().unwrap() as f64 / 1_000.0,
            self.daemon_cpu.as_secs_f64() * 1e6 / self.samples.len() as f64,
        )
    }
}

/// Eight clients taking turns; returns release → grant latencies.
fn contended(daemon: &Daemon, measure: Duration) -> Summary {
    let base = Instant::now();
    let last_release = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let mut wire = attached(daemon, &format!("bench-{i}"));
            let (last_release, measuring, stop) =
                (last_release.clone(), measuring.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut samples = Vec::with_capacity(1 << 20);
                loop {
                    wire.send(&ClientBody::RequestLock.on(GPU));
                    wait_grant(&mut wire);
                    let granted = base.elapsed().as_nanos() as u64;
                    let released = last_release.load(Ordering::Acquire);
                    if measuring.load(Ordering::Relaxed) && released > 0 {
                        samples.push(granted - released);
                    }
                    if stop.load(Ordering::Relaxed) {
                        wire.send(&ClientBody::LockReleased { resident: 0 }.on(GPU));
                        return samples;
                    }
                    last_release.store(base.elapsed().as_nanos() as u64, Ordering::Release);
                    wire.send(&ClientBody::LockReleased { resident: 0 }.on(GPU));
                }
            })
        })
        .collect();
    std::thread::sleep(WARMUP);
    let cpu_before = cpu_time(daemon.pid());
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(measure);
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let daemon_cpu = cpu_time(daemon.pid()) - cpu_before;
    stop.store(true, Ordering::Relaxed);
    let mut samples: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    samples.sort_unstable();
    Summary {
        samples,
        elapsed,
        daemon_cpu,
    }
}

/// One client alone: request → grant round trips.
fn uncontended(daemon: &Daemon, measure: Duration) -> Summary {
    let mut wire = attached(daemon, "alone");
    let mut samples = Vec::with_capacity(1 << 20);
    let warm_until = Instant::now() + WARMUP;
    let mut started = Instant::now();
    let mut measuring = false;
    let mut cpu_before = Duration::ZERO;
    loop {
        let asked = Instant::now();
        if !measuring && asked >= warm_until {
            measuring = true;
            started = asked;
            cpu_before = cpu_time(daemon.pid());
        }
        if measuring && asked.duration_since(started) >= measure {
            break;
        }
        wire.send(&ClientBody::RequestLock.on(GPU));
        wait_grant(&mut wire);
        if measuring {
            samples.push(asked.elapsed().as_nanos() as u64);
        }
        wire.send(&ClientBody::LockReleased { resident: 0 }.on(GPU));
    }
    let elapsed = started.elapsed();
    let daemon_cpu = cpu_time(daemon.pid()) - cpu_before;
    samples.sort_unstable();
    Summary {
        samples,
        elapsed,
        daemon_cpu,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // of the kind and only wants the target to build and run briefly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds: f64 = std::env::var("NVSHARE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.2 } else { 5.0 });
    let measure = Duration::from_secs_f64(seconds);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());

    for (label, log) in [("logs at info", "info"), ("logs at warn", "warn")] {
        let daemon = Daemon::start(&["--policy", "exclusive", "--log", log]);
        let handoff = contended(&daemon, measure);
        println!(
            "{}",
            handoff.line(&format!(
                "handoff, {CLIENTS} clients, {cpus} CPUs, {label}: release -> next grant"
            ))
        );
        let alone = uncontended(&daemon, measure);
        println!(
            "{}",
            alone.line(&format!("round trip, 1 client, {label}: request -> grant"))
        );
    }
}
