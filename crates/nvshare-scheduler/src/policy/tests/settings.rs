//! Per-GPU settings and the GPUs known at start.

use super::*;
use nvshare_proto::{GpuSelector, GpuStatus};

fn gpu_status(sim: &Sim, gpu: GpuUuid) -> GpuStatus {
    sim.sched
        .status(sim.now)
        .into_iter()
        .find(|g| g.uuid == gpu)
        .expect("the GPU is listed")
}

fn join_on(sim: &mut Sim, client: ClientId, gpu: GpuUuid, footprint: u64) -> Vec<Action> {
    sim.connect(client);
    sim.msg(client, attach(gpu, footprint, 0, false))
}

fn quantum_changes(actions: &[Action]) -> Vec<ClientId> {
    sends(actions)
        .into_iter()
        .filter(|(_, m)| matches!(m, SchedulerMsg::QuantumChanged { .. }))
        .map(|(c, _)| c)
        .collect()
}

#[test]
fn known_gpus_are_listed_with_their_settings_before_any_program_attaches() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.sched
        .know_gpus([(0, OTHER_GPU, 40 * GIB), (1, GPU, 80 * GIB)]);
    let status = sim.sched.status(sim.now);
    assert_eq!(
        status.iter().map(|g| g.uuid).collect::<Vec<_>>(),
        vec![GPU, OTHER_GPU],
        "in UUID order"
    );
    let idle = &status[1];
    assert_eq!(
        (idle.physical_memory, idle.capacity, idle.policy),
        (40 * GIB, 10 * GIB, Policy::Auto)
    );
    assert_eq!(idle.quantum_ms, 30_000);
    assert!(idle.clients.is_empty());
    join_on(&mut sim, 1, GPU, GIB);
    let status = sim.sched.status(sim.now);
    assert_eq!(status.len(), 2, "a GPU in use is listed once");
    assert_eq!(status[0].clients.len(), 1);
}

#[test]
fn one_gpus_quantum_changes_only_that_gpu_and_outlives_its_programs() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    join_on(&mut sim, 1, GPU, 6 * GIB);
    join_on(&mut sim, 2, OTHER_GPU, 6 * GIB);
    let out = sim
        .sched
        .set_gpu_quantum(sim.now, GPU, Duration::from_millis(200));
    assert_eq!(quantum_changes(&out), vec![1], "only its programs are told");
    assert_eq!(gpu_status(&sim, GPU).quantum_ms, 200);
    assert_eq!(gpu_status(&sim, OTHER_GPU).quantum_ms, 30_000);

    // The GPU is forgotten with its last program; its setting is not.
    sim.event(Event::Disconnected { client: 1 });
    assert!(sim.sched.status(sim.now).iter().all(|g| g.uuid != GPU));
    let out = join_on(&mut sim, 3, GPU, GIB);
    let welcome = sends(&out).into_iter().find_map(|(_, m)| match m {
        SchedulerMsg::Gpu {
            body: SchedulerBody::Welcome { quantum_ms, .. },
            ..
        } => Some(quantum_ms),
        _ => None,
    });
    assert_eq!(welcome, Some(200));

    // A quantum for every GPU replaces the GPU's own.
    sim.sched.set_quantum(sim.now, Duration::from_secs(5));
    assert_eq!(gpu_status(&sim, GPU).quantum_ms, 5000);
    assert_eq!(gpu_status(&sim, OTHER_GPU).quantum_ms, 5000);
    sim.event(Event::Disconnected { client: 3 });
    join_on(&mut sim, 4, GPU, GIB);
    assert_eq!(gpu_status(&sim, GPU).quantum_ms, 5000);
}

#[test]
fn one_gpus_quantum_moves_only_its_holders_deadline() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    join_on(&mut sim, 1, GPU, 6 * GIB);
    join_on(&mut sim, 2, GPU, 6 * GIB);
    join_on(&mut sim, 3, OTHER_GPU, 6 * GIB);
    join_on(&mut sim, 4, OTHER_GPU, 6 * GIB);
    for (client, gpu) in [(1, GPU), (2, GPU), (3, OTHER_GPU), (4, OTHER_GPU)] {
        sim.msg(client, ClientBody::RequestLock.on(gpu));
    }
    sim.sched
        .set_gpu_quantum(sim.now, OTHER_GPU, Duration::from_secs(1));
    sim.at(2.0);
    let out = sim.tick();
    assert_eq!(drops(&out).len(), 1, "only the sliced GPU's holder");
    assert_eq!(
        gpu_status(&sim, OTHER_GPU)
            .clients
            .iter()
            .find(|c| c.client_id == 3)
            .map(|c| c.state),
        Some(ClientState::Releasing)
    );
    assert_eq!(
        gpu_status(&sim, GPU).clients[0].state,
        ClientState::Running,
        "the other GPU's holder keeps its 30 s"
    );
}

#[test]
fn one_gpus_policy_changes_only_that_gpu() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    for (client, gpu) in [(1, GPU), (2, GPU), (3, OTHER_GPU), (4, OTHER_GPU)] {
        join_on(&mut sim, client, gpu, 2 * GIB);
        sim.msg(client, ClientBody::RequestLock.on(gpu));
    }
    let out = sim.sched.set_gpu_policy(sim.now, GPU, Policy::Exclusive);
    assert_eq!(drops(&out), vec![(2, 0)], "the later holder of that GPU");
    assert_eq!(gpu_status(&sim, GPU).policy, Policy::Exclusive);
    assert_eq!(gpu_status(&sim, OTHER_GPU).policy, Policy::Auto);
    sim.sched.set_policy(sim.now, Policy::Off);
    assert_eq!(gpu_status(&sim, GPU).policy, Policy::Off);
}

#[test]
fn gpus_are_named_by_index_when_known_and_by_uuid_within_bounds() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    // No NVML: UUIDs only, bounded.
    let error = sim.sched.resolve_gpu(GpuSelector::Index(0)).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidArgument);
    assert!(error.message.contains("give the UUID"), "{}", error.message);
    assert_eq!(sim.sched.resolve_gpu(GpuSelector::Uuid(GPU)), Ok(GPU));
    for n in 0..MAX_GPUS {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let uuid = GpuUuid(bytes);
        sim.sched.set_gpu_policy(sim.now, uuid, Policy::Off);
    }
    let error = sim
        .sched
        .resolve_gpu(GpuSelector::Uuid(GpuUuid([0xee; 16])))
        .unwrap_err();
    assert!(error.message.contains("256 GPUs"), "{}", error.message);

    // Known GPUs: by index, and only those (or ones in use).
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.sched
        .know_gpus([(0, OTHER_GPU, 40 * GIB), (1, GPU, 80 * GIB)]);
    assert_eq!(sim.sched.resolve_gpu(GpuSelector::Index(1)), Ok(GPU));
    let error = sim.sched.resolve_gpu(GpuSelector::Index(2)).unwrap_err();
    assert!(error.message.contains("GPUs 0 to 1"), "{}", error.message);
    let stranger = GpuUuid([0x42; 16]);
    let error = sim
        .sched
        .resolve_gpu(GpuSelector::Uuid(stranger))
        .unwrap_err();
    assert!(error.message.contains("not a GPU of this machine"));
    join_on(&mut sim, 1, stranger, GIB);
    assert_eq!(
        sim.sched.resolve_gpu(GpuSelector::Uuid(stranger)),
        Ok(stranger),
        "a GPU a program uses may be set, listed by NVML or not"
    );
}

/// Made-up GPU ids cannot crowd out the GPUs that exist: where NVML listed
/// them, unlisted ids are served only up to a bound, and a listed GPU is
/// served whatever else is attached.
#[test]
fn made_up_gpu_ids_never_crowd_out_the_gpus_nvml_listed() {
    let mut sim = Sim::new(Policy::Auto, 10 * GIB);
    sim.sched.know_gpus([(0, GPU, 80 * GIB)]);
    let mut refused = 0;
    for client in 10..12u64 {
        sim.connect(client);
        for i in 0..MAX_GPUS_PER_CLIENT {
            let mut uuid = [0xee; 16];
            uuid[..8].copy_from_slice(&(client * 1000 + i as u64).to_le_bytes());
            let out = sim.msg(client, attach(GpuUuid(uuid), 0, 0, false));
            if let [(_, SchedulerMsg::Error(e))] = &sends(&out)[..] {
                assert!(e.message.contains("NVML does not list"), "{}", e.message);
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 2 * MAX_GPUS_PER_CLIENT - MAX_UNLISTED_GPUS);
    let out = join_on(&mut sim, 1, GPU, GIB);
    assert!(
        matches!(
            sends(&out)[..],
            [(
                1,
                SchedulerMsg::Gpu {
                    body: SchedulerBody::Welcome { .. },
                    ..
                }
            )]
        ),
        "{out:?}"
    );
    assert_eq!(granted(&sim.request(1)), vec![1]);
}
