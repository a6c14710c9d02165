//! Restoring ahead: memory free on a GPU while its next program waits is
//! used to bring that program's swapped-out memory back before its grant.
//!
//! The head of the queue is asked (`Fetch`) to restore as much as is free
//! now, counting nothing as freed before it is reported freed: a running
//! holder occupies its whole claim, a releasing one what it still has
//! (`Evicting` reports each piece its eviction frees) plus what it may
//! still allocate, others their memory plus what they are fetching. So a
//! switch's eviction and the next program's restore run at once, on the
//! two directions of the link, and memory free beside a holder during its
//! quantum is filled before the switch, which then moves less: the bytes on
//! the GPU never exceed the capacity, whatever order the answers come in.
//!
//! Nothing is fetched while memory is being asked back (a holder waits for
//! room to grow, or non-holders are evicting an excess). One fetch is
//! outstanding per program; one that brings nothing back (the
//! free memory fits none of its pieces, or the GPU is physically full) is
//! not repeated until the program's state changes.

use super::Action;
use super::domain::Domain;
use super::member::Member;
use nvshare_proto::{ClientState, Policy};

/// The smallest fetch, as a fraction of the capacity (unless all that is
/// missing is less): hooks move memory in pieces of up to 1 GiB, a
/// sixteenth of a 16 GiB GPU, and smaller fetches would cost a message
/// per sliver freed.
const FETCH_STEP_DIVISOR: u64 = 16;

/// The memory `m` may occupy on the GPU now or before its next report.
fn occupancy(m: &Member, capacity: u64) -> u64 {
    match m.state {
        ClientState::Running => m.holder_claim(capacity),
        // Dropped before its grant's restore finished: it may still bring
        // back everything.
        ClientState::Releasing if m.restoring => m.holder_claim(capacity),
        // Its gate is closing: what it has, and what it may still allocate
        // within its room meanwhile.
        ClientState::Releasing => m
            .resident
            .saturating_add(m.room.saturating_sub(m.footprint)),
        ClientState::Idle | ClientState::Waiting => m.resident.saturating_add(m.incoming()),
    }
}

/// Asks the head of `d`'s queue to restore what fits in the memory free
/// now, if that is worth a fetch.
pub(super) fn fetch_ahead(d: &mut Domain, out: &mut Vec<Action>) {
    if d.policy == Policy::Off || !d.restore_ahead {
        return;
    }
    let Some(&head) = d.queue.front() else {
        return;
    };
    let m = &d.members[&head];
    if m.state != ClientState::Waiting || m.fetch_failed || !m.pending_fetches.is_empty() {
        return;
    }
    // Memory is being asked back (a holder waits for room, or the GPU is
    // over its capacity): what looks free is already spoken for.
    let short = d
        .members
        .values()
        .any(|o| !o.pending_evicts.is_empty() || o.wants_room > 0);
    if short {
        return;
    }
    let missing = m.footprint.saturating_sub(m.resident);
    if missing == 0 {
        return;
    }
    let used = d
        .members
        .values()
        .map(|o| occupancy(o, d.capacity))
        .fold(0u64, u64::saturating_add);
    let free = d.capacity.saturating_sub(used);
    let step = (d.capacity / FETCH_STEP_DIVISOR).clamp(1, missing);
    let bytes = free.min(missing);
    if bytes >= step {
        d.fetch(head, bytes, out);
    }
}
