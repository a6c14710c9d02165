//! Events: markers recorded into a stream that complete when the stream's
//! worker reaches them, with a timestamp for `cuEventElapsedTime`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::ffi::{CUDA_ERROR_INVALID_HANDLE, CUDA_ERROR_NOT_READY, CUevent};
use crate::guard::CuResult;

/// `CU_EVENT_DISABLE_TIMING`.
pub const CU_EVENT_DISABLE_TIMING: u32 = 0x2;

#[derive(Default)]
struct Marks {
    /// How many times the event was recorded.
    recorded: u64,
    /// How many of those records the stream has reached.
    reached: u64,
    /// When the latest reached record ran.
    at: Option<Instant>,
}

/// One event.
pub struct Event {
    timing: bool,
    marks: Mutex<Marks>,
    reached: Condvar,
}

impl Event {
    /// Notes a new record and returns the op that completes it in-stream.
    pub fn record(self: &Arc<Event>) -> Box<dyn FnOnce() + Send> {
        let generation = {
            let mut marks = self.marks.lock();
            marks.recorded += 1;
            marks.recorded
        };
        let event = Arc::clone(self);
        Box::new(move || {
            let mut marks = event.marks.lock();
            if marks.reached < generation {
                marks.reached = generation;
                marks.at = Some(Instant::now());
            }
            event.reached.notify_all();
        })
    }

    /// The op that makes a stream wait for the event's latest record.
    pub fn waiter(self: &Arc<Event>) -> Box<dyn FnOnce() + Send> {
        let generation = self.marks.lock().recorded;
        let event = Arc::clone(self);
        Box::new(move || event.wait_generation(generation))
    }

    fn wait_generation(&self, generation: u64) {
        let mut marks = self.marks.lock();
        while marks.reached < generation {
            self.reached.wait(&mut marks);
        }
    }

    /// `cuEventSynchronize`: waits for the latest record (none: returns).
    pub fn synchronize(&self) {
        let generation = self.marks.lock().recorded;
        self.wait_generation(generation);
    }

    /// `cuEventQuery`.
    pub fn query(&self) -> CuResult {
        let marks = self.marks.lock();
        if marks.reached >= marks.recorded {
            Ok(())
        } else {
            Err(CUDA_ERROR_NOT_READY)
        }
    }

    /// Milliseconds from `start` to `end` (both recorded and reached).
    pub fn elapsed_ms(start: &Event, end: &Event) -> CuResult<f32> {
        if !start.timing || !end.timing {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        let (start, end) = (start.marks.lock(), end.marks.lock());
        if start.reached < start.recorded || end.reached < end.recorded {
            return Err(CUDA_ERROR_NOT_READY);
        }
        match (start.at, end.at) {
            (Some(a), Some(b)) => {
                let ms = if b >= a {
                    (b - a).as_secs_f64() * 1e3
                } else {
                    -((a - b).as_secs_f64() * 1e3)
                };
                Ok(ms as f32)
            }
            _ => Err(CUDA_ERROR_INVALID_HANDLE),
        }
    }
}

/// All events of the process.
#[derive(Default)]
pub struct Events {
    table: Mutex<HashMap<usize, Arc<Event>>>,
}

impl Events {
    /// Creates an event with `cuEventCreate` flags under `handle`.
    pub fn create(&self, flags: u32, handle: usize) -> CUevent {
        let event = Arc::new(Event {
            timing: flags & CU_EVENT_DISABLE_TIMING == 0,
            marks: Mutex::new(Marks::default()),
            reached: Condvar::new(),
        });
        self.table.lock().insert(handle, event);
        handle as CUevent
    }

    /// The event a handle names.
    pub fn get(&self, event: CUevent) -> CuResult<Arc<Event>> {
        self.table
            .lock()
            .get(&(event as usize))
            .cloned()
            .ok_or(CUDA_ERROR_INVALID_HANDLE)
    }

    /// Destroys an event (pending records still complete).
    pub fn destroy(&self, event: CUevent) -> CuResult {
        self.table
            .lock()
            .remove(&(event as usize))
            .map(drop)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)
    }
}
