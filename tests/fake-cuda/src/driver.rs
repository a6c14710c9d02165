//! The process-wide state of the fake driver, created by `cuInit`.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::accounting::Accounting;
use crate::config::Config;
use crate::context::Contexts;
use crate::event::Events;
use crate::ffi::{CUDA_ERROR_INVALID_DEVICE, CUDA_ERROR_NOT_INITIALIZED, CUdevice};
use crate::graph::Graphs;
use crate::guard::CuResult;
use crate::registry::Registry;
use crate::stream::Streams;
use crate::trace::Trace;

/// Everything `cuInit` sets up.
pub struct Driver {
    pub config: Config,
    pub trace: Trace,
    pub accounting: Accounting,
    /// Pinned host memory of this process (counted as "device" 0).
    pub pinned: Accounting,
    /// Device allocations, host registrations, reservations and VMM handles.
    pub memory: Mutex<Registry>,
    pub contexts: Contexts,
    pub streams: Streams,
    pub events: Events,
    pub graphs: Graphs,
    /// Loaded module handles.
    pub modules: Mutex<HashSet<usize>>,
    next_handle: AtomicUsize,
}

static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();

/// The initialized driver, or CUDA_ERROR_NOT_INITIALIZED before `cuInit`.
pub fn driver() -> CuResult<&'static Driver> {
    match DRIVER.get() {
        Some(Ok(driver)) => Ok(driver),
        _ => Err(CUDA_ERROR_NOT_INITIALIZED),
    }
}

/// Initializes the driver once from the environment. A bad setting is
/// reported on stderr (once) and every later call fails as uninitialized.
pub fn init() -> CuResult<&'static Driver> {
    let state = DRIVER.get_or_init(|| {
        let built = Driver::from_env();
        if let Err(reason) = &built {
            // The only diagnostic channel a fake libcuda has: its caller
            // sees just CUDA_ERROR_NOT_INITIALIZED.
            eprintln!("fake-cuda: cuInit failed: {reason}");
        }
        built
    });
    state.as_ref().map_err(|_| CUDA_ERROR_NOT_INITIALIZED)
}

impl Driver {
    fn from_env() -> Result<Driver, String> {
        let config = Config::from_env()?;
        let trace = Trace::open(config.trace_path.as_deref())?;
        let accounting = match &config.state_dir {
            Some(dir) => Accounting::shared(config.memory_per_device, dir)?,
            None => Accounting::local(config.memory_per_device),
        };
        let pinned = Accounting::local(config.pinned_limit.unwrap_or(u64::MAX));
        Ok(Driver {
            pinned,
            config,
            trace,
            accounting,
            memory: Mutex::new(Registry::default()),
            contexts: Contexts::default(),
            streams: Streams::default(),
            events: Events::default(),
            graphs: Graphs::default(),
            modules: Mutex::new(HashSet::new()),
            next_handle: AtomicUsize::new(0x1000),
        })
    }

    /// A fresh id for an opaque handle. Ids start at 0x1000 so they never
    /// collide with NULL or the special stream handles 1 and 2.
    pub fn new_handle(&self) -> usize {
        self.next_handle.fetch_add(0x10, Ordering::Relaxed)
    }

    /// Checks a device ordinal and turns it into an index.
    pub fn device(&self, device: CUdevice) -> CuResult<usize> {
        usize::try_from(device)
            .ok()
            .filter(|index| *index < self.config.devices)
            .ok_or(CUDA_ERROR_INVALID_DEVICE)
    }
}
