//! The fake driver's settings, read once from the environment at `cuInit`.

use std::path::PathBuf;

pub use fake_gpus::{DEFAULT_MEMORY, MAX_DEVICES, parse_bytes};

/// Settings of one process's fake driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `FAKE_CUDA_DEVICES`: how many devices exist (1..=8, default 1).
    pub devices: usize,
    /// `FAKE_CUDA_MEMORY`: bytes of memory per device.
    pub memory_per_device: u64,
    /// `FAKE_CUDA_TRACE`: a file that receives one line per event.
    pub trace_path: Option<PathBuf>,
    /// `FAKE_CUDA_STATE_DIR`: where the cross-process memory table lives.
    pub state_dir: Option<PathBuf>,
    /// `FAKE_CUDA_PINNED_LIMIT`: bytes of host memory one process may pin
    /// (allocate pinned or register); unlimited when unset.
    pub pinned_limit: Option<u64>,
}

impl Config {
    /// Reads the settings from the process environment; the `Err` says which
    /// variable is wrong and what it accepts.
    pub fn from_env() -> Result<Config, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (devices, memory_per_device) = fake_gpus::from_env()?;
        let pinned_limit = match var("FAKE_CUDA_PINNED_LIMIT") {
            None => None,
            Some(text) => Some(parse_bytes(&text).ok_or_else(|| {
                format!("FAKE_CUDA_PINNED_LIMIT={text:?} is not a size; use bytes or a suffix such as 256MiB")
            })?),
        };
        Ok(Config {
            pinned_limit,
            devices,
            memory_per_device,
            trace_path: var("FAKE_CUDA_TRACE").map(PathBuf::from),
            state_dir: var("FAKE_CUDA_STATE_DIR").map(PathBuf::from),
        })
    }
}
