//! Gangs: programs, or GPUs of one program, that must run at the same time.
//!
//! A job whose ranks wait for each other in collectives (PyTorch DDP over
//! NCCL: one process per GPU, one group) makes no progress while any rank
//! is off its GPU, and two such jobs granted crosswise (job A on GPU 0, job
//! B on GPU 1) hold each other up. So the members of a gang that wait
//! together are granted together:
//! - A gang is a client's group (`Hello`'s `group`: `NVSHARE_GROUP`, or the
//!   torch.distributed rendezvous), or else the client alone, which is a
//!   gang across the GPUs it uses.
//! - Every queue is ordered by ticket (arrival, moved ahead by the gang's
//!   priority: the highest of its members'). A gang that waits on several GPUs,
//!   one member on each ("spanning"), stands everywhere at the place of its
//!   oldest waiting member: no two gangs can each be ahead of the other on
//!   different GPUs.
//! - A member of a spanning gang is not granted when its turn comes: it is
//!   marked ready (`grant::schedule`), and once the gang's member on each
//!   of its GPUs is ready, all of them are granted at once here. Members
//!   still waiting with that turn's ticket then take new ones, so a gang
//!   cannot keep its place for ever.
//!
//! Members that do not wait together, and gangs with several members
//! waiting on one GPU, are lined up one by one as before; a collective that
//! then waits for a peer is left to the drain timeout (see `grant`). With
//! no group and no program on several GPUs, none of this runs.

use super::member::Ticket;
use super::{Action, grant};
use super::{Client, Scheduler};
use nvshare_proto::{ClientId, GpuUuid};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Who runs together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum GangKey {
    /// The clients that named this group.
    Group(String),
    /// One client without a group: its own GPUs.
    Solo(ClientId),
}

impl Scheduler {
    fn gang_key(&self, client: ClientId) -> GangKey {
        match self.clients.get(&client).and_then(|c| c.group.clone()) {
            Some(group) => GangKey::Group(group),
            None => GangKey::Solo(client),
        }
    }

    /// Runs the schedule of every GPU due (see `sweep`), then grants the
    /// gangs that are ready everywhere, until nothing more can be granted.
    pub(super) fn settle(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.recovering(now) {
            return;
        }
        loop {
            self.sweep.wake_due(now);
            if self.full_sweeps {
                self.sweep.touch_all(self.domains.keys().copied());
            }
            let gangs = self.line_up(now);
            while let Some(gpu) = self.sweep.take_next() {
                if let Some(d) = self.domains.get_mut(&gpu) {
                    grant::schedule(d, now, out);
                    self.sweep.set_wakeup(gpu, grant::next_deadline(d));
                    self.sweep.set_queued(gpu, !d.queue.is_empty());
                }
            }
            if !gangs || !self.grant_ready_gangs(now, out) {
                break;
            }
        }
    }

    /// Gives tickets to members that joined a queue since the last event,
    /// re-sorts the queues, and marks the members of gangs that wait on
    /// several GPUs, one member on each (one rank per GPU, or one program's
    /// GPUs). Such a member takes the ticket of its gang's members waiting
    /// on the other GPUs (it will run with them), else a new one. A gang
    /// with several members waiting on one GPU is not granted as a whole
    /// (they could not all be at the head of that queue): its members line
    /// up one by one, and the drain timeout resolves what waits on whom.
    /// Returns whether there are gangs at all; where there are, every GPU
    /// somebody waits on is due (its order may have changed).
    fn line_up(&mut self, now: Duration) -> bool {
        let step = self.config.quantum;
        if self.gang_makers.is_empty() {
            // No gangs (the common case, and the daemon's hot path): every
            // newcomer takes the next ticket; a queue is sorted only when
            // one does (a priority may put it ahead of others). A newcomer's
            // request made its GPU due, so only those are looked at.
            for gpu in self.sweep.due() {
                let Some(d) = self.domains.get_mut(&gpu) else {
                    continue;
                };
                let mut issued = false;
                for id in &d.queue {
                    if let Some(m) = d.members.get_mut(id) {
                        m.co_waiters = false;
                        if m.ticket.is_none() {
                            self.next_ticket += 1;
                            m.ticket = Some(Ticket::issue(now, m.priority, step, self.next_ticket));
                            issued = true;
                        }
                    }
                }
                if issued {
                    d.sort_queue();
                }
            }
            return false;
        }
        // Only GPUs somebody waits on matter here: the others, however
        // many, cost nothing.
        let queued: Vec<GpuUuid> = self
            .sweep
            .maybe_queued()
            .filter(|gpu| self.domains.get(gpu).is_some_and(|d| !d.queue.is_empty()))
            .collect();
        // Per gang, per GPU it waits on: how many members, the oldest ticket.
        let mut waiting: BTreeMap<GangKey, BTreeMap<GpuUuid, (usize, Option<Ticket>)>> =
            BTreeMap::new();
        for gpu in &queued {
            let d = &self.domains[gpu];
            for id in &d.queue {
                let ticket = d.members[id].ticket;
                let (count, oldest) = waiting
                    .entry(self.gang_key(*id))
                    .or_default()
                    .entry(*gpu)
                    .or_insert((0, ticket));
                *count += 1;
                *oldest = match (*oldest, ticket) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        let priorities = self.gang_priorities(waiting.keys());
        let keys: BTreeMap<ClientId, GangKey> = queued
            .iter()
            .flat_map(|gpu| self.domains[gpu].queue.iter())
            .map(|&c| (c, self.gang_key(c)))
            .collect();
        let spans = |gpus: &BTreeMap<GpuUuid, (usize, Option<Ticket>)>| {
            gpus.len() > 1 && gpus.values().all(|&(count, _)| count == 1)
        };
        for gpu in &queued {
            let d = self.domains.get_mut(gpu).expect("queued GPUs exist");
            let queue: Vec<ClientId> = d.queue.iter().copied().collect();
            for id in queue {
                let key = &keys[&id];
                let gang = waiting.get_mut(key).expect("every queued member counted");
                let spanning = spans(gang);
                let m = d.members.get_mut(&id).expect("queued members are members");
                if m.ticket.is_none() {
                    let shared = spanning
                        .then(|| {
                            gang.iter()
                                .filter(|(g, _)| *g != gpu)
                                .filter_map(|(_, s)| s.1)
                                .min()
                        })
                        .flatten();
                    let ticket = shared.unwrap_or_else(|| {
                        self.next_ticket += 1;
                        let priority = priorities.get(key).copied().unwrap_or(m.priority);
                        Ticket::issue(now, priority, step, self.next_ticket)
                    });
                    m.ticket = Some(ticket);
                    // Members of the gang queued later on other GPUs share it.
                    if let Some(slot) = gang.get_mut(gpu) {
                        slot.1 = Some(slot.1.map_or(ticket, |t| t.min(ticket)));
                    }
                }
                m.co_waiters = spanning;
            }
        }
        // A spanning gang stands where its oldest member stands, in every
        // queue alike: then the gang with the oldest ticket is at the head
        // of every queue it waits in, and no two gangs wait for each other.
        for gpu in &queued {
            let d = self.domains.get_mut(gpu).expect("queued GPUs exist");
            for id in &d.queue {
                let gpus = &waiting[&keys[id]];
                if !spans(gpus) {
                    continue;
                }
                let oldest = gpus.values().filter_map(|&(_, t)| t).min();
                if let Some(m) = d.members.get_mut(id) {
                    m.ticket = oldest.or(m.ticket);
                }
            }
            d.sort_queue();
        }
        // Gangs order every queue alike: each GPU somebody waits on is due.
        self.sweep.touch_all(queued);
        true
    }

    /// The priority each of `gangs` stands in line with: the highest of its
    /// members' on any GPU. Its members must agree on one: with each its
    /// own, two gangs could each be ahead of the other on different GPUs.
    fn gang_priorities<'a>(
        &self,
        gangs: impl Iterator<Item = &'a GangKey>,
    ) -> BTreeMap<GangKey, i32> {
        let mut priorities = BTreeMap::new();
        for key in gangs {
            let members: Vec<(ClientId, &Client)> = match key {
                GangKey::Solo(client) => self
                    .clients
                    .get(client)
                    .map(|c| (*client, c))
                    .into_iter()
                    .collect(),
                GangKey::Group(group) => self
                    .clients
                    .iter()
                    .filter(|(_, c)| c.group.as_ref() == Some(group))
                    .map(|(&id, c)| (id, c))
                    .collect(),
            };
            let highest = members
                .iter()
                .flat_map(|(id, c)| {
                    c.gpus
                        .iter()
                        .filter_map(|gpu| self.domains.get(gpu)?.members.get(id))
                })
                .map(|m| m.priority)
                .max();
            if let Some(priority) = highest {
                priorities.insert(key.clone(), priority);
            }
        }
        priorities
    }

    /// Grants every gang whose first waiting member on each of its GPUs is
    /// at the head of that GPU's queue and ready; returns whether any was.
    fn grant_ready_gangs(&mut self, now: Duration, out: &mut Vec<Action>) -> bool {
        let queued: Vec<GpuUuid> = self.sweep.maybe_queued().collect();
        // Per gang, per GPU: is its first waiting member there ready?
        let mut seats: BTreeMap<GangKey, BTreeMap<GpuUuid, (ClientId, bool)>> = BTreeMap::new();
        for gpu in &queued {
            let Some(d) = self.domains.get(gpu) else {
                continue;
            };
            for (place, id) in d.queue.iter().enumerate() {
                let m = &d.members[id];
                if !m.co_waiters {
                    continue;
                }
                seats
                    .entry(self.gang_key(*id))
                    .or_default()
                    .entry(*gpu)
                    .or_insert((*id, place == 0 && m.gang_ready));
            }
        }
        let mut turns = Vec::new();
        for (key, gang) in seats {
            if gang.len() < 2 || !gang.values().all(|&(_, ready)| ready) {
                continue;
            }
            let mut tickets = BTreeSet::new();
            for (gpu, (client, _)) in gang {
                if let Some(d) = self.domains.get_mut(&gpu) {
                    tickets.extend(d.members.get(&client).and_then(|m| m.ticket));
                    d.grant(client, now, out);
                    self.sweep.touch(gpu);
                }
            }
            turns.push((key, tickets));
        }
        // The turn is taken: members still waiting with its ticket get new
        // ones (behind those who waited meanwhile), or a group with several
        // members on one GPU would keep its place in line for ever.
        for (key, tickets) in &turns {
            for gpu in &queued {
                let Some(d) = self.domains.get(gpu) else {
                    continue;
                };
                let members: Vec<ClientId> = d
                    .queue
                    .iter()
                    .copied()
                    .filter(|&c| self.gang_key(c) == *key)
                    .collect();
                let d = self.domains.get_mut(gpu).expect("looked up above");
                for id in members {
                    if let Some(m) = d.members.get_mut(&id)
                        && m.ticket.is_some_and(|t| tickets.contains(&t))
                    {
                        m.ticket = None;
                    }
                }
            }
        }
        !turns.is_empty()
    }
}
