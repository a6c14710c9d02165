//! The hook's own copy streams: up to [`plan::MAX_STREAMS`] per device
//! (`NVSHARE_SWAP_STREAMS`), in the device's primary context, made at the
//! first swap and kept for the life of the process.

use super::plan;
use crate::driver::ctx::PushedContext;
use crate::driver::{self, CudaError};
use crate::ffi::{CU_STREAM_NON_BLOCKING, CUcontext, CUdevice, CUstream};
use crate::fork::InForkChild;
use parking_lot::Mutex;
use std::collections::BTreeMap;

/// One device's primary context and copy streams (kept as integers: the
/// handles are opaque tokens, used only from the threads that move memory).
#[derive(Clone, Copy, Debug)]
pub struct CopyStreams {
    ctx: usize,
    /// The first `count` are streams; a fixed array keeps this `Copy`.
    streams: [usize; plan::MAX_STREAMS],
    count: usize,
}

impl CopyStreams {
    /// The primary context the streams belong to.
    pub fn ctx(&self) -> CUcontext {
        self.ctx as CUcontext
    }

    /// How many streams there are (1 to [`plan::MAX_STREAMS`]).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Stream `index` (below [`CopyStreams::count`]).
    pub fn stream(&self, index: usize) -> CUstream {
        assert!(index < self.count, "copy stream {index} of {}", self.count);
        self.streams[index] as CUstream
    }

    /// Waits for every stream; the first failure wins, but all are waited
    /// for, so that no copy still runs when this returns.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        let mut first_error = None;
        for index in 0..self.count {
            if let Err(err) = driver::stream::synchronize(self.stream(index)) {
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

    /// `device`'s streams, `count` of them (clamped to 1 to
    /// [`plan::MAX_STREAMS`]) made on first use; later calls return those
    /// (the count comes from the configuration, read once, so it does not
    /// change). The caller serializes moves of one device (the engine's
    /// lock), so two threads never race here.
    pub fn of(&self, device: CUdevice, count: usize) -> Result<CopyStreams, CudaError> {
        if let Some(made) = self.by_device.lock().get(&device) {
            return Ok(*made);
        }
        let count = count.clamp(1, plan::MAX_STREAMS);
        let ctx = driver::ctx::retain_primary(device)?;
        let mut streams = [0usize; plan::MAX_STREAMS];
        {
            let _pushed = PushedContext::push(ctx)?;
            for made in 0..count {
                // Non-blocking: the copies must not wait for, or hold up,
                // the legacy default stream of a program.
                match driver::stream::create(CU_STREAM_NON_BLOCKING) {
                    Ok(stream) => streams[made] = stream as usize,
                    Err(err) => {
                        // The next swap tries again from scratch: give back
                        // the streams made so far rather than leak them.
                        for &stream in &streams[..made] {
                            if let Err(undo) = driver::stream::destroy(stream as CUstream) {
                                tracing::debug!(%undo, "cannot destroy a copy stream");
                            }
                        }
                        return Err(err);
                    }
                }
            }
        }
        tracing::debug!(
            device,
            streams = count,
            "made the swap engine's copy streams"
        );
        let made = CopyStreams {
            ctx: ctx as usize,
            streams,
            count,
        };
        self.by_device.lock().insert(device, made);
        Ok(made)
    }

    /// In a `fork()` child: the parent's streams mean nothing there.
    pub fn forget_after_fork(&self, child: &InForkChild) {
        crate::fork::forget_contents(&self.by_device, child);
    }
}
