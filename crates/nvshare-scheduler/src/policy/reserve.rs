//! Room for holders that grow while they hold the lock.
//!
//! A holder may allocate up to its room (the footprint its grant was decided
//! on) without asking. An allocation past it waits for a `Reserved` answer
//! to `Reserve`, so memory is never made on the GPU before the scheduler has
//! made room for it: holders in the way are dropped (the most recently
//! granted first; the requester itself if it is the newest), and programs
//! that do not run are asked to move out what is still resident. Each answer
//! adds some headroom from memory nobody claims, so a growing program asks a
//! few times, not once per allocation.
//!
//! Invariant: under `auto`, the reservations of running holders fit the
//! capacity together whenever more than one runs.

use super::domain::Domain;
use super::evictions::ask_evictions;
use super::{Action, member::Member};
use nvshare_proto::{ClientId, ClientState, Policy, SchedulerBody};
use std::time::Duration;

/// Serves the pending reservations of `d`'s running holders, oldest grant
/// first. Returns whether some are still waiting (for releases or
/// evictions): new grants wait behind them.
pub(super) fn serve(d: &mut Domain, now: Duration, out: &mut Vec<Action>) -> bool {
    let mut asking: Vec<(Duration, ClientId)> = d
        .members
        .values()
        .filter(|m| m.state == ClientState::Running && m.wants_room > 0)
        .map(|m| (m.granted_at, m.client))
        .collect();
    asking.sort();
    for (_, client) in asking {
        serve_one(d, client, now, out);
    }
    d.members
        .values()
        .any(|m| m.state == ClientState::Running && m.wants_room > 0)
}

fn serve_one(d: &mut Domain, client: ClientId, now: Duration, out: &mut Vec<Action>) {
    let Some(m) = d.members.get(&client) else {
        return;
    };
    if m.state != ClientState::Running || m.wants_room == 0 {
        // An earlier reservation dropped it.
        return;
    }
    let want = m.wants_room.max(m.reservation());
    if d.policy == Policy::Off {
        give_room(d, client, want, out);
        return;
    }
    if d.policy == Policy::Auto && make_way(d, client, want, now, out) {
        return;
    }
    let capacity = d.capacity;
    // The holders fit; memory of programs that do not run must be off the
    // GPU before the allocation is made there.
    // Memory being fetched is as good as there.
    let settled = occupied_by_others(d, client, |m| m.resident.saturating_add(m.incoming()));
    if settled.saturating_add(want) <= capacity {
        give_room(d, client, want, out);
        return;
    }
    let pending = occupied_by_others(d, client, Member::resident_after_evictions);
    let uncovered = ask_evictions(d, None, (pending + want).saturating_sub(capacity), out);
    let nothing_coming = d
        .members
        .values()
        .all(|m| m.resident_after_evictions() == m.resident);
    let releasing = d
        .members
        .values()
        .any(|m| m.state == ClientState::Releasing);
    if uncovered > 0 && nothing_coming && !releasing {
        // Nobody can free the memory (evictions refused, or one program
        // alone wants more than the capacity): running oversubscribed beats
        // an allocation that waits forever, as for a grant.
        give_room(d, client, want, out);
    }
}

/// Drops the running holders in the way of `client` growing to `want`,
/// most recently granted first, as far as the fit needs (the oldest always
/// stays). Returns whether it dropped any (then `client` waits for them, or
/// was dropped itself and asks for the lock again).
fn make_way(
    d: &mut Domain,
    client: ClientId,
    want: u64,
    now: Duration,
    out: &mut Vec<Action>,
) -> bool {
    let capacity = d.capacity;
    let claim_of = |m: &Member| {
        if m.client == client {
            want.min(capacity)
        } else {
            m.reservation().min(capacity)
        }
    };
    let mut total = d
        .holders()
        .fold(0u64, |sum, m| sum.saturating_add(claim_of(m)));
    let mut running: Vec<&Member> = d
        .members
        .values()
        .filter(|m| m.state == ClientState::Running)
        .collect();
    running.sort_by_key(|m| (m.granted_at, m.client));
    let mut victims = Vec::new();
    while total > capacity && running.len() > 1 {
        let Some(newest) = running.pop() else { break };
        total = total.saturating_sub(claim_of(newest));
        victims.push(newest.client);
    }
    for &victim in &victims {
        // Those that give way take what they hold off the GPU with them,
        // as much as the requester will need.
        let resident = d.members[&victim].resident;
        let after: u64 = d
            .members
            .values()
            .map(|m| {
                if m.client == client {
                    want.max(m.resident)
                } else {
                    m.resident_after_evictions()
                }
            })
            .fold(0u64, u64::saturating_add);
        let evict = if victim == client {
            0
        } else {
            after.saturating_sub(capacity).min(resident)
        };
        d.drop_lock(victim, evict, "room needed by a holder", now, out);
    }
    !victims.is_empty()
}

/// Memory `client`'s growth must fit beside: the other holders' claims and
/// what the programs that do not run occupy (`resident` of each).
fn occupied_by_others(d: &Domain, client: ClientId, resident: impl Fn(&Member) -> u64) -> u64 {
    d.members
        .values()
        .filter(|m| m.client != client)
        .map(|m| {
            if m.is_holder() {
                m.holder_claim(d.capacity)
            } else {
                resident(m)
            }
        })
        .fold(0u64, u64::saturating_add)
}

/// Grants `client` room for `want` plus headroom from memory no one else
/// claims: a quarter of `want`, at least 1/32 of the capacity, no more than
/// is free now nor past the job's own memory limit. Memory others are still moving out is not free: the holder
/// grows into its room without asking, so headroom counted from an
/// eviction under way lets it allocate before the copies end and fill the
/// GPU past its capacity.
fn give_room(d: &mut Domain, client: ClientId, want: u64, out: &mut Vec<Action>) {
    let capacity = d.capacity;
    let free = capacity
        .saturating_sub(occupied_by_others(d, client, |m| {
            m.resident.saturating_add(m.incoming())
        }))
        .saturating_sub(want);
    let Some(m) = d.members.get_mut(&client) else {
        return;
    };
    // Never past the job's own limit: room it cannot use would only keep
    // others out (jobs whose limits fit together then never need a drop
    // to grow).
    let allowed = m
        .memory_limit
        .map_or(u64::MAX, |limit| limit.saturating_sub(want));
    let headroom = (want / 4).max(capacity / 32).min(free).min(allowed);
    m.room = want.saturating_add(headroom);
    m.wants_room = 0;
    out.push(Action::Send {
        client,
        msg: SchedulerBody::Reserved { room: m.room }.on(d.uuid),
    });
}
