//! Attaching, leaving, refusals and status.

use super::*;

#[test]
fn welcome_reports_the_configured_or_physical_capacity() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    let out = sim.join(1, 0);
    assert_eq!(
        sends(&out),
        vec![(
            1,
            SchedulerBody::Welcome {
                client_id: 1,
                quantum_ms: 30_000,
                capacity: 10 * GIB
            }
            .on(GPU)
        )]
    );
    let mut sched = Scheduler::new(PolicyConfig {
        policy: Policy::Auto,
        quantum: QUANTUM,
        memory_capacity: None,
        memory_reserve: 2 * GIB,
        drain_timeout: Duration::from_secs(10),
        restore_ahead: true,
        recovery_grace: Duration::from_secs(3),
    });
    sched.handle(
        Duration::ZERO,
        Event::Connected {
            client: 1,
            pid: 1,
            name: "a".into(),
            group: None,
        },
    );
    let out = sched.handle(
        Duration::ZERO,
        Event::Message {
            client: 1,
            msg: attach(GPU, 0, 0, false),
        },
    );
    assert!(
        matches!(sends(&out)[0].1, SchedulerMsg::Gpu { body: SchedulerBody::Welcome { capacity, .. }, .. } if capacity == 78 * GIB)
    );
}

#[test]
fn messages_for_unattached_gpus_are_refused_and_unknown_clients_ignored() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, GIB);
    let out = sim.msg(1, ClientBody::RequestLock.on(OTHER_GPU));
    assert!(matches!(
        &sends(&out)[..],
        [(
            1,
            SchedulerMsg::Error(ErrorReply {
                code: ErrorCode::Protocol,
                ..
            })
        )]
    ));
    assert!(sim.msg(42, ClientBody::RequestLock.on(GPU)).is_empty());
    assert!(sim.msg(42, attach(GPU, 1, 1, true)).is_empty());
    assert_eq!(sim.sched.client_count(), 1);
    // The refused client keeps working.
    assert_eq!(granted(&sim.request(1)), vec![1]);
}

#[test]
fn a_disconnect_releases_everything_and_grants_waiters_at_once() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.join(1, 9 * GIB);
    sim.msg(1, attach(OTHER_GPU, GIB, GIB, false));
    sim.msg(1, ClientBody::RequestLock.on(OTHER_GPU));
    sim.join(2, 9 * GIB);
    sim.request(1);
    sim.request(2);
    sim.at(3.0);
    let out = sim.event(Event::Disconnected { client: 1 });
    assert_eq!(granted(&out), vec![2]);
    assert!(sends(&out).iter().all(|(c, _)| *c != 1));
    assert!(out.contains(&Action::Record(Record::Released {
        client: 1,
        gpu: OTHER_GPU,
        held: Duration::from_secs(3)
    })));
    assert_eq!(sim.sched.client_count(), 1);
    // Messages after the disconnect are ignored.
    assert!(sim.request(1).is_empty());
}

#[test]
fn detach_releases_one_gpu_only() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.join(1, GIB);
    sim.msg(1, attach(OTHER_GPU, GIB, GIB, false));
    sim.join(2, GIB);
    sim.request(1);
    sim.request(2);
    let out = sim.msg(1, ClientBody::Detach.on(GPU));
    assert_eq!(granted(&out), vec![2]);
    assert!(matches!(
        &sends(&sim.request(1))[..],
        [(
            1,
            SchedulerMsg::Error(ErrorReply {
                code: ErrorCode::Protocol,
                ..
            })
        )]
    ));
    assert_eq!(
        granted(&sim.msg(1, ClientBody::RequestLock.on(OTHER_GPU))),
        vec![1]
    );
}

#[test]
fn nonsense_is_harmless() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, GIB);
    assert!(sim.release(1, 0).is_empty());
    sim.request(1);
    assert_eq!(granted(&sim.request(1)), vec![1]);
    assert_eq!(sim.sched.queue_len(), 0);
    sim.msg(
        1,
        ClientBody::Evicted {
            bytes: 5,
            resident: 0,
            elapsed_us: 0,
        }
        .on(GPU),
    );
    sim.msg(
        1,
        ClientBody::EvictFailed {
            resident: 0,
            reason: String::new(),
        }
        .on(GPU),
    );
    sim.event(Event::Disconnected { client: 77 });
    assert_eq!(sim.state(1), ClientState::Running);
}

#[test]
fn status_reports_time_held_and_swap_counters() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 2 * GIB);
    sim.request(1);
    sim.at(2.0);
    sim.release(1, 2 * GIB);
    sim.request(1);
    sim.at(3.5);
    sim.msg(
        1,
        ClientBody::Restored {
            bytes: GIB,
            resident: 2 * GIB,
            elapsed_us: 7,
        }
        .on(GPU),
    );
    let status = &sim.sched.status(sim.now)[0];
    assert_eq!(status.bytes_restored, GIB);
    assert_eq!(status.resident, 2 * GIB);
    let client = &status.clients[0];
    assert_eq!(
        (client.held_ms, client.grants, client.pid),
        (3_500, 2, 1001)
    );
    assert_eq!(client.name, "job1");
}

#[test]
fn gpus_are_forgotten_with_their_last_client_and_made_up_ones_are_bounded() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, GIB);
    sim.join(2, GIB);
    sim.event(Event::Disconnected { client: 1 });
    assert_eq!(
        sim.sched.status(sim.now).len(),
        1,
        "client 2 is still there"
    );
    sim.msg(2, ClientBody::Detach.on(GPU));
    assert!(sim.sched.status(sim.now).is_empty(), "an empty GPU is kept");

    // One client sending made-up GPU ids is refused past a node's worth.
    sim.connect(3);
    let mut refused = 0;
    for i in 0..(MAX_GPUS_PER_CLIENT + 10) {
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let out = sim.msg(3, attach(GpuUuid(uuid), 0, 0, false));
        if matches!(sends(&out)[..], [(3, SchedulerMsg::Error(_))]) {
            refused += 1;
        }
    }
    assert_eq!(refused, 10);
    assert_eq!(sim.sched.status(sim.now).len(), MAX_GPUS_PER_CLIENT);
    // Many clients together still make at most MAX_GPUS domains.
    for client in 10..20u64 {
        sim.connect(client);
        for i in 0..MAX_GPUS_PER_CLIENT {
            let mut uuid = [0xee; 16];
            uuid[..8].copy_from_slice(&(client * 1000 + i as u64).to_le_bytes());
            sim.msg(client, attach(GpuUuid(uuid), 0, 0, false));
        }
    }
    assert_eq!(sim.sched.status(sim.now).len(), MAX_GPUS);
    sim.event(Event::Disconnected { client: 3 });
    for client in 10..20u64 {
        sim.event(Event::Disconnected { client });
    }
    assert!(sim.sched.status(sim.now).is_empty());
}

/// A GPU is scheduled only when it changes or its deadline passes: a
/// quantum ending on a GPU that nothing else happened on is still acted on
/// at its deadline, whatever other GPUs do meanwhile.
#[test]
fn a_quantum_ends_on_time_on_a_gpu_nothing_else_happens_on() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.join(1, GIB);
    sim.join(2, GIB);
    sim.connect(3);
    for client in [1, 3] {
        sim.msg(client, attach(OTHER_GPU, GIB, 0, false));
    }
    assert_eq!(
        granted(&sim.msg(1, ClientBody::RequestLock.on(OTHER_GPU))),
        vec![1]
    );
    assert!(granted(&sim.msg(3, ClientBody::RequestLock.on(OTHER_GPU))).is_empty());
    sim.at(1.0);
    assert_eq!(granted(&sim.request(2)), vec![2]);
    sim.at(5.0);
    sim.release(2, 0);
    assert_eq!(sim.sched.next_deadline(), Some(QUANTUM));
    sim.at(QUANTUM.as_secs_f64());
    assert_eq!(drops(&sim.tick()), vec![(1, 0)]);
    sim.at(QUANTUM.as_secs_f64() + 1.0);
    let granted_after =
        granted(&sim.msg(1, ClientBody::LockReleased { resident: 0 }.on(OTHER_GPU)));
    assert_eq!(granted_after, vec![3]);
}
