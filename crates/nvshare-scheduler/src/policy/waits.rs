//! Why the next program on a GPU does not run yet: the schedule's decision
//! (see `grant`) told in the operator's terms, for `nvshare-ctl status`.

use super::Scheduler;
use super::domain::{Domain, duration_ms as ms};
use super::grant::{self, Credit};
use nvshare_proto::{ClientState, GpuWait, Policy, WaitReason};
use std::time::Duration;

impl Scheduler {
    /// For every GPU somebody waits for, in UUID order: who is next and
    /// what it waits for.
    pub fn waits(&self, now: Duration) -> Vec<GpuWait> {
        let recovery = self
            .recovering_until
            .filter(|&until| now < until)
            .map(|until| WaitReason::Recovery {
                remaining_ms: ms(until.saturating_sub(now)),
            });
        self.domains
            .values()
            .filter_map(|d| {
                let next = *d.queue.front()?;
                let reason = match &recovery {
                    Some(recovery) => recovery.clone(),
                    None => reason(d, now)?,
                };
                Some(GpuWait {
                    uuid: d.uuid,
                    next,
                    reason,
                })
            })
            .collect()
    }
}

/// What the head of `d`'s queue waits for, or `None` if nothing holds it
/// back (it is about to be granted).
fn reason(d: &Domain, now: Duration) -> Option<WaitReason> {
    let head = *d.queue.front()?;
    if d.policy == Policy::Off {
        return None;
    }
    let growing = d
        .holders()
        .filter(|m| m.state == ClientState::Running && m.wants_room > 0)
        .min_by_key(|m| m.granted_at);
    if let Some(holder) = growing {
        return Some(WaitReason::HolderGrowth {
            holder: holder.client,
        });
    }
    let leaving = grant::plan_leaving(d, head);
    if leaving.is_empty() {
        let short_bytes = grant::shortage(d, head, &[], Credit::Settled);
        if short_bytes > 0 {
            return Some(WaitReason::Memory { short_bytes });
        }
        return d.members[&head].co_waiters.then_some(WaitReason::Gang);
    }
    // Holders in the way give the GPU back together once the last of them
    // gives way (its time slice ends, or its priority no longer keeps it);
    // until then, that is the wait.
    let last_to_go = leaving
        .iter()
        .map(|id| &d.members[id])
        .filter(|m| m.state == ClientState::Running)
        .map(|m| (grant::gives_way_at(d, m, head), m))
        .filter(|&(at, _)| at > now)
        .max_by_key(|&(at, m)| (at, m.client));
    if let Some((at, m)) = last_to_go {
        let slice_end = m.slice_end(d.quantum);
        return Some(if now >= slice_end {
            WaitReason::Priority {
                holder: m.client,
                remaining_ms: ms(at.saturating_sub(now)),
            }
        } else {
            WaitReason::Quantum {
                holder: m.client,
                remaining_ms: ms(slice_end.saturating_sub(now)),
            }
        });
    }
    let draining = leaving
        .iter()
        .map(|id| &d.members[id])
        .filter(|m| m.state == ClientState::Releasing)
        .min_by_key(|m| m.drop_requested_at);
    let Some(m) = draining else {
        // Droppable holders are asked at once: the next event does it.
        return None;
    };
    let draining_ms = ms(now.saturating_sub(m.drop_requested_at));
    let overdue = m
        .drain_deadline(d.drain_timeout)
        .is_some_and(|deadline| now >= deadline);
    Some(if overdue || m.overdue_refused {
        WaitReason::DrainWithoutRoom {
            holder: m.client,
            draining_ms,
        }
    } else {
        WaitReason::Drain {
            holder: m.client,
            draining_ms,
            timeout_ms: ms(d.drain_timeout),
        }
    })
}
