//! Stream capture and graph launch: `cuStreamBeginCapture[_v2]`,
//! `cuStreamEndCapture`, `cuStreamIsCapturing`, `cuGraphInstantiate*`,
//! `cuGraphLaunch`, `cuGraphDestroy`, `cuGraphExecDestroy`.

use std::ffi::{c_char, c_int, c_void};

use super::current;
use crate::driver::driver;
use crate::ffi::*;
use crate::guard::{CuResult, entry, write_out};
use crate::stream::DefaultStream::{self, Legacy, PerThread};

/// `CUstreamCaptureStatus`.
const CU_STREAM_CAPTURE_STATUS_NONE: c_int = 0;
const CU_STREAM_CAPTURE_STATUS_ACTIVE: c_int = 1;

fn begin(stream: CUstream, default: DefaultStream) -> CuResult {
    let (driver, device) = current()?;
    let stream = driver.streams.resolve(stream, device, default)?;
    driver.streams.begin_capture(&stream)
}

/// # Safety
/// `graph` is NULL or writable.
unsafe fn end(stream: CUstream, graph: *mut CUgraph, default: DefaultStream) -> CuResult {
    let (driver, device) = current()?;
    if graph.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let stream = driver.streams.resolve(stream, device, default)?;
    let ops = driver.streams.end_capture(&stream)?;
    let handle = driver.new_handle();
    driver.graphs.add_graph(handle, ops);
    // SAFETY: non-NULL, writable per the caller contract.
    unsafe { write_out(graph, handle as CUgraph) }
}

/// # Safety
/// `status` is NULL or writable.
unsafe fn is_capturing(stream: CUstream, status: *mut c_int, default: DefaultStream) -> CuResult {
    let (driver, device) = current()?;
    let stream = driver.streams.resolve(stream, device, default)?;
    let answer = if stream.is_capturing() {
        CU_STREAM_CAPTURE_STATUS_ACTIVE
    } else {
        CU_STREAM_CAPTURE_STATUS_NONE
    };
    // SAFETY: forwarded caller contract.
    unsafe { write_out(status, answer) }
}

fn launch(exec: CUgraphExec, stream: CUstream, default: DefaultStream) -> CuResult {
    let (driver, device) = current()?;
    let ops = driver.graphs.exec(exec as usize)?;
    let stream = driver.streams.resolve(stream, device, default)?;
    driver.streams.submit(
        &stream,
        Box::new(move || {
            if driver.trace.enabled() {
                driver.trace.event(
                    "graph_launch",
                    format_args!("ops={} device={device}", ops.len()),
                );
            }
            for op in ops.iter() {
                op();
            }
        }),
    )?;
    Ok(())
}

macro_rules! begin_capture {
    ($($name:ident => $default:ident;)*) => {$(
        /// The capture mode is accepted and ignored.
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(stream: CUstream, _mode: c_int) -> CUresult {
            entry(|| begin(stream, $default))
        }
    )*};
}

begin_capture! {
    cuStreamBeginCapture => Legacy;
    cuStreamBeginCapture_ptsz => PerThread;
    cuStreamBeginCapture_v2 => Legacy;
    cuStreamBeginCapture_v2_ptsz => PerThread;
}

/// # Safety
/// `graph` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamEndCapture(stream: CUstream, graph: *mut CUgraph) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { end(stream, graph, Legacy) })
}

/// # Safety
/// `graph` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamEndCapture_ptsz(
    stream: CUstream,
    graph: *mut CUgraph,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { end(stream, graph, PerThread) })
}

/// # Safety
/// `status` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamIsCapturing(stream: CUstream, status: *mut c_int) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { is_capturing(stream, status, Legacy) })
}

/// # Safety
/// `status` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamIsCapturing_ptsz(
    stream: CUstream,
    status: *mut c_int,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { is_capturing(stream, status, PerThread) })
}

/// # Safety
/// `exec` is NULL or writable.
unsafe fn instantiate(exec: *mut CUgraphExec, graph: CUgraph) -> CuResult {
    let driver = driver()?;
    if exec.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let handle = driver.new_handle();
    driver.graphs.instantiate(graph as usize, handle)?;
    // SAFETY: non-NULL, writable per the caller contract.
    unsafe { write_out(exec, handle as CUgraphExec) }
}

/// # Safety
/// `exec` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphInstantiateWithFlags(
    exec: *mut CUgraphExec,
    graph: CUgraph,
    _flags: u64,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { instantiate(exec, graph) })
}

/// The CUDA 11 signature (error node and log buffer are left untouched).
///
/// # Safety
/// `exec` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphInstantiate_v2(
    exec: *mut CUgraphExec,
    graph: CUgraph,
    _error_node: *mut *mut c_void,
    _log: *mut c_char,
    _log_size: usize,
) -> CUresult {
    // SAFETY: forwarded caller contract.
    entry(|| unsafe { instantiate(exec, graph) })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuGraphLaunch(exec: CUgraphExec, stream: CUstream) -> CUresult {
    entry(|| launch(exec, stream, Legacy))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuGraphLaunch_ptsz(exec: CUgraphExec, stream: CUstream) -> CUresult {
    entry(|| launch(exec, stream, PerThread))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuGraphDestroy(graph: CUgraph) -> CUresult {
    entry(|| driver()?.graphs.destroy_graph(graph as usize))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuGraphExecDestroy(exec: CUgraphExec) -> CUresult {
    entry(|| driver()?.graphs.destroy_exec(exec as usize))
}
