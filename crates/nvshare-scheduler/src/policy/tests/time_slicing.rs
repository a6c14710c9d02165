//! Co-running, the wait queue, quantum expiry, idle holders, policy and quantum changes.

use super::*;

#[test]
fn clients_that_fit_together_run_together() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 4 * GIB);
    sim.join(2, 6 * GIB);
    assert_eq!(granted(&sim.request(1)), vec![1]);
    assert_eq!(granted(&sim.request(2)), vec![2]);
    assert_eq!(sim.sched.next_deadline(), None);
}

#[test]
fn a_waiter_that_does_not_fit_gets_the_gpu_when_the_quantum_ends() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 6 * GIB);
    sim.join(2, 6 * GIB);
    sim.request(1);
    sim.fully_resident(1, 6 * GIB);
    sim.at(1.0);
    assert!(granted(&sim.request(2)).is_empty());
    assert_eq!(sim.state(2), ClientState::Waiting);
    assert_eq!(sim.sched.next_deadline(), Some(QUANTUM));
    sim.at(29.0);
    assert!(drops(&sim.tick()).is_empty());
    sim.at(30.0);
    // Client 2 needs 6 GiB and 4 are free: only 2 GiB must go.
    assert_eq!(drops(&sim.tick()), vec![(1, 2 * GIB)]);
    assert_eq!(sim.state(1), ClientState::Releasing);
    sim.at(30.5);
    let out = sim.release(1, 4 * GIB);
    assert_eq!(granted(&out), vec![2]);
    assert!(out.contains(&Action::Record(Record::Switched {
        gpu: GPU,
        latency: Duration::from_millis(500)
    })));
    assert!(out.contains(&Action::Record(Record::Granted {
        client: 2,
        gpu: GPU,
        waited: Duration::from_secs_f64(29.5)
    })));
    let status = &sim.sched.status(sim.now)[0];
    assert_eq!((status.grants, status.switches), (2, 1));
}

#[test]
fn released_clients_queue_at_the_tail() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    for c in 1..=3 {
        sim.join(c, GIB);
        sim.request(c);
    }
    sim.at(30.0);
    assert_eq!(drops(&sim.tick()), vec![(1, 0)]);
    sim.release(1, GIB);
    sim.request(1);
    sim.at(60.0);
    assert_eq!(drops(&sim.tick()), vec![(2, 0)]);
    assert_eq!(granted(&sim.release(2, GIB)), vec![3]);
    sim.request(2);
    sim.at(90.0);
    sim.tick();
    assert_eq!(granted(&sim.release(3, GIB)), vec![1]);
}

#[test]
fn an_idle_holder_gives_way_at_once() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.join(1, GIB);
    sim.join(2, GIB);
    sim.join(3, GIB);
    sim.request(1);
    sim.at(1.0);
    sim.request(2);
    let out = sim.msg(1, ClientBody::Idle.on(GPU));
    assert_eq!(drops(&out), vec![(1, 0)]);
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Record(Record::DropRequested {
            reason: "idle holder",
            ..
        })
    )));
    sim.release(1, GIB);
    assert_eq!(sim.state(2), ClientState::Running);
    // Idle with nobody waiting is remembered until a waiter comes.
    sim.at(2.0);
    assert!(drops(&sim.msg(2, ClientBody::Idle.on(GPU))).is_empty());
    sim.at(3.0);
    assert_eq!(drops(&sim.request(3)), vec![(2, 0)]);
}

#[test]
fn strict_fifo_never_grants_past_a_head_that_does_not_fit() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 6 * GIB);
    sim.join(2, 8 * GIB);
    sim.join(3, GIB);
    sim.request(1);
    sim.request(2);
    assert!(granted(&sim.request(3)).is_empty());
    assert_eq!(sim.state(3), ClientState::Waiting);
    assert_eq!(sim.sched.queue_len(), 2);
}

#[test]
fn only_as_many_holders_as_needed_are_dropped_oldest_first() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.join(1, 3 * GIB);
    sim.join(2, 3 * GIB);
    sim.join(3, 3 * GIB);
    sim.join(4, 3 * GIB);
    sim.request(1);
    sim.fully_resident(1, 3 * GIB);
    sim.at(1.0);
    sim.request(2);
    sim.fully_resident(2, 3 * GIB);
    sim.at(2.0);
    sim.request(3);
    sim.fully_resident(3, 3 * GIB);
    sim.request(4);
    sim.at(31.0);
    // Client 1's quantum is over and dropping it alone makes room.
    assert_eq!(drops(&sim.tick()), vec![(1, 2 * GIB)]);
    assert_eq!(granted(&sim.release(1, GIB)), vec![4]);
}

#[test]
fn exclusive_allows_one_holder_and_off_grants_everyone() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.join(1, GIB);
    sim.join(2, GIB);
    assert_eq!(granted(&sim.request(1)), vec![1]);
    assert!(granted(&sim.request(2)).is_empty());
    let out = sim.sched.set_policy(sim.now, Policy::Off);
    assert_eq!(granted(&out), vec![2]);
    sim.at(100.0);
    assert!(drops(&sim.tick()).is_empty());
    assert_eq!(sim.sched.next_deadline(), None);
}

#[test]
fn switching_to_exclusive_drops_extra_holders() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    for c in 1..=3 {
        sim.join(c, GIB);
        sim.at(c as f64);
        sim.request(c);
    }
    let out = sim.sched.set_policy(sim.now, Policy::Exclusive);
    assert_eq!(drops(&out), vec![(2, 0), (3, 0)]);
    assert!(out.iter().all(|a| !matches!(
        a,
        Action::Record(Record::DropRequested { reason, .. }) if *reason != "policy change"
    )));
    assert_eq!(sim.state(1), ClientState::Running);
}

#[test]
fn set_quantum_tells_every_client_and_moves_deadlines() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.join(1, GIB);
    sim.join(2, GIB);
    sim.request(1);
    sim.request(2);
    sim.at(5.0);
    let out = sim.sched.set_quantum(sim.now, Duration::from_secs(5));
    let told: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(_, m)| *m == SchedulerMsg::QuantumChanged { quantum_ms: 5000 })
        .map(|(c, _)| c)
        .collect();
    assert_eq!(told, vec![1, 2]);
    assert_eq!(drops(&out), vec![(1, 0)]);
}

#[test]
fn a_request_while_releasing_queues_the_client_when_it_releases() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.join(1, GIB);
    sim.join(2, GIB);
    sim.join(3, GIB);
    sim.request(1);
    sim.request(2);
    sim.at(30.0);
    sim.tick();
    assert!(sim.request(1).is_empty());
    sim.request(3);
    assert_eq!(granted(&sim.release(1, GIB)), vec![2]);
    assert_eq!(sim.state(1), ClientState::Waiting);
    sim.at(60.0);
    sim.tick();
    assert_eq!(granted(&sim.release(2, GIB)), vec![3]);
}
