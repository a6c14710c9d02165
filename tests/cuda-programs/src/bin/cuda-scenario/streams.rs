//! Asynchrony scenarios: pending work, implicit legacy-stream sync, graphs.

use std::time::Instant;

use cuda_programs::buffer::{AllocMode, Buffer};
use cuda_programs::error::{Error, check};
use cuda_programs::session::{Cuda, arg};
use serde_json::{Value, json};

use crate::status;

/// A long kernel: stream/event status while it runs and after a
/// synchronize, and how long a legacy-stream copy waits behind it.
pub fn async_streams(cuda: &Cuda, sleep_us: u64) -> Result<Value, Error> {
    let kernels = cuda.kernels()?;
    let stream = cuda.stream()?;
    let mut event = std::ptr::null_mut();
    // SAFETY: handles this program created and live out-pointers, per cuda.h.
    check("cuEventCreate", unsafe {
        (cuda.api.event_create)(&mut event, 0)
    })?;
    let started = Instant::now();
    let mut us = sleep_us;
    cuda.launch(kernels.sleep_us, stream, &[arg(&mut us)])?;
    // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
    check("cuEventRecord", unsafe {
        (cuda.api.event_record)(event, stream)
    })?;
    let launch_ms = started.elapsed().as_secs_f64() * 1e3;
    // SAFETY: a stream from this driver.
    let query_running = unsafe { (cuda.api.stream_query)(stream) };
    // SAFETY: handles this program created and live out-pointers, per cuda.h.
    let event_running = unsafe { (cuda.api.event_query)(event) };
    cuda.synchronize(stream)?;
    let sync_ms = started.elapsed().as_secs_f64() * 1e3;
    // SAFETY: as above.
    let query_done = unsafe { (cuda.api.stream_query)(stream) };
    // SAFETY: handles this program created and live out-pointers, per cuda.h.
    let event_done = unsafe { (cuda.api.event_query)(event) };
    // A synchronous copy runs on the legacy stream, which waits for the
    // blocking stream's kernel first.
    let buffer = Buffer::alloc(cuda, AllocMode::Device, 4096, 0)?;
    let legacy_start = Instant::now();
    cuda.launch(kernels.sleep_us, stream, &[arg(&mut us)])?;
    buffer.upload(cuda, &[1u8; 64])?;
    let legacy_copy_ms = legacy_start.elapsed().as_secs_f64() * 1e3;
    // SAFETY: as above.
    let query_after_copy = unsafe { (cuda.api.stream_query)(stream) };
    buffer.free(cuda)?;
    // SAFETY: handles this program created and live out-pointers, per cuda.h.
    check("cuEventDestroy", unsafe { (cuda.api.event_destroy)(event) })?;
    // SAFETY: handles this program created and live out-pointers, per cuda.h.
    check("cuStreamDestroy", unsafe {
        (cuda.api.stream_destroy)(stream)
    })?;
    Ok(json!({
        "sleep_ms": sleep_us as f64 / 1e3, "launch_ms": launch_ms, "sync_ms": sync_ms,
        "query_running": status(query_running), "event_running": status(event_running),
        "query_done": status(query_done), "event_done": status(event_done),
        "legacy_copy_ms": legacy_copy_ms, "query_after_copy": status(query_after_copy),
    }))
}

/// Captures two add kernels over a `bytes` buffer into a graph, then
/// launches it `launches` times (pausing `pause_ms` after each, synchronized);
/// checks every word of the buffer at the end.
pub fn graph(cuda: &Cuda, launches: u32, bytes: u64, pause_ms: u64) -> Result<Value, Error> {
    let kernels = cuda.kernels()?;
    let words = (bytes / 4).max(1);
    let buffer = Buffer::alloc(cuda, AllocMode::Device, words * 4, 0)?;
    let stream = cuda.stream()?;
    cuda.launch_u32_op(kernels.fill_u32, stream, buffer.ptr, 10, words)?;
    cuda.synchronize(stream)?;
    // SAFETY: handles this program created and live out-pointers, per cuda.h.
    check("cuStreamBeginCapture", unsafe {
        (cuda.api.stream_begin_capture)(stream, 0)
    })?;
    cuda.launch_u32_op(kernels.add_u32, stream, buffer.ptr, 1, words)?;
    cuda.launch_u32_op(kernels.add_u32, stream, buffer.ptr, 2, words)?;
    // SAFETY: handles this program created and live out-pointers, per cuda.h.
    let query_capturing = unsafe { (cuda.api.stream_query)(stream) };
    let mut graph = std::ptr::null_mut();
    // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
    check("cuStreamEndCapture", unsafe {
        (cuda.api.stream_end_capture)(stream, &mut graph)
    })?;
    let read_first = |cuda: &Cuda| -> Result<u32, Error> {
        let mut bytes = [0u8; 4];
        buffer.download(cuda, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    };
    let after_capture = read_first(cuda)?;
    let mut exec = std::ptr::null_mut();
    // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
    check("cuGraphInstantiate", unsafe {
        (cuda.api.graph_instantiate)(&mut exec, graph, 0)
    })?;
    for _ in 0..launches {
        // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
        check("cuGraphLaunch", unsafe {
            (cuda.api.graph_launch)(exec, stream)
        })?;
        if pause_ms > 0 {
            cuda.synchronize(stream)?;
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        }
    }
    cuda.synchronize(stream)?;
    let after_launches = read_first(cuda)?;
    let mut all = vec![0u8; (words * 4) as usize];
    buffer.download(cuda, &mut all)?;
    let expected = 10 + 3 * launches;
    let wrong_words = all
        .chunks_exact(4)
        .filter(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) != expected)
        .count();
    // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
    check("cuGraphExecDestroy", unsafe {
        (cuda.api.graph_exec_destroy)(exec)
    })?;
    // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
    check("cuGraphDestroy", unsafe { (cuda.api.graph_destroy)(graph) })?;
    // SAFETY: a driver function resolved for this signature, called with live out-pointers and handles this program created.
    check("cuStreamDestroy", unsafe {
        (cuda.api.stream_destroy)(stream)
    })?;
    buffer.free(cuda)?;
    Ok(json!({
        "query_capturing": status(query_capturing),
        "after_capture": after_capture,
        "after_launches": after_launches,
        "wrong_words": wrong_words,
        "ok": wrong_words == 0,
    }))
}
