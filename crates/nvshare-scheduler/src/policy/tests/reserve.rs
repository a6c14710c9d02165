//! Reservations: a holder growing past its room waits for `Reserved`, which
//! comes once the memory is there for it.

use super::*;

fn reserve(sim: &mut Sim, client: ClientId, footprint: u64) -> Vec<Action> {
    sim.msg(client, ClientBody::Reserve { footprint }.on(GPU))
}

fn rooms(actions: &[Action]) -> Vec<(ClientId, u64)> {
    sends(actions)
        .into_iter()
        .filter_map(|(c, m)| match m {
            SchedulerMsg::Gpu {
                body: SchedulerBody::Reserved { room, .. },
                ..
            } => Some((c, room)),
            _ => None,
        })
        .collect()
}

fn room_of_grant(actions: &[Action], client: ClientId) -> Option<u64> {
    sends(actions).into_iter().find_map(|(c, m)| match m {
        SchedulerMsg::Gpu {
            body: SchedulerBody::LockGranted { room, .. },
            ..
        } if c == client => Some(room),
        _ => None,
    })
}

#[test]
fn a_grant_gives_the_footprint_it_was_decided_on_as_room() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 2 * GIB);
    let out = sim.request(1);
    assert_eq!(room_of_grant(&out, 1), Some(2 * GIB));
}

#[test]
fn room_that_fits_is_granted_at_once_with_headroom() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 2 * GIB);
    sim.join(2, 2 * GIB);
    sim.request(1);
    sim.request(2);
    sim.fully_resident(1, 2 * GIB);
    sim.fully_resident(2, 2 * GIB);
    let out = reserve(&mut sim, 1, 4 * GIB);
    // 4 GiB asked, plus a quarter of it from the 10 GiB nobody claims.
    assert_eq!(rooms(&out), vec![(1, 5 * GIB)]);
    assert!(drops(&out).is_empty());
    // Within the room, nothing more is needed; the room counts as claimed.
    let out = reserve(&mut sim, 2, 12 * GIB);
    assert_eq!(drops(&out), vec![(2, 0)], "the newest holder gives way");
    assert!(rooms(&out).is_empty());
}

#[test]
fn headroom_never_takes_memory_claimed_by_others() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 6 * GIB);
    sim.join(2, 6 * GIB);
    sim.request(1);
    sim.request(2);
    let out = reserve(&mut sim, 1, 9 * GIB);
    assert_eq!(rooms(&out), vec![(1, 10 * GIB)]);
}

#[test]
fn a_holder_that_does_not_fit_drops_the_newer_co_holders() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    for c in 1..=3 {
        sim.join(c, 2 * GIB);
        sim.at(c as f64);
        sim.request(c);
        sim.fully_resident(c, 2 * GIB);
    }
    // The oldest wants 15 GiB: both others go, the newest first, taking
    // with them what would not fit; nothing is allocated until they have
    // released.
    let out = reserve(&mut sim, 1, 15 * GIB);
    assert_eq!(drops(&out), vec![(3, 2 * GIB), (2, GIB)]);
    assert!(rooms(&out).is_empty());
    assert!(rooms(&sim.release(3, 0)).is_empty());
    let out = sim.release(2, GIB);
    assert_eq!(rooms(&out), vec![(1, 15 * GIB)]);
    // Nobody is granted in the room just reserved.
    assert!(granted(&sim.request(3)).is_empty());
}

#[test]
fn a_newest_holder_that_does_not_fit_gives_the_lock_up_itself() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 6 * GIB);
    sim.join(2, 2 * GIB);
    sim.at(1.0);
    sim.request(1);
    sim.at(2.0);
    sim.request(2);
    let out = reserve(&mut sim, 2, 12 * GIB);
    assert_eq!(drops(&out), vec![(2, 0)]);
    assert!(rooms(&out).is_empty());
    assert_eq!(sim.state(1), ClientState::Running);
    // It comes back the way an allocation without the lock does.
    sim.release(2, 2 * GIB);
    sim.msg(
        2,
        ClientBody::Usage {
            footprint: 12 * GIB,
            resident: 2 * GIB,
        }
        .on(GPU),
    );
    assert!(granted(&sim.request(2)).is_empty(), "it waits for client 1");
}

#[test]
fn room_waits_for_idle_programs_to_move_their_memory_out() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 6 * GIB);
    sim.join(2, 2 * GIB);
    sim.request(1);
    sim.release(1, 6 * GIB);
    sim.at(1.0);
    sim.request(2);
    sim.fully_resident(2, 2 * GIB);
    let out = reserve(&mut sim, 2, 12 * GIB);
    assert_eq!(evicts(&out), vec![(1, 2 * GIB)]);
    assert!(rooms(&out).is_empty());
    let out = sim.msg(
        1,
        ClientBody::Evicted {
            bytes: 2 * GIB,
            resident: 4 * GIB,
            elapsed_us: 10,
        }
        .on(GPU),
    );
    assert_eq!(rooms(&out), vec![(2, 12 * GIB)]);
}

#[test]
fn headroom_comes_only_from_memory_free_now_not_from_evictions_under_way() {
    // The e2e reserve test caught it on the fake driver's trace: a holder
    // given headroom out of memory another program was still moving out
    // grew into it before the copies ended, 72 MiB on a 64 MiB GPU.
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 8 * GIB);
    sim.join(2, 4 * GIB);
    sim.join(3, 8 * GIB);
    sim.request(1);
    sim.fully_resident(1, 8 * GIB);
    sim.release(1, 8 * GIB);
    sim.at(1.0);
    sim.request(2);
    sim.fully_resident(2, 4 * GIB);
    // 3 runs beside 2 once 1 has moved 4 GiB out.
    let out = sim.request(3);
    assert_eq!(evicts(&out), vec![(1, 4 * GIB)]);
    // 2 grows to 8 GiB: that fits beside the 8 of 1 still on the GPU, and
    // nothing more does until 1's eviction is done.
    let out = reserve(&mut sim, 2, 8 * GIB);
    assert_eq!(
        rooms(&out),
        vec![(2, 8 * GIB)],
        "no headroom from memory still in use"
    );
}

#[test]
fn headroom_stops_at_the_jobs_own_memory_limit() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 2 * GIB);
    sim.join(2, 2 * GIB);
    let limit = nvshare_proto::JobSettings {
        memory_limit: Some(8 * GIB),
        ..nvshare_proto::JobSettings::default()
    };
    for client in [1, 2] {
        sim.msg(client, ClientBody::JobSettings(limit).on(GPU));
        sim.request(client);
        sim.fully_resident(client, 2 * GIB);
    }
    // 7.5 GiB asked: a quarter more would pass the 8 GiB limit.
    let out = reserve(&mut sim, 1, 15 * GIB / 2);
    assert_eq!(rooms(&out), vec![(1, 8 * GIB)]);
    // Their limits fit together: the other grows to its limit beside it.
    let out = reserve(&mut sim, 2, 8 * GIB);
    assert_eq!(rooms(&out), vec![(2, 8 * GIB)]);
    assert!(drops(&out).is_empty());
}

#[test]
fn a_lone_holder_growing_past_the_capacity_gets_it_once_others_are_out() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 4 * GIB);
    sim.join(2, 4 * GIB);
    sim.request(1);
    sim.release(1, 4 * GIB);
    sim.at(1.0);
    sim.request(2);
    sim.fully_resident(2, 4 * GIB);
    // More than the whole capacity (uvm with single oversubscription): the
    // idle program's memory goes first, then the holder runs oversubscribed
    // as one program alone does today.
    let out = reserve(&mut sim, 2, 20 * GIB);
    assert_eq!(evicts(&out), vec![(1, 4 * GIB)]);
    assert!(rooms(&out).is_empty());
    let out = sim.msg(
        1,
        ClientBody::Evicted {
            bytes: 4 * GIB,
            resident: 0,
            elapsed_us: 10,
        }
        .on(GPU),
    );
    assert_eq!(rooms(&out), vec![(2, 20 * GIB)]);
}

#[test]
fn a_reservation_from_a_program_without_the_lock_is_ignored() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 2 * GIB);
    let out = reserve(&mut sim, 1, 4 * GIB);
    assert!(sends(&out).is_empty());
    // A later grant is decided on the reported footprint, not the request.
    assert_eq!(room_of_grant(&sim.request(1), 1), Some(2 * GIB));
}

#[test]
fn a_pending_reservation_holds_back_new_grants_not_the_quantum() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 6 * GIB);
    sim.join(2, 6 * GIB);
    sim.request(1);
    sim.release(1, 6 * GIB);
    sim.request(2);
    sim.fully_resident(2, 6 * GIB);
    let out = reserve(&mut sim, 2, 14 * GIB);
    assert_eq!(evicts(&out), vec![(1, 4 * GIB)]);
    sim.request(1);
    sim.at(QUANTUM.as_secs_f64() + 1.0);
    assert!(drops(&sim.tick()).is_empty(), "the room is being made");
    let out = sim.msg(
        1,
        ClientBody::Evicted {
            bytes: 4 * GIB,
            resident: 2 * GIB,
            elapsed_us: 10,
        }
        .on(GPU),
    );
    assert_eq!(rooms(&out), vec![(2, 14 * GIB)]);
    // Then the waiter's turn comes as usual.
    let dropped: Vec<ClientId> = drops(&out).iter().map(|&(c, _)| c).collect();
    assert_eq!(dropped, vec![2]);
}

#[test]
fn off_grants_room_without_conditions() {
    let mut sim = Sim::new(Policy::Off, 16 * GIB);
    sim.join(1, 10 * GIB);
    sim.join(2, 10 * GIB);
    sim.request(1);
    sim.request(2);
    let out = reserve(&mut sim, 1, 14 * GIB);
    assert_eq!(rooms(&out), vec![(1, 14 * GIB)]);
}
