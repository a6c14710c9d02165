//! Which GPUs an event makes worth scheduling.
//!
//! A GPU's schedule can only change when its state does (a message about
//! it, a member leaving, a grant, a setting) or when one of its deadlines
//! passes (a quantum's end, an overdue drain). So the scheduler keeps the
//! GPUs touched since they were last scheduled (`dirty`) and the next
//! deadline of each (`wakeups`, in time order), and an event schedules those
//! alone: its cost does not grow with the number of GPUs nothing happens on
//! (a node's idle cards, or made-up ids a hostile client attached).

use nvshare_proto::GpuUuid;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The GPUs due for scheduling, and when each next is on its own.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    /// GPUs whose state changed since their last schedule.
    dirty: BTreeSet<GpuUuid>,
    /// Every GPU's next deadline, earliest first.
    wakeups: BTreeSet<(Duration, GpuUuid)>,
    /// The deadline each GPU has in `wakeups`.
    wake_at: BTreeMap<GpuUuid, Duration>,
    /// GPUs whose queue was not empty when they were last scheduled: with
    /// the due ones, all that gangs must line up.
    queued: BTreeSet<GpuUuid>,
}

impl Sweep {
    /// `gpu`'s state changed: schedule it at the next settle.
    pub fn touch(&mut self, gpu: GpuUuid) {
        self.dirty.insert(gpu);
    }

    /// Every one of `gpus` changed (a setting, a gang's new order).
    pub fn touch_all(&mut self, gpus: impl IntoIterator<Item = GpuUuid>) {
        self.dirty.extend(gpus);
    }

    /// `gpu` is gone: nothing is due on it any more.
    pub fn forget(&mut self, gpu: GpuUuid) {
        self.dirty.remove(&gpu);
        self.queued.remove(&gpu);
        self.set_wakeup(gpu, None);
    }

    /// Marks every GPU whose deadline is at or before `now` as due.
    pub fn wake_due(&mut self, now: Duration) {
        while let Some(&(at, gpu)) = self.wakeups.first() {
            if at > now {
                break;
            }
            self.set_wakeup(gpu, None);
            self.dirty.insert(gpu);
        }
    }

    /// The GPUs due now, in UUID order (the order a full sweep takes).
    pub fn due(&self) -> impl Iterator<Item = GpuUuid> + '_ {
        self.dirty.iter().copied()
    }

    /// The GPUs somebody may wait on: those with a queue at their last
    /// schedule and those due now (a request since), in UUID order.
    pub fn maybe_queued(&self) -> impl Iterator<Item = GpuUuid> + '_ {
        self.queued.union(&self.dirty).copied()
    }

    /// Records, after `gpu`'s schedule, whether somebody waits on it.
    pub fn set_queued(&mut self, gpu: GpuUuid, queued: bool) {
        if queued {
            self.queued.insert(gpu);
        } else {
            self.queued.remove(&gpu);
        }
    }

    /// Takes the next GPU due, in UUID order.
    pub fn take_next(&mut self) -> Option<GpuUuid> {
        self.dirty.pop_first()
    }

    /// Records `gpu`'s next deadline, replacing the one it had.
    pub fn set_wakeup(&mut self, gpu: GpuUuid, at: Option<Duration>) {
        if let Some(old) = self.wake_at.remove(&gpu) {
            self.wakeups.remove(&(old, gpu));
        }
        if let Some(at) = at {
            self.wake_at.insert(gpu, at);
            self.wakeups.insert((at, gpu));
        }
    }

    /// The earliest deadline of any GPU.
    pub fn next_wakeup(&self) -> Option<Duration> {
        self.wakeups.first().map(|&(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(n: u8) -> GpuUuid {
        GpuUuid([n; 16])
    }

    #[test]
    fn due_gpus_are_taken_once_in_uuid_order() {
        let mut sweep = Sweep::default();
        sweep.touch(gpu(3));
        sweep.touch_all([gpu(1), gpu(3)]);
        assert_eq!(sweep.take_next(), Some(gpu(1)));
        assert_eq!(sweep.take_next(), Some(gpu(3)));
        assert_eq!(sweep.take_next(), None);
    }

    #[test]
    fn a_deadline_makes_its_gpu_due_once_it_passes_and_is_then_spent() {
        let mut sweep = Sweep::default();
        let ms = Duration::from_millis;
        sweep.set_wakeup(gpu(1), Some(ms(50)));
        sweep.set_wakeup(gpu(2), Some(ms(20)));
        sweep.set_wakeup(gpu(2), Some(ms(30))); // replaces 20
        assert_eq!(sweep.next_wakeup(), Some(ms(30)));
        sweep.wake_due(ms(29));
        assert_eq!(sweep.take_next(), None);
        sweep.wake_due(ms(30));
        assert_eq!(sweep.take_next(), Some(gpu(2)));
        assert_eq!(sweep.next_wakeup(), Some(ms(50)));
        sweep.forget(gpu(1));
        assert_eq!(sweep.next_wakeup(), None);

        sweep.wake_due(ms(1000));
        assert_eq!(sweep.take_next(), None);
    }

    #[test]
    fn gpus_waited_on_are_those_queued_at_their_schedule_or_due_since() {
        let mut sweep = Sweep::default();
        sweep.set_queued(gpu(4), true);
        sweep.touch(gpu(5));
        assert_eq!(sweep.maybe_queued().collect::<Vec<_>>(), [gpu(4), gpu(5)]);
        sweep.forget(gpu(4));
        sweep.set_queued(gpu(5), false);
        assert_eq!(sweep.maybe_queued().collect::<Vec<_>>(), [gpu(5)]);
        assert_eq!(sweep.take_next(), Some(gpu(5)));
        assert_eq!(sweep.maybe_queued().next(), None);
    }
}
