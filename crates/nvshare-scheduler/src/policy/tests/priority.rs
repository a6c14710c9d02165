//! Priorities and weights: a higher priority goes first and keeps the GPU
//! past its time slice only as long as its priority is worth; a weight is a
//! time slice of that many quanta.

use super::*;
use nvshare_proto::{JobSettings, WaitReason};

/// Joins `client` with `footprint` and its priority and weight.
fn join_ranked(sim: &mut Sim, client: ClientId, footprint: u64, priority: i32, weight: u32) {
    sim.join(client, footprint);
    let settings = JobSettings {
        memory_limit: None,
        priority,
        weight,
    };
    sim.msg(client, ClientBody::JobSettings(settings).on(GPU));
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_higher_priority_goes_ahead_of_those_who_asked_less_than_its_steps_before() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    join_ranked(&mut sim, 1, GIB, 0, 1);
    join_ranked(&mut sim, 2, GIB, 0, 1);
    join_ranked(&mut sim, 3, GIB, 1, 1);
    join_ranked(&mut sim, 4, GIB, 0, 1);
    assert_eq!(granted(&sim.request(1)), vec![1]);
    sim.at(1.0).request(2);
    // One step (the 30 s quantum) ahead of 2, which asked 9 s before it.
    sim.at(10.0).request(3);
    sim.at(11.0).request(4);
    sim.at(30.0);
    assert_eq!(drops(&sim.tick()), vec![(1, 0)], "the quantum of 1 ended");
    assert_eq!(granted(&sim.release(1, 0)), vec![3], "3 went ahead of 2");
    sim.at(60.0);
    assert_eq!(drops(&sim.tick()), vec![(3, 0)]);
    assert_eq!(granted(&sim.release(3, 0)), vec![2]);
}

#[test]
fn a_lower_priority_that_asked_long_enough_before_keeps_its_place() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    join_ranked(&mut sim, 2, GIB, 0, 1);
    join_ranked(&mut sim, 3, GIB, 1, 1);
    join_ranked(&mut sim, 4, GIB, 0, 3);
    assert_eq!(granted(&sim.request(4)), vec![4], "a slice of 90 s");
    sim.at(1.0).request(2);
    // 31 s after 2: more than its one step of 30 s.
    sim.at(32.0).request(3);
    sim.at(90.0);
    assert_eq!(drops(&sim.tick()), vec![(4, 0)]);
    assert_eq!(granted(&sim.release(4, 0)), vec![2]);
}

#[test]
fn a_higher_holder_keeps_the_gpu_past_its_slice_for_as_long_as_its_priority_is_worth() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    join_ranked(&mut sim, 1, GIB, 2, 1);
    join_ranked(&mut sim, 2, GIB, 0, 1);
    assert_eq!(granted(&sim.request(1)), vec![1]);
    sim.at(5.0).request(2);
    // Its slice ends at 30 s; two steps after 2 asked is 65 s.
    sim.at(30.0);
    assert!(drops(&sim.tick()).is_empty(), "still ahead of 2");
    assert_eq!(sim.sched.next_deadline(), Some(secs(65)));
    let waits = sim.sched.waits(sim.now);
    assert_eq!(
        waits[0].reason,
        WaitReason::Priority {
            holder: 1,
            remaining_ms: 35_000
        }
    );
    sim.at(65.0);
    assert_eq!(drops(&sim.tick()), vec![(1, 0)], "2 waited two steps");
    assert_eq!(granted(&sim.release(1, 0)), vec![2]);
}

#[test]
fn a_weight_is_a_time_slice_of_that_many_quanta() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    join_ranked(&mut sim, 1, GIB, 0, 3);
    join_ranked(&mut sim, 2, GIB, 0, 1);
    assert_eq!(granted(&sim.request(1)), vec![1]);
    sim.at(1.0).request(2);
    assert_eq!(sim.sched.next_deadline(), Some(secs(90)));
    sim.at(89.0);
    assert!(drops(&sim.tick()).is_empty());
    sim.at(90.0);
    assert_eq!(drops(&sim.tick()), vec![(1, 0)]);
    assert_eq!(granted(&sim.release(1, 0)), vec![2]);
    // 1 asks again: 2's slice is one quantum.
    sim.request(1);
    assert_eq!(sim.sched.next_deadline(), Some(secs(120)));
}

#[test]
fn status_shows_each_jobs_priority_weight_and_wait() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    join_ranked(&mut sim, 1, GIB, -3, 2);
    join_ranked(&mut sim, 2, GIB, 0, 1);
    sim.request(1);
    sim.at(4.0).request(2);
    sim.at(6.5);
    let one = sim.client_status(1);
    assert_eq!((one.priority, one.weight, one.waiting_ms), (-3, 2, 0));
    let two = sim.client_status(2);
    assert_eq!((two.priority, two.weight, two.waiting_ms), (0, 1, 2500));
}

#[test]
fn made_up_priorities_and_weights_are_bounded() {
    let mut sim = Sim::new(Policy::Exclusive, 10 * GIB);
    join_ranked(&mut sim, 1, GIB, i32::MAX, u32::MAX);
    join_ranked(&mut sim, 2, GIB, i32::MIN, 0);
    let one = sim.client_status(1);
    assert_eq!(
        (one.priority, one.weight),
        (nvshare_proto::MAX_PRIORITY, nvshare_proto::MAX_WEIGHT)
    );
    let two = sim.client_status(2);
    assert_eq!(
        (two.priority, two.weight),
        (-nvshare_proto::MAX_PRIORITY, 1)
    );
}
