//! Behaviour tests of the policy with simulated time: a small harness here,
//! the tests by theme in the submodules.

mod drain;
mod fetch;
mod gang;
mod lifecycle;
mod memory;
mod priority;
mod recovery;
mod reserve;
mod settings;
mod time_slicing;

use super::*;
use nvshare_proto::{ClientBody, ClientState, ClientStatus, SchedulerBody};

pub(super) use nvshare_proto::units::GIB;
pub(super) const GPU: GpuUuid = GpuUuid([7; 16]);
pub(super) const OTHER_GPU: GpuUuid = GpuUuid([9; 16]);
pub(super) const QUANTUM: Duration = Duration::from_secs(30);

/// A scheduler driven with simulated time.
pub(super) struct Sim {
    sched: Scheduler,
    now: Duration,
}

impl Sim {
    fn new(policy: Policy, capacity: u64) -> Self {
        Sim {
            sched: Scheduler::new(PolicyConfig {
                policy,
                quantum: QUANTUM,
                memory_capacity: Some(capacity),
                memory_reserve: 0,
                drain_timeout: Duration::from_secs(10),
                restore_ahead: true,
                recovery_grace: Duration::from_secs(3),
            }),
            now: Duration::ZERO,
        }
    }

    fn at(&mut self, secs: f64) -> &mut Self {
        self.now = Duration::from_secs_f64(secs);
        self
    }

    fn event(&mut self, event: Event) -> Vec<Action> {
        self.sched.handle(self.now, event)
    }

    fn msg(&mut self, client: ClientId, msg: ClientMsg) -> Vec<Action> {
        self.event(Event::Message { client, msg })
    }

    /// Connects `client` and attaches it to [`GPU`] with `footprint` bytes,
    /// none of it resident yet.
    fn join(&mut self, client: ClientId, footprint: u64) -> Vec<Action> {
        self.event(Event::Connected {
            client,
            pid: 1000 + client as u32,
            name: format!("job{client}"),
            group: None,
        });
        self.msg(client, attach(GPU, footprint, 0, false))
    }

    /// Connects `client` without attaching any GPU.
    fn connect(&mut self, client: ClientId) {
        self.event(Event::Connected {
            client,
            pid: 1000 + client as u32,
            name: format!("job{client}"),
            group: None,
        });
    }

    fn request(&mut self, client: ClientId) -> Vec<Action> {
        self.msg(client, ClientBody::RequestLock.on(GPU))
    }

    fn release(&mut self, client: ClientId, resident: u64) -> Vec<Action> {
        self.msg(client, ClientBody::LockReleased { resident }.on(GPU))
    }

    /// `client` reports `footprint` bytes allocated, all resident (as a
    /// granted client does once it has restored its memory).
    fn fully_resident(&mut self, client: ClientId, footprint: u64) -> Vec<Action> {
        self.msg(
            client,
            ClientBody::Usage {
                footprint,
                resident: footprint,
            }
            .on(GPU),
        )
    }

    fn tick(&mut self) -> Vec<Action> {
        self.event(Event::Tick)
    }

    fn state(&self, client: ClientId) -> ClientState {
        self.client_status(client).state
    }

    fn client_status(&self, client: ClientId) -> ClientStatus {
        self.sched.status(self.now)[0]
            .clients
            .iter()
            .find(|c| c.client_id == client)
            .cloned()
            .expect("client attached")
    }
}

pub(super) fn attach(gpu: GpuUuid, footprint: u64, resident: u64, holding: bool) -> ClientMsg {
    ClientBody::Attach {
        physical_memory: 80 * GIB,
        footprint,
        resident,
        holding,
    }
    .on(gpu)
}

pub(super) fn sends(actions: &[Action]) -> Vec<(ClientId, SchedulerMsg)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { client, msg } => Some((*client, msg.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn granted(actions: &[Action]) -> Vec<ClientId> {
    sends(actions)
        .into_iter()
        .filter(|(_, m)| {
            matches!(
                m,
                SchedulerMsg::Gpu {
                    body: SchedulerBody::LockGranted { .. },
                    ..
                }
            )
        })
        .map(|(c, _)| c)
        .collect()
}

pub(super) fn drops(actions: &[Action]) -> Vec<(ClientId, u64)> {
    sends(actions)
        .into_iter()
        .filter_map(|(c, m)| match m {
            SchedulerMsg::Gpu {
                body: SchedulerBody::DropLock { evict_bytes, .. },
                ..
            } => Some((c, evict_bytes)),
            _ => None,
        })
        .collect()
}

pub(super) fn fetches(actions: &[Action]) -> Vec<(ClientId, u64)> {
    sends(actions)
        .into_iter()
        .filter_map(|(c, m)| match m {
            SchedulerMsg::Gpu {
                body: SchedulerBody::Fetch { bytes, .. },
                ..
            } => Some((c, bytes)),
            _ => None,
        })
        .collect()
}

pub(super) fn evicts(actions: &[Action]) -> Vec<(ClientId, u64)> {
    sends(actions)
        .into_iter()
        .filter_map(|(c, m)| match m {
            SchedulerMsg::Gpu {
                body: SchedulerBody::Evict { bytes, .. },
                ..
            } => Some((c, bytes)),
            _ => None,
        })
        .collect()
}
