//! Single driver behaviours, one per subcommand, each printing one JSON
//! object: what the fake driver's own tests (and the hook's) check against.

mod memory;
mod streams;
mod vmm;

use clap::{Parser, Subcommand};
use cuda_programs::buffer::AllocMode;
use cuda_programs::ffi::{CUresult, error_name};
use cuda_programs::session::Cuda;
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
        /// Bytes of the buffer the graph's kernels add into.
        #[arg(long, default_value_t = 4096)]
        bytes: u64,
        /// After each launch: synchronize and sleep this long, so that
        /// another program can take the GPU (and, in swap mode, this
        /// program's memory) before the next replay.
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
    },
    /// Swap a VMM range out and back in at the same address (D2H, unmap,
    /// release, create, map, H2D), and share a handle through a file descriptor.
    Remap {
        #[arg(long, default_value_t = 8 << 20)]
        bytes: u64,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Toucher {
    Kernel,
    Host,
}

/// A CUDA status as JSON: its number and name.
pub fn status(code: CUresult) -> Value {
    json!({ "code": code, "name": error_name(code) })
}

fn main() {
    let args = Args::parse();
    let outcome =
        Cuda::open(&args.library, false, args.device).and_then(|cuda| match args.scenario {
            Scenario::UnmappedQueries => vmm::unmapped_queries(&cuda),
            Scenario::TouchUnmapped { by } => vmm::touch_unmapped(&cuda, by),
            Scenario::Async { sleep_us } => streams::async_streams(&cuda, sleep_us),
            Scenario::Hold { bytes, alloc } => memory::hold(&cuda, bytes, alloc),
            Scenario::Pin { bytes, count } => memory::pin(&cuda, bytes, count),
            Scenario::Graph {
                launches,
                bytes,
                pause_ms,
            } => streams::graph(&cuda, launches, bytes, pause_ms),
            Scenario::Remap { bytes } => vmm::remap(&cuda, bytes),
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
