//! What each client message (other than `Attach` and `Detach`, which the
//! facade handles) changes in the state of its GPU.

use super::domain::Domain;
use super::{Action, Record};
use nvshare_proto::{ClientBody, ClientId, ClientState, SchedulerBody};
use std::time::Duration;

/// Applies what its member `client` said about `d`.
pub(super) fn apply(
    d: &mut Domain,
    client: ClientId,
    body: ClientBody,
    now: Duration,
    out: &mut Vec<Action>,
) {
    let gpu = d.uuid;
    match body {
        ClientBody::RequestLock => {
            if let Some(m) = d.members.get_mut(&client)
                && m.state == ClientState::Running
            {
                // A request while holding means "busy again" after an Idle
                // report: forget the hint, confirm, never queue twice.
                m.idle_hint = false;
                let room = m.room;
                out.push(Action::Send {
                    client,
                    msg: SchedulerBody::LockGranted { room }.on(gpu),
                });
            } else {
                d.request(client, now);
            }
        }
        ClientBody::LockReleased { resident, .. } => d.released(client, resident, now, out),
        ClientBody::Reserve { footprint, .. } => {
            // Only a running holder reserves: one releasing will ask for the
            // lock again with this footprint, one that lost the lock already
            // did.
            if let Some(m) = d.members.get_mut(&client)
                && m.state == ClientState::Running
            {
                m.wants_room = m.wants_room.max(footprint).max(1);
            }
        }
        ClientBody::Idle => {
            if let Some(m) = d.members.get_mut(&client)
                && m.state == ClientState::Running
            {
                m.idle_hint = true;
            }
        }
        ClientBody::Usage {
            footprint,
            resident,
            ..
        } => {
            if let Some(m) = d.members.get_mut(&client) {
                m.footprint = footprint;
                m.resident = resident;
            }
        }
        ClientBody::Evicted {
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
        ClientBody::Restored {
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
        ClientBody::Evicting { resident, .. } => {
            if let Some(m) = d.members.get_mut(&client)
                && resident < m.resident
            {
                m.evict_progress = m.evict_progress.saturating_add(m.resident - resident);
                m.resident = resident;
                // It is evicting, so it is past any restore of its grant.
                m.restoring = false;
            }
        }
        ClientBody::Fetched {
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
        ClientBody::EvictFailed { resident, .. } => {
            if let Some(m) = d.members.get_mut(&client) {
                m.resident = resident;
                m.settle_eviction();
                m.evict_failed = true;
            }
        }
        ClientBody::HostShadows {
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
        ClientBody::JobSettings(settings) => {
            if let Some(m) = d.members.get_mut(&client) {
                m.memory_limit = settings.memory_limit;
                // Bounded, so a made-up value cannot overflow a ticket or
                // stretch a time slice without end.
                m.priority = settings
                    .priority
                    .clamp(-nvshare_proto::MAX_PRIORITY, nvshare_proto::MAX_PRIORITY);
                m.weight = settings.weight.clamp(1, nvshare_proto::MAX_WEIGHT);
            }
        }
        ClientBody::Attach { .. } | ClientBody::Detach => {}
    }
}
