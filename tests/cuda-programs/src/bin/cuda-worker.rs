//! A configurable GPU job that checks its own result: allocate, fill, run
//! `add_u32` kernels for a number of iterations on one or two streams
//! (optionally with long `sleep_us` kernels and host pauses between
//! iterations), then compare the device checksum with the host's. Prints one
//! JSON line and exits 0 only if the result is correct.

use std::time::{Duration, Instant};

use clap::Parser;
use cuda_programs::buffer::{AllocMode, Buffer};
use cuda_programs::error::{Error, check};
use cuda_programs::ffi::CUstream;
use cuda_programs::session::{Cuda, arg};
use serde_json::json;

#[derive(Parser, Debug, Clone)]
#[command(about = "A verified compute job against libcuda.so.1")]
struct Args {
    /// Bytes of device memory to work on (rounded down to whole u32s).
    #[arg(long, default_value_t = 64 << 20)]
    bytes: u64,
    /// How the memory is allocated.
    #[arg(long, value_enum, default_value_t = AllocMode::Device)]
    alloc: AllocMode,
    /// How many buffers of `bytes` each to allocate and work on.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    buffers: u32,
    /// VMM only: bytes per cuMemCreate handle (0: one handle).
    #[arg(long, default_value_t = 0)]
    chunk: u64,
    /// Iterations of the add kernel.
    #[arg(long, default_value_t = 10)]
    iterations: u32,
    /// Streams to split each iteration over (1 or 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    streams: u8,
    /// A sleep_us kernel of this many microseconds before each add (a long kernel).
    #[arg(long, default_value_t = 0)]
    sleep_us: u64,
    /// Host-side pause between iterations, in milliseconds (after a synchronize).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Device ordinal.
    #[arg(long, default_value_t = 0)]
    device: i32,
    /// Run the same job on each of these devices at once, one thread per
    /// device (a program that uses several GPUs); overrides `--device`.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<i32>,
    /// Resolve functions with the per-thread default stream flag.
    #[arg(long)]
    per_thread: bool,
    /// The fill value; iteration i adds i + 1.
    #[arg(long, default_value_t = 7)]
    seed: u32,
    /// The driver library to dlopen.
    #[arg(long, default_value = "libcuda.so.1")]
    library: String,
}

struct Outcome {
    checksum: u64,
    expected: u64,
}

fn host_checksum(args: &Args, count: u64) -> u64 {
    let added = (1..=args.iterations).fold(0u32, |sum, i| sum.wrapping_add(i));
    u64::from(args.seed.wrapping_add(added)).wrapping_mul(count)
}

fn run(args: &Args) -> Result<Outcome, Error> {
    let cuda = Cuda::open(&args.library, args.per_thread, args.device)?;
    let kernels = cuda.kernels()?;
    let count = args.bytes / 4;
    let buffers: Vec<Buffer> = (0..args.buffers)
        .map(|_| Buffer::alloc(&cuda, args.alloc, count * 4, args.chunk))
        .collect::<Result<_, _>>()?;
    let streams: Vec<CUstream> = (0..args.streams)
        .map(|_| cuda.stream())
        .collect::<Result<_, _>>()?;
    for buffer in &buffers {
        cuda.launch_u32_op(kernels.fill_u32, streams[0], buffer.ptr, args.seed, count)?;
    }
    if streams.len() > 1 {
        // The other stream's first add must not overtake the fill.
        cuda.synchronize(streams[0])?;
    }
    let share = count / streams.len() as u64;
    for iteration in 0..args.iterations {
        for (index, stream) in streams.iter().enumerate() {
            if args.sleep_us > 0 {
                let mut us = args.sleep_us;
                cuda.launch(kernels.sleep_us, *stream, &[arg(&mut us)])?;
            }
            let start = share * index as u64;
            let len = if index + 1 == streams.len() {
                count - start
            } else {
                share
            };
            for buffer in &buffers {
                cuda.launch_u32_op(
                    kernels.add_u32,
                    *stream,
                    buffer.ptr + start * 4,
                    iteration + 1,
                    len,
                )?;
            }
        }
        if args.pause_ms > 0 {
            for stream in &streams {
                cuda.synchronize(*stream)?;
            }
            std::thread::sleep(Duration::from_millis(args.pause_ms));
        }
    }
    for stream in &streams {
        cuda.synchronize(*stream)?;
    }
    let result = Buffer::alloc(&cuda, AllocMode::Device, 8, 0)?;
    let mut checksum = 0u64;
    for buffer in &buffers {
        let (mut ptr, mut n, mut out) = (buffer.ptr, count, result.ptr);
        cuda.launch(
            kernels.checksum_u32,
            streams[0],
            &[arg(&mut ptr), arg(&mut n), arg(&mut out)],
        )?;
        cuda.synchronize(streams[0])?;
        let mut bytes = [0u8; 8];
        result.download(&cuda, &mut bytes)?;
        checksum = checksum.wrapping_add(u64::from_le_bytes(bytes));
    }
    for stream in streams {
        // SAFETY: a stream we created.
        check("cuStreamDestroy", unsafe {
            (cuda.api.stream_destroy)(stream)
        })?;
    }
    result.free(&cuda)?;
    for buffer in buffers {
        buffer.free(&cuda)?;
    }
    Ok(Outcome {
        checksum,
        expected: host_checksum(args, count).wrapping_mul(u64::from(args.buffers)),
    })
}

/// The job on every device of `--devices` at once (or on `--device`), each
/// in its own thread with that device's context current; the checksums add.
fn run_everywhere(args: &Args) -> Result<Outcome, Error> {
    if args.devices.is_empty() {
        return run(args);
    }
    let outcomes: Vec<Result<Outcome, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = args
            .devices
            .iter()
            .map(|&device| {
                scope.spawn(move || {
                    let mut one = args.clone();
                    one.devices.clear();
                    one.device = device;
                    run(&one)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a device thread panicked"))
            .collect()
    });
    let mut total = Outcome {
        checksum: 0,
        expected: 0,
    };
    for outcome in outcomes {
        let outcome = outcome?;
        total.checksum = total.checksum.wrapping_add(outcome.checksum);
        total.expected = total.expected.wrapping_add(outcome.expected);
    }
    Ok(total)
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let outcome = run_everywhere(&args).and_then(|o| {
        if o.checksum == o.expected {
            Ok(o)
        } else {
            Err(Error::Mismatch {
                device: o.checksum,
                host: o.expected,
            })
        }
    });
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let (ok, line) = match &outcome {
        Ok(o) => (
            true,
            json!({
                "ok": true, "checksum": o.checksum, "iterations": args.iterations,
                "elapsed_ms": elapsed_ms, "pid": std::process::id(), "bytes": args.bytes,
                "buffers": args.buffers, "alloc": args.alloc, "device": args.device, "devices": args.devices,
            }),
        ),
        Err(e) => (
            false,
            json!({
                "ok": false, "error": e.to_string(), "code": e.code(), "iterations": args.iterations,
                "elapsed_ms": elapsed_ms, "pid": std::process::id(), "bytes": args.bytes,
                "alloc": args.alloc, "device": args.device,
            }),
        ),
    };
    println!("{line}");
    std::process::exit(if ok { 0 } else { 1 });
}
