//! A configurable GPU job that checks its own result: allocate, fill, run
//! `add_u32` kernels for a number of iterations on one or two streams
//! (optionally with long `sleep_us` kernels and host pauses between
//! iterations), then compare the device checksum with the host's. Prints one
//! JSON line and exits 0 only if the result is correct.
//!
//! With `--until-file PATH` the job runs at least `--iterations` iterations
//! and then keeps going until `PATH` exists, so a test can stop it when
//! something has been observed (rather than guess an iteration count that
//! depends on the machine's speed); the checksum covers the iterations
//! actually run, which the JSON line reports.

use std::path::PathBuf;
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
    /// VMM: bytes per cuMemCreate handle (0: one handle); expandable: the
    /// size of the large segments (0: 20 MiB).
    #[arg(long, default_value_t = 0)]
    chunk: u64,
    /// VMM: export every handle as a file descriptor after mapping (the
    /// memory is then shared and must stay on the GPU).
    #[arg(long)]
    export: bool,
    /// Iterations of the add kernel (the least, with `--until-file`).
    #[arg(long, default_value_t = 10)]
    iterations: u32,
    /// After `--iterations`, keep iterating until this file exists (checked
    /// after each iteration).
    #[arg(long)]
    until_file: Option<PathBuf>,
    /// Streams to split each iteration over (1 or 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    streams: u8,
    /// A sleep_us kernel of this many microseconds before each add (a long kernel).
    #[arg(long, default_value_t = 0)]
    sleep_us: u64,
    /// Host-side pause between iterations, in milliseconds (after a synchronize).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Synchronize after every this many iterations (0: only with
    /// `--pause-ms`, and at the end), as a program whose launch queue is
    /// bounded: real drivers block a launch once their queue is full, the
    /// fake one never does.
    #[arg(long, default_value_t = 0)]
    sync_every: u32,
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
    /// Exit without freeing the device buffers, as PyTorch programs do (its
    /// caching allocator never frees at exit): the driver reclaims them.
    #[arg(long)]
    keep_memory: bool,
    /// The driver library to dlopen.
    #[arg(long, default_value = "libcuda.so.1")]
    library: String,
}

struct Outcome {
    checksum: u64,
    expected: u64,
    /// Iterations run (on each device).
    iterations: u32,
}

/// The checksum of `count` u32s filled with the seed after `iterations`
/// iterations (iteration i adds i + 1).
fn host_checksum(args: &Args, iterations: u32, count: u64) -> u64 {
    let added = (1..=iterations).fold(0u32, |sum, i| sum.wrapping_add(i));
    u64::from(args.seed.wrapping_add(added)).wrapping_mul(count)
}

/// Whether the job should run another iteration after `done`.
fn keep_going(args: &Args, done: u32) -> bool {
    if done < args.iterations {
        return true;
    }
    match &args.until_file {
        // The add values are u32s: stop rather than wrap the counter.
        Some(path) => !path.exists() && done < u32::MAX,
        None => false,
    }
}

fn run(args: &Args) -> Result<Outcome, Error> {
    let cuda = Cuda::open(&args.library, args.per_thread, args.device)?;
    let kernels = cuda.kernels()?;
    let count = args.bytes / 4;
    let buffers: Vec<Buffer> = (0..args.buffers)
        .map(|_| Buffer::alloc(&cuda, args.alloc, count * 4, args.chunk))
        .collect::<Result<_, _>>()?;
    if args.export {
        for buffer in &buffers {
            buffer.export_handles(&cuda)?;
        }
    }
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
    let mut iteration = 0u32;
    while keep_going(args, iteration) {
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
        let sync_due = args.sync_every > 0 && (iteration + 1).is_multiple_of(args.sync_every);
        if args.pause_ms > 0 || sync_due {
            for stream in &streams {
                cuda.synchronize(*stream)?;
            }
            std::thread::sleep(Duration::from_millis(args.pause_ms));
        }
        iteration += 1;
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
    if !args.keep_memory {
        for buffer in buffers {
            buffer.free(&cuda)?;
        }
    }
    Ok(Outcome {
        checksum,
        expected: host_checksum(args, iteration, count).wrapping_mul(u64::from(args.buffers)),
        iterations: iteration,
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
        iterations: u32::MAX,
    };
    for outcome in outcomes {
        let outcome = outcome?;
        total.checksum = total.checksum.wrapping_add(outcome.checksum);
        total.expected = total.expected.wrapping_add(outcome.expected);
        // Devices may stop after different counts with `--until-file`:
        // report the fewest.
        total.iterations = total.iterations.min(outcome.iterations);
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
                "ok": true, "checksum": o.checksum, "iterations": o.iterations,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["cuda-worker", "--iterations", "3"];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    #[test]
    fn a_fixed_count_stops_at_the_count() {
        let args = args(&[]);
        assert!(keep_going(&args, 2));
        assert!(!keep_going(&args, 3));
    }

    #[test]
    fn with_a_stop_file_the_count_is_a_minimum_and_the_file_ends_the_run() {
        let dir = std::env::temp_dir().join(format!("cuda-worker-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let stop = dir.join("stop");
        let _ = std::fs::remove_file(&stop);
        let args = args(&["--until-file", stop.to_str().expect("a UTF-8 path")]);
        assert!(keep_going(&args, 3) && keep_going(&args, 1000));
        std::fs::write(&stop, b"").expect("create the stop file");
        assert!(keep_going(&args, 2), "the minimum is run even once stopped");
        assert!(!keep_going(&args, 3));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn the_expected_checksum_follows_the_iterations_run() {
        let args = args(&["--seed", "7"]);
        assert_eq!(host_checksum(&args, 0, 10), 70);
        assert_eq!(host_checksum(&args, 3, 10), (7 + 1 + 2 + 3) * 10);
    }
}
