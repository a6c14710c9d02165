//! Random scenario steps and how an obeying client plays each.

use super::world::{CAPACITY, GPUS, Mem, World};
use nvshare_proto::{ClientBody, ClientMsg, GpuUuid, JobSettings, Policy};
use nvshare_scheduler::policy::Event;
use proptest::prelude::*;
use std::time::Duration;

/// One step of a random scenario.
#[derive(Debug, Clone)]
pub enum Op {
    Connect,
    Attach {
        who: usize,
        gpu: usize,
        footprint: u64,
    },
    Request {
        who: usize,
        gpu: usize,
    },
    Release {
        who: usize,
        gpu: usize,
    },
    Idle {
        who: usize,
        gpu: usize,
    },
    Resize {
        who: usize,
        gpu: usize,
        footprint: u64,
    },
    Grow {
        who: usize,
        gpu: usize,
        bytes: u64,
    },
    Detach {
        who: usize,
        gpu: usize,
    },
    Disconnect {
        who: usize,
    },
    Advance {
        ms: u64,
    },
    SetPolicy(Policy),
    SetQuantum {
        ms: u64,
    },
    /// A client of a multi-process job connects (gangs).
    ConnectIn {
        group: usize,
    },
    /// A client states its priority and weight on a GPU.
    Settings {
        who: usize,
        gpu: usize,
        priority: i32,
        weight: u32,
    },
    SetGpuPolicy {
        gpu: usize,
        policy: Policy,
    },
    SetGpuQuantum {
        gpu: usize,
        ms: u64,
    },
}

pub fn op(policies: Vec<Policy>) -> impl Strategy<Value = Op> {
    let who = 0usize..8;
    let gpu = 0usize..GPUS.len();
    let policies_again = policies.clone();
    prop_oneof![
        2 => Just(Op::Connect),
        3 => (who.clone(), gpu.clone(), 0..=CAPACITY)
            .prop_map(|(who, gpu, footprint)| Op::Attach { who, gpu, footprint }),
        6 => (who.clone(), gpu.clone()).prop_map(|(who, gpu)| Op::Request { who, gpu }),
        2 => (who.clone(), gpu.clone()).prop_map(|(who, gpu)| Op::Release { who, gpu }),
        2 => (who.clone(), gpu.clone()).prop_map(|(who, gpu)| Op::Idle { who, gpu }),
        2 => (who.clone(), gpu.clone(), 0..=CAPACITY)
            .prop_map(|(who, gpu, footprint)| Op::Resize { who, gpu, footprint }),
        3 => (who.clone(), gpu.clone(), 1..=CAPACITY / 2)
            .prop_map(|(who, gpu, bytes)| Op::Grow { who, gpu, bytes }),
        1 => (who.clone(), gpu.clone()).prop_map(|(who, gpu)| Op::Detach { who, gpu }),
        1 => who.clone().prop_map(|who| Op::Disconnect { who }),
        5 => (0u64..2_000).prop_map(|ms| Op::Advance { ms }),
        1 => proptest::sample::select(policies_again).prop_map(Op::SetPolicy),
        1 => (1u64..1_500).prop_map(|ms| Op::SetQuantum { ms }),
        1 => (0usize..2).prop_map(|group| Op::ConnectIn { group }),
        1 => (who.clone(), gpu.clone(), -2i32..=2, 1u32..=3)
            .prop_map(|(who, gpu, priority, weight)| Op::Settings { who, gpu, priority, weight }),
        1 => (gpu.clone(), proptest::sample::select(policies))
            .prop_map(|(gpu, policy)| Op::SetGpuPolicy { gpu, policy }),
        1 => (gpu, 1u64..1_500).prop_map(|(gpu, ms)| Op::SetGpuQuantum { gpu, ms }),
    ]
}

/// Plays `op` the way an obeying client would.
pub fn play(world: &mut World, op: Op) {
    match op {
        Op::Connect => {
            world.connect();
        }
        Op::Attach {
            who,
            gpu,
            footprint,
        } => {
            let (Some(id), gpu) = (world.pick(who), GPUS[gpu]) else {
                return;
            };
            if world.clients[&id].contains_key(&gpu) {
                return;
            }
            let mem = Mem {
                footprint,
                ..Mem::default()
            };
            world.clients.get_mut(&id).unwrap().insert(gpu, mem);
            let physical_memory = CAPACITY;
            let attach = ClientBody::Attach {
                physical_memory,
                footprint,
                resident: 0,
                holding: false,
            }
            .on(gpu);
            world.send(id, attach);
        }
        Op::Request { who, gpu } => {
            let (Some(id), gpu) = (world.pick(who), GPUS[gpu]) else {
                return;
            };
            let now = world.now;
            let Some(mem) = world.clients.get_mut(&id).unwrap().get_mut(&gpu) else {
                return;
            };
            if mem.holding || mem.waiting_since.is_some() {
                return;
            }
            mem.waiting_since = Some(now);
            world.send(id, ClientBody::RequestLock.on(gpu));
        }
        Op::Release { who, gpu } => {
            let (Some(id), gpu) = (world.pick(who), GPUS[gpu]) else {
                return;
            };
            let Some(mem) = world.clients.get_mut(&id).unwrap().get_mut(&gpu) else {
                return;
            };
            if !mem.holding || world.always_busy {
                return;
            }
            mem.holding = false;
            let resident = mem.resident;
            world.send(id, ClientBody::LockReleased { resident }.on(gpu));
        }
        Op::Idle { who, gpu } => {
            let (Some(id), gpu) = (world.pick(who), GPUS[gpu]) else {
                return;
            };
            if world.clients[&id].get(&gpu).is_some_and(|m| m.holding) {
                world.send(id, ClientBody::Idle.on(gpu));
            }
        }
        Op::Resize {
            who,
            gpu,
            footprint,
        } => {
            // A client changes its allocations only while it holds nothing
            // and waits for nothing (so a grant's check sees them).
            let (Some(id), gpu) = (world.pick(who), GPUS[gpu]) else {
                return;
            };
            let Some(mem) = world.clients.get_mut(&id).unwrap().get_mut(&gpu) else {
                return;
            };
            if mem.holding || mem.waiting_since.is_some() {
                return;
            }
            mem.footprint = footprint;
            mem.resident = mem.resident.min(footprint);
            let resident = mem.resident;
            world.send(
                id,
                ClientBody::Usage {
                    footprint,
                    resident,
                }
                .on(gpu),
            );
        }
        Op::Grow { who, gpu, bytes } => {
            // A holder allocates: within its room at once, past it only
            // once the scheduler has reserved the room (as the hook does);
            // never past the capacity (the hook refuses that with an OOM).
            let (Some(id), gpu) = (world.pick(who), GPUS[gpu]) else {
                return;
            };
            let Some(mem) = world.clients.get_mut(&id).unwrap().get_mut(&gpu) else {
                return;
            };
            let footprint = mem.footprint + bytes;
            if !mem.holding || mem.dropping || mem.growing > 0 || footprint > CAPACITY {
                return;
            }
            if footprint <= mem.room {
                mem.footprint = footprint;
                mem.resident += bytes;
                let resident = mem.resident;
                world.send(
                    id,
                    ClientBody::Usage {
                        footprint,
                        resident,
                    }
                    .on(gpu),
                );
            } else {
                mem.growing = bytes;
                world.send(id, ClientBody::Reserve { footprint }.on(gpu));
            }
        }
        Op::Detach { who, gpu } => {
            let (Some(id), gpu) = (world.pick(who), GPUS[gpu]) else {
                return;
            };
            if world.clients[&id].contains_key(&gpu) {
                // The client's answers held back go first, and the scheduler
                // may answer them about this GPU: the model forgets the GPU
                // after they are delivered, before the Detach.
                world.deliver_held(id);
                world.drain();
                world.clients.get_mut(&id).unwrap().remove(&gpu);
                world.send(id, ClientBody::Detach.on(gpu));
            }
        }
        Op::Disconnect { who } => {
            let Some(id) = world.pick(who) else { return };
            world.clients.remove(&id);
            world.gone.insert(id);
            world.feed(Event::Disconnected { client: id });
            world.drain();
        }
        Op::Advance { ms } => {
            let target = world.now + Duration::from_millis(ms);
            world.advance_to(target);
        }
        Op::SetPolicy(policy) => {
            world.policy = policy;
            world.gpu_policies.clear();
            if policy == Policy::Off {
                world.check_memory = false;
            }
            let now = world.now;
            let actions = world.decide(|sched| sched.set_policy(now, policy));
            world.apply(actions);
            world.drain();
        }
        Op::SetQuantum { ms } => {
            world.quantum = Duration::from_millis(ms);
            let (now, quantum) = (world.now, world.quantum);
            let actions = world.decide(|sched| sched.set_quantum(now, quantum));
            world.apply(actions);
            world.drain();
        }
        Op::ConnectIn { group } => {
            world.connect_in(Some(format!("job-{group}")));
        }
        Op::Settings {
            who,
            gpu,
            priority,
            weight,
        } => {
            let (Some(id), gpu) = (world.pick(who), GPUS[gpu]) else {
                return;
            };
            if world.clients[&id].contains_key(&gpu) {
                let settings = JobSettings {
                    memory_limit: None,
                    priority,
                    weight,
                };
                world.send(id, ClientBody::JobSettings(settings).on(gpu));
            }
        }
        Op::SetGpuPolicy { gpu, policy } => {
            if policy == Policy::Off {
                world.check_memory = false;
            }
            let (now, gpu) = (world.now, GPUS[gpu]);
            world.gpu_policies.insert(gpu, policy);
            let actions = world.decide(|sched| sched.set_gpu_policy(now, gpu, policy));
            world.apply(actions);
            world.drain();
        }
        Op::SetGpuQuantum { gpu, ms } => {
            let (now, gpu) = (world.now, GPUS[gpu]);
            let quantum = Duration::from_millis(ms);
            let actions = world.decide(|sched| sched.set_gpu_quantum(now, gpu, quantum));
            world.apply(actions);
            world.drain();
        }
    }
}

/// A message a confused or hostile client might send.
pub fn nonsense() -> impl Strategy<Value = ClientMsg> {
    let gpu = prop_oneof![Just(GPUS[0]), Just(GPUS[1]), Just(GpuUuid([3; 16]))];
    let n = 0..=2 * CAPACITY;
    prop_oneof![
        (gpu.clone(), n.clone(), n.clone(), n.clone(), any::<bool>()).prop_map(
            |(gpu, physical_memory, footprint, resident, holding)| ClientMsg {
                gpu,
                body: ClientBody::Attach {
                    physical_memory,
                    footprint,
                    resident,
                    holding
                }
            }
        ),
        (gpu.clone(), n.clone(), n.clone()).prop_map(|(gpu, footprint, resident)| {
            ClientBody::Usage {
                footprint,
                resident,
            }
            .on(gpu)
        }),
        gpu.clone().prop_map(|gpu| ClientMsg {
            gpu,
            body: ClientBody::RequestLock
        }),
        (gpu.clone(), n.clone()).prop_map(|(gpu, resident)| ClientMsg {
            gpu,
            body: ClientBody::LockReleased { resident }
        }),
        gpu.clone().prop_map(|gpu| ClientMsg {
            gpu,
            body: ClientBody::Idle
        }),
        (gpu.clone(), n.clone()).prop_map(|(gpu, footprint)| ClientMsg {
            gpu,
            body: ClientBody::Reserve { footprint }
        }),
        (gpu.clone(), n.clone(), n.clone()).prop_map(|(gpu, bytes, resident)| ClientMsg {
            gpu,
            body: ClientBody::Evicted {
                bytes,
                resident,
                elapsed_us: 1
            }
        }),
        (gpu.clone(), n.clone(), n.clone()).prop_map(|(gpu, bytes, resident)| {
            ClientBody::Restored {
                bytes,
                resident,
                elapsed_us: 1,
            }
            .on(gpu)
        }),
        (gpu.clone(), n).prop_map(|(gpu, resident)| ClientMsg {
            gpu,
            body: ClientBody::EvictFailed {
                resident,
                reason: "no host memory".into()
            }
        }),
        gpu.prop_map(|gpu| ClientMsg {
            gpu,
            body: ClientBody::Detach
        }),
    ]
}
