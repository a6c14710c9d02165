//! The hook's own copy streams: [`plan::STREAMS`] per device, in the
//! device's primary context, made at the first swap and kept for the life
//! of the process.

use super::plan;
use crate::driver::{self, CudaError, PushedContext};
use crate::ffi::{CU_STREAM_NON_BLOCKING, CUcontext, CUdevice, CUstream};
use parking_lot::Mutex;
use std::collections::BTreeMap;

/// One device's primary context and copy streams (kept as integers: the
/// handles are opaque tokens, used only from the threads that move memory).
#[derive(Clone, Copy, Debug)]
pub struct CopyStreams {
    ctx: usize,
    streams: [usize; plan::STREAMS],
}

impl CopyStreams {
    /// The primary context the streams belong to.
    pub fn ctx(&self) -> CUcontext {
        self.ctx as CUcontext
    }

    /// Stream `index` (below [`plan::STREAMS`]).
    pub fn stream(&self, index: usize) -> CUstream {
        self.streams[index] as CUstream
    }

    /// Waits for every stream; the first failure wins, but all are waited
    /// for, so that no copy still runs when this returns.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        let mut first_error = None;
        for index in 0..plan::STREAMS {
            if let Err(err) = driver::stream_synchronize(self.stream(index)) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Every device's copy streams.
#[derive(Default)]
pub struct Streams {
    by_device: Mutex<BTreeMap<CUdevice, CopyStreams>>,
}

impl Streams {
    /// None yet.
    pub const fn new() -> Self {
        Streams {
            by_device: Mutex::new(BTreeMap::new()),
        }
    }

    /// `device`'s streams, made on first use. The caller serializes moves
    /// of one device (the engine's lock), so two threads never race here.
    pub fn of(&self, device: CUdevice) -> Result<CopyStreams, CudaError> {
        if let Some(made) = self.by_device.lock().get(&device) {
            return Ok(*made);
        }
        let ctx = driver::primary_ctx_retain(device)?;
        let mut streams = [0usize; plan::STREAMS];
        {
            let _pushed = PushedContext::push(ctx)?;
            for slot in &mut streams {
                // Non-blocking: the copies must not wait for, or hold up,
                // the legacy default stream of a program.
                *slot = driver::stream_create(CU_STREAM_NON_BLOCKING)? as usize;
            }
        }
        let made = CopyStreams {
            ctx: ctx as usize,
            streams,
        };
        self.by_device.lock().insert(device, made);
        Ok(made)
    }

    /// In a `fork()` child: the parent's streams mean nothing there.
    pub fn forget_after_fork(&self) {
        // SAFETY: in the fork child only this thread exists; a held lock
        // belongs to a vanished thread. The contents are forgotten.
        unsafe {
            if self.by_device.is_locked() {
                self.by_device.force_unlock();
            }
        }
        std::mem::forget(std::mem::take(&mut *self.by_device.lock()));
    }
}
