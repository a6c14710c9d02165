//! What each client message (other than `Attach` and `Detach`, which the
//! facade handles) changes in the state of its GPU.

use super::domain::Domain;
use super::{Action, Record};
use nvshare_proto::{ClientId, ClientMsg, ClientState, GpuUuid, SchedulerMsg};
use std::time::Duration;

/// The GPU a message (other than `Attach`, handled apart) is about.
pub(super) fn gpu_of(msg: &ClientMsg) -> GpuUuid {
    match msg {
        ClientMsg::Attach { gpu, .. }
        | ClientMsg::Usage { gpu, .. }
        | ClientMsg::RequestLock { gpu }
        | ClientMsg::LockReleased { gpu, .. }
        | ClientMsg::Idle { gpu }
        | ClientMsg::Reserve { gpu, .. }
        | ClientMsg::Evicted { gpu, .. }
        | ClientMsg::Restored { gpu, .. }
        | ClientMsg::EvictFailed { gpu, .. }
        | ClientMsg::Evicting { gpu, .. }
        | ClientMsg::Fetched { gpu, .. }
        | ClientMsg::Detach { gpu }
        | ClientMsg::HostShadows { gpu, .. } => *gpu,
    }
}

/// Applies a message about `d` from its member `client`.
pub(super) fn apply(
    d: &mut Domain,
    client: ClientId,
    msg: ClientMsg,
    now: Duration,
    out: &mut Vec<Action>,
) {
    let gpu = d.uuid;
    match msg {
        ClientMsg::RequestLock { .. } => {
            if let Some(m) = d.members.get_mut(&client)
                && m.state == ClientState::Running
            {
                // A request while holding means "busy again" after an Idle
                // report: forget the hint, confirm, never queue twice.
                m.idle_hint = false;
                let room = m.room;
                out.push(Action::Send {
                    client,
                    msg: SchedulerMsg::LockGranted { gpu, room },
                });
            } else {
                d.request(client, now);
            }
        }
        ClientMsg::LockReleased { resident, .. } => d.released(client, resident, now, out),
        ClientMsg::Reserve { footprint, .. } => {
            // Only a running holder reserves: one releasing will ask for the
            // lock again with this footprint, one that lost the lock already
            // did.
            if let Some(m) = d.members.get_mut(&client)
                && m.state == ClientState::Running
            {
                m.wants_room = m.wants_room.max(footprint).max(1);
            }
        }
        ClientMsg::Idle { .. } => {
            if let Some(m) = d.members.get_mut(&client)
                && m.state == ClientState::Running
            {
                m.idle_hint = true;
            }
        }
        ClientMsg::Usage {
            footprint,
            resident,
            ..
        } => {
            if let Some(m) = d.members.get_mut(&client) {
                m.footprint = footprint;
                m.resident = resident;
            }
        }
        ClientMsg::Evicted {
            bytes,
            resident,
            elapsed_us,
            ..
        } => {
            if let Some(m) = d.members.get_mut(&client) {
                let asked = m.asked_eviction();
                m.resident = resident;
                m.settle_eviction();
                if bytes < asked && resident > 0 {
                    // The rest cannot move (memory the program shares, or
                    // no host memory for more): asking again would only
                    // get the same answer, until its state changes.
                    m.evict_failed = true;
                }
            }
            d.bytes_evicted = d.bytes_evicted.saturating_add(bytes);
            d.swap_time_us = d.swap_time_us.saturating_add(elapsed_us);
            out.push(Action::Record(Record::Evicted {
                client,
                gpu,
                bytes,
                elapsed: Duration::from_micros(elapsed_us),
            }));
        }
        ClientMsg::Restored {
            bytes,
            resident,
            elapsed_us,
            ..
        } => {
            if let Some(m) = d.members.get_mut(&client) {
                m.resident = resident;
                m.restoring = false;
            }
            d.restored(client, bytes, elapsed_us, false, out);
        }
        ClientMsg::Evicting { resident, .. } => {
            if let Some(m) = d.members.get_mut(&client)
                && resident < m.resident
            {
                m.evict_progress = m.evict_progress.saturating_add(m.resident - resident);
                m.resident = resident;
                // It is evicting, so it is past any restore of its grant.
                m.restoring = false;
            }
        }
        ClientMsg::Fetched {
            bytes,
            resident,
            elapsed_us,
            ..
        } => {
            if let Some(m) = d.members.get_mut(&client) {
                m.resident = resident;
                m.pending_fetches.pop_front();
                if bytes == 0 {
                    m.fetch_failed = true;
                }
            }
            d.restored(client, bytes, elapsed_us, true, out);
        }
        ClientMsg::EvictFailed { resident, .. } => {
            if let Some(m) = d.members.get_mut(&client) {
                m.resident = resident;
                m.settle_eviction();
                m.evict_failed = true;
            }
        }
        ClientMsg::HostShadows {
            pinned, pageable, ..
        } => {
            if let Some(m) = d.members.get_mut(&client)
                && (m.host_pinned, m.host_pageable) != (pinned, pageable)
            {
                m.host_pinned = pinned;
                m.host_pageable = pageable;
                out.push(d.host_shadows_record());
            }
        }
        ClientMsg::Attach { .. } | ClientMsg::Detach { .. } => {}
    }
}
