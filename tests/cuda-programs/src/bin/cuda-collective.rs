//! One rank of a data-parallel job, the way NCCL programs (PyTorch DDP) use
//! the GPU: every step runs compute kernels on the rank's own memory, then a
//! collective kernel that cannot finish until every peer rank's collective
//! of the same step runs (fake-cuda's `rendezvous_u64`, on counters in a
//! file shared by the ranks). A rank whose peer cannot get its GPU is stuck
//! inside a kernel: it cannot drain, as with NCCL on a real GPU.
//!
//! With `--devices`, one process runs every rank, one thread per device
//! (rank i on the i-th device), as a program that drives several GPUs and
//! runs collectives between them does (NCCL in a single process).
//!
//! At the end each rank checks its memory. Prints one JSON line
//! (`ok`, `rank`, `steps`, `elapsed_ms`, ...) and exits 0 only if correct.

use std::ffi::c_void;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::time::Instant;

use clap::Parser;
use cuda_programs::buffer::{AllocMode, Buffer};
use cuda_programs::error::Error;
use cuda_programs::session::{Cuda, arg};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "One rank of a collective job against libcuda.so.1")]
struct Args {
    /// This rank (0-based).
    #[arg(long, default_value_t = 0)]
    rank: u64,
    /// How many ranks the job has.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    world: u64,
    /// Run every rank in this process, one thread per device listed (rank i
    /// on the i-th); overrides --rank, --world and --device.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<i32>,
    /// The file holding the ranks' step counters (created if missing).
    #[arg(long)]
    rendezvous: std::path::PathBuf,
    /// Device ordinal of this rank.
    #[arg(long, default_value_t = 0)]
    device: i32,
    /// Bytes of device memory this rank works on.
    #[arg(long, default_value_t = 16 << 20)]
    bytes: u64,
    /// Steps (compute, then the collective).
    #[arg(long, default_value_t = 20)]
    steps: u32,
    /// A sleep_us kernel of this many microseconds per step (compute time).
    #[arg(long, default_value_t = 0)]
    compute_us: u64,
    /// The driver library to dlopen.
    #[arg(long, default_value = "libcuda.so.1")]
    library: String,
}

/// The ranks' shared counters: a `MAP_SHARED` mapping of the rendezvous
/// file (its address kept as an integer: only kernels touch the counters,
/// atomically).
struct Counters {
    addr: usize,
    len: usize,
}

impl Counters {
    fn map(path: &std::path::Path, world: u64) -> std::io::Result<Counters> {
        let len = (world * 8) as usize;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.set_len(len as u64)?;
        // SAFETY: a fresh shared mapping of `len` bytes of an open file at an
        // address of the kernel's choosing; nothing else is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Counters {
            addr: ptr as usize,
            len,
        })
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once, after every
        // kernel that used it has completed (the caller synchronizes first).
        unsafe { libc::munmap(self.addr as *mut c_void, self.len) };
    }
}

/// Runs every rank of `--devices` in its own thread; the first failure wins.
fn run_all(args: &Args, counters: &Counters) -> Result<(), Error> {
    if args.devices.is_empty() {
        return run(args, args.rank, args.device, counters);
    }
    std::thread::scope(|scope| {
        let ranks: Vec<_> = args
            .devices
            .iter()
            .enumerate()
            .map(|(rank, &device)| scope.spawn(move || run(args, rank as u64, device, counters)))
            .collect();
        ranks
            .into_iter()
            .map(|r| r.join().expect("a rank thread panicked"))
            .collect::<Result<Vec<()>, Error>>()
            .map(|_| ())
    })
}

fn run(args: &Args, rank: u64, device: i32, counters: &Counters) -> Result<(), Error> {
    let world = if args.devices.is_empty() {
        args.world
    } else {
        args.devices.len() as u64
    };
    let cuda = Cuda::open(&args.library, false, device)?;
    let kernels = cuda.kernels()?;
    let stream = cuda.stream()?;
    let count = args.bytes / 4;
    let buffer = Buffer::alloc(&cuda, AllocMode::Device, count * 4, 0)?;
    let seed = 3 + rank as u32;
    cuda.launch_u32_op(kernels.fill_u32, stream, buffer.ptr, seed, count)?;
    for step in 1..=args.steps {
        if args.compute_us > 0 {
            let mut us = args.compute_us;
            cuda.launch(kernels.sleep_us, stream, &[arg(&mut us)])?;
        }
        cuda.launch_u32_op(kernels.add_u32, stream, buffer.ptr, step, count)?;
        let (mut slots, mut rank, mut world, mut at) =
            (counters.addr as u64, rank, world, u64::from(step));
        cuda.launch(
            kernels.rendezvous_u64,
            stream,
            &[
                arg(&mut slots),
                arg(&mut rank),
                arg(&mut world),
                arg(&mut at),
            ],
        )?;
    }
    cuda.synchronize(stream)?;
    let added = (1..=args.steps).fold(0u32, |sum, s| sum.wrapping_add(s));
    let mut data = vec![0u8; (count * 4) as usize];
    buffer.download(&cuda, &mut data)?;
    let expected = seed.wrapping_add(added);
    let bad = data
        .chunks_exact(4)
        .filter(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) != expected)
        .count() as u64;
    buffer.free(&cuda)?;
    if bad == 0 {
        Ok(())
    } else {
        Err(Error::Corrupted { bad, total: count })
    }
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let world = if args.devices.is_empty() {
        args.world
    } else {
        args.devices.len() as u64
    };
    let outcome = Counters::map(&args.rendezvous, world)
        .map_err(|source| Error::File {
            path: args.rendezvous.display().to_string(),
            source,
        })
        .and_then(|counters| run_all(&args, &counters));
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let line = json!({
        "ok": outcome.is_ok(), "error": outcome.as_ref().err().map(|e| e.to_string()),
        "rank": args.rank, "world": world, "device": args.device, "devices": args.devices,
        "steps": args.steps,
        "elapsed_ms": elapsed_ms, "pid": std::process::id(),
    });
    println!("{line}");
    std::process::exit(if outcome.is_ok() { 0 } else { 1 });
}
