//! Whom to ask memory back from: the programs that do not run, least
//! recently run first. Used by grants (room for the head of the queue) and
//! by reservations (room for a holder that grows).

use super::Action;
use super::domain::Domain;
use nvshare_proto::{ClientId, ClientState};

/// Asks non-holders other than `head` (if given), least recently run first
/// (idle before waiting), to evict up to `wanted` bytes; returns what is
/// left.
pub(super) fn ask_evictions(
    d: &mut Domain,
    head: Option<ClientId>,
    mut wanted: u64,
    out: &mut Vec<Action>,
) -> u64 {
    let mut candidates: Vec<_> = d
        .members
        .values()
        .filter(|m| {
            Some(m.client) != head
                && matches!(m.state, ClientState::Idle | ClientState::Waiting)
                && !m.evict_failed
                && m.resident_after_evictions() > 0
        })
        .map(|m| {
            (
                m.state == ClientState::Waiting,
                m.last_ran,
                m.client,
                m.resident_after_evictions(),
            )
        })
        .collect();
    candidates.sort();
    for (_, _, client, available) in candidates {
        if wanted == 0 {
            break;
        }
        let bytes = wanted.min(available);
        wanted -= bytes;
        d.evict(client, bytes, out);
    }
    wanted
}
