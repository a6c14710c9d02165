//! Memory scenarios: holding device memory, pinning host memory.

use std::io::Read;

use cuda_programs::buffer::{AllocMode, Buffer};
use cuda_programs::error::{Error, check};
use cuda_programs::ffi::*;
use cuda_programs::session::Cuda;
use serde_json::{Value, json};

use crate::status;

/// Allocates `bytes`, reports free memory, and holds it until stdin closes.
pub fn hold(cuda: &Cuda, bytes: u64, alloc: AllocMode) -> Result<Value, Error> {
    let buffer = Buffer::alloc(cuda, alloc, bytes, 0)?;
    let (free, total) = cuda.mem_info()?;
    println!(
        "{}",
        json!({ "event": "holding", "pid": std::process::id(), "free": free, "total": total })
    );
    // Hold until the test closes our stdin (or dies, which closes it too).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    buffer.free(cuda)?;
    let (free, total) = cuda.mem_info()?;
    Ok(json!({ "event": "released", "free": free, "total": total }))
}

/// Pins host memory `count` times (alternately allocated and registered),
/// reporting each status, then releases it all and pins once more.
pub fn pin(cuda: &Cuda, bytes: u64, count: u32) -> Result<Value, Error> {
    let mut allocated = Vec::new();
    let mut registered: Vec<Vec<u8>> = Vec::new();
    let mut codes = Vec::new();
    for attempt in 0..count {
        if attempt % 2 == 0 {
            let mut host = std::ptr::null_mut();
            // SAFETY: valid out-pointer.
            let code = unsafe { (cuda.api.mem_host_alloc)(&mut host, bytes as usize, 0) };
            if code == CUDA_SUCCESS {
                allocated.push(host);
            }
            codes.push(status(code));
        } else {
            let mut memory = vec![1u8; bytes as usize];
            // SAFETY: `memory` is ours for `bytes` and outlives the registration.
            let code = unsafe {
                (cuda.api.mem_host_register)(memory.as_mut_ptr().cast(), memory.len(), 0)
            };
            if code == CUDA_SUCCESS {
                registered.push(memory);
            }
            codes.push(status(code));
        }
    }
    for host in allocated {
        // SAFETY: memory from cuMemHostAlloc, freed once.
        check("cuMemFreeHost", unsafe { (cuda.api.mem_free_host)(host) })?;
    }
    for mut memory in registered {
        // SAFETY: registered above.
        check("cuMemHostUnregister", unsafe {
            (cuda.api.mem_host_unregister)(memory.as_mut_ptr().cast())
        })?;
    }
    let mut host = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    let again = unsafe { (cuda.api.mem_host_alloc)(&mut host, bytes as usize, 0) };
    if again == CUDA_SUCCESS {
        // SAFETY: just allocated.
        check("cuMemFreeHost", unsafe { (cuda.api.mem_free_host)(host) })?;
    }
    Ok(json!({ "attempts": codes, "after_release": status(again) }))
}
