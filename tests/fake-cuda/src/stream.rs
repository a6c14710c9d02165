//! Streams: each one a worker thread that runs its queued operations in
//! order, so work is asynchronous to the host exactly as on a GPU. The legacy
//! default stream of each device synchronizes implicitly with the blocking
//! streams of that device; per-thread default streams (`_ptsz`/`_ptds` calls
//! with stream 0, or `CU_STREAM_PER_THREAD`) are ordinary blocking streams,
//! one per thread and device.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::{Condvar, Mutex};

use crate::config::MAX_DEVICES;
use crate::ffi::{
    CU_STREAM_LEGACY, CU_STREAM_PER_THREAD, CUDA_ERROR_ILLEGAL_STATE, CUDA_ERROR_INVALID_HANDLE,
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, CUstream,
};
use crate::guard::CuResult;

/// One unit of queued GPU work.
pub type Op = Box<dyn FnOnce() + Send + 'static>;
/// Work that can run again and again: what a stream capture records
/// (kernels, copies, memsets) and a graph launch replays.
pub type Replay = Arc<dyn Fn() + Send + Sync + 'static>;

/// Which default stream a NULL stream handle means: the legacy one, or the
/// calling thread's own (the `_ptsz`/`_ptds` entry points).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultStream {
    Legacy,
    PerThread,
}

/// A stream's queue and progress counters.
pub struct Stream {
    pub device: usize,
    /// Takes part in the legacy stream's implicit synchronization.
    pub blocking: bool,
    legacy: bool,
    queue: mpsc::Sender<Op>,
    /// (submitted, completed) operation counts.
    progress: Arc<(Mutex<(u64, u64)>, Condvar)>,
    /// The operations recorded while the stream is being captured.
    capture: Mutex<Option<Vec<Replay>>>,
}

impl Stream {
    fn spawn(device: usize, blocking: bool, legacy: bool, name: String) -> Arc<Stream> {
        let (queue, ops) = mpsc::channel::<Op>();
        let progress = Arc::new((Mutex::new((0u64, 0u64)), Condvar::new()));
        let worker_progress = Arc::clone(&progress);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                for op in ops {
                    // A bug in one op must not wedge every later waiter.
                    let _ = catch_unwind(AssertUnwindSafe(op));
                    let (counts, done) = &*worker_progress;
                    counts.lock().1 += 1;
                    done.notify_all();
                }
            })
            .expect("fake-cuda: cannot spawn a stream worker thread");
        Arc::new(Stream {
            device,
            blocking,
            legacy,
            queue,
            progress,
            capture: Mutex::new(None),
        })
    }

    /// Queues `op`; returns its ticket (the submitted count including it).
    fn enqueue(&self, op: Op) -> u64 {
        let mut counts = self.progress.0.lock();
        counts.0 += 1;
        self.queue
            .send(op)
            .expect("fake-cuda: a stream worker thread died");
        counts.0
    }

    /// Blocks until the operation with `ticket` (and all before it) ran.
    pub fn wait_for(&self, ticket: u64) {
        let (counts, done) = &*self.progress;
        let mut counts = counts.lock();
        while counts.1 < ticket {
            done.wait(&mut counts);
        }
    }

    /// Blocks until everything queued so far ran.
    pub fn synchronize(&self) {
        let submitted = self.progress.0.lock().0;
        self.wait_for(submitted);
    }

    /// Whether all queued work has run (`cuStreamQuery`).
    pub fn is_idle(&self) -> bool {
        let counts = self.progress.0.lock();
        counts.0 == counts.1
    }

    /// Whether a capture is recording this stream's work.
    pub fn is_capturing(&self) -> bool {
        self.capture.lock().is_some()
    }

    fn submitted(&self) -> u64 {
        self.progress.0.lock().0
    }
}

/// All streams of the process.
#[derive(Default)]
pub struct Streams {
    table: Mutex<HashMap<usize, Arc<Stream>>>,
    legacy: Mutex<[Option<Arc<Stream>>; MAX_DEVICES]>,
    /// Serializes submissions so implicit-sync snapshots are consistent.
    submit_order: Mutex<()>,
}

thread_local! {
    /// This thread's per-thread default stream, per device.
    static PER_THREAD: RefCell<[Option<Arc<Stream>>; MAX_DEVICES]> = RefCell::new(Default::default());
}

impl Streams {
    /// Creates a stream on `device` under the handle `handle`.
    pub fn create(&self, device: usize, non_blocking: bool, handle: usize) -> CUstream {
        let stream = Stream::spawn(
            device,
            !non_blocking,
            false,
            format!("fake-cuda-stream-{handle:x}"),
        );
        self.table.lock().insert(handle, stream);
        handle as CUstream
    }

    /// Removes a stream; its queued work still runs to completion.
    pub fn destroy(&self, stream: CUstream) -> CuResult {
        self.table
            .lock()
            .remove(&(stream as usize))
            .map(drop)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)
    }

    /// The stream a handle names; `device` is the current context's device,
    /// used for the NULL and special handles.
    pub fn resolve(
        &self,
        stream: CUstream,
        device: usize,
        default: DefaultStream,
    ) -> CuResult<Arc<Stream>> {
        match (stream as usize, default) {
            (0, DefaultStream::Legacy) | (CU_STREAM_LEGACY, _) => Ok(self.legacy(device)),
            (0, DefaultStream::PerThread) | (CU_STREAM_PER_THREAD, _) => {
                Ok(self.per_thread(device))
            }
            (handle, _) => self
                .table
                .lock()
                .get(&handle)
                .cloned()
                .ok_or(CUDA_ERROR_INVALID_HANDLE),
        }
    }

    /// The legacy default stream of `device`.
    pub fn legacy(&self, device: usize) -> Arc<Stream> {
        let mut legacy = self.legacy.lock();
        Arc::clone(legacy[device].get_or_insert_with(|| {
            Stream::spawn(device, true, true, format!("fake-cuda-legacy-{device}"))
        }))
    }

    fn per_thread(&self, device: usize) -> Arc<Stream> {
        PER_THREAD.with(|streams| {
            let mut streams = streams.borrow_mut();
            let stream = streams[device].get_or_insert_with(|| {
                let stream = Stream::spawn(device, true, false, format!("fake-cuda-ptds-{device}"));
                // Registered under its own address so device-wide sync finds it.
                let key = Arc::as_ptr(&stream) as usize;
                self.table.lock().insert(key, Arc::clone(&stream));
                stream
            });
            Arc::clone(stream)
        })
    }

    /// Queues `op` on `stream`, after the work it implicitly depends on:
    /// legacy-stream work waits for the device's blocking streams, and
    /// blocking-stream work waits for the legacy stream. Returns the ticket.
    /// Work that cannot be captured is refused on a capturing stream.
    pub fn submit(&self, stream: &Arc<Stream>, op: Op) -> CuResult<u64> {
        if stream.is_capturing() {
            return Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        }
        let _order = self.submit_order.lock();
        let mut after: Vec<(Arc<Stream>, u64)> = Vec::new();
        if stream.legacy {
            for other in self.table.lock().values() {
                if other.device == stream.device && other.blocking && !other.is_idle() {
                    after.push((Arc::clone(other), other.submitted()));
                }
            }
        } else if stream.blocking {
            let legacy = self.legacy(stream.device);
            if !legacy.is_idle() {
                let ticket = legacy.submitted();
                after.push((legacy, ticket));
            }
        }
        if after.is_empty() {
            return Ok(stream.enqueue(op));
        }
        Ok(stream.enqueue(Box::new(move || {
            for (other, ticket) in &after {
                other.wait_for(*ticket);
            }
            op()
        })))
    }

    /// Queues capturable work: recorded if `stream` is being captured,
    /// otherwise submitted.
    pub fn submit_replayable(&self, stream: &Arc<Stream>, op: Replay) -> CuResult {
        if let Some(recorded) = stream.capture.lock().as_mut() {
            recorded.push(op);
            return Ok(());
        }
        self.submit(stream, Box::new(move || op())).map(drop)
    }

    /// Queues `op` on `stream` and waits for it (synchronous calls).
    pub fn run_sync(&self, stream: &Arc<Stream>, op: Op) -> CuResult {
        let ticket = self.submit(stream, op)?;
        stream.wait_for(ticket);
        Ok(())
    }

    /// Starts recording `stream`'s work instead of running it. The legacy
    /// stream cannot be captured.
    pub fn begin_capture(&self, stream: &Arc<Stream>) -> CuResult {
        if stream.legacy {
            return Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        }
        let mut capture = stream.capture.lock();
        if capture.is_some() {
            return Err(CUDA_ERROR_ILLEGAL_STATE);
        }
        *capture = Some(Vec::new());
        Ok(())
    }

    /// Stops recording and returns what was recorded.
    pub fn end_capture(&self, stream: &Arc<Stream>) -> CuResult<Vec<Replay>> {
        stream.capture.lock().take().ok_or(CUDA_ERROR_ILLEGAL_STATE)
    }

    /// Waits for every stream of `device` (`cuCtxSynchronize`).
    pub fn synchronize_device(&self, device: usize) {
        let mut streams: Vec<Arc<Stream>> = self
            .table
            .lock()
            .values()
            .filter(|s| s.device == device)
            .cloned()
            .collect();
        streams.push(self.legacy(device));
        for stream in streams {
            stream.synchronize();
        }
    }
}
