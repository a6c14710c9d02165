//! After a restart: claims of programs that held a GPU, and no grants until
//! every holder had time to reconnect.

use super::*;

/// `client` reconnects and re-attaches [`GPU`] with `footprint` bytes, all
/// resident, saying it holds it.
fn reclaim(sim: &mut Sim, client: ClientId, footprint: u64) -> Vec<Action> {
    sim.connect(client);
    sim.msg(client, attach(GPU, footprint, footprint, true))
}

fn records(actions: &[Action]) -> Vec<&Record> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn after_a_restart_nobody_is_granted_until_the_grace_has_passed() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.sched.recover();
    // The waiter reconnects first, as in the reported race.
    sim.at(0.1);
    sim.join(1, GIB);
    assert!(granted(&sim.request(1)).is_empty(), "granted in recovery");
    // The holder, still draining, reconnects later and claims the GPU.
    sim.at(0.6);
    let out = reclaim(&mut sim, 2, GIB);
    assert!(granted(&out).is_empty(), "a claim gets no grant message");
    assert_eq!(sim.state(2), ClientState::Running);
    assert!(records(&out).contains(&&Record::Resumed {
        client: 2,
        gpu: GPU
    }));
    // Its drain ends: the GPU is free, but the grace is not over.
    sim.at(0.9);
    assert!(granted(&sim.release(2, GIB)).is_empty());
    assert_eq!(sim.state(1), ClientState::Waiting);
    assert_eq!(sim.sched.next_deadline(), Some(Duration::from_secs(3)));
    sim.at(3.0);
    assert_eq!(granted(&sim.tick()), vec![1]);
}

#[test]
fn without_a_predecessor_grants_are_not_delayed() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.at(0.1);
    sim.join(1, GIB);
    assert_eq!(granted(&sim.request(1)), vec![1]);
}

#[test]
fn a_claim_that_does_not_fit_gives_the_gpu_back_before_anyone_else_runs() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.sched.recover();
    reclaim(&mut sim, 1, GIB);
    let out = reclaim(&mut sim, 2, GIB);
    assert_eq!(drops(&out), vec![(2, 0)], "one holder at most");
    assert!(granted(&out).is_empty());
    sim.join(3, GIB);
    sim.request(3);
    sim.at(3.5);
    sim.release(2, GIB);
    assert_eq!(sim.state(2), ClientState::Idle);
    assert_eq!(sim.state(1), ClientState::Running, "the first claim stays");
    assert_eq!(sim.state(3), ClientState::Waiting);

    // With auto, claims that fit together are all believed.
    let mut auto = Sim::new(Policy::Auto, 10 * GIB);
    auto.sched.recover();
    reclaim(&mut auto, 1, 4 * GIB);
    assert!(drops(&reclaim(&mut auto, 2, 4 * GIB)).is_empty());
    assert_eq!(drops(&reclaim(&mut auto, 3, 4 * GIB)), vec![(3, 0)]);
}

#[test]
fn a_holder_that_finishes_its_drain_is_never_granted_the_gpu_back() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.sched.recover();
    let mut sent = reclaim(&mut sim, 1, GIB);
    sim.at(0.5);
    sent.extend(sim.release(1, GIB));
    sim.at(3.0);
    sent.extend(sim.tick());
    assert!(granted(&sent).is_empty());
    assert_eq!(sim.state(1), ClientState::Idle);
}

#[test]
fn a_claim_after_the_grace_only_queues() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    sim.join(1, GIB);
    sim.request(1);
    sim.join(2, GIB);
    sim.request(2);
    sim.at(10.0);
    let out = reclaim(&mut sim, 3, GIB);
    assert!(granted(&out).is_empty() && drops(&out).is_empty());
    assert!(records(&out).contains(&&Record::ClaimRefused {
        client: 3,
        gpu: GPU
    }));
    assert_eq!(sim.state(3), ClientState::Waiting);
    // It stands behind the one already waiting.
    sim.at(40.0);
    sim.tick();
    assert_eq!(granted(&sim.release(1, GIB)), vec![2]);
}
