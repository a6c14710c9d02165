//! Single driver behaviours, one per subcommand, each printing one JSON
//! object: what the fake driver's own tests (and the hook's) check against.

use std::ffi::{c_int, c_void};
use std::io::Read;
use std::time::Instant;

use clap::{Parser, Subcommand};
use cuda_programs::buffer::{AllocMode, Buffer};
use cuda_programs::error::{Error, check};
use cuda_programs::ffi::*;
use cuda_programs::session::{Cuda, arg};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Run one driver scenario and report it as JSON")]
struct Args {
    /// The driver library to dlopen.
    #[arg(long, default_value = "libcuda.so.1")]
    library: String,
    /// Device ordinal.
    #[arg(long, default_value_t = 0)]
    device: i32,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Pointer queries, memset and IPC on a mapped VMM range and on the
    /// reserved-but-unmapped range next to it; IPC on cuMemAlloc memory.
    UnmappedQueries,
    /// Fill a VMM range, unmap it, then touch it (must kill the process).
    TouchUnmapped {
        /// Touch it with a kernel (device side) or by a host read.
        #[arg(long, value_enum, default_value_t = Toucher::Kernel)]
        by: Toucher,
    },
    /// A long kernel makes its stream and an event "not ready" until
    /// synchronized; legacy-stream copies wait for blocking streams.
    Async {
        /// The kernel's length in microseconds.
        #[arg(long, default_value_t = 300_000)]
        sleep_us: u64,
    },
    /// Allocate and hold memory until stdin closes (cross-process accounting).
    Hold {
        #[arg(long)]
        bytes: u64,
        #[arg(long, value_enum, default_value_t = AllocMode::Device)]
        alloc: AllocMode,
    },
    /// Pin host memory `count` times (alternating cuMemHostAlloc and
    /// cuMemHostRegister of `bytes`), then release it all and pin once more.
    Pin {
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 4)]
        count: u32,
    },
    /// Capture kernels on a stream into a graph and replay it `launches` times.
    Graph {
        #[arg(long, default_value_t = 3)]
        launches: u32,
    },
    /// Swap a VMM range out and back in at the same address (D2H, unmap,
    /// release, create, map, H2D), and share a handle through a file descriptor.
    Remap {
        #[arg(long, default_value_t = 8 << 20)]
        bytes: u64,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Toucher {
    Kernel,
    Host,
}

/// A CUDA status as JSON: its number and name.
fn status(code: CUresult) -> Value {
    json!({ "code": code, "name": error_name(code) })
}

fn unmapped_queries(cuda: &Cuda) -> Result<Value, Error> {
    let mut buffer = Buffer::alloc(cuda, AllocMode::Vmm, 4 << 20, 2 << 20)?;
    // Unmap the second half: reserved VA with nothing mapped.
    let second = buffer.chunks.pop().expect("two chunks");
    // SAFETY: the chunk was mapped by Buffer::alloc.
    check("cuMemUnmap", unsafe {
        (cuda.api.mem_unmap)(second.address, second.size as usize)
    })?;
    // SAFETY: our own handle.
    check("cuMemRelease", unsafe {
        (cuda.api.mem_release)(second.handle)
    })?;
    let query = |ptr: u64| -> Value {
        let mut memory_type: u32 = 0;
        let mut range_size: u64 = 0;
        let (mut base, mut size) = (0u64, 0usize);
        let mut ipc = [0u8; 64];
        // SAFETY (all four): valid out-pointers of the attribute's type.
        let type_code = unsafe {
            (cuda.api.pointer_get_attribute)(
                arg(&mut memory_type),
                CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                ptr,
            )
        };
        let size_code = unsafe {
            (cuda.api.pointer_get_attribute)(
                arg(&mut range_size),
                CU_POINTER_ATTRIBUTE_RANGE_SIZE,
                ptr,
            )
        };
        let range_code = unsafe { (cuda.api.mem_get_address_range)(&mut base, &mut size, ptr) };
        let ipc_code = unsafe { (cuda.api.ipc_get_mem_handle)(&mut ipc, ptr) };
        // SAFETY: a device address; the driver checks it.
        let memset_code = unsafe { (cuda.api.memset_d8)(ptr, 0xab, 16) };
        json!({
            "memory_type": status(type_code), "memory_type_value": memory_type,
            "range_size": status(size_code), "range_size_value": range_size,
            "address_range": status(range_code), "range_base": base, "range_bytes": size,
            "ipc": status(ipc_code), "memset": status(memset_code),
        })
    };
    let mapped = query(buffer.ptr + 4096);
    let unmapped = query(second.address + 4096);
    let plain = Buffer::alloc(cuda, AllocMode::Device, 1 << 20, 0)?;
    let device = query(plain.ptr);
    let report = json!({
        "mapped": mapped, "mapped_base": buffer.ptr,
        "unmapped": unmapped, "unmapped_base": second.address,
        "device": device, "device_base": plain.ptr,
    });
    plain.free(cuda)?;
    buffer.free(cuda)?;
    Ok(report)
}

fn touch_unmapped(cuda: &Cuda, by: Toucher) -> Result<Value, Error> {
    let kernels = cuda.kernels()?;
    let mut buffer = Buffer::alloc(cuda, AllocMode::Vmm, 2 << 20, 0)?;
    cuda.launch_u32_op(
        kernels.fill_u32,
        std::ptr::null_mut(),
        buffer.ptr,
        1,
        1 << 18,
    )?;
    cuda.synchronize(std::ptr::null_mut())?;
    buffer.unmap(cuda)?;
    println!("{}", json!({ "event": "touching", "ptr": buffer.ptr }));
    match by {
        Toucher::Kernel => {
            cuda.launch_u32_op(
                kernels.add_u32,
                std::ptr::null_mut(),
                buffer.ptr,
                1,
                1 << 18,
            )?;
            cuda.synchronize(std::ptr::null_mut())?;
        }
        Toucher::Host => {
            // SAFETY: deliberately not safe: the address is reserved but
            // unmapped, and reading it must fault. That is the test.
            let value = unsafe { std::ptr::read_volatile(buffer.ptr as *const u32) };
            return Ok(json!({ "ok": false, "read": value }));
        }
    }
    Ok(json!({ "ok": false, "survived": true }))
}

fn async_streams(cuda: &Cuda, sleep_us: u64) -> Result<Value, Error> {
    let kernels = cuda.kernels()?;
    let stream = cuda.stream()?;
    let mut event = std::ptr::null_mut();
    // SAFETY (event calls): valid handles and out-pointers.
    check("cuEventCreate", unsafe {
        (cuda.api.event_create)(&mut event, 0)
    })?;
    let started = Instant::now();
    let mut us = sleep_us;
    cuda.launch(kernels.sleep_us, stream, &[arg(&mut us)])?;
    check("cuEventRecord", unsafe {
        (cuda.api.event_record)(event, stream)
    })?;
    let launch_ms = started.elapsed().as_secs_f64() * 1e3;
    // SAFETY: a stream from this driver.
    let query_running = unsafe { (cuda.api.stream_query)(stream) };
    let event_running = unsafe { (cuda.api.event_query)(event) };
    cuda.synchronize(stream)?;
    let sync_ms = started.elapsed().as_secs_f64() * 1e3;
    // SAFETY: as above.
    let query_done = unsafe { (cuda.api.stream_query)(stream) };
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
    check("cuEventDestroy", unsafe { (cuda.api.event_destroy)(event) })?;
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

fn hold(cuda: &Cuda, bytes: u64, alloc: AllocMode) -> Result<Value, Error> {
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

fn pin(cuda: &Cuda, bytes: u64, count: u32) -> Result<Value, Error> {
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

fn graph(cuda: &Cuda, launches: u32) -> Result<Value, Error> {
    let kernels = cuda.kernels()?;
    let buffer = Buffer::alloc(cuda, AllocMode::Device, 4096, 0)?;
    let stream = cuda.stream()?;
    cuda.launch_u32_op(kernels.fill_u32, stream, buffer.ptr, 10, 1024)?;
    cuda.synchronize(stream)?;
    // SAFETY (graph calls): valid handles and out-pointers.
    check("cuStreamBeginCapture", unsafe {
        (cuda.api.stream_begin_capture)(stream, 0)
    })?;
    cuda.launch_u32_op(kernels.add_u32, stream, buffer.ptr, 1, 1024)?;
    cuda.launch_u32_op(kernels.add_u32, stream, buffer.ptr, 2, 1024)?;
    let query_capturing = unsafe { (cuda.api.stream_query)(stream) };
    let mut graph = std::ptr::null_mut();
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
    check("cuGraphInstantiate", unsafe {
        (cuda.api.graph_instantiate)(&mut exec, graph, 0)
    })?;
    for _ in 0..launches {
        check("cuGraphLaunch", unsafe {
            (cuda.api.graph_launch)(exec, stream)
        })?;
    }
    cuda.synchronize(stream)?;
    let after_launches = read_first(cuda)?;
    check("cuGraphExecDestroy", unsafe {
        (cuda.api.graph_exec_destroy)(exec)
    })?;
    check("cuGraphDestroy", unsafe { (cuda.api.graph_destroy)(graph) })?;
    check("cuStreamDestroy", unsafe {
        (cuda.api.stream_destroy)(stream)
    })?;
    buffer.free(cuda)?;
    Ok(json!({
        "query_capturing": status(query_capturing),
        "after_capture": after_capture,
        "after_launches": after_launches,
    }))
}

fn remap(cuda: &Cuda, bytes: u64) -> Result<Value, Error> {
    let kernels = cuda.kernels()?;
    let mut buffer = Buffer::alloc(cuda, AllocMode::Vmm, bytes, 2 << 20)?;
    let count = bytes / 4;
    cuda.launch_u32_op(
        kernels.fill_u32,
        std::ptr::null_mut(),
        buffer.ptr,
        41,
        count,
    )?;
    cuda.synchronize(std::ptr::null_mut())?;
    let (free_before, _) = cuda.mem_info()?;
    let mut shadow = vec![0u8; bytes as usize];
    buffer.download(cuda, &mut shadow)?;
    buffer.unmap(cuda)?;
    let (free_out, _) = cuda.mem_info()?;
    buffer.map(cuda, 2 << 20)?;
    buffer.upload(cuda, &shadow)?;
    cuda.launch_u32_op(kernels.add_u32, std::ptr::null_mut(), buffer.ptr, 1, count)?;
    let mut check_back = vec![0u8; 8];
    buffer.download(cuda, &mut check_back)?;
    let restored = u32::from_le_bytes(check_back[..4].try_into().expect("4 bytes"));

    // Share the first handle through a file descriptor and map it again.
    let first = &buffer.chunks[0];
    let mut fd: c_int = -1;
    // SAFETY: our handle, created with the POSIX fd handle type.
    check("cuMemExportToShareableHandle", unsafe {
        (cuda.api.mem_export)(
            arg(&mut fd),
            first.handle,
            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            0,
        )
    })?;
    let mut imported = 0;
    // SAFETY: the fd we just got, passed by value as CUDA wants.
    check("cuMemImportFromShareableHandle", unsafe {
        (cuda.api.mem_import)(
            &mut imported,
            fd as usize as *mut c_void,
            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
        )
    })?;
    let mut other = Buffer {
        ptr: 0,
        bytes: first.size,
        mode: AllocMode::Vmm,
        reserved: first.size,
        chunks: Vec::new(),
    };
    // SAFETY: valid out-pointer.
    check("cuMemAddressReserve", unsafe {
        (cuda.api.mem_address_reserve)(&mut other.ptr, first.size as usize, 0, 0, 0)
    })?;
    // SAFETY: fresh reservation of the handle's size.
    check("cuMemMap", unsafe {
        (cuda.api.mem_map)(other.ptr, first.size as usize, 0, imported, 0)
    })?;
    other.chunks.push(cuda_programs::buffer::Chunk {
        address: other.ptr,
        size: first.size,
        handle: imported,
    });
    let access = CUmemAccessDesc {
        location: CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: cuda.device,
        },
        flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    // SAFETY: mapped range, one descriptor.
    check("cuMemSetAccess", unsafe {
        (cuda.api.mem_set_access)(other.ptr, first.size as usize, &access, 1)
    })?;
    let mut shared = [0u8; 4];
    other.download(cuda, &mut shared)?;
    // SAFETY: the exported descriptor is ours to close.
    unsafe { libc::close(fd) };
    other.free(cuda)?;
    buffer.free(cuda)?;
    Ok(json!({
        "restored_first": restored, "shared_first": u32::from_le_bytes(shared),
        "free_mapped": free_before, "free_swapped_out": free_out,
    }))
}

fn main() {
    let args = Args::parse();
    let outcome =
        Cuda::open(&args.library, false, args.device).and_then(|cuda| match args.scenario {
            Scenario::UnmappedQueries => unmapped_queries(&cuda),
            Scenario::TouchUnmapped { by } => touch_unmapped(&cuda, by),
            Scenario::Async { sleep_us } => async_streams(&cuda, sleep_us),
            Scenario::Hold { bytes, alloc } => hold(&cuda, bytes, alloc),
            Scenario::Pin { bytes, count } => pin(&cuda, bytes, count),
            Scenario::Graph { launches } => graph(&cuda, launches),
            Scenario::Remap { bytes } => remap(&cuda, bytes),
        });
    match outcome {
        Ok(report) => println!("{report}"),
        Err(e) => {
            println!(
                "{}",
                json!({ "ok": false, "error": e.to_string(), "code": e.code() })
            );
            std::process::exit(1);
        }
    }
}
