//! Drains that do not finish: a holder stuck in work that waits for another
//! program (an NCCL collective whose peer waits for its own GPU) lets the
//! next program in beside it once the drain timeout has passed, where the
//! GPU physically has room.

use super::*;
use nvshare_proto::WaitReason;

const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Two 6 GiB programs on a 10 GiB virtual GPU: 1 holds it, 2 waits, and 1
/// is asked to drop at its quantum's end (30 s).
fn holder_asked_to_drop(physical: u64) -> Sim {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    for client in [1, 2] {
        sim.event(Event::Connected {
            client,
            pid: 1000 + client as u32,
            name: format!("job{client}"),
            group: None,
        });
        sim.msg(
            client,
            ClientBody::Attach {
                physical_memory: physical,
                footprint: 6 * GIB,
                resident: 0,
                holding: false,
            }
            .on(GPU),
        );
    }
    sim.request(1);
    sim.fully_resident(1, 6 * GIB);
    sim.request(2);
    sim.at(30.0);
    assert_eq!(drops(&sim.tick()), vec![(1, 2 * GIB)]);
    sim
}

fn overdue_records(actions: &[Action]) -> Vec<(ClientId, ClientId, Duration)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(Record::DrainOverdue {
                stuck,
                granted,
                draining,
                ..
            }) => Some((*stuck, *granted, *draining)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_stuck_drain_lets_the_next_program_in_beside_it_after_the_timeout() {
    let mut sim = holder_asked_to_drop(80 * GIB);
    assert_eq!(
        sim.sched.next_deadline(),
        Some(Duration::from_secs(30) + DRAIN_TIMEOUT)
    );
    sim.at(39.9);
    assert!(granted(&sim.tick()).is_empty(), "not before the timeout");
    sim.at(40.0);
    let out = sim.tick();
    assert_eq!(granted(&out), vec![2]);
    assert_eq!(overdue_records(&out), vec![(1, 2, DRAIN_TIMEOUT)]);
    assert_eq!(sim.state(1), ClientState::Releasing, "still draining");
    assert_eq!(sim.state(2), ClientState::Running);
    assert_eq!(sim.sched.next_deadline(), None, "nobody waits any more");
    // Once the stuck work finishes, the drain completes as usual.
    sim.at(41.0);
    let out = sim.release(1, 4 * GIB);
    assert!(granted(&out).is_empty());
    assert_eq!(sim.state(1), ClientState::Idle);
}

#[test]
fn a_drain_that_finishes_in_time_is_a_plain_switch() {
    let mut sim = holder_asked_to_drop(80 * GIB);
    sim.at(39.0);
    let out = sim.release(1, 4 * GIB);
    assert_eq!(granted(&out), vec![2]);
    assert!(overdue_records(&out).is_empty());
    sim.at(40.0);
    assert!(overdue_records(&sim.tick()).is_empty());
}

#[test]
fn without_physical_room_the_stuck_drain_is_waited_for_and_room_later_lets_the_next_in() {
    // 6 + 6 GiB claims do not fit a 11 GiB card.
    let mut sim = holder_asked_to_drop(11 * GIB);
    sim.at(40.0);
    let out = sim.tick();
    assert!(granted(&out).is_empty());
    assert!(overdue_records(&out).is_empty());
    assert_eq!(
        sim.sched.next_deadline(),
        None,
        "a refused escape is not retried on a timer (no busy ticking)"
    );
    // The stuck program frees 1 GiB: 5 + 6 GiB fit the card (not the
    // 10 GiB virtual GPU, so only as an escape).
    sim.at(45.0);
    let out = sim.msg(
        1,
        ClientBody::Usage {
            footprint: 5 * GIB,
            resident: 5 * GIB,
        }
        .on(GPU),
    );
    assert_eq!(granted(&out), vec![2]);
    assert_eq!(overdue_records(&out), vec![(1, 2, Duration::from_secs(15))]);
}

/// The wait status reports for `GPU`, if somebody waits for it.
fn wait_reason(sim: &Sim) -> Option<(ClientId, WaitReason)> {
    let waits = sim.sched.waits(sim.now);
    waits
        .iter()
        .find(|w| w.uuid == GPU)
        .map(|w| (w.next, w.reason.clone()))
}

#[test]
fn status_says_what_the_next_program_waits_for_through_a_switch_that_stalls() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    for client in [1, 2] {
        sim.event(Event::Connected {
            client,
            pid: 1000 + client as u32,
            name: format!("job{client}"),
            group: None,
        });
        // 6 + 6 GiB claims do not fit an 11 GiB card.
        let attach = ClientBody::Attach {
            physical_memory: 11 * GIB,
            footprint: 6 * GIB,
            resident: 0,
            holding: false,
        };
        sim.msg(client, attach.on(GPU));
    }
    sim.request(1);
    sim.fully_resident(1, 6 * GIB);
    assert_eq!(wait_reason(&sim), None, "nobody waits");
    sim.at(10.0);
    sim.request(2);
    assert_eq!(
        wait_reason(&sim),
        Some((
            2,
            WaitReason::Quantum {
                holder: 1,
                remaining_ms: 20_000
            }
        ))
    );
    sim.at(30.0);
    sim.tick();
    sim.at(35.0);
    assert_eq!(
        wait_reason(&sim),
        Some((
            2,
            WaitReason::Drain {
                holder: 1,
                draining_ms: 5_000,
                timeout_ms: 10_000
            }
        ))
    );
    // Past the timeout on a card without room for both: the drain is
    // waited for, said once in a record, and shown as such.
    sim.at(40.0);
    let out = sim.tick();
    let stuck: Vec<_> = out
        .iter()
        .filter(|a| matches!(a, Action::Record(Record::DrainStuck { stuck: 1, .. })))
        .collect();
    assert_eq!(stuck.len(), 1, "{out:?}");
    sim.at(50.0);
    let out = sim.msg(1, ClientBody::Idle.on(GPU));
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::Record(Record::DrainStuck { .. }))),
        "said once per drain: {out:?}"
    );
    assert_eq!(
        wait_reason(&sim),
        Some((
            2,
            WaitReason::DrainWithoutRoom {
                holder: 1,
                draining_ms: 20_000
            }
        ))
    );
    // The drain ends: 2 is granted and nobody waits.
    assert_eq!(granted(&sim.release(1, 4 * GIB)), vec![2]);
    assert_eq!(wait_reason(&sim), None);
}

#[test]
fn a_recovering_scheduler_says_so_for_every_waiting_program() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.sched.recover();
    sim.join(1, GIB);
    sim.request(1);
    sim.at(1.0);
    let waits = sim.sched.waits(sim.now);
    assert_eq!(waits.len(), 1);
    assert!(
        matches!(waits[0].reason, WaitReason::Recovery { remaining_ms } if remaining_ms > 0),
        "{waits:?}"
    );
}

/// A drain in the way does not hold back the quantum's end of a holder
/// beside it: the running holder is dropped when its quantum ends, not when
/// the drain would be overdue (the daemon only ticks at `next_deadline`).
#[test]
fn a_drain_in_the_way_does_not_delay_the_quantum_end_of_a_holder_beside_it() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    for client in [1, 2, 3] {
        sim.join(client, if client == 3 { 8 * GIB } else { 4 * GIB });
    }
    assert_eq!(granted(&sim.request(1)), vec![1]);
    assert_eq!(granted(&sim.request(2)), vec![2]);
    sim.at(1.0);
    // 3 does not fit beside either: both are in its way.
    assert!(granted(&sim.request(3)).is_empty());
    sim.at(25.0);
    // 2 says it is idle: it is dropped at once, and its drain takes long.
    assert_eq!(drops(&sim.msg(2, ClientBody::Idle.on(GPU))), vec![(2, 0)]);
    assert_eq!(sim.state(2), ClientState::Releasing);
    // 1's quantum ends at 30 s; 2's drain is overdue at 35 s, which
    // matters only once it is alone in the way.
    assert_eq!(sim.sched.next_deadline(), Some(QUANTUM));
    sim.at(QUANTUM.as_secs_f64());
    assert_eq!(drops(&sim.tick()).len(), 1);
    assert_eq!(sim.state(1), ClientState::Releasing);
}
