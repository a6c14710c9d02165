//! Evictions: who is asked, how much, and what happens when one fails.

use super::*;

#[test]
fn idle_clients_are_asked_to_evict_least_recently_run_first_and_only_what_is_needed() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 3 * GIB);
    sim.join(2, 3 * GIB);
    sim.at(1.0);
    sim.request(2);
    sim.release(2, 3 * GIB);
    sim.at(2.0);
    sim.request(1);
    sim.release(1, 3 * GIB);
    // 6 GiB resident in idle clients; client 3 needs 6 of the 4 free.
    sim.msg(3, ClientBody::RequestLock.on(GPU));
    sim.event(Event::Connected {
        client: 3,
        pid: 3,
        name: "c".into(),
        group: None,
    });
    sim.msg(3, attach(GPU, 6 * GIB, 0, false));
    let out = sim.msg(3, ClientBody::RequestLock.on(GPU));
    assert_eq!(evicts(&out), vec![(2, 2 * GIB)]);
    assert!(granted(&out).is_empty());
    // Nothing more is asked while that eviction is pending.
    assert!(evicts(&sim.tick()).is_empty());
    let out = sim.msg(
        2,
        ClientBody::Evicted {
            bytes: 2 * GIB,
            resident: GIB,
            elapsed_us: 40_000,
        }
        .on(GPU),
    );
    assert_eq!(granted(&out), vec![3]);
    let status = &sim.sched.status(sim.now)[0];
    assert_eq!(
        (status.bytes_evicted, status.swap_time_us),
        (2 * GIB, 40_000)
    );
}

#[test]
fn a_failed_eviction_is_not_asked_again_and_others_are_tried() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 4 * GIB);
    sim.join(2, 4 * GIB);
    sim.at(1.0);
    sim.request(1);
    sim.release(1, 4 * GIB);
    sim.at(2.0);
    sim.request(2);
    sim.release(2, 4 * GIB);
    sim.event(Event::Connected {
        client: 3,
        pid: 3,
        name: "c".into(),
        group: None,
    });
    sim.msg(3, attach(GPU, 6 * GIB, 0, false));
    assert_eq!(
        evicts(&sim.msg(3, ClientBody::RequestLock.on(GPU))),
        vec![(1, 4 * GIB)]
    );
    let out = sim.msg(
        1,
        ClientBody::EvictFailed {
            resident: 4 * GIB,
            reason: "no host memory".into(),
        }
        .on(GPU),
    );
    assert_eq!(evicts(&out), vec![(2, 4 * GIB)]);
    let out = sim.msg(
        2,
        ClientBody::Evicted {
            bytes: 4 * GIB,
            resident: 0,
            elapsed_us: 1,
        }
        .on(GPU),
    );
    assert_eq!(granted(&out), vec![3]);
}

#[test]
fn a_releasing_holder_keeps_its_memory_until_it_answers() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 8 * GIB);
    sim.join(2, 8 * GIB);
    sim.request(1);
    sim.fully_resident(1, 8 * GIB);
    sim.request(2);
    sim.at(30.0);
    assert_eq!(drops(&sim.tick()), vec![(1, 6 * GIB)]);
    // A kernel longer than the quantum: nothing happens until it answers,
    // short of the drain timeout (tests/drain.rs: what happens after it).
    sim.at(39.0);
    assert!(sim.tick().is_empty());
    assert_eq!(sim.sched.next_deadline(), Some(Duration::from_secs(40)));
    assert_eq!(sim.state(1), ClientState::Releasing);
    assert_eq!(sim.client_status(1).held_ms, 39_000);
    assert_eq!(sim.client_status(1).resident, 8 * GIB);
    assert_eq!(granted(&sim.release(1, 2 * GIB)), vec![2]);
}

#[test]
fn when_idle_clients_cannot_evict_a_holder_is_dropped_for_memory() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 5 * GIB);
    sim.request(1);
    sim.release(1, 5 * GIB);
    sim.join(2, 4 * GIB);
    sim.request(2);
    sim.fully_resident(2, 4 * GIB);
    // The GPU is oversubscribed (5 + 4 + 5 on 10): holder 2 learns at once
    // it may have to move out up to 4 GiB.
    assert_eq!(prepares(&sim.join(3, 5 * GIB)), vec![(2, 4 * GIB)]);
    // The footprints fit (4 + 5), the memory does not: client 1 idles on 5.
    assert_eq!(evicts(&sim.request(3)), vec![(1, 4 * GIB)]);
    let failed = ClientBody::EvictFailed {
        resident: 5 * GIB,
        reason: "host memory exhausted".into(),
    }
    .on(GPU);
    // Nothing moves out before the quantum ends; 3 fills the 1 GiB free.
    assert_eq!(
        sends(&sim.msg(1, failed)),
        vec![(3, SchedulerBody::Fetch { bytes: GIB }.on(GPU))]
    );
    assert_eq!(sim.sched.next_deadline(), Some(QUANTUM));
    sim.at(30.0);
    assert_eq!(drops(&sim.tick()), vec![(2, 4 * GIB)]);
    assert_eq!(granted(&sim.release(2, 0)), vec![3]);
}

#[test]
fn memory_allocated_by_a_client_without_the_lock_past_the_capacity_is_asked_back() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 10 * GIB);
    sim.request(1);
    sim.fully_resident(1, 10 * GIB);
    sim.join(2, 0);
    // Client 2 allocates 10 GiB before it asks for the lock (programs
    // allocate, then launch): 20 GiB would be resident on a 16 GiB GPU, so
    // it is asked to move the 4 GiB excess out.
    let out = sim.msg(
        2,
        ClientBody::Usage {
            footprint: 10 * GIB,
            resident: 10 * GIB,
        }
        .on(GPU),
    );
    assert_eq!(evicts(&out), vec![(2, 4 * GIB)]);
    // Nothing more is asked while that eviction is pending, nor when it
    // then waits for the lock.
    assert!(evicts(&sim.tick()).is_empty());
    let out = sim.request(2);
    assert!(evicts(&out).is_empty() && granted(&out).is_empty());
}

#[test]
fn holders_that_outgrow_the_capacity_together_part_at_once() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 6 * GIB);
    sim.request(1);
    sim.fully_resident(1, 6 * GIB);
    sim.at(1.0);
    sim.join(2, 6 * GIB);
    assert_eq!(granted(&sim.request(2)), vec![2]);
    sim.fully_resident(2, 6 * GIB);
    // Both grow while they run: 20 GiB on a 16 GiB GPU. The most recently
    // granted holder goes at once, evicting the 4 GiB excess; the oldest
    // keeps the GPU.
    sim.fully_resident(1, 10 * GIB);
    let out = sim.fully_resident(2, 10 * GIB);
    assert_eq!(drops(&out), vec![(2, 4 * GIB)]);
    assert_eq!(sim.state(1), ClientState::Running);
    // Released, it waits for its turn like any program that does not fit.
    sim.release(2, 6 * GIB);
    let out = sim.request(2);
    assert!(granted(&out).is_empty());
}

/// An overcommit drops only as many holders as the fit needs, once: the
/// holder dropped is on its way out, and the next event on the GPU does
/// not drop another one because the first has not released yet.
#[test]
fn an_overcommit_drops_only_what_the_fit_needs_and_only_once() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    for (client, at) in [(1, 0.0), (2, 1.0), (3, 2.0)] {
        sim.at(at);
        sim.join(client, 2 * GIB);
        assert_eq!(granted(&sim.request(client)), vec![client]);
        sim.fully_resident(client, 2 * GIB);
    }
    sim.at(3.0);
    // 2 and 3 grow: 2 + 4 + 6 GiB on a 10 GiB GPU; dropping the newest (3)
    // is enough.
    sim.fully_resident(2, 4 * GIB);
    let out = sim.fully_resident(3, 6 * GIB);
    assert_eq!(drops(&out).iter().map(|d| d.0).collect::<Vec<_>>(), vec![3]);
    // 3 takes its time to release; whatever else happens meanwhile, 2 keeps
    // running beside 1.
    sim.at(4.0);
    let out = sim.fully_resident(1, 2 * GIB);
    assert!(drops(&out).is_empty(), "{out:?}");
    let out = sim.tick();
    assert!(drops(&out).is_empty(), "{out:?}");
    assert_eq!(sim.state(2), ClientState::Running);
    assert_eq!(sim.state(3), ClientState::Releasing);
}

/// The `Prepare` hints in `actions`: (client, bytes).
fn prepares(actions: &[Action]) -> Vec<(ClientId, u64)> {
    sends(actions)
        .into_iter()
        .filter_map(|(c, m)| match m {
            SchedulerMsg::Gpu {
                body: SchedulerBody::Prepare { bytes, .. },
                ..
            } => Some((c, bytes)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_holder_in_the_way_is_told_once_what_it_will_move_out() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 6 * GIB);
    sim.request(1);
    sim.fully_resident(1, 6 * GIB);
    // As soon as the GPU is oversubscribed (2 arrives), 1 learns it will
    // have to move out up to 2 GiB, while it still has its whole quantum
    // to make the host room for it.
    assert_eq!(prepares(&sim.join(2, 6 * GIB)), vec![(1, 2 * GIB)]);
    assert!(prepares(&sim.request(2)).is_empty(), "told once");
    sim.at(10.0);
    assert!(prepares(&sim.tick()).is_empty(), "told once per hold");
    // More arrive: it may have to move out all it has.
    assert_eq!(prepares(&sim.join(3, 8 * GIB)), vec![(1, 6 * GIB)]);
    sim.request(3);
    sim.at(30.0);
    assert_eq!(drops(&sim.tick()), vec![(1, 2 * GIB)]);
    sim.at(31.0);
    assert_eq!(granted(&sim.release(1, 4 * GIB)), vec![2]);
    // 3 (8 GiB) waits behind 2 now: once 2's memory is back, its hold gets
    // its own hint: up to all of its 6 GiB on a GPU 10 GiB oversubscribed
    // (3's turn alone needs 4 of them, what idle 1 cannot give up).
    assert_eq!(
        prepares(&sim.fully_resident(2, 6 * GIB)),
        vec![(2, 6 * GIB)]
    );
    assert!(prepares(&sim.tick()).is_empty());
}

#[test]
fn nobody_is_told_to_prepare_when_the_waiter_fits() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 4 * GIB);
    sim.request(1);
    sim.fully_resident(1, 4 * GIB);
    sim.join(2, 4 * GIB);
    let out = sim.request(2);
    assert_eq!(granted(&out), vec![2]);
    assert!(prepares(&out).is_empty());
}

#[test]
fn memory_that_cannot_move_is_not_asked_for_again_and_again() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 6 * GIB);
    sim.request(1);
    sim.release(1, 6 * GIB);
    sim.join(2, 6 * GIB);
    assert_eq!(evicts(&sim.request(2)), vec![(1, 2 * GIB)]);
    // 1's memory is shared with another process: nothing moves.
    let out = sim.msg(
        1,
        ClientBody::Evicted {
            bytes: 0,
            resident: 6 * GIB,
            elapsed_us: 5,
        }
        .on(GPU),
    );
    assert!(evicts(&out).is_empty(), "asked once, not in a loop");
    assert!(evicts(&sim.tick()).is_empty());
    // Nobody can free the memory: 2 runs oversubscribed rather than never.
    assert_eq!(granted(&out), vec![2]);
}
