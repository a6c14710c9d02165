//! The few real driver calls the gate makes for itself. They go straight to
//! the real driver table, never through the hook's wrappers or the gate.

use crate::driver;
use crate::ffi::{CUdevice, CUresult};
use nvshare_proto::GpuUuid;
use std::sync::OnceLock;

/// The device of the calling thread's current context. With a single
/// visible device (the common case) that is device 0 whatever the context,
/// and the driver call, the costliest part of the gate's fast path, is
/// skipped; a call made without a context still fails in the driver itself.
pub(super) fn current_device() -> Result<CUdevice, CUresult> {
    if single_device() {
        return Ok(0);
    }
    driver::ctx::device().map_err(|e| e.code())
}

/// Whether the process sees exactly one device (known once the driver has
/// counted them; before cuInit the count fails and is asked again).
pub(super) fn single_device() -> bool {
    static DEVICE_COUNT: OnceLock<i32> = OnceLock::new();
    let count = match DEVICE_COUNT.get() {
        Some(count) => Some(*count),
        None => driver::device::count()
            .ok()
            .map(|count| *DEVICE_COUNT.get_or_init(|| count)),
    };
    count == Some(1)
}

/// The UUID and physical memory of `device`.
pub(super) fn identify(device: CUdevice) -> Result<(GpuUuid, u64), CUresult> {
    let uuid = driver::device::uuid(device).map_err(|e| e.code())?;
    let total = driver::device::total_mem(device).map_err(|e| e.code())?;
    Ok((GpuUuid(uuid), total))
}

/// Waits for all of the process's work on `device`'s primary context.
/// Failures are logged: the drop must still answer the scheduler.
pub(super) fn synchronize(device: CUdevice) {
    let _current = ContextGuard::enter(device);
    if let Err(e) = driver::ctx::synchronize() {
        tracing::warn!(device, error = %e, "synchronizing before giving the GPU back failed");
    }
}

/// `device`'s primary context made current on the calling thread (the
/// gate's own threads), undone on drop.
pub(super) struct ContextGuard {
    device: CUdevice,
    pushed: Option<driver::ctx::PushedContext>,
}

impl ContextGuard {
    /// Retains and pushes the primary context; on failure the guard is inert
    /// and the engine's calls report the driver's error themselves.
    pub(super) fn enter(device: CUdevice) -> Self {
        let pushed = driver::ctx::retain_primary(device).and_then(|ctx| {
            driver::ctx::PushedContext::push(ctx).inspect_err(|_| {
                let _ = driver::ctx::release_primary(device);
            })
        });
        let pushed = pushed
            .map_err(
                |e| tracing::warn!(device, error = %e, "cannot make the GPU's context current"),
            )
            .ok();
        ContextGuard { device, pushed }
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if self.pushed.take().is_some() {
            let _ = driver::ctx::release_primary(self.device);
        }
    }
}
