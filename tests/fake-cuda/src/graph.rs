//! CUDA graphs, minimally: a graph is the list of capturable operations
//! (kernels, async copies and memsets) recorded by a stream capture, and
//! an executable graph replays that list, in order, on a stream.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::ffi::CUDA_ERROR_INVALID_VALUE;
use crate::guard::CuResult;
use crate::stream::Replay;

/// Recorded operations.
pub type Recording = Arc<[Replay]>;

/// All graphs and executable graphs of the process.
#[derive(Default)]
pub struct Graphs {
    graphs: Mutex<HashMap<usize, Recording>>,
    execs: Mutex<HashMap<usize, Recording>>,
}

impl Graphs {
    /// Stores a captured graph under `handle`.
    pub fn add_graph(&self, handle: usize, ops: Vec<Replay>) {
        self.graphs.lock().insert(handle, ops.into());
    }

    /// Instantiates the graph `graph` as the executable graph `handle`.
    pub fn instantiate(&self, graph: usize, handle: usize) -> CuResult {
        let ops = self
            .graphs
            .lock()
            .get(&graph)
            .cloned()
            .ok_or(CUDA_ERROR_INVALID_VALUE)?;
        self.execs.lock().insert(handle, ops);
        Ok(())
    }

    /// The operations of an executable graph.
    pub fn exec(&self, handle: usize) -> CuResult<Recording> {
        self.execs
            .lock()
            .get(&handle)
            .cloned()
            .ok_or(CUDA_ERROR_INVALID_VALUE)
    }

    /// Destroys a graph (its instantiations live on).
    pub fn destroy_graph(&self, handle: usize) -> CuResult {
        self.graphs
            .lock()
            .remove(&handle)
            .map(drop)
            .ok_or(CUDA_ERROR_INVALID_VALUE)
    }

    /// Destroys an executable graph.
    pub fn destroy_exec(&self, handle: usize) -> CuResult {
        self.execs
            .lock()
            .remove(&handle)
            .map(drop)
            .ok_or(CUDA_ERROR_INVALID_VALUE)
    }
}
