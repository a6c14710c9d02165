//! Property tests of the scheduling policy over random event sequences,
//! driven by a simulated client model that obeys the scheduler: it restores
//! its memory when granted, evicts exactly what it is asked, and answers
//! every drop request with a release.
//!
//! `world` holds the model and the invariant checks, `ops` the random steps.

mod ops;
mod world;

use nvshare_proto::{ClientBody, ClientMsg, JobSettings, Policy};
use nvshare_scheduler::policy::{Action, Event, PolicyConfig, Record, Scheduler};
use ops::{Op, nonsense, op, play};
use proptest::prelude::*;
use std::time::Duration;
use world::{CAPACITY, GPUS, Mem, World};

/// `cases` random cases, after the saved failures: the test binary holds
/// several modules, so proptest's default (a file beside the binary's
/// root) would not find them; cargo runs tests in the package directory.
/// `PROPTEST_CASES` in the environment overrides `cases` (a longer hunt).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/policy_props.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Invariants (1), (2), (4) and (6) with obeying clients and changes of
    /// policy and quantum.
    #[test]
    fn obeying_clients_keep_every_invariant(
        ops in proptest::collection::vec(op(vec![Policy::Auto, Policy::Exclusive]), 1..200),
        start_exclusive in any::<bool>(),
    ) {
        let policy = if start_exclusive { Policy::Exclusive } else { Policy::Auto };
        let mut world = World::new(policy, 500, false);
        for op in ops {
            play(&mut world, op);
        }
        let waiting = world.sched.queue_len();
        prop_assert!(waiting <= world.clients.values().map(|g| g.len()).sum::<usize>());
    }

    /// Invariant (3): with clients that always have work and obey, every
    /// request is granted within (clients x quantum) of simulated time
    /// (switches take no simulated time here).
    #[test]
    fn every_waiting_client_is_granted_in_time(
        footprints in proptest::collection::vec(1..=CAPACITY, 1..7),
        idles in proptest::collection::vec((0usize..8, 0u64..3_000), 0..20),
        exclusive in any::<bool>(),
    ) {
        let policy = if exclusive { Policy::Exclusive } else { Policy::Auto };
        let quantum_ms = 1_000;
        let mut world = World::new(policy, quantum_ms, true);
        for &footprint in &footprints {
            let id = world.connect();
            world.clients.get_mut(&id).unwrap().insert(GPUS[0], Mem { footprint, ..Mem::default() });
            let attach = ClientBody::Attach { physical_memory: CAPACITY, footprint, resident: 0, holding: false }.on(GPUS[0]);
            world.send(id, attach);
            play(&mut world, Op::Request { who: id as usize - 1, gpu: 0 });
        }
        for (who, ms) in idles {
            play(&mut world, Op::Idle { who, gpu: 0 });
            play(&mut world, Op::Advance { ms });
        }
        play(&mut world, Op::Advance { ms: 20_000 });
        let bound = Duration::from_millis(quantum_ms * footprints.len() as u64);
        prop_assert!(world.longest_wait <= bound, "waited {:?} > {bound:?}", world.longest_wait);
        for gpus in world.clients.values() {
            if let Some(since) = gpus[&GPUS[0]].waiting_since {
                prop_assert!(world.now - since <= bound, "still waiting since {since:?}");
            }
        }
    }

    /// Invariant (3) with priorities and weights: clients that always have
    /// work and obey, each with a priority and a weight, are each granted
    /// within `(P_max - P_min) x step + quantum x (the sum of the weights)`
    /// of asking (the step is the quantum). A waiter of priority `p` is
    /// passed only by requests made less than `(P_max - p)` steps after its
    /// own, and kept out by a higher holder at most that long; after that
    /// every other client is granted at most once before it, for at most
    /// its weight in quanta (switches take no simulated time here).
    #[test]
    fn priorities_and_weights_starve_nobody(
        jobs in proptest::collection::vec((1..=CAPACITY, -2i32..=2, 1u32..=3), 1..6),
        exclusive in any::<bool>(),
    ) {
        let policy = if exclusive { Policy::Exclusive } else { Policy::Auto };
        let quantum_ms = 1_000;
        let mut world = World::new(policy, quantum_ms, true);
        for &(footprint, priority, weight) in &jobs {
            let id = world.connect();
            world.clients.get_mut(&id).unwrap().insert(GPUS[0], Mem { footprint, ..Mem::default() });
            let attach = ClientBody::Attach { physical_memory: CAPACITY, footprint, resident: 0, holding: false }.on(GPUS[0]);
            world.send(id, attach);
            let settings = JobSettings { memory_limit: None, priority, weight };
            world.send(id, ClientBody::JobSettings(settings).on(GPUS[0]));
            play(&mut world, Op::Request { who: id as usize - 1, gpu: 0 });
        }
        play(&mut world, Op::Advance { ms: 60_000 });
        let spread = jobs.iter().map(|j| j.1).max().unwrap() - jobs.iter().map(|j| j.1).min().unwrap();
        let weights: u64 = jobs.iter().map(|j| u64::from(j.2)).sum();
        let bound = Duration::from_millis(quantum_ms * (spread as u64 + weights));
        prop_assert!(world.longest_wait <= bound, "waited {:?} > {bound:?}", world.longest_wait);
        for gpus in world.clients.values() {
            if let Some(since) = gpus[&GPUS[0]].waiting_since {
                prop_assert!(world.now - since <= bound, "still waiting since {since:?}");
            }
        }
    }

    /// Invariant (3) with gangs: clients of a few groups (or none) that
    /// use one or both GPUs, always busy, are all granted within a bound:
    /// holding a gang's ready members for the rest of it never starves
    /// anyone, and no two gangs wait for each other.
    #[test]
    fn gangs_on_two_gpus_are_all_granted_in_time(
        seats in proptest::collection::vec((0usize..3, 0usize..3, 1..=CAPACITY), 1..7),
        exclusive in any::<bool>(),
    ) {
        let policy = if exclusive { Policy::Exclusive } else { Policy::Auto };
        let quantum_ms = 1_000;
        let mut world = World::new(policy, quantum_ms, true);
        let mut used = 0u64;
        for (group, gpus, footprint) in seats {
            let group = (group > 0).then(|| format!("g{group}"));
            let id = world.connect_in(group);
            let on: Vec<usize> = match gpus { 0 => vec![0], 1 => vec![1], _ => vec![0, 1] };
            for &g in &on {
                used += 1;
                world.clients.get_mut(&id).unwrap().insert(GPUS[g], Mem { footprint, ..Mem::default() });
                let attach = ClientBody::Attach { physical_memory: CAPACITY, footprint, resident: 0, holding: false }.on(GPUS[g]);
                world.send(id, attach);
            }
            for &g in &on {
                play(&mut world, Op::Request { who: id as usize - 1, gpu: g });
            }
        }
        play(&mut world, Op::Advance { ms: 60_000 });
        let bound = Duration::from_millis(quantum_ms * 2 * (used + 1));
        prop_assert!(world.longest_wait <= bound, "waited {:?} > {bound:?}", world.longest_wait);
        for gpus in world.clients.values() {
            for mem in gpus.values() {
                if let Some(since) = mem.waiting_since {
                    prop_assert!(world.now - since <= bound, "still waiting since {since:?}");
                }
            }
        }
    }

    /// Invariants (2), (4) and (5) whatever clients send, `off` included.
    #[test]
    fn nonsense_never_panics_or_breaks_exclusion(
        steps in proptest::collection::vec(
            prop_oneof![
                3 => op(vec![Policy::Auto, Policy::Exclusive, Policy::Off]).prop_map(Ok),
                2 => (0usize..8, nonsense()).prop_map(Err),
            ],
            1..200,
        ),
    ) {
        let mut world = World::new(Policy::Auto, 500, false);
        world.check_memory = false;
        for step in steps {
            match step {
                Ok(op) => play(&mut world, op),
                Err((who, msg)) => {
                    let Some(id) = world.pick(who) else { continue };
                    // Keep the model's view of locks in step with what the
                    // scheduler was told.
                    let now = world.now;
                    let gpus = world.clients.get_mut(&id).unwrap();
                    match &msg {
                        ClientMsg { gpu, body: ClientBody::Attach { footprint, resident, holding, .. } } => {
                            let mem = gpus.entry(*gpu).or_insert(Mem {
                                footprint: *footprint,
                                resident: *resident,
                                ..Mem::default()
                            });
                            if *holding && !mem.holding && mem.waiting_since.is_none() {
                                if now < world::RECOVERY_GRACE {
                                    // A claim within the grace: a holder now.
                                    mem.holding = true;
                                    mem.dropping = false;
                                } else {
                                    mem.waiting_since = Some(now);
                                }
                            }
                        }
                        ClientMsg { gpu, body: ClientBody::RequestLock } => {
                            if let Some(m) = gpus.get_mut(gpu).filter(|m| !m.holding) {
                                m.waiting_since.get_or_insert(now);
                            }
                        }
                        ClientMsg { gpu, body: ClientBody::LockReleased { .. } } => {
                            if let Some(m) = gpus.get_mut(gpu).filter(|m| m.holding) {
                                m.holding = false;
                            }
                        }
                        ClientMsg { gpu, body: ClientBody::Detach } => {
                            gpus.remove(gpu);
                        }
                        _ => {}
                    }
                    world.feed(Event::Message { client: id, msg });
                    world.drain();
                }
            }
            let _ = (world.sched.status(world.now), world.next_deadline());
        }
    }
}

#[test]
fn records_name_every_grant_and_switch() {
    let mut sched = Scheduler::new(PolicyConfig {
        policy: Policy::Exclusive,
        quantum: Duration::from_millis(100),
        memory_capacity: Some(CAPACITY),
        memory_reserve: 0,
        drain_timeout: Duration::from_secs(10),
        restore_ahead: true,
        recovery_grace: Duration::from_secs(3),
    });
    let gpu = GPUS[0];
    let mut records = Vec::new();
    let mut step = |sched: &mut Scheduler, at: u64, event: Event| {
        for action in sched.handle(Duration::from_millis(at), event) {
            if let Action::Record(r) = action {
                records.push(r);
            }
        }
    };
    for c in 1..=2 {
        step(
            &mut sched,
            0,
            Event::Connected {
                client: c,
                pid: 1,
                name: "x".into(),
                group: None,
            },
        );
        let attach = ClientBody::Attach {
            physical_memory: CAPACITY,
            footprint: 10,
            resident: 0,
            holding: false,
        }
        .on(gpu);
        step(
            &mut sched,
            0,
            Event::Message {
                client: c,
                msg: attach,
            },
        );
        step(
            &mut sched,
            0,
            Event::Message {
                client: c,
                msg: ClientBody::RequestLock.on(gpu),
            },
        );
    }
    step(&mut sched, 100, Event::Tick);
    step(
        &mut sched,
        130,
        Event::Message {
            client: 1,
            msg: ClientBody::LockReleased { resident: 10 }.on(gpu),
        },
    );
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| match r {
            Record::Granted { .. } => "granted",
            Record::DropRequested { .. } => "drop",
            Record::Released { .. } => "released",
            Record::Switched { .. } => "switched",
            Record::Evicted { .. } => "evicted",
            Record::Restored { .. } => "restored",
            Record::DrainOverdue { .. } => "overdue",
            Record::DrainStuck { .. } => "stuck",
            Record::HostShadows { .. } => "host shadows",
            Record::Resumed { .. } => "resumed",
            Record::ClaimRefused { .. } => "claim refused",
            Record::GpuForgotten { .. } => "forgotten",
        })
        .collect();
    assert_eq!(
        kinds,
        ["granted", "drop", "released", "granted", "switched"]
    );
    assert!(records.contains(&Record::Switched {
        gpu,
        latency: Duration::from_millis(30)
    }));
}

/// A case the property tests found: a holder that grows past its room
/// while the next program fetches ahead must not take the GPU past its
/// capacity.
#[test]
fn growth_of_a_holder_while_the_next_program_fetches_stays_within_the_capacity() {
    let ops = vec![
        Op::Connect,
        Op::Connect,
        Op::Connect,
        Op::Connect,
        Op::Attach {
            who: 2,
            gpu: 0,
            footprint: 23,
        },
        Op::Connect,
        Op::Attach {
            who: 4,
            gpu: 0,
            footprint: 40,
        },
        Op::Advance { ms: 0 },
        Op::Connect,
        Op::Connect,
        Op::Attach {
            who: 1,
            gpu: 0,
            footprint: 38,
        },
        Op::Request { who: 1, gpu: 0 },
        Op::Advance { ms: 500 },
        Op::Request { who: 4, gpu: 0 },
        Op::Request { who: 2, gpu: 0 },
        Op::Grow {
            who: 4,
            gpu: 0,
            bytes: 13,
        },
        Op::Grow {
            who: 4,
            gpu: 0,
            bytes: 26,
        },
    ];
    let mut world = World::new(Policy::Exclusive, 500, false);
    for op in ops {
        play(&mut world, op);
    }
}
