//! The uvm engine (`NVSHARE_MODE=uvm`, the original nvshare's way): device
//! allocations become managed memory, moved in bulk by prefetching on a
//! stream of the hook's own, so that the program never waits on page faults
//! for memory the hook could have moved at full PCIe speed.

use super::{EngineError, MemoryEngine};
use crate::driver::ctx::PushedContext;
use crate::driver::mem::PrefetchTarget;
use crate::driver::{self, CudaError};
use crate::ffi::{
    CU_MEM_ATTACH_GLOBAL, CU_STREAM_DEFAULT, CUcontext, CUdevice, CUdeviceptr, CUstream,
};
use crate::fork::InForkChild;
use crate::registry::{self, AllocKind, Allocation};
use parking_lot::Mutex;
use std::collections::BTreeMap;

/// The hook's stream on one device, in the device's primary context.
#[derive(Clone, Copy)]
struct Mover {
    ctx: usize,
    stream: usize,
}

impl Mover {
    fn ctx(self) -> CUcontext {
        self.ctx as CUcontext
    }

    fn stream(self) -> CUstream {
        self.stream as CUstream
    }
}

/// See the module documentation.
pub struct UvmEngine {
    movers: Mutex<BTreeMap<CUdevice, Mover>>,
}

impl UvmEngine {
    /// An engine with no streams yet (they are made at first use).
    pub const fn new() -> Self {
        UvmEngine {
            movers: Mutex::new(BTreeMap::new()),
        }
    }

    fn mover(&self, device: CUdevice) -> Result<Mover, CudaError> {
        if let Some(mover) = self.movers.lock().get(&device) {
            return Ok(*mover);
        }
        let ctx = driver::ctx::retain_primary(device)?;
        let stream = {
            let _pushed = PushedContext::push(ctx)?;
            // A blocking stream: the legacy default stream, where most
            // programs launch, waits for the hook's prefetches.
            driver::stream::create(CU_STREAM_DEFAULT)?
        };
        let made = Mover {
            ctx: ctx as usize,
            stream: stream as usize,
        };
        let mut movers = self.movers.lock();
        if let Some(first) = movers.get(&device) {
            // Another thread made one meanwhile: keep the first.
            let first = *first;
            drop(movers);
            let _pushed = PushedContext::push(ctx)?;
            driver::stream::destroy(stream)?;
            driver::ctx::release_primary(device)?;
            return Ok(first);
        }
        movers.insert(device, made);
        Ok(made)
    }

    /// Prefetches `items` to `target` on the device's stream and waits.
    fn prefetch_all(
        &self,
        device: CUdevice,
        items: &[(CUdeviceptr, u64)],
        target: PrefetchTarget,
    ) -> Result<(), CudaError> {
        if items.is_empty() {
            return Ok(());
        }
        let mover = self.mover(device)?;
        let _pushed = PushedContext::push(mover.ctx())?;
        for &(ptr, bytes) in items {
            driver::mem::prefetch(ptr, bytes, target, mover.stream())?;
        }
        driver::stream::synchronize(mover.stream())
    }

    /// Enqueues the prefetch of a fresh allocation without waiting for it.
    fn populate(&self, device: CUdevice, ptr: CUdeviceptr, bytes: u64) -> Result<(), CudaError> {
        let mover = self.mover(device)?;
        let _pushed = PushedContext::push(mover.ctx())?;
        driver::mem::prefetch(ptr, bytes, PrefetchTarget::Device(device), mover.stream())
    }
}

impl Default for UvmEngine {
    fn default() -> Self {
        Self::new()
    }
}

/// The managed allocations on `device`, oldest use first.
fn managed_by_age(device: CUdevice) -> Vec<(CUdeviceptr, Allocation)> {
    let mut managed: Vec<_> = registry::lock()
        .allocations_on(device)
        .into_iter()
        .filter(|(_, a)| a.kind.is_managed())
        .collect();
    managed.sort_by_key(|(_, a)| a.last_use);
    managed
}

/// Oldest first, until at least `bytes` are chosen.
pub(crate) fn choose_eviction(
    resident_by_age: &[(CUdeviceptr, u64)],
    bytes: u64,
) -> Vec<(CUdeviceptr, u64)> {
    let mut chosen = Vec::new();
    let mut moved = 0;
    for &(base, size) in resident_by_age {
        if moved >= bytes {
            break;
        }
        chosen.push((base, size));
        moved += size;
    }
    chosen
}

/// Newest first, each allocation that still fits in `budget`.
pub(crate) fn choose_restore(
    by_age: &[(CUdeviceptr, u64)],
    mut budget: u64,
) -> Vec<(CUdeviceptr, u64)> {
    by_age
        .iter()
        .rev()
        .filter(|&&(_, size)| {
            let fits = size <= budget;
            if fits {
                budget -= size;
            }
            fits
        })
        .copied()
        .collect()
}

impl MemoryEngine for UvmEngine {
    fn name(&self) -> &'static str {
        "uvm"
    }

    fn alloc(
        &self,
        device: CUdevice,
        bytes: u64,
        on_gpu: bool,
    ) -> Result<(CUdeviceptr, AllocKind), CudaError> {
        let ptr = driver::mem::alloc_managed(bytes, CU_MEM_ATTACH_GLOBAL)?;
        if on_gpu && let Err(err) = self.populate(device, ptr, bytes) {
            tracing::debug!(%err, device, bytes, "fresh managed allocation not prefetched; it fills on first touch");
        }
        Ok((ptr, AllocKind::ManagedForDevice))
    }

    fn evict(
        &self,
        device: CUdevice,
        bytes: u64,
        _released: &mut dyn FnMut(u64),
    ) -> Result<u64, EngineError> {
        let resident: Vec<_> = managed_by_age(device)
            .into_iter()
            .filter(|(_, a)| a.resident)
            .map(|(base, a)| (base, a.bytes))
            .collect();
        let chosen = choose_eviction(&resident, bytes);
        self.prefetch_all(device, &chosen, PrefetchTarget::Host)
            .map_err(|source| EngineError::Driver { device, source })?;
        let mut registry = registry::lock();
        for &(base, _) in &chosen {
            registry.set_resident(base, false);
        }
        let moved = chosen.iter().map(|&(_, size)| size).sum();
        tracing::debug!(
            device,
            asked = bytes,
            moved,
            "evicted managed memory to the host"
        );
        Ok(moved)
    }

    fn restore(
        &self,
        device: CUdevice,
        limit: u64,
        capacity: Option<u64>,
    ) -> Result<u64, EngineError> {
        let capacity = match capacity {
            Some(capacity) => capacity,
            None => driver::device::total_mem(device)
                .map_err(|source| EngineError::Driver { device, source })?,
        };
        let managed = managed_by_age(device);
        // Memory the hook cannot move occupies the device whatever happens.
        let fixed =
            self.usage(device).footprint - managed.iter().map(|(_, a)| a.bytes).sum::<u64>();
        let sizes: Vec<_> = managed.iter().map(|(base, a)| (*base, a.bytes)).collect();
        let chosen = choose_restore(&sizes, capacity.saturating_sub(fixed).min(limit));
        self.prefetch_all(device, &chosen, PrefetchTarget::Device(device))
            .map_err(|source| EngineError::Driver { device, source })?;
        let mut moved = 0;
        let mut registry = registry::lock();
        for &(base, size) in &chosen {
            let was_resident = registry.containing(base).is_some_and(|(_, a)| a.resident);
            if registry.set_resident(base, true) && !was_resident {
                moved += size;
            }
        }
        tracing::debug!(
            device,
            moved,
            prefetched = chosen.len(),
            "restored managed memory to the GPU"
        );
        Ok(moved)
    }

    fn on_fork_child(&self, child: &InForkChild) {
        crate::fork::forget_contents(&self.movers, child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn eviction_takes_the_oldest_until_enough() {
        let by_age = [(1, 10), (2, 10), (3, 10)];
        assert_eq!(choose_eviction(&by_age, 15), vec![(1, 10), (2, 10)]);
        assert_eq!(choose_eviction(&by_age, 0), vec![]);
        assert_eq!(choose_eviction(&by_age, 100), by_age.to_vec());
    }

    #[test]
    fn restore_prefers_the_newest_and_skips_what_does_not_fit() {
        let by_age = [(1, 5), (2, 30), (3, 10)];
        assert_eq!(choose_restore(&by_age, 20), vec![(3, 10), (1, 5)]);
    }

    proptest! {
        #[test]
        fn eviction_moves_enough_and_no_more_than_one_extra(
            sizes in proptest::collection::vec(1u64..1000, 0..20),
            bytes in 0u64..20_000,
        ) {
            let by_age: Vec<_> = sizes.iter().enumerate().map(|(i, &s)| (i as u64, s)).collect();
            let chosen = choose_eviction(&by_age, bytes);
            let total: u64 = chosen.iter().map(|c| c.1).sum();
            let all: u64 = sizes.iter().sum();
            prop_assert!(total >= bytes.min(all));
            if let Some(last) = chosen.last() {
                prop_assert!(total - last.1 < bytes);
            }
        }

        #[test]
        fn restore_never_exceeds_the_budget(
            sizes in proptest::collection::vec(1u64..1000, 0..20),
            budget in 0u64..10_000,
        ) {
            let by_age: Vec<_> = sizes.iter().enumerate().map(|(i, &s)| (i as u64, s)).collect();
            let total: u64 = choose_restore(&by_age, budget).iter().map(|c| c.1).sum();
            prop_assert!(total <= budget);
        }
    }
}
