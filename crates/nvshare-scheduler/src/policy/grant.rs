//! The decisions: whom to grant next on a GPU, whom to drop for it, and how
//! many bytes to ask each client to evict.
//!
//! The queue is in ticket order: first come, first served, a job of
//! priority `p` standing as if it had asked `p` steps earlier (see
//! `member::Ticket`); nobody is granted past a head that does not fit, so
//! nobody starves. A holder's time slice is its weight in quanta, and a
//! holder of a higher priority than the head keeps the GPU past it until
//! the head has waited as long as that priority is worth
//! ([`gives_way_at`]): a waiter of priority `p` among jobs of priorities up
//! to `P` is granted within `(P - p)` steps plus one time slice of each of
//! the others (the policy's property tests check it). The head is granted once its
//! footprint fits beside the holders' (auto), or nobody holds (exclusive),
//! and the memory it needs is free on the GPU. Holders in its way are
//! dropped when their quantum ends (at once if they said they are idle), and
//! evictions are asked of the least recently run non-holders first, then of
//! the dropped holders, only as many bytes as the head needs.
//!
//! One exception to waiting for holders: a drain that has not finished
//! within the drain timeout is stuck in work that waits for another program
//! (an NCCL collective whose peer is queued behind someone on its own GPU).
//! The head then runs beside the stuck holder if the GPU physically has
//! room: that is what lets the peer's collective, and so the drain, finish.

use super::domain::Domain;
use super::evictions::ask_evictions;
use super::member::Member;
use super::reserve;
use super::{Action, Record};
use nvshare_proto::{ClientId, ClientState, Policy, SchedulerBody};
use std::time::Duration;

/// Grants, drops and evicts on `d` as far as the state allows at `now`.
/// A GPU is scheduled only when it changes or its deadline passes (see
/// `sweep`): what this decides must not depend on anything else.
pub(super) fn schedule(d: &mut Domain, now: Duration, out: &mut Vec<Action>) {
    if d.policy == Policy::Off {
        while let Some(&head) = d.queue.front() {
            d.grant(head, now, out);
        }
    }
    for m in d.members.values_mut() {
        m.gang_ready = false;
    }
    hint_oversubscribed(d, out);
    // Holders already run: their growth goes before newcomers, who would
    // otherwise be granted the room a holder waits for and dropped again.
    let reserving = reserve::serve(d, now, out);
    while let Some(&head) = d.queue.front() {
        if reserving {
            break;
        }
        let leaving = plan_leaving(d, head);
        if leaving.is_empty() {
            if shortage(d, head, &[], Credit::Settled) == 0 {
                if d.grant_or_hold(head, now, out) {
                    continue;
                }
                break;
            }
            let wanted = shortage(d, head, &[], Credit::Pending);
            let uncovered = ask_evictions(d, Some(head), wanted, out);
            let nothing_coming = d
                .members
                .values()
                .all(|m| m.resident_after_evictions() == m.resident);
            if uncovered > 0 && nothing_coming && d.holders().next().is_none() {
                // Nobody can free the memory (evictions failed): letting the
                // head run oversubscribed beats a GPU left idle forever.
                if d.grant_or_hold(head, now, out) {
                    continue;
                }
                break;
            }
            break;
        }
        if let_in_beside_overdue_drains(d, head, &leaving, now, out) {
            continue;
        }
        let running: Vec<ClientId> = leaving
            .iter()
            .copied()
            .filter(|id| d.members[id].state == ClientState::Running)
            .collect();
        if !running
            .iter()
            .all(|id| now >= gives_way_at(d, &d.members[id], head))
        {
            hint_leaving(d, head, &leaving, &running, out);
            // Some holder in the way still has quantum left: idle ones give
            // way now, the rest together when the last quantum ends.
            let idle: Vec<ClientId> = running
                .into_iter()
                .filter(|id| d.members[id].idle_hint)
                .collect();
            for id in idle {
                d.drop_lock(id, 0, "idle holder", now, out);
            }
            break;
        }
        let mut wanted = shortage(d, head, &leaving, Credit::Pending);
        wanted = ask_evictions(d, Some(head), wanted, out);
        for id in running {
            let m = &d.members[&id];
            let evict = wanted.min(m.resident);
            wanted -= evict;
            let reason = if m.idle_hint {
                "idle holder"
            } else {
                "quantum expired"
            };
            d.drop_lock(id, evict, reason, now, out);
        }
        break;
    }
    if d.queue.is_empty() {
        d.drop_started = None;
    }
    drop_overcommitted_holders(d, now, out);
    give_back_excess(d, out);
    // Holders granted just now are told too, in this pass rather than at
    // whatever event comes next.
    hint_oversubscribed(d, out);
    super::fetch::fetch_ahead(d, out);
}

/// On a GPU whose programs' footprints do not fit its capacity together,
/// every running holder will be asked to move memory out sooner or later
/// (a waiter's turn, another holder's growth): each is told at once how
/// much that will be at most (the excess, up to what it has), so that its
/// host room is made while it runs, however its hold ends.
fn hint_oversubscribed(d: &mut Domain, out: &mut Vec<Action>) {
    if d.policy == Policy::Off {
        return;
    }
    let total = d
        .members
        .values()
        .fold(0u64, |sum, m| sum.saturating_add(m.footprint));
    let excess = total.saturating_sub(d.capacity);
    if excess == 0 {
        return;
    }
    let gpu = d.uuid;
    for m in d.members.values_mut() {
        let bytes = excess.min(m.resident);
        if m.state == ClientState::Running && bytes > m.prepared {
            m.prepared = bytes;
            out.push(Action::Send {
                client: m.client,
                msg: SchedulerBody::Prepare { bytes }.on(gpu),
            });
        }
    }
}

/// Tells the running holders in `head`'s way how much they will be asked
/// to move out when their quanta end (what the non-holders cannot free),
/// once per hold or when it grows, so that they make the host room for it
/// while they still run: the first eviction of a program otherwise spends
/// seconds populating and pinning host memory on the switch path.
fn hint_leaving(
    d: &mut Domain,
    head: ClientId,
    leaving: &[ClientId],
    running: &[ClientId],
    out: &mut Vec<Action>,
) {
    let wanted = shortage(d, head, leaving, Credit::Pending);
    let from_others = d
        .members
        .values()
        .filter(|m| {
            m.client != head
                && matches!(m.state, ClientState::Idle | ClientState::Waiting)
                && !m.evict_failed
        })
        .map(|m| m.resident_after_evictions())
        .fold(0u64, u64::saturating_add);
    let mut need = wanted.saturating_sub(from_others);
    let gpu = d.uuid;
    for id in running {
        let Some(m) = d.members.get_mut(id) else {
            continue;
        };
        let bytes = need.min(m.resident);
        need -= bytes;
        if bytes > m.prepared {
            m.prepared = bytes;
            out.push(Action::Send {
                client: *id,
                msg: SchedulerBody::Prepare { bytes }.on(gpu),
            });
        }
    }
}

/// Holders whose footprints stopped fitting together because one of them
/// grew after its grant (programs allocate while they run, and ask for the
/// GPU with their first small allocation), from the most recently granted,
/// and only as many as the fit needs. They go at once: their grant rested on
/// a footprint that no longer holds, and waiting a quantum would keep the
/// GPU's memory overcommitted that long (seen on the H100: four 12 GiB jobs
/// granted at 2 MiB each held 51 GiB on a 16 GiB virtual GPU for 30 s).
fn overcommitted_holders(d: &Domain) -> Vec<ClientId> {
    if d.policy != Policy::Auto {
        return Vec::new();
    }
    let mut running: Vec<_> = d
        .members
        .values()
        .filter(|m| m.state == ClientState::Running)
        .collect();
    running.sort_by_key(|m| (m.granted_at, m.client));
    // Only the running holders: those already releasing are on their way
    // out (counted, each schedule would drop one more holder than the fit
    // needs, until one ran alone).
    let mut footprint = running.iter().fold(0u64, |sum, m| {
        sum.saturating_add(m.reservation().min(d.capacity))
    });
    let mut victims = Vec::new();
    // The oldest holder always stays: alone, everything it holds fits.
    while footprint > d.capacity && running.len() > 1 {
        let Some(newest) = running.pop() else { break };
        footprint = footprint.saturating_sub(newest.reservation().min(d.capacity));
        victims.push(newest.client);
    }
    victims
}

fn drop_overcommitted_holders(d: &mut Domain, now: Duration, out: &mut Vec<Action>) {
    for client in overcommitted_holders(d) {
        let resident = d.members[&client].resident;
        let excess = d
            .members
            .values()
            .map(|m| m.resident_after_evictions())
            .fold(0u64, u64::saturating_add)
            .saturating_sub(d.capacity);
        d.drop_lock(
            client,
            excess.min(resident),
            "memory overcommitted",
            now,
            out,
        );
    }
}

/// Programs allocate without holding the lock, so the GPU's resident bytes
/// can pass its capacity; then the non-holders (least recently run first,
/// the head of the queue included) are asked to move out the excess, so the
/// memory really used stays within the capacity.
fn give_back_excess(d: &mut Domain, out: &mut Vec<Action>) {
    if d.policy == Policy::Off {
        return;
    }
    let resident = d
        .members
        .values()
        .map(|m| m.resident_after_evictions())
        .fold(0u64, u64::saturating_add);
    let excess = resident.saturating_sub(d.capacity);
    if excess > 0 {
        ask_evictions(d, None, excess, out);
    }
}

/// If every holder in `head`'s way has been draining past the drain
/// timeout, grants `head` beside them when the GPU's physical memory holds
/// everyone's claims (holders may bring back their whole footprint), and
/// says so; otherwise marks them so that their deadline is not waited for
/// again until something changes.
fn let_in_beside_overdue_drains(
    d: &mut Domain,
    head: ClientId,
    leaving: &[ClientId],
    now: Duration,
    out: &mut Vec<Action>,
) -> bool {
    let timeout = d.drain_timeout;
    let overdue = leaving.iter().all(|id| {
        d.members[id]
            .drain_deadline(timeout)
            .is_some_and(|deadline| now >= deadline)
    });
    if !overdue {
        return false;
    }
    let claims = d
        .members
        .values()
        .filter(|m| m.client != head)
        .map(|m| {
            if m.is_holder() {
                m.footprint.max(m.resident)
            } else {
                m.resident.saturating_add(m.incoming())
            }
        })
        .fold(0u64, u64::saturating_add);
    let head_claim = d.members[&head].footprint;
    if claims.saturating_add(head_claim) > d.physical_room {
        for &stuck in leaving {
            let m = &d.members[&stuck];
            if !m.overdue_refused {
                out.push(Action::Record(Record::DrainStuck {
                    stuck,
                    gpu: d.uuid,
                    draining: now.saturating_sub(m.drop_requested_at),
                }));
            }
        }
        stop_waiting_for_drains(d, leaving);
        return false;
    }
    if d.members[&head].co_waiters {
        // Its gang goes in together, when the facade sees every member
        // ready; no timer is needed for these drains until then.
        stop_waiting_for_drains(d, leaving);
        d.grant_or_hold(head, now, out);
        return false;
    }
    for &stuck in leaving {
        let draining = now.saturating_sub(d.members[&stuck].drop_requested_at);
        out.push(Action::Record(Record::DrainOverdue {
            stuck,
            gpu: d.uuid,
            draining,
            granted: head,
        }));
    }
    d.grant(head, now, out);
    true
}

/// Marks `leaving`'s drains as no longer waited for on a timer (until their
/// state changes): the next event looks at them again.
fn stop_waiting_for_drains(d: &mut Domain, leaving: &[ClientId]) {
    for id in leaving {
        if let Some(m) = d.members.get_mut(id) {
            m.overdue_refused = true;
        }
    }
}

/// The earliest time at which a holder's quantum ending, or a drain
/// becoming overdue, lets the head of `d`'s queue move on. Nothing else in
/// a schedule depends on the time: until then, a GPU that does not change
/// needs no schedule.
pub(super) fn next_deadline(d: &Domain) -> Option<Duration> {
    if d.policy == Policy::Off {
        return None;
    }
    let head = *d.queue.front()?;
    let leaving = plan_leaving(d, head);
    let members = || leaving.iter().map(|id| &d.members[id]);
    if members().any(|m| m.state == ClientState::Running) {
        // The running holders in the way are dropped together once every
        // quantum among them has ended; drains beside them are not let in
        // beside before that (they are overdue only when all are drains).
        return members()
            .filter(|m| m.state == ClientState::Running && !m.idle_hint)
            .map(|m| gives_way_at(d, m, head))
            .max();
    }
    // Only drains in the way: the head is let in beside them once all are
    // overdue (those already refused for want of room wait for a change).
    members()
        .filter(|m| !m.overdue_refused)
        .filter_map(|m| m.drain_deadline(d.drain_timeout))
        .max()
}

/// When the running holder `m` gives the GPU up for `head`: at once if it
/// said it is idle, else at the end of its time slice (its weight in
/// quanta), or later while its priority still puts it ahead of `head` (it
/// would stand before `head` if it asked again now; see `member::Ticket`).
/// That is how far a higher priority keeps the GPU: a waiter of priority
/// `p` is kept out by a holder of `p + k` for at most `k` steps after it
/// asked.
pub(super) fn gives_way_at(d: &Domain, m: &Member, head: ClientId) -> Duration {
    if m.idle_hint {
        return Duration::ZERO;
    }
    let outranked = d
        .members
        .get(&head)
        .and_then(|h| h.ticket)
        .map_or(Duration::ZERO, |t| {
            t.outranked_from(m.priority, d.priority_step)
        });
    m.slice_end(d.quantum).max(outranked)
}

/// Whether outstanding evictions count as already done.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Credit {
    /// Only what clients reported: whether the head may run now.
    Settled,
    /// Also what they were asked: how much more to ask.
    Pending,
}

/// The holders that must give the lock back before `head` can run, in the
/// order they should go: those already releasing, then idle ones, then the
/// longest running.
pub(super) fn plan_leaving(d: &Domain, head: ClientId) -> Vec<ClientId> {
    let mut order: Vec<_> = d.holders().collect();
    order.sort_by_key(|m| {
        (
            m.state != ClientState::Releasing,
            !m.idle_hint,
            m.granted_at,
            m.client,
        )
    });
    let head_footprint = d.members[&head].footprint.min(d.capacity);
    let mut staying_footprint = order
        .iter()
        .fold(0u64, |a, m| a.saturating_add(m.reservation()));
    let mut staying = order.len();
    let mut leaving = Vec::new();
    let mut rest = order.into_iter();
    let fits = |footprint: u64, holders: usize| match d.policy {
        Policy::Exclusive => holders == 0,
        Policy::Auto => footprint.saturating_add(head_footprint) <= d.capacity,
        Policy::Off => true,
    };
    while !fits(staying_footprint, staying) {
        let Some(m) = rest.next() else { break };
        staying_footprint = staying_footprint.saturating_sub(m.reservation());
        staying -= 1;
        leaving.push(m.client);
    }
    // The footprints fit, but if the memory cannot be freed from the
    // non-holders, more holders must go.
    while shortage(d, head, &leaving, Credit::Pending) > evictable(d, head, &leaving) {
        let Some(m) = rest.next() else { break };
        leaving.push(m.client);
    }
    leaving
}

/// Bytes that must still leave the GPU before `head` can be fully resident,
/// once `leaving` have given the lock back.
pub(super) fn shortage(d: &Domain, head: ClientId, leaving: &[ClientId], credit: Credit) -> u64 {
    let capacity = d.capacity;
    let mut used = 0u64;
    for (id, m) in &d.members {
        if *id == head {
            continue;
        }
        let occupies = if m.is_holder() && !leaving.contains(id) {
            m.holder_claim(capacity)
        } else if credit == Credit::Pending {
            m.resident_after_evictions()
        } else {
            // Memory being fetched is as good as there.
            m.resident.saturating_add(m.incoming())
        };
        used = used.saturating_add(occupies);
    }
    let head_claim = d.members[&head].holder_claim(capacity);
    used.saturating_add(head_claim).saturating_sub(capacity)
}

/// Bytes that could still be asked out: non-holders that have not refused,
/// and running holders that are leaving.
fn evictable(d: &Domain, head: ClientId, leaving: &[ClientId]) -> u64 {
    d.members
        .values()
        .filter(|m| m.client != head)
        .map(|m| match m.state {
            ClientState::Idle | ClientState::Waiting if !m.evict_failed => {
                m.resident_after_evictions()
            }
            ClientState::Running if leaving.contains(&m.client) => m.resident,
            _ => 0,
        })
        .fold(0, u64::saturating_add)
}
