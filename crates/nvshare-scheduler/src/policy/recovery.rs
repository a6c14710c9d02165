//! After a restart: programs that held a GPU under the daemon before this
//! one keep running while they reconnect, and the new daemon must not hand
//! their GPU to anybody else meanwhile.
//!
//! Two rules, both bounded by the recovery grace (`recovery_grace` of the
//! configuration, measured from the daemon's start):
//! - **No grants while holders may be missing.** When the daemon finds
//!   signs of a predecessor (its socket or lock file left behind), it calls
//!   [`Scheduler::recover`]: until the grace has passed, nobody is granted a
//!   GPU; programs reconnect, claim what they hold and wait in line.
//! - **Claims are believed only then.** A re-attach with `holding` (a
//!   program that holds the GPU, or is half-way through a grant or a drop)
//!   is taken as a holder at once, without a grant message: the program
//!   already runs, and a grant queued behind its drain would give it the
//!   GPU back after it released it. A claim that does not fit beside the
//!   holders already known (exclusive policy: one holder; auto: their
//!   footprints within the capacity) is asked to give the GPU back at once,
//!   and nobody is let in before it has. After the grace, a claim is
//!   nothing a real program sends (it would have reconnected long before):
//!   it only queues the program like a request, so a client cannot use it
//!   to jump the line or block others.

use super::domain::Domain;
use super::{Action, Record, Scheduler};
use nvshare_proto::{ClientId, ClientState, Policy};
use std::time::Duration;

impl Scheduler {
    /// The daemon found signs of a predecessor whose programs may still run
    /// work: nobody is granted a GPU until the recovery grace has passed
    /// since the start, so that every holder can reconnect and claim first.
    pub fn recover(&mut self) {
        self.recovering_until = Some(self.config.recovery_grace);
    }

    /// Whether grants are held back at `now`; ends the recovery once the
    /// grace is over.
    pub(super) fn recovering(&mut self, now: Duration) -> bool {
        match self.recovering_until {
            Some(until) if now < until => true,
            Some(_) => {
                // Nothing was scheduled meanwhile: every GPU is due.
                self.recovering_until = None;
                self.sweep.touch_all(self.domains.keys().copied());
                false
            }
            None => false,
        }
    }

    /// Whether a claim made at `now` is believed.
    pub(super) fn claims_trusted(&self, now: Duration) -> bool {
        now < self.config.recovery_grace
    }
}

/// `client` re-attached `d` saying it holds it (`trusted`: within the
/// recovery grace).
pub(super) fn claim(
    d: &mut Domain,
    client: ClientId,
    trusted: bool,
    now: Duration,
    out: &mut Vec<Action>,
) {
    let Some(m) = d.members.get(&client) else {
        return;
    };
    if m.state != ClientState::Idle {
        return;
    }
    if !trusted {
        out.push(Action::Record(Record::ClaimRefused {
            client,
            gpu: d.uuid,
        }));
        d.request(client, now);
        return;
    }
    let fits = match d.policy {
        Policy::Off => true,
        Policy::Exclusive => d.holders().next().is_none(),
        Policy::Auto => {
            let held = d
                .holders()
                .fold(0u64, |sum, h| sum.saturating_add(h.reservation()));
            held.saturating_add(m.footprint) <= d.capacity
        }
    };
    d.resume(client, now, out);
    if !fits {
        d.drop_lock(
            client,
            0,
            "claim beyond what fits after a restart",
            now,
            out,
        );
    }
}
