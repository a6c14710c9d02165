//! Whether an allocation may happen at all: the program's footprint stays
//! within its own memory limit (`NVSHARE_MEMORY_LIMIT`) and the capacity
//! the scheduler gave it. The gate decides; the engine only reports the
//! footprint and backs what is admitted.

use crate::config::{self, MemoryMode};
use crate::ffi::{CUdevice, CUresult};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a new allocation of `bytes` on `device` stays within the capacity
/// the program may use; the OOM a program sees when it does not.
pub fn admit(device: CUdevice, bytes: u64) -> Result<(), CUresult> {
    let Some(share) = super::share(device) else {
        return Ok(());
    };
    let footprint = crate::engine::current().usage(device).footprint;
    let wanted = footprint.saturating_add(bytes);
    // The job's own limit holds in every mode: it is what an operator
    // promised the other jobs on this GPU.
    if let Some(limit) = share.limit
        && wanted > limit
    {
        report_over_limit(device, bytes, footprint, limit);
        return Err(CUresult::ERROR_OUT_OF_MEMORY);
    }
    let Some(capacity) = share.capacity else {
        return Ok(());
    };
    if wanted <= capacity {
        return Ok(());
    }
    let config = config::get();
    if config.mode == MemoryMode::Uvm && config.single_oversub {
        return Ok(());
    }
    report_refusal(device, bytes, footprint, capacity);
    Err(CUresult::ERROR_OUT_OF_MEMORY)
}

/// Says why an allocation past the program's own limit failed: once per
/// program as a warning naming the limit, the request and what to change,
/// then at info.
fn report_over_limit(device: CUdevice, bytes: u64, footprint: u64, limit: u64) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let message = format!(
        "an allocation of {:.1} MiB on GPU {device} is refused with CUDA_ERROR_OUT_OF_MEMORY: \
         this program holds {:.1} MiB and its memory limit is {:.1} MiB (NVSHARE_MEMORY_LIMIT). \
         Raise the program's NVSHARE_MEMORY_LIMIT or make it use less",
        mib(bytes),
        mib(footprint),
        mib(limit),
    );
    if first_time(&WARNED) {
        tracing::warn!(device, bytes, footprint, limit, "{message}");
    } else {
        tracing::info!(device, bytes, footprint, limit, "{message}");
    }
}

/// Says why an allocation failed: once per program as a warning with what to
/// change (a program usually gives up or retries smaller at its first OOM),
/// then at info.
fn report_refusal(device: CUdevice, bytes: u64, footprint: u64, capacity: u64) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let message = format!(
        "an allocation of {:.1} MiB on GPU {device} is refused with CUDA_ERROR_OUT_OF_MEMORY: \
         this program holds {:.1} MiB and may use {:.1} MiB of it (the scheduler's capacity, \
         see nvshare-ctl status). Raise nvshare-scheduler's --memory-capacity, make the \
         program use less, or run it with NVSHARE_MODE=uvm NVSHARE_ENABLE_SINGLE_OVERSUB=1 \
         to let it exceed the GPU (slowly, by paging)",
        mib(bytes),
        mib(footprint),
        mib(capacity),
    );
    if first_time(&WARNED) {
        tracing::warn!(device, bytes, footprint, capacity, "{message}");
    } else {
        tracing::info!(device, bytes, footprint, capacity, "{message}");
    }
}

/// Whether this is the first refusal of its kind in the program (a program
/// usually gives up or retries smaller at its first OOM: that one is the
/// warning, the rest are info).
fn first_time(warned: &AtomicBool) -> bool {
    !warned.swap(true, Ordering::Relaxed)
}

/// `bytes` in MiB, for the refusal messages.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}
