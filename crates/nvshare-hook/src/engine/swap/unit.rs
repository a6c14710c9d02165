//! A swappable unit: one reserved VA range backed, while resident, by
//! `cuMemCreate` handles, one per segment of the range, each mapped over
//! its segment with access set once. Its VA never changes: swapping out
//! releases the handles and keeps the range reserved; swapping in maps
//! fresh handles at the same addresses.
//!
//! Segments ([`super::plan::segments`], `NVSHARE_SWAP_SEGMENT_MIB`) are what
//! lets memory move piece by piece: an eviction releases each segment as
//! soon as its copy is done, and a restore ahead of a grant may bring back
//! only the segments that fit in the room the scheduler has. Between moves
//! every segment is either mapped (the GPU's copy is the data) or not (the
//! shadow's copy is): a unit may be partly resident.
//!
//! A unit holds either one allocation of the program or a slab of small
//! ones ([`super::slab`]).

use super::shadow::Shadow;
use super::slab::Slab;
use crate::driver::{self, CudaError};
use crate::ffi::{
    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, CUdevice, CUdeviceptr, CUmemGenericAllocationHandle,
    CUresult,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a unit holds.
#[derive(Debug)]
pub enum Contents {
    /// One allocation of `requested` bytes starting at the unit's base.
    Whole {
        /// The size the program asked for.
        requested: u64,
    },
    /// Blocks of small allocations.
    Slab {
        /// Which blocks are taken.
        slab: Slab,
        /// Offset of each taken block to the size the program asked for.
        requested: BTreeMap<u64, u64>,
    },
    /// A mapping the program made itself with the VMM API, in its own
    /// reservation ([`super::mapped`]): made again with the program's
    /// properties and access, and never unreserved by the hook.
    Program(super::mapped::Remap),
}

/// One piece of a unit's range with a handle of its own.
#[derive(Debug)]
pub struct Segment {
    /// Its start, from the unit's base.
    pub offset: u64,
    /// Its size, a multiple of the granularity.
    pub bytes: u64,
    /// The mapped handle while it is on the device.
    pub handle: Option<CUmemGenericAllocationHandle>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Unit {
    /// The device whose memory backs it.
    pub device: CUdevice,
    /// The reserved range's start (the program's pointer for `Whole`).
    pub base: CUdeviceptr,
    /// The range's size, a multiple of the granularity: what it occupies.
    pub bytes: u64,
    /// The range cut into segments, in address order, tiling it exactly.
    pub segments: Vec<Segment>,
    /// The host copy, kept once made.
    pub shadow: Option<Shadow>,
    /// What it holds.
    pub contents: Contents,
}

/// Set once the driver refused exportable handles: later handles are made
/// without an export type (IPC export then cannot be offered for them).
static NO_EXPORTABLE_HANDLES: AtomicBool = AtomicBool::new(false);

/// The handle types swap-mode memory is created exportable as
/// (`CU_MEM_HANDLE_TYPE_*` bits, what `CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES`
/// reports).
pub fn exportable_handle_types() -> std::ffi::c_uint {
    if NO_EXPORTABLE_HANDLES.load(Ordering::Relaxed) {
        0
    } else {
        CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
    }
}

/// A handle of `bytes` on `device`, exportable as a file descriptor where
/// the driver allows it.
fn create_handle(device: CUdevice, bytes: u64) -> Result<CUmemGenericAllocationHandle, CudaError> {
    if !NO_EXPORTABLE_HANDLES.load(Ordering::Relaxed) {
        match driver::vmm::create(device, bytes, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
            Ok(handle) => return Ok(handle),
            Err(CudaError::Failed { code, .. })
                if code == CUresult::ERROR_NOT_SUPPORTED
                    || code == CUresult::ERROR_INVALID_VALUE =>
            {
                tracing::info!(%code, "the driver refuses file-descriptor exportable GPU memory; swap mode uses plain handles");
                NO_EXPORTABLE_HANDLES.store(true, Ordering::Relaxed);
            }
            Err(err) => return Err(err),
        }
    }
    driver::vmm::create(device, bytes, 0)
}

impl Unit {
    /// Reserves `bytes` (a granularity multiple) on `device` and maps fresh
    /// memory there in segments of at most `segment_bytes` (a granularity
    /// multiple); nothing is left behind on failure.
    pub fn create(
        device: CUdevice,
        bytes: u64,
        segment_bytes: u64,
        contents: Contents,
    ) -> Result<Unit, CudaError> {
        let base = driver::vmm::reserve(bytes, 0)?;
        let segments = super::plan::segments(bytes, segment_bytes)
            .into_iter()
            .map(|(offset, bytes)| Segment {
                offset,
                bytes,
                handle: None,
            })
            .collect();
        let mut unit = Unit {
            device,
            base,
            bytes,
            segments,
            shadow: None,
            contents,
        };
        let mapped = (0..unit.segments.len()).try_for_each(|index| unit.map_fresh(index));
        if let Err(err) = mapped {
            if let Err(undo) = unit.unmap_and_release() {
                tracing::warn!(%undo, base, "cannot unmap the memory of a failed allocation");
            } else if let Err(undo) = driver::vmm::unreserve(base, bytes) {
                tracing::warn!(%undo, base, bytes, "cannot free the address range of a failed allocation");
            }
            return Err(err);
        }
        Ok(unit)
    }

    /// A unit over memory the program already mapped at `base` with one
    /// `handle` (its own VMM mapping, [`Contents::Program`]): one segment,
    /// resident.
    pub fn adopt(
        device: CUdevice,
        base: CUdeviceptr,
        bytes: u64,
        handle: CUmemGenericAllocationHandle,
        contents: Contents,
    ) -> Unit {
        Unit {
            device,
            base,
            bytes,
            segments: vec![Segment {
                offset: 0,
                bytes,
                handle: Some(handle),
            }],
            shadow: None,
            contents,
        }
    }

    /// The one handle mapped over all of it, if it is made of one segment
    /// and resident (a program's own mapping always is one segment).
    pub fn whole_handle(&self) -> Option<CUmemGenericAllocationHandle> {
        match self.segments.as_slice() {
            [only] => only.handle,
            _ => None,
        }
    }

    /// Whether all its memory is on the device.
    pub fn is_resident(&self) -> bool {
        self.segments.iter().all(|s| s.handle.is_some())
    }

    /// The bytes of its segments on the device.
    pub fn resident_bytes(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.handle.is_some())
            .map(|s| s.bytes)
            .sum()
    }

    /// The bytes the program asked for that live in this unit.
    pub fn requested(&self) -> u64 {
        match &self.contents {
            Contents::Whole { requested } => *requested,
            Contents::Slab { requested, .. } => requested.values().sum(),
            Contents::Program(_) => self.bytes,
        }
    }

    /// Creates a handle for segment `index` (not mapped), maps it over the
    /// segment and grants access (the device's, or the program's recorded
    /// access for its own mapping; contents undefined). On failure nothing
    /// stays mapped.
    pub fn map_fresh(&mut self, index: usize) -> Result<(), CudaError> {
        let segment = &self.segments[index];
        debug_assert!(segment.handle.is_none());
        let (start, bytes) = (self.base + segment.offset, segment.bytes);
        let handle = match &self.contents {
            Contents::Program(remap) => remap.create(bytes)?,
            _ => create_handle(self.device, bytes)?,
        };
        let set_access = || match &self.contents {
            Contents::Program(remap) => remap.set_access(start, bytes),
            _ => driver::vmm::set_access(start, bytes, self.device),
        };
        let mapped = driver::vmm::map(start, bytes, handle).and_then(|()| {
            set_access().inspect_err(|_| {
                let _ = driver::vmm::unmap(start, bytes);
            })
        });
        if let Err(err) = mapped {
            if let Err(undo) = driver::vmm::release(handle) {
                tracing::warn!(%undo, "cannot release the handle of a failed mapping");
            }
            return Err(err);
        }
        self.segments[index].handle = Some(handle);
        Ok(())
    }

    /// Unmaps and releases segment `index`'s memory, keeping the range
    /// reserved; returns the bytes released (0 if it was not mapped). Work
    /// on the segment must be finished. On an unmap failure the segment
    /// stays mapped and intact; a release failure only leaks the handle.
    pub fn unmap_segment(&mut self, index: usize) -> Result<u64, CudaError> {
        let segment = &mut self.segments[index];
        let Some(handle) = segment.handle else {
            return Ok(0);
        };
        driver::vmm::unmap(self.base + segment.offset, segment.bytes)?;
        segment.handle = None;
        if let Err(err) = driver::vmm::release(handle) {
            tracing::warn!(%err, base = self.base, "releasing swapped-out GPU memory failed; the driver may keep it allocated");
        }
        Ok(segment.bytes)
    }

    /// Unmaps and releases every segment, keeping the range reserved (see
    /// [`Unit::unmap_segment`]); stops at the first failure.
    pub fn unmap_and_release(&mut self) -> Result<(), CudaError> {
        (0..self.segments.len()).try_for_each(|index| self.unmap_segment(index).map(drop))
    }

    /// Gives everything back: the memory, the range and the shadow.
    /// A program's own mapping keeps its range: that is the program's.
    pub fn destroy(mut self) -> Result<(), CudaError> {
        self.unmap_and_release()?;
        if matches!(self.contents, Contents::Program(_)) {
            return Ok(());
        }
        driver::vmm::unreserve(self.base, self.bytes)
    }
}
