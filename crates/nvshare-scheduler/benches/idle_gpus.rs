//! What idle GPUs cost every event: the policy alone (no sockets), two
//! programs handing one GPU back and forth under the exclusive policy while
//! other GPUs are attached and idle, each with a holder that does nothing.
//!
//! Layouts, in pairs: one other GPU, then 255 others with one program each
//! (a big node); two others attached by one program (a gang), then 255
//! attached by 4 programs of 64 GPUs each (the most one client may attach,
//! which also makes them gangs). An event schedules only the GPUs it
//! touched or whose deadline passed: each pair's ratio, what 250-odd more
//! idle GPUs cost, should stay near 1.
//!
//! Run: `cargo bench -p nvshare-scheduler --bench idle_gpus`
//! (`NVSHARE_BENCH_HANDOFFS` sets the handoffs per run, default 20000).

use nvshare_proto::units::MIB;
use nvshare_proto::{
    ClientBody, ClientId, ClientMsg, GpuUuid, Policy, SchedulerBody, SchedulerMsg,
};
use nvshare_scheduler::policy::{Action, Event, PolicyConfig, Scheduler};
use std::time::{Duration, Instant};

const BUSY: GpuUuid = GpuUuid([0; 16]);

fn idle_gpu(n: usize) -> GpuUuid {
    let mut bytes = [0xee; 16];
    bytes[..8].copy_from_slice(&(n as u64 + 1).to_be_bytes());
    GpuUuid(bytes)
}

/// How many idle GPUs are attached, and how many GPUs each of the idle
/// programs attaches (more than one makes them gangs).
#[derive(Clone, Copy)]
struct Layout {
    others: usize,
    per_program: usize,
}

struct Bench {
    sched: Scheduler,
    now: Duration,
}

impl Bench {
    fn feed(&mut self, event: Event) -> Vec<Action> {
        self.now += Duration::from_micros(1);
        self.sched.handle(self.now, event)
    }

    fn connect(&mut self, client: ClientId) {
        self.feed(Event::Connected {
            client,
            pid: client as u32,
            name: format!("job{client}"),
            group: None,
        });
    }

    fn say(&mut self, client: ClientId, gpu: GpuUuid, body: ClientBody) -> Vec<Action> {
        self.feed(Event::Message {
            client,
            msg: ClientMsg { gpu, body },
        })
    }

    fn attach_and_hold(&mut self, client: ClientId, gpu: GpuUuid) {
        let attach = ClientBody::Attach {
            physical_memory: 80 * 1024 * MIB,
            footprint: MIB,
            resident: MIB,
            holding: false,
        };
        self.say(client, gpu, attach);
        self.say(client, gpu, ClientBody::RequestLock);
    }
}

fn granted(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(
            a,
            Action::Send {
                msg: SchedulerMsg::Gpu {
                    body: SchedulerBody::LockGranted { .. },
                    ..
                },
                ..
            }
        )
    })
}

/// Nanoseconds per handoff on the busy GPU.
fn run(layout: Layout, handoffs: u32) -> f64 {
    let config = PolicyConfig {
        policy: Policy::Exclusive,
        quantum: Duration::from_secs(3600),
        memory_capacity: None,
        memory_reserve: 0,
        drain_timeout: Duration::from_secs(10),
        restore_ahead: true,
        recovery_grace: Duration::ZERO,
    };
    let sched = Scheduler::new(config);
    let mut bench = Bench {
        sched,
        now: Duration::from_secs(1),
    };
    let mut next_client: ClientId = 100;
    for n in 0..layout.others {
        if n % layout.per_program == 0 {
            next_client += 1;
            bench.connect(next_client);
        }
        bench.attach_and_hold(next_client, idle_gpu(n));
    }
    let (a, b) = (1, 2);
    for client in [a, b] {
        bench.connect(client);
        let attach = ClientBody::Attach {
            physical_memory: 80 * 1024 * MIB,
            footprint: MIB,
            resident: 0,
            holding: false,
        };
        bench.say(client, BUSY, attach);
    }
    assert!(granted(&bench.say(a, BUSY, ClientBody::RequestLock)));
    bench.say(b, BUSY, ClientBody::RequestLock);
    let (mut holder, mut waiter) = (a, b);
    let started = Instant::now();
    for _ in 0..handoffs {
        let release = ClientBody::LockReleased { resident: 0 };
        assert!(
            granted(&bench.say(holder, BUSY, release)),
            "the waiter is granted"
        );
        bench.say(holder, BUSY, ClientBody::RequestLock);
        std::mem::swap(&mut holder, &mut waiter);
    }
    started.elapsed().as_nanos() as f64 / f64::from(handoffs)
}

fn main() {
    let handoffs = std::env::var("NVSHARE_BENCH_HANDOFFS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!("ns per handoff (release + grant + request) on one GPU, {handoffs} handoffs");
    println!(
        "{:<34} {:>12} {:>7}  (ratio to the row above it of the same kind)",
        "other GPUs", "ns", "ratio"
    );
    let layout = |others, per_program| Layout {
        others,
        per_program,
    };
    // Each pair: a few idle GPUs, then 255 of the same kind; the ratio is
    // what the 250-odd more idle GPUs cost.
    let rows = [
        ("1, one program", layout(1, 1)),
        ("255, one program each", layout(255, 1)),
        ("2, one program on both (gangs)", layout(2, 2)),
        ("255, 64 per program (gangs)", layout(255, 64)),
    ];
    for pair in rows.chunks(2) {
        let few = run(pair[0].1, handoffs);
        let many = run(pair[1].1, handoffs);
        println!("{:<34} {few:>12.0} {:>7.1}", pair[0].0, 1.0);
        println!("{:<34} {many:>12.0} {:>7.1}", pair[1].0, many / few);
    }
}
