//! Shows how the driver's functions resolve in this process: each name by
//! plain `dlsym` and by `cuGetProcAddress_v2` with each stream flag, with the
//! shared object each pointer lies in (so a test can tell whether a name
//! resolves into libnvshare.so or libcuda.so), plus the memory the driver
//! reports. Prints one JSON object.

use std::collections::BTreeMap;

use clap::Parser;
use cuda_programs::driver::{Loader, library_of};
use cuda_programs::error::Error;
use cuda_programs::ffi::*;
use cuda_programs::session::{CUDA_VERSION, Cuda};
use serde_json::{Value, json};

/// Names libcudart takes by dlsym or looks up by base name.
const DEFAULT_NAMES: &str = "cuInit,cuGetProcAddress,cuGetProcAddress_v2,cuMemAlloc,cuMemAlloc_v2,cuMemFree,cuMemFree_v2,\
cuMemGetInfo,cuMemGetInfo_v2,cuDeviceTotalMem,cuDeviceTotalMem_v2,cuMemcpyHtoD,cuMemcpyHtoD_v2,cuMemcpyHtoDAsync,\
cuMemcpyHtoDAsync_v2,cuLaunchKernel,cuLaunchKernelEx,cuMemPrefetchAsync,cuMemPrefetchAsync_v2,cuMemAdvise,cuMemCreate,\
cuMemMap,cuDeviceGetName,cuGetExportTable";

#[derive(Parser, Debug)]
#[command(about = "Resolve driver functions the ways libcudart does and report where they land")]
struct Args {
    /// Comma-separated function names.
    #[arg(long, default_value = DEFAULT_NAMES, value_delimiter = ',')]
    names: Vec<String>,
    /// The CUDA version passed to cuGetProcAddress_v2.
    #[arg(long, default_value_t = CUDA_VERSION)]
    cuda_version: i32,
    /// The driver library to dlopen.
    #[arg(long, default_value = "libcuda.so.1")]
    library: String,
    /// Skip initializing CUDA and the memory queries.
    #[arg(long)]
    no_init: bool,
}

fn pointer_json(pointer: Option<*mut std::ffi::c_void>) -> Value {
    match pointer.filter(|p| !p.is_null()) {
        Some(p) => json!({ "ptr": format!("{p:p}"), "file": library_of(p) }),
        None => json!({ "ptr": null, "file": null }),
    }
}

fn memory(library: &str) -> Result<Value, Error> {
    let cuda = Cuda::open(library, false, 0)?;
    let (free, total) = cuda.mem_info()?;
    let mut device_total = 0usize;
    // SAFETY: valid out-pointer.
    cuda_programs::error::check("cuDeviceTotalMem", unsafe {
        (cuda.api.device_total_mem)(&mut device_total, cuda.device)
    })?;
    Ok(json!({ "free": free, "total": total, "device_total": device_total }))
}

fn probe(args: &Args) -> Result<Value, Error> {
    let loader = Loader::open(&args.library, args.cuda_version, CU_GET_PROC_ADDRESS_DEFAULT)?;
    let mut dlsym = BTreeMap::new();
    let mut lookups: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for name in &args.names {
        dlsym.insert(name.clone(), pointer_json(loader.dlsym(name)));
        for (label, flags) in [
            ("default", CU_GET_PROC_ADDRESS_DEFAULT),
            ("legacy", CU_GET_PROC_ADDRESS_LEGACY_STREAM),
            ("per_thread", CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM),
        ] {
            let found = loader.lookup(name, flags);
            let mut entry = pointer_json(Some(found.pointer));
            entry["result"] = json!(found.result);
            entry["status"] = json!(found.status);
            // Which export the pointer is, as dlsym on the driver sees it.
            entry["same_as_dlsym_of"] = json!(
                variants(name)
                    .iter()
                    .find(|n| loader.dlsym(n) == Some(found.pointer))
            );
            lookups.entry(label.to_string()).or_default().insert(name.clone(), entry);
        }
    }
    let memory = if args.no_init { Value::Null } else { memory(&args.library)? };
    Ok(json!({
        "pid": std::process::id(),
        "cuda_version": args.cuda_version,
        "probe_empty": { "result": loader.probe.result, "status": loader.probe.status, "ptr": pointer_json(Some(loader.probe.pointer))["ptr"] },
        "dlsym": dlsym,
        "get_proc_address": lookups,
        "memory": memory,
    }))
}

/// The exported names a base name may resolve to.
fn variants(name: &str) -> Vec<String> {
    let mut names = Vec::new();
    for version in ["", "_v2", "_v3", "_v4"] {
        for stream in ["", "_ptds", "_ptsz"] {
            names.push(format!("{name}{version}{stream}"));
        }
    }
    names
}

fn main() {
    let args = Args::parse();
    match probe(&args) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            println!("{}", json!({ "ok": false, "error": e.to_string(), "code": e.code() }));
            std::process::exit(1);
        }
    }
}
