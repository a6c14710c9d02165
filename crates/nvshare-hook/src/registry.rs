//! The allocation registry: every device-memory allocation the program holds,
//! by base address, with per-device totals kept up to date so that memory
//! queries and the scheduler's usage reports cost no scan.

use crate::ffi::{CUdevice, CUdeviceptr};
use crate::fork::InForkChild;
use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;

/// How an allocation is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocKind {
    /// Plain device memory from the real `cuMemAlloc` family.
    Device,
    /// A device allocation the hook turned into managed memory (uvm mode).
    ManagedForDevice,
    /// Managed memory the program asked for itself (`cuMemAllocManaged`).
    Managed,
    /// Stream-ordered memory (`cuMemAllocAsync`, pools): accounted, never moved.
    StreamOrdered,
    /// Device memory backed by the swap engine's VMM units (swap mode): its
    /// own unit, or a block of a shared slab; moved by eviction.
    Swappable,
}

impl AllocKind {
    /// Whether prefetching can move this allocation between host and device.
    pub fn is_managed(self) -> bool {
        matches!(self, AllocKind::ManagedForDevice | AllocKind::Managed)
    }
}

/// One allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The device whose memory (or lock) it counts against.
    pub device: CUdevice,
    /// Its size in bytes.
    pub bytes: u64,
    /// How it is backed.
    pub kind: AllocKind,
    /// Whether it is on the device (as far as the hook moved it).
    pub resident: bool,
    /// The registry clock at its last use (allocation or move): lower is
    /// older, the order in which eviction picks.
    pub last_use: u64,
}

/// A device's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes the program holds on the device, wherever they are now.
    pub footprint: u64,
    /// Of those, bytes on the device.
    pub resident: u64,
}

/// The registry proper (see [`lock`] for the process's one).
#[derive(Debug, Default)]
pub struct Registry {
    by_base: BTreeMap<CUdeviceptr, Allocation>,
    usage: BTreeMap<CUdevice, Usage>,
    clock: u64,
}

impl Registry {
    /// Records an allocation at `base` (stamping its `last_use`), returning
    /// any entry it replaces.
    pub fn insert(&mut self, base: CUdeviceptr, mut allocation: Allocation) -> Option<Allocation> {
        allocation.last_use = self.tick();
        self.add(&allocation);
        let replaced = self.by_base.insert(base, allocation);
        if let Some(old) = &replaced {
            self.subtract(old);
        }
        replaced
    }

    /// Forgets the allocation starting at `base`.
    pub fn remove(&mut self, base: CUdeviceptr) -> Option<Allocation> {
        let removed = self.by_base.remove(&base)?;
        self.subtract(&removed);
        Some(removed)
    }

    /// The allocation containing `address`, with its base.
    pub fn containing(&self, address: CUdeviceptr) -> Option<(CUdeviceptr, &Allocation)> {
        let (&base, allocation) = self.by_base.range(..=address).next_back()?;
        (address - base < allocation.bytes).then_some((base, allocation))
    }

    /// `device`'s totals.
    pub fn usage(&self, device: CUdevice) -> Usage {
        self.usage.get(&device).copied().unwrap_or_default()
    }

    /// Marks the allocation at `base` as on or off the device and used now.
    /// Returns false if there is none.
    pub fn set_resident(&mut self, base: CUdeviceptr, resident: bool) -> bool {
        let now = self.tick();
        let Some(allocation) = self.by_base.get_mut(&base) else {
            return false;
        };
        let was = allocation.resident;
        allocation.resident = resident;
        allocation.last_use = now;
        let device = allocation.device;
        let bytes = allocation.bytes;
        let totals = self.usage.entry(device).or_default();
        match (was, resident) {
            (false, true) => totals.resident += bytes,
            (true, false) => totals.resident -= bytes,
            _ => {}
        }
        true
    }

    /// A snapshot of `device`'s allocations, `(base, allocation)`.
    pub fn allocations_on(&self, device: CUdevice) -> Vec<(CUdeviceptr, Allocation)> {
        self.by_base
            .iter()
            .filter(|(_, a)| a.device == device)
            .map(|(&base, a)| (base, a.clone()))
            .collect()
    }

    /// The number of allocations.
    pub fn len(&self) -> usize {
        self.by_base.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_base.is_empty()
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn add(&mut self, allocation: &Allocation) {
        let totals = self.usage.entry(allocation.device).or_default();
        totals.footprint += allocation.bytes;
        if allocation.resident {
            totals.resident += allocation.bytes;
        }
    }

    fn subtract(&mut self, allocation: &Allocation) {
        let totals = self.usage.entry(allocation.device).or_default();
        totals.footprint -= allocation.bytes;
        if allocation.resident {
            totals.resident -= allocation.bytes;
        }
    }
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    by_base: BTreeMap::new(),
    usage: BTreeMap::new(),
    clock: 0,
});

/// The process's registry. Hold the guard briefly and never across a driver
/// call that can block.
pub fn lock() -> MutexGuard<'static, Registry> {
    REGISTRY.lock()
}

/// In a `fork()` child: the parent's allocations do not exist there (CUDA
/// does not survive fork), and another parent thread may have held the lock
/// at the fork.
pub fn reset_after_fork(child: &InForkChild) {
    crate::fork::forget_contents(&REGISTRY, child);
}

#[cfg(test)]
mod tests;
