//! Memory engines: how device allocations are backed, and how the gate
//! moves them off the GPU for others and back on grant.
//!
//! - [`swap`]: `NVSHARE_MODE=swap` (the default), VMM units swapped to host
//!   shadows in bulk.
//! - [`uvm`]: `NVSHARE_MODE=uvm`, managed memory moved by prefetch.

pub mod swap;
pub mod uvm;

use crate::config::{self, MemoryMode};
use crate::driver::CudaError;
use crate::ffi::{CUdevice, CUdeviceptr};
use crate::fork::InForkChild;
use crate::registry::{self, AllocKind, Usage};
use std::sync::OnceLock;

/// Why an engine could not move memory.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A driver call failed while moving memory.
    #[error("moving memory of GPU {device} failed: {source}")]
    Driver {
        /// The device.
        device: CUdevice,
        /// The failed call.
        #[source]
        source: CudaError,
    },
    /// Host memory for the shadows could not be had; nothing moved.
    #[error("cannot evict {bytes} bytes from GPU {device}: {source}")]
    HostMemory {
        /// The device.
        device: CUdevice,
        /// The bytes asked for.
        bytes: u64,
        /// Why.
        #[source]
        source: swap::shadow::ShadowError,
    },
    /// This engine keeps memory where it is.
    #[error(
        "the {engine} engine cannot evict memory from GPU {device}; run with NVSHARE_MODE=uvm to share an oversubscribed GPU"
    )]
    CannotEvict {
        /// The engine's name.
        engine: &'static str,
        /// The device.
        device: CUdevice,
    },
}

impl EngineError {
    /// Whether the GPU itself was out of memory (a retry may succeed once
    /// others free theirs).
    pub fn is_out_of_device_memory(&self) -> bool {
        matches!(self, EngineError::Driver { source, .. }
            if source.code() == crate::ffi::CUresult::ERROR_OUT_OF_MEMORY)
    }
}

/// Host memory an engine keeps as shadows of one device's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostShadows {
    /// Page-locked bytes.
    pub pinned: u64,
    /// Pageable bytes (the driver refused to pin them).
    pub pageable: u64,
}

/// What the wrappers and the gate ask of the memory mode.
pub trait MemoryEngine: Send + Sync {
    /// The mode's name, for logs.
    fn name(&self) -> &'static str;

    /// Backs a new device allocation of `bytes` on `device` (the current
    /// context's device), returning its address and kind. `on_gpu` says
    /// whether the program holds the GPU now (memory may be placed there at
    /// once). The caller records it in the registry.
    fn alloc(
        &self,
        device: CUdevice,
        bytes: u64,
        on_gpu: bool,
    ) -> Result<(CUdeviceptr, AllocKind), CudaError>;

    /// Frees `ptr` if this engine backs it (`cuMemFree`); `None` leaves it
    /// to the real driver.
    fn free(&self, _ptr: CUdeviceptr) -> Option<Result<(), CudaError>> {
        None
    }

    /// How much a new allocation of `bytes` on `device` may add to the
    /// footprint [`MemoryEngine::usage`] reports (an upper bound).
    fn growth(&self, _device: CUdevice, bytes: u64) -> u64 {
        bytes
    }

    /// `device`'s footprint and resident bytes.
    fn usage(&self, device: CUdevice) -> Usage {
        registry::lock().usage(device)
    }

    /// The host memory kept as shadows of `device`'s memory (swapped out,
    /// or made ahead of an eviction).
    fn host_shadows(&self, _device: CUdevice) -> HostShadows {
        HostShadows::default()
    }

    /// Moves at least `bytes` of the program's memory off `device` (least
    /// recently used first) and returns how much moved. The gate calls it
    /// with no work in flight and the contexts synchronized. Engines that
    /// free memory piece by piece tell `released` the bytes freed so far
    /// after each piece.
    fn evict(
        &self,
        device: CUdevice,
        bytes: u64,
        released: &mut dyn FnMut(u64),
    ) -> Result<u64, EngineError>;

    /// Brings the program's memory back onto `device`, at most `limit`
    /// bytes of it (`u64::MAX`: all, before its work is released after a
    /// grant; less: ahead of a grant, into the room the scheduler has), and
    /// never past `capacity` in all (the scheduler's; `None`: the GPU's);
    /// returns how much moved.
    fn restore(
        &self,
        device: CUdevice,
        limit: u64,
        capacity: Option<u64>,
    ) -> Result<u64, EngineError>;

    /// Gets ready, while the program runs, to move `bytes` off `device`
    /// soon (the scheduler's hint): makes the host room the eviction would
    /// otherwise make on the switch path. Returns the bytes prepared.
    fn prepare(&self, _device: CUdevice, _bytes: u64) -> Result<u64, EngineError> {
        Ok(0)
    }

    /// As [`MemoryEngine::prepare`], but stops as soon as `abandon` says so
    /// (a drop or eviction arrived: it must not wait for the rest), keeping
    /// what was made so far; the eviction makes the rest itself.
    fn prepare_until(
        &self,
        device: CUdevice,
        bytes: u64,
        _abandon: &(dyn Fn() -> bool + Sync),
    ) -> Result<u64, EngineError> {
        self.prepare(device, bytes)
    }

    /// Logs `device`'s requested versus physical bytes (one `info` line at
    /// exit; see `swap::tally`).
    fn log_footprint(&self, _device: CUdevice) {}

    /// At process exit, with no work of the program running on `device`:
    /// gives the device memory this engine backs there back to the driver
    /// now (before the scheduler hears the program is gone), waiting at most
    /// `patience` for a move in progress. Returns the bytes released.
    fn release_at_exit(&self, _device: CUdevice, _patience: std::time::Duration) -> u64 {
        0
    }

    /// Forgets per-process driver state in a `fork()` child.
    fn on_fork_child(&self, _child: &InForkChild) {}
}

/// The engine of the configured mode, made once from the configuration.
enum Engine {
    Swap(swap::SwapEngine),
    Uvm(uvm::UvmEngine),
}

static ENGINE: OnceLock<Engine> = OnceLock::new();

fn engine() -> &'static Engine {
    ENGINE.get_or_init(|| {
        let config = config::get();
        match config.mode {
            MemoryMode::Swap => Engine::Swap(swap::SwapEngine::new(&config.swap)),
            MemoryMode::Uvm => Engine::Uvm(uvm::UvmEngine::new()),
        }
    })
}

/// The engine of the configured mode.
pub fn current() -> &'static dyn MemoryEngine {
    match engine() {
        Engine::Swap(swap) => swap,
        Engine::Uvm(uvm) => uvm,
    }
}

/// The swap engine, in swap mode (the program's own VMM memory is
/// virtualized only there).
pub fn swap_engine() -> Option<&'static swap::SwapEngine> {
    match engine() {
        Engine::Swap(swap) => Some(swap),
        Engine::Uvm(_) => None,
    }
}

/// In a `fork()` child: resets the registry and the engine's driver state.
pub fn on_fork_child(child: &InForkChild) {
    registry::reset_after_fork(child);
    current().on_fork_child(child);
}
