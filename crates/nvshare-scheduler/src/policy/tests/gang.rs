//! Gangs: members of a multi-process job (one group), or one program's
//! GPUs, that wait together are granted together, and every queue orders
//! gangs alike.

use super::*;

/// Connects `client` in `group` and attaches it to `gpu` with `footprint`.
fn join_on(sim: &mut Sim, client: ClientId, group: Option<&str>, gpu: GpuUuid, footprint: u64) {
    sim.event(Event::Connected {
        client,
        pid: 1000 + client as u32,
        name: format!("job{client}"),
        group: group.map(str::to_owned),
    });
    attach_to(sim, client, gpu, footprint);
}

fn attach_to(sim: &mut Sim, client: ClientId, gpu: GpuUuid, footprint: u64) {
    sim.msg(client, attach(gpu, footprint, 0, false));
}

fn request_on(sim: &mut Sim, client: ClientId, gpu: GpuUuid) -> Vec<Action> {
    sim.msg(client, ClientBody::RequestLock.on(gpu))
}

fn release_on(sim: &mut Sim, client: ClientId, gpu: GpuUuid, resident: u64) -> Vec<Action> {
    sim.msg(client, ClientBody::LockReleased { resident }.on(gpu))
}

/// `client`'s state on `gpu`.
fn state_on(sim: &Sim, client: ClientId, gpu: GpuUuid) -> ClientState {
    sim.sched
        .status(sim.now)
        .iter()
        .find(|g| g.uuid == gpu)
        .and_then(|g| g.clients.iter().find(|c| c.client_id == client))
        .map(|c| c.state)
        .expect("client attached to the GPU")
}

/// The (client, GPU) pairs granted in `actions`.
fn grants(actions: &[Action]) -> Vec<(ClientId, GpuUuid)> {
    sends(actions)
        .into_iter()
        .filter_map(|(c, m)| match m {
            SchedulerMsg::Gpu {
                gpu,
                body: SchedulerBody::LockGranted { .. },
            } => Some((c, gpu)),
            _ => None,
        })
        .collect()
}

/// Clients 1 and 2 (no group) each hold one GPU with 6 of 10 GiB.
fn two_gpus_held() -> Sim {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    join_on(&mut sim, 1, None, GPU, 6 * GIB);
    join_on(&mut sim, 2, None, OTHER_GPU, 6 * GIB);
    assert_eq!(grants(&request_on(&mut sim, 1, GPU)), vec![(1, GPU)]);
    assert_eq!(
        grants(&request_on(&mut sim, 2, OTHER_GPU)),
        vec![(2, OTHER_GPU)]
    );
    sim
}

/// Ends both holders' quanta and lets them go; returns the grants that
/// follow their releases.
fn holders_leave(sim: &mut Sim) -> Vec<(ClientId, GpuUuid)> {
    sim.at(30.0);
    sim.tick();
    let mut granted = grants(&release_on(sim, 1, GPU, 0));
    granted.extend(grants(&release_on(sim, 2, OTHER_GPU, 0)));
    granted
}

#[test]
fn a_rank_whose_peer_waits_on_another_gpu_is_held_until_both_can_run() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    join_on(&mut sim, 9, None, OTHER_GPU, 6 * GIB);
    assert_eq!(
        grants(&request_on(&mut sim, 9, OTHER_GPU)),
        vec![(9, OTHER_GPU)]
    );
    join_on(&mut sim, 1, Some("ddp"), GPU, 6 * GIB);
    join_on(&mut sim, 2, Some("ddp"), OTHER_GPU, 6 * GIB);
    // Rank 2 waits behind 9; rank 1's GPU is free, but alone it would spin
    // in its first collective: it is held.
    assert!(grants(&request_on(&mut sim, 2, OTHER_GPU)).is_empty());
    assert!(grants(&request_on(&mut sim, 1, GPU)).is_empty());
    assert_eq!(sim.state(1), ClientState::Waiting);
    sim.at(30.0);
    sim.tick();
    let out = sim.msg(9, ClientBody::LockReleased { resident: 0 }.on(OTHER_GPU));
    let mut both = grants(&out);
    both.sort();
    assert_eq!(both, vec![(1, GPU), (2, OTHER_GPU)], "granted in one go");
}

#[test]
fn gangs_stand_in_the_same_order_in_every_queue() {
    // Requests arrive crosswise: b on GPU 1, c on GPU 0, c on GPU 1, b on
    // GPU 0. First come first served per GPU would put c first on GPU 0
    // and b first on GPU 1, and neither gang could ever run whole.
    let mut sim = two_gpus_held();
    for (client, group, gpu) in [
        (3, "b", OTHER_GPU),
        (4, "c", GPU),
        (5, "c", OTHER_GPU),
        (6, "b", GPU),
    ] {
        join_on(&mut sim, client, Some(group), gpu, 6 * GIB);
        assert!(grants(&request_on(&mut sim, client, gpu)).is_empty());
    }
    let mut first = holders_leave(&mut sim);
    first.sort();
    assert_eq!(
        first,
        vec![(3, OTHER_GPU), (6, GPU)],
        "gang b, whose ticket is older, goes first"
    );
    assert_eq!(state_on(&sim, 4, GPU), ClientState::Waiting);
    assert_eq!(state_on(&sim, 5, OTHER_GPU), ClientState::Waiting);
}

#[test]
fn one_program_waiting_on_two_gpus_gets_both_at_once() {
    let mut sim = two_gpus_held();
    join_on(&mut sim, 3, None, GPU, 6 * GIB);
    attach_to(&mut sim, 3, OTHER_GPU, 6 * GIB);
    assert!(grants(&request_on(&mut sim, 3, GPU)).is_empty());
    assert!(grants(&request_on(&mut sim, 3, OTHER_GPU)).is_empty());
    sim.at(30.0);
    sim.tick();
    assert!(
        grants(&release_on(&mut sim, 1, GPU, 0)).is_empty(),
        "GPU 0 is free, but the program also waits for GPU 1"
    );
    assert_eq!(
        grants(&release_on(&mut sim, 2, OTHER_GPU, 0)),
        vec![(3, GPU), (3, OTHER_GPU)]
    );
}

#[test]
fn a_member_whose_peers_do_not_wait_is_granted_alone() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    join_on(&mut sim, 1, Some("ddp"), GPU, 6 * GIB);
    join_on(&mut sim, 2, Some("ddp"), OTHER_GPU, 6 * GIB);
    assert_eq!(grants(&request_on(&mut sim, 1, GPU)), vec![(1, GPU)]);
    assert_eq!(
        grants(&request_on(&mut sim, 2, OTHER_GPU)),
        vec![(2, OTHER_GPU)]
    );
}

#[test]
fn members_of_one_group_on_the_same_gpu_do_not_hold_each_other_up() {
    // Two ranks share GPU 0 (they fit together), a third is on GPU 1.
    let mut sim = two_gpus_held();
    join_on(&mut sim, 3, Some("ddp"), GPU, 2 * GIB);
    join_on(&mut sim, 4, Some("ddp"), GPU, 2 * GIB);
    join_on(&mut sim, 5, Some("ddp"), OTHER_GPU, 2 * GIB);
    for (client, gpu) in [(3, GPU), (4, GPU), (5, OTHER_GPU)] {
        request_on(&mut sim, client, gpu);
    }
    // 2 + 2 GiB fit beside client 1's 6 on GPU 0, and 2 beside client 2's
    // on GPU 1: everyone runs at once.
    let mut granted = grants(&sim.tick());
    granted.extend(holders_leave(&mut sim));
    assert_eq!(sim.state(3), ClientState::Running, "{granted:?}");
    assert_eq!(sim.state(4), ClientState::Running);
}
