//! What the program asked for versus what its units occupy, per device, now
//! and at the peak: the cost of rounding allocations up to VMM granules and
//! of cutting small ones from slabs ([`super::slab`]).
//!
//! Kept as running counters updated by every allocation and free, so the
//! figures at exit (one `info` line, see [`Tally::log`]) include the peak
//! even when the program freed everything before exiting.

use crate::ffi::CUdevice;
use crate::fork::InForkChild;
use parking_lot::Mutex;
use std::collections::BTreeMap;

/// Bytes requested and occupied on one device at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Bytes the program asked for (all swap-mode allocations).
    pub requested: u64,
    /// Bytes of the units backing them (granule-rounded, whole slabs).
    pub physical: u64,
    /// Of `requested`: the small allocations served from slabs.
    pub slab_requested: u64,
    /// Of `physical`: the slabs.
    pub slab_physical: u64,
}

impl Footprint {
    /// `physical / requested` (1.0 when nothing is requested).
    pub fn ratio(&self) -> f64 {
        if self.requested == 0 {
            1.0
        } else {
            self.physical as f64 / self.requested as f64
        }
    }
}

/// One device's figures now and when `physical` was highest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceTally {
    /// Now.
    pub now: Footprint,
    /// At the peak of `physical`.
    pub peak: Footprint,
}

/// Every device's [`DeviceTally`].
#[derive(Debug)]
pub struct Tally {
    by_device: Mutex<BTreeMap<CUdevice, DeviceTally>>,
}

impl Tally {
    /// Nothing counted yet.
    pub const fn new() -> Self {
        Tally {
            by_device: Mutex::new(BTreeMap::new()),
        }
    }

    /// An allocation of `requested` bytes was made on `device`, adding
    /// `physical` bytes of units (0 when it went into an existing slab).
    pub fn add(&self, device: CUdevice, slab: bool, requested: u64, physical: u64) {
        let mut all = self.by_device.lock();
        let t = all.entry(device).or_default();
        t.now.requested += requested;
        t.now.physical += physical;
        if slab {
            t.now.slab_requested += requested;
            t.now.slab_physical += physical;
        }
        if t.now.physical > t.peak.physical
            || (t.now.physical == t.peak.physical && t.now.requested > t.peak.requested)
        {
            t.peak = t.now;
        }
    }

    /// An allocation of `requested` bytes was freed on `device`, releasing
    /// `physical` bytes of units (0 when its slab still holds others).
    pub fn remove(&self, device: CUdevice, slab: bool, requested: u64, physical: u64) {
        let mut all = self.by_device.lock();
        let t = all.entry(device).or_default();
        t.now.requested = t.now.requested.saturating_sub(requested);
        t.now.physical = t.now.physical.saturating_sub(physical);
        if slab {
            t.now.slab_requested = t.now.slab_requested.saturating_sub(requested);
            t.now.slab_physical = t.now.slab_physical.saturating_sub(physical);
        }
    }

    /// `device`'s figures, if it ever had swap-mode memory.
    pub fn of(&self, device: CUdevice) -> Option<DeviceTally> {
        self.by_device.lock().get(&device).copied()
    }

    /// Forgets everything (a `fork()` child).
    pub fn clear_after_fork(&self, child: &InForkChild) {
        crate::fork::forget_contents(&self.by_device, child);
    }

    /// Logs `device`'s figures as one `info` line (the line
    /// `benches/gpu` parses: keep its message and field names).
    pub fn log(&self, device: CUdevice) {
        let Some(t) = self.of(device) else {
            return;
        };
        tracing::info!(
            device,
            requested = t.now.requested,
            physical = t.now.physical,
            slab_requested = t.now.slab_requested,
            slab_physical = t.now.slab_physical,
            peak_requested = t.peak.requested,
            peak_physical = t.peak.physical,
            peak_slab_requested = t.peak.slab_requested,
            peak_slab_physical = t.peak.slab_physical,
            peak_ratio = format!("{:.4}", t.peak.ratio()),
            "nvshare memory footprint: requested vs physical bytes of swap-mode GPU memory"
        );
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_keeps_the_figures_of_the_highest_physical_use() {
        let tally = Tally::new();
        tally.add(0, false, 3 << 20, 4 << 20);
        tally.add(0, true, 512, 2 << 20);
        tally.add(0, true, 512, 0);
        let peak = Footprint {
            requested: (3 << 20) + 1024,
            physical: 6 << 20,
            slab_requested: 1024,
            slab_physical: 2 << 20,
        };
        assert_eq!(tally.of(0).unwrap().peak, peak);
        tally.remove(0, true, 512, 0);
        tally.remove(0, true, 512, 2 << 20);
        tally.remove(0, false, 3 << 20, 4 << 20);
        let t = tally.of(0).unwrap();
        assert_eq!(t.now, Footprint::default());
        assert_eq!(t.peak, peak, "freeing keeps the peak");
        assert!((t.peak.ratio() - 6.0 / 3.0009765625).abs() < 1e-9);
        assert!(tally.of(1).is_none());
    }
}
