//! Restoring ahead of the grant: into memory free beside a holder, and
//! into memory a switch's eviction frees piece by piece.

use super::*;

/// `client` reports `bytes` fetched ahead, `resident` on the GPU now.
fn fetched(sim: &mut Sim, client: ClientId, bytes: u64, resident: u64) -> Vec<Action> {
    sim.msg(
        client,
        ClientBody::Fetched {
            bytes,
            resident,
            elapsed_us: 100,
        }
        .on(GPU),
    )
}

/// `client`'s eviction in progress reports `resident` bytes left.
fn evicting(sim: &mut Sim, client: ClientId, resident: u64) -> Vec<Action> {
    sim.msg(client, ClientBody::Evicting { resident }.on(GPU))
}

/// Two 12 GiB programs on a 16 GiB GPU: 1 runs with all of its memory,
/// 2 has all of its memory swapped out and waits.
fn twelve_and_twelve_on_sixteen() -> (Sim, Vec<Action>) {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.join(1, 12 * GIB);
    sim.request(1);
    sim.fully_resident(1, 12 * GIB);
    sim.join(2, 12 * GIB);
    let out = sim.request(2);
    (sim, out)
}

#[test]
fn memory_free_beside_a_holder_is_filled_before_the_switch() {
    let (mut sim, out) = twelve_and_twelve_on_sixteen();
    assert_eq!(fetches(&out), vec![(2, 4 * GIB)], "the 4 GiB free now");
    assert!(
        fetches(&fetched(&mut sim, 2, 4 * GIB, 4 * GIB)).is_empty(),
        "nothing is free any more"
    );
    // The switch then moves 8 GiB each way instead of 12.
    sim.at(30.0);
    assert_eq!(drops(&sim.tick()), vec![(1, 8 * GIB)]);
}

#[test]
fn an_eviction_in_progress_hands_what_it_freed_to_the_next_restore() {
    let (mut sim, _) = twelve_and_twelve_on_sixteen();
    fetched(&mut sim, 2, 4 * GIB, 4 * GIB);
    sim.at(30.0);
    sim.tick();
    // Each piece 1 frees goes to 2 at once, while 1 still copies the rest.
    assert_eq!(
        fetches(&evicting(&mut sim, 1, 10 * GIB)),
        vec![(2, 2 * GIB)]
    );
    assert!(
        fetches(&evicting(&mut sim, 1, 9 * GIB)).is_empty(),
        "one fetch at a time"
    );
    assert_eq!(
        fetches(&fetched(&mut sim, 2, 2 * GIB, 6 * GIB)),
        vec![(2, GIB)],
        "the gigabyte freed meanwhile"
    );
    fetched(&mut sim, 2, GIB, 7 * GIB);
    let out = evicting(&mut sim, 1, 4 * GIB);
    assert_eq!(fetches(&out), vec![(2, 5 * GIB)]);
    assert!(granted(&out).is_empty(), "2 waits for 1 to let go");
    fetched(&mut sim, 2, 5 * GIB, 12 * GIB);
    sim.msg(
        1,
        ClientBody::Evicted {
            bytes: 8 * GIB,
            resident: 4 * GIB,
            elapsed_us: 150_000,
        }
        .on(GPU),
    );
    assert_eq!(granted(&sim.release(1, 4 * GIB)), vec![2]);
    // Never more than the capacity was promised on the way.
    let status = &sim.sched.status(sim.now)[0];
    assert_eq!(status.resident, 16 * GIB);
}

#[test]
fn a_fetch_that_brings_nothing_back_is_not_repeated_until_things_change() {
    let (mut sim, out) = twelve_and_twelve_on_sixteen();
    assert_eq!(fetches(&out), vec![(2, 4 * GIB)]);
    // The GPU was physically full, say.
    assert!(fetches(&fetched(&mut sim, 2, 0, 0)).is_empty());
    assert!(fetches(&sim.tick()).is_empty());
    sim.at(30.0);
    sim.tick();
    assert!(
        fetches(&evicting(&mut sim, 1, 6 * GIB)).is_empty(),
        "it waits for its grant"
    );
    assert_eq!(granted(&sim.release(1, 4 * GIB)), vec![2]);
}

#[test]
fn a_holder_dropped_before_its_restore_ends_keeps_its_whole_claim() {
    let mut sim = Sim::new(Policy::Exclusive, 16 * GIB);
    sim.join(1, 12 * GIB);
    sim.join(2, 4 * GIB);
    // 1 is granted with everything still swapped out, and dropped at once
    // (it said it is idle) before it reported its restore.
    sim.request(1);
    sim.msg(1, ClientBody::Idle.on(GPU));
    let out = sim.request(2);
    assert_eq!(drops(&out), vec![(1, 0)]);
    assert_eq!(
        fetches(&out),
        vec![(2, 4 * GIB)],
        "only what is free beside 1's whole claim"
    );
    let mut sim = Sim::new(Policy::Exclusive, 16 * GIB);
    sim.join(1, 12 * GIB);
    sim.join(2, 8 * GIB);
    sim.request(1);
    sim.msg(1, ClientBody::Idle.on(GPU));
    let out = sim.request(2);
    assert_eq!(
        drops(&out),
        vec![(1, 0)],
        "it reported nothing resident yet"
    );
    assert_eq!(
        fetches(&out),
        vec![(2, 4 * GIB)],
        "not the 8 GiB its report alone would leave free"
    );
}

#[test]
fn with_restore_ahead_off_a_switch_moves_out_then_in() {
    let mut sim = Sim::new(Policy::Auto, 16 * GIB);
    sim.sched.config.restore_ahead = false;
    sim.join(1, 12 * GIB);
    sim.request(1);
    sim.fully_resident(1, 12 * GIB);
    sim.join(2, 12 * GIB);
    assert!(fetches(&sim.request(2)).is_empty());
    sim.at(30.0);
    assert_eq!(drops(&sim.tick()), vec![(1, 8 * GIB)]);
    assert!(fetches(&evicting(&mut sim, 1, 6 * GIB)).is_empty());
}

#[test]
fn nothing_is_fetched_for_a_program_with_nothing_swapped_out() {
    let mut sim = Sim::new(Policy::Exclusive, 16 * GIB);
    sim.join(1, 4 * GIB);
    sim.request(1);
    sim.fully_resident(1, 4 * GIB);
    sim.join(2, 0);
    sim.msg(
        2,
        ClientBody::Usage {
            footprint: 4 * GIB,
            resident: 4 * GIB,
        }
        .on(GPU),
    );
    assert!(fetches(&sim.request(2)).is_empty());
}

/// Memory a waiting program is still fetching is asked back once, not at
/// every schedule: an eviction asked for it counts against what the fetch
/// brings.
#[test]
fn memory_being_fetched_is_asked_back_once() {
    let (mut sim, out) = twelve_and_twelve_on_sixteen();
    assert_eq!(fetches(&out), vec![(2, 4 * GIB)]);
    // 1 grows past its room while 2's fetch is under way: 14 + 4 GiB on a
    // 16 GiB GPU; 2 is asked to give 2 GiB back.
    let out = sim.fully_resident(1, 14 * GIB);
    assert_eq!(evicts(&out), vec![(2, 2 * GIB)]);
    // Nothing changed that needs more: the next events ask nothing again.
    let out = sim.fully_resident(1, 14 * GIB);
    assert!(evicts(&out).is_empty(), "{out:?}");
    sim.at(1.0);
    assert!(evicts(&sim.tick()).is_empty());
}
