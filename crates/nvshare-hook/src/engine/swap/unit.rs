//! A swappable unit: one reserved VA range backed, while resident, by one
//! `cuMemCreate` handle mapped over all of it with access set once. Its VA
//! never changes: swapping out releases the handle and keeps the range
//! reserved; swapping in maps a fresh handle at the same address.
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

/// See the module documentation.
#[derive(Debug)]
pub struct Unit {
    /// The device whose memory backs it.
    pub device: CUdevice,
    /// The reserved range's start (the program's pointer for `Whole`).
    pub base: CUdeviceptr,
    /// The range's size, a multiple of the granularity: what it occupies.
    pub bytes: u64,
    /// The mapped handle while resident.
    pub handle: Option<CUmemGenericAllocationHandle>,
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
        match driver::vmm_create(device, bytes, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
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
    driver::vmm_create(device, bytes, 0)
}

impl Unit {
    /// Reserves `bytes` (a granularity multiple) on `device` and maps fresh
    /// memory there; nothing is left behind on failure.
    pub fn create(device: CUdevice, bytes: u64, contents: Contents) -> Result<Unit, CudaError> {
        let base = driver::vmm_reserve(bytes, 0)?;
        let mut unit = Unit {
            device,
            base,
            bytes,
            handle: None,
            shadow: None,
            contents,
        };
        if let Err(err) = unit.map_fresh() {
            if let Err(undo) = driver::vmm_unreserve(base, bytes) {
                tracing::warn!(%undo, base, bytes, "cannot free the address range of a failed allocation");
            }
            return Err(err);
        }
        Ok(unit)
    }

    /// Whether its memory is on the device.
    pub fn is_resident(&self) -> bool {
        self.handle.is_some()
    }

    /// The bytes the program asked for that live in this unit.
    pub fn requested(&self) -> u64 {
        match &self.contents {
            Contents::Whole { requested } => *requested,
            Contents::Slab { requested, .. } => requested.values().sum(),
            Contents::Program(_) => self.bytes,
        }
    }

    /// Creates a handle, maps it over the whole range and grants the device
    /// access (contents undefined). On failure nothing stays mapped.
    pub fn map_fresh(&mut self) -> Result<(), CudaError> {
        debug_assert!(self.handle.is_none());
        let handle = match &self.contents {
            Contents::Program(remap) => remap.create(self.bytes)?,
            _ => create_handle(self.device, self.bytes)?,
        };
        let set_access = || match &self.contents {
            Contents::Program(remap) => remap.set_access(self.base, self.bytes),
            _ => driver::vmm_set_access(self.base, self.bytes, self.device),
        };
        let mapped = driver::vmm_map(self.base, self.bytes, handle).and_then(|()| {
            set_access().inspect_err(|_| {
                let _ = driver::vmm_unmap(self.base, self.bytes);
            })
        });
        if let Err(err) = mapped {
            if let Err(undo) = driver::vmm_release(handle) {
                tracing::warn!(%undo, "cannot release the handle of a failed mapping");
            }
            return Err(err);
        }
        self.handle = Some(handle);
        Ok(())
    }

    /// Unmaps and releases the memory, keeping the range reserved. Work on
    /// the range must be finished. On an unmap failure the unit stays
    /// resident and intact; a release failure only leaks the handle.
    pub fn unmap_and_release(&mut self) -> Result<(), CudaError> {
        let Some(handle) = self.handle else {
            return Ok(());
        };
        driver::vmm_unmap(self.base, self.bytes)?;
        self.handle = None;
        if let Err(err) = driver::vmm_release(handle) {
            tracing::warn!(%err, base = self.base, "releasing swapped-out GPU memory failed; the driver may keep it allocated");
        }
        Ok(())
    }

    /// Gives everything back: the memory, the range and the shadow.
    /// A program's own mapping keeps its range: that is the program's.
    pub fn destroy(mut self) -> Result<(), CudaError> {
        self.unmap_and_release()?;
        if matches!(self.contents, Contents::Program(_)) {
            return Ok(());
        }
        driver::vmm_unreserve(self.base, self.bytes)
    }
}
