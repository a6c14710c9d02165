//! The swap engine (`NVSHARE_MODE=swap`, the default): device allocations
//! are VMM units whose memory moves to host shadows in bulk when the
//! scheduler asks, and back at the same address before the program's next
//! work.
//!
//! The footprint it reports is physical: whole units (granularity-rounded
//! allocations, whole slabs), because that is what occupies the GPU and
//! what the scheduler must fit; requested sizes are what the registry
//! records per allocation, for pointer queries.
//!
//! # Layout
//! - [`plan`]: pure choices: LRU order, copy geometry and chunks, the
//!   order of a pipelined restore, host memory room.
//! - [`slab`]: size classes and block bookkeeping of small allocations.
//! - [`unit`]: one reserved range and its mapping (create, unmap, destroy).
//! - [`shadow`]: pinned (or pageable) host copies and their budget.
//! - [`streams`]: the hook's copy streams per device.
//! - [`moves`]: eviction and restoration of units.
//! - [`mapped`]: the program's own VMM handles, virtualized; its mappings
//!   that can move are units too.
//! - [`tally`]: requested versus physical bytes, now and at the peak.

pub mod mapped;
#[allow(unsafe_code)]
pub mod moves;
pub mod plan;
#[allow(unsafe_code)]
pub mod shadow;
pub mod slab;
pub mod streams;
pub mod tally;
pub mod unit;

use super::{EngineError, MemoryEngine};
use crate::config::SwapSettings;
use crate::driver::{self, CudaError};
use crate::ffi::{CUdevice, CUdeviceptr, CUresult};
use crate::fork::InForkChild;
use crate::registry::{self, AllocKind, Usage};
use parking_lot::{Mutex, MutexGuard};
use plan::CopyGeometry;
use shadow::HostBudget;
use slab::Slab;
use std::collections::BTreeMap;
use unit::{Contents, Unit};

/// Every unit, by base address. Ranges never overlap (they are distinct
/// reservations), so the unit holding an address is the last one starting
/// at or below it.
#[derive(Debug, Default)]
pub struct Units {
    by_base: BTreeMap<CUdeviceptr, Unit>,
}

impl Units {
    /// The unit whose range holds `address`.
    pub fn containing_mut(&mut self, address: CUdeviceptr) -> Option<&mut Unit> {
        let (_, unit) = self.by_base.range_mut(..=address).next_back()?;
        (address - unit.base < unit.bytes).then_some(unit)
    }

    /// `device`'s units.
    pub fn on(&self, device: CUdevice) -> impl Iterator<Item = &Unit> {
        self.by_base.values().filter(move |u| u.device == device)
    }

    /// The unit at `base`.
    pub fn get_mut(&mut self, base: CUdeviceptr) -> Option<&mut Unit> {
        self.by_base.get_mut(&base)
    }
}

/// See the module documentation.
pub struct SwapEngine {
    units: Mutex<Units>,
    granularity: Mutex<BTreeMap<CUdevice, u64>>,
    streams: streams::Streams,
    budget: HostBudget,
    geometry: CopyGeometry,
    /// The most bytes of one VMM handle (see `SwapSettings::segment_bytes`).
    segment_bytes: u64,
    tally: tally::Tally,
    /// The memory was released at process exit (see `release_at_exit`).
    exited: std::sync::atomic::AtomicBool,
}

impl SwapEngine {
    /// An engine with no memory yet.
    /// An engine with no memory yet, made with `settings`.
    pub fn new(settings: &SwapSettings) -> Self {
        SwapEngine {
            units: Mutex::new(Units {
                by_base: BTreeMap::new(),
            }),
            granularity: Mutex::new(BTreeMap::new()),
            streams: streams::Streams::new(),
            budget: HostBudget {
                explicit_limit: settings.host_limit,
            },
            geometry: CopyGeometry::from(settings),
            segment_bytes: settings.segment_bytes,
            tally: tally::Tally::new(),
            exited: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn granularity(&self, device: CUdevice) -> Result<u64, CudaError> {
        if let Some(&known) = self.granularity.lock().get(&device) {
            return Ok(known);
        }
        let granularity = driver::vmm::granularity(device)?.max(1);
        self.granularity.lock().insert(device, granularity);
        Ok(granularity)
    }

    fn budget(&self) -> HostBudget {
        self.budget
    }

    /// The units, locked. Moves hold this for their whole duration, so a
    /// unit is never freed or sub-allocated while it is being copied.
    fn units(&self) -> MutexGuard<'_, Units> {
        self.units.lock()
    }

    /// A block of the size class of `bytes` from a resident slab with
    /// room, or from a new slab. Slabs that are swapped out are not handed out from: a new
    /// allocation is always on the device.
    fn alloc_small(&self, device: CUdevice, bytes: u64) -> Result<CUdeviceptr, CudaError> {
        let class = slab::class_of(bytes);
        let mut units = self.units();
        let with_room = units.by_base.values_mut().find(|u| {
            u.device == device
                && u.is_resident()
                && matches!(&u.contents, Contents::Slab { slab, .. } if slab.class() == class && !slab.is_full())
        });
        if let Some(unit) = with_room
            && let Contents::Slab { slab, requested } = &mut unit.contents
        {
            let offset = slab.take().expect("the slab was chosen for having room");
            requested.insert(offset, bytes);
            self.tally.add(device, true, bytes, 0);
            return Ok(unit.base + offset);
        }
        let granularity = self.granularity(device)?;
        let mut slab = Slab::new(class, granularity);
        let offset = slab.take().expect("a new slab has room");
        let contents = Contents::Slab {
            slab,
            requested: BTreeMap::from([(offset, bytes)]),
        };
        let unit = Unit::create(device, granularity, granularity, contents)?;
        let base = unit.base;
        units.by_base.insert(base, unit);
        self.tally.add(device, true, bytes, granularity);
        Ok(base + offset)
    }

    fn alloc_whole(&self, device: CUdevice, bytes: u64) -> Result<CUdeviceptr, CudaError> {
        let granularity = self.granularity(device)?;
        let size =
            bytes
                .div_ceil(granularity)
                .checked_mul(granularity)
                .ok_or(CudaError::Failed {
                    function: "cuMemCreate",
                    code: CUresult::ERROR_OUT_OF_MEMORY,
                })?;
        let segment = self
            .segment_bytes
            .div_ceil(granularity)
            .max(1)
            .saturating_mul(granularity);
        let unit = Unit::create(device, size, segment, Contents::Whole { requested: bytes })?;
        let base = unit.base;
        self.units().by_base.insert(base, unit);
        self.tally.add(device, false, bytes, size);
        Ok(base)
    }

    /// Frees the allocation at `ptr` inside `unit`'s range; returns whether
    /// the unit is now empty and must be destroyed.
    fn free_in(unit: &mut Unit, ptr: CUdeviceptr) -> Result<bool, CudaError> {
        let invalid = CudaError::Failed {
            function: "cuMemFree_v2",
            code: CUresult::ERROR_INVALID_VALUE,
        };
        match &mut unit.contents {
            Contents::Whole { .. } if ptr == unit.base => Ok(true),
            Contents::Whole { .. } => Err(invalid),
            Contents::Program(_) => Err(invalid),
            Contents::Slab { slab, requested } => {
                let offset = ptr - unit.base;
                if !slab.give_back(offset) {
                    return Err(invalid);
                }
                requested.remove(&offset);
                Ok(slab.is_empty())
            }
        }
    }
}

impl Default for SwapEngine {
    fn default() -> Self {
        Self::new(&SwapSettings::default())
    }
}

/// Without VMM (an old driver, or a device without it) allocations are
/// plain device memory: accounted, never moved.
fn warn_no_vmm_once(err: &CudaError) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(%err, "this GPU or driver lacks virtual memory management: swap mode cannot move memory, so programs that do not fit together wait for each other; update the driver or use NVSHARE_MODE=uvm");
    }
}

/// Waits for the calling thread's context before memory is unmapped under
/// work that may still use it (`cuMemFree` synchronizes too).
fn synchronize_before_unmap() {
    if let Err(err) = driver::ctx::synchronize() {
        tracing::debug!(%err, "no context to synchronize before freeing GPU memory");
    }
}

impl MemoryEngine for SwapEngine {
    fn name(&self) -> &'static str {
        "swap"
    }

    fn alloc(
        &self,
        device: CUdevice,
        bytes: u64,
        _on_gpu: bool,
    ) -> Result<(CUdeviceptr, AllocKind), CudaError> {
        if let Err(err) = self.granularity(device) {
            warn_no_vmm_once(&err);
            return Ok((driver::mem::alloc(bytes)?, AllocKind::Device));
        }
        let ptr = if slab::is_small(bytes) {
            self.alloc_small(device, bytes)?
        } else {
            self.alloc_whole(device, bytes)?
        };
        Ok((ptr, AllocKind::Swappable))
    }

    fn free(&self, ptr: CUdeviceptr) -> Option<Result<(), CudaError>> {
        let mut units = self.units();
        let Some(unit) = units.containing_mut(ptr) else {
            // After the release at exit, the program's own teardown may
            // still free what was released: there is nothing left to free,
            // and the driver must not be handed addresses it never made.
            return self
                .exited
                .load(std::sync::atomic::Ordering::Acquire)
                .then_some(Ok(()));
        };
        let (base, device, bytes) = (unit.base, unit.device, unit.bytes);
        let (slab, asked) = match &unit.contents {
            Contents::Whole { requested } => (false, *requested),
            Contents::Slab { requested, .. } => {
                (true, requested.get(&(ptr - base)).copied().unwrap_or(0))
            }
            // Not the hook's allocation: `free_in` refuses it below.
            Contents::Program(_) => (false, 0),
        };
        let emptied = match Self::free_in(unit, ptr) {
            Ok(emptied) => emptied,
            Err(err) => return Some(Err(err)),
        };
        self.tally
            .remove(device, slab, asked, if emptied { bytes } else { 0 });
        if !emptied {
            return Some(Ok(()));
        }
        let unit = units.by_base.remove(&base).expect("found above");
        drop(units);
        if unit.resident_bytes() > 0 {
            synchronize_before_unmap();
        }
        Some(unit.destroy())
    }

    fn growth(&self, device: CUdevice, bytes: u64) -> u64 {
        // Whole units: a small allocation may open a new slab of one
        // granule, a large one is rounded up to granules.
        match self.granularity(device) {
            Ok(granularity) => bytes
                .max(1)
                .div_ceil(granularity)
                .saturating_mul(granularity),
            Err(_) => bytes,
        }
    }

    fn usage(&self, device: CUdevice) -> Usage {
        let (mut physical, mut requested) = (Usage::default(), Usage::default());
        for unit in self.units().on(device) {
            let asked = unit.requested();
            physical.footprint += unit.bytes;
            requested.footprint += asked;
            physical.resident += unit.resident_bytes();
            // The registry counts an allocation resident only once all of
            // its unit is (see `moves::mark`).
            if unit.is_resident() {
                requested.resident += asked;
            }
        }
        // The registry counts swappable allocations at their requested
        // sizes: replace those by the units they occupy.
        let recorded = registry::lock().usage(device);
        // The program's own VMM handles that never move.
        let held = mapped::held(device);
        Usage {
            footprint: recorded.footprint.saturating_sub(requested.footprint)
                + physical.footprint
                + held,
            resident: recorded.resident.saturating_sub(requested.resident)
                + physical.resident
                + held,
        }
    }

    fn host_shadows(&self, device: CUdevice) -> super::HostShadows {
        moves::shadows_on(&self.units(), device)
    }

    fn prepare(&self, device: CUdevice, bytes: u64) -> Result<u64, EngineError> {
        self.prepare_until(device, bytes, &|| false)
    }

    fn prepare_until(
        &self,
        device: CUdevice,
        bytes: u64,
        abandon: &(dyn Fn() -> bool + Sync),
    ) -> Result<u64, EngineError> {
        // Choose under the lock, make the shadows without it (populating and
        // pinning take seconds, and the program's allocations and frees need
        // the lock meanwhile), attach under it again.
        let (wanted, shadows_now) = {
            let units = self.units();
            (
                moves::shadows_wanted(&units, device, bytes),
                moves::shadow_total(&units),
            )
        };
        let total = wanted.iter().map(|&(_, n)| n).sum();
        if total == 0 {
            return Ok(0);
        }
        let host_memory = |source| EngineError::HostMemory {
            device,
            bytes: total,
            source,
        };
        self.budget()
            .admit(shadows_now, total)
            .map_err(host_memory)?;
        // Unit by unit, each checked for a drop between populating steps:
        // what is made when one arrives is kept, the rest left to the
        // eviction.
        let (mut made, mut failure, mut abandoned) = (Vec::new(), None, false);
        for (base, n) in wanted {
            if abandon() {
                abandoned = true;
                break;
            }
            match shadow::Shadow::new_until(n, abandon) {
                Ok(Some(shadow)) => made.push((base, shadow)),
                Ok(None) => {
                    abandoned = true;
                    break;
                }
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        let attached = moves::attach_shadows(&mut self.units(), made);
        if abandoned {
            tracing::debug!(
                device,
                asked = total,
                prepared = attached,
                "making host shadows ahead stopped: the GPU is being asked back"
            );
        }
        match failure {
            Some(source) => Err(host_memory(source)),
            None => Ok(attached),
        }
    }

    fn evict(
        &self,
        device: CUdevice,
        bytes: u64,
        released: &mut dyn FnMut(u64),
    ) -> Result<u64, EngineError> {
        if bytes == 0 {
            return Ok(0);
        }
        let geometry = self.geometry;
        let streams = self
            .streams
            .of(device, geometry.streams)
            .map_err(|source| EngineError::Driver { device, source })?;
        let steps = moves::EvictSteps {
            chunk_bytes: geometry.chunk_bytes,
            release_bytes: self.segment_bytes.min(moves::EvictSteps::MAX_RELEASE_BYTES),
        };
        moves::evict(
            &mut self.units(),
            &streams,
            steps,
            self.budget(),
            device,
            bytes,
            released,
        )
    }

    fn restore(
        &self,
        device: CUdevice,
        limit: u64,
        _capacity: Option<u64>,
    ) -> Result<u64, EngineError> {
        let mut units = self.units();
        if !units.on(device).any(|u| !u.is_resident()) {
            return Ok(0);
        }
        let geometry = self.geometry;
        let streams = self
            .streams
            .of(device, geometry.streams)
            .map_err(|source| EngineError::Driver { device, source })?;
        moves::restore(&mut units, &streams, geometry.chunk_bytes, device, limit)
    }

    fn log_footprint(&self, device: CUdevice) {
        self.tally.log(device);
    }

    fn release_at_exit(&self, device: CUdevice, patience: std::time::Duration) -> u64 {
        let Some(mut units) = self.units.try_lock_for(patience) else {
            tracing::warn!(
                device,
                "a swap of this GPU's memory is still running at exit; leaving its memory to the driver"
            );
            return 0;
        };
        self.exited
            .store(true, std::sync::atomic::Ordering::Release);
        // The program's own VMM mappings are left to it (its teardown
        // unmaps and releases them through the driver).
        let mine: Vec<CUdeviceptr> = units
            .on(device)
            .filter(|u| !matches!(u.contents, Contents::Program(_)))
            .map(|u| u.base)
            .collect();
        let mut released = 0;
        for base in mine {
            let mut unit = units.by_base.remove(&base).expect("listed above");
            let resident = unit.resident_bytes();
            // The host copy dies with the process: unpinning and unmapping
            // it now would only delay the exit.
            std::mem::forget(unit.shadow.take());
            match unit.destroy() {
                Ok(()) => released += resident,
                Err(err) => {
                    tracing::debug!(%err, base, "releasing GPU memory at exit failed; the driver frees it with the process")
                }
            }
        }
        released
    }

    fn on_fork_child(&self, child: &InForkChild) {
        crate::fork::forget_contents(&self.units, child);
        crate::fork::forget_contents(&self.granularity, child);
        mapped::forget_after_fork(child);
        self.tally.clear_after_fork(child);
        self.streams.forget_after_fork(child);
    }
}
