//! The direct engine: real device memory from `cuMemAlloc_v2`, accounted in
//! the registry, never moved. Swap mode uses it until VMM swapping exists.

use super::{EngineError, MemoryEngine};
use crate::driver::{self, CudaError};
use crate::ffi::{CUdevice, CUdeviceptr};
use crate::registry::AllocKind;

/// See the module documentation.
pub struct DirectEngine;

impl MemoryEngine for DirectEngine {
    fn name(&self) -> &'static str {
        "direct"
    }

    fn alloc(&self, _device: CUdevice, bytes: u64) -> Result<(CUdeviceptr, AllocKind), CudaError> {
        Ok((driver::mem_alloc(bytes)?, AllocKind::Device))
    }

    fn evict(&self, device: CUdevice, bytes: u64) -> Result<u64, EngineError> {
        if bytes == 0 {
            return Ok(0);
        }
        Err(EngineError::CannotEvict {
            engine: self.name(),
            device,
        })
    }

    fn restore(&self, _device: CUdevice) -> Result<u64, EngineError> {
        Ok(0)
    }
}
