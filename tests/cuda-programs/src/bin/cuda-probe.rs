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
    let mut count = 0;
    // SAFETY: valid out-pointer.
    cuda_programs::error::check("cuDeviceGetCount", unsafe {
        (cuda.api.device_get_count)(&mut count)
    })?;
    let mut devices = Vec::new();
    for ordinal in 0..count {
        let mut name = [0 as std::ffi::c_char; 128];
        let mut uuid = CUuuid::default();
        // SAFETY: valid buffers of the stated sizes.
        cuda_programs::error::check("cuDeviceGetName", unsafe {
            (cuda.api.device_get_name)(name.as_mut_ptr(), name.len() as i32, ordinal)
        })?;
        // SAFETY: valid out-pointer.
        cuda_programs::error::check("cuDeviceGetUuid", unsafe {
            (cuda.api.device_get_uuid)(&mut uuid, ordinal)
        })?;
        // SAFETY: the driver NUL-terminated the name within the buffer.
        let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let uuid: String = uuid.bytes.iter().map(|b| format!("{b:02x}")).collect();
        devices.push(json!({ "ordinal": ordinal, "name": name, "uuid": uuid }));
    }
    Ok(json!({ "free": free, "total": total, "device_total": device_total, "devices": devices }))
}

/// What `cuMemGetInfo_v2` says before `cuInit`, and after it but with no
/// current context (a fresh thread, where no context is current).
fn early_calls(loader: &Loader) -> Result<Value, Error> {
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> CUresult;
    type Init = unsafe extern "C" fn(std::ffi::c_uint) -> CUresult;
    let missing = |name: &str| Error::Missing {
        name: name.into(),
        how: "dlsym".into(),
    };
    let mem_get_info = loader
        .dlsym("cuMemGetInfo_v2")
        .ok_or_else(|| missing("cuMemGetInfo_v2"))?;
    let init = loader.dlsym("cuInit").ok_or_else(|| missing("cuInit"))?;
    // SAFETY: the driver exports these names with these signatures.
    let (mem_get_info, init) = unsafe {
        (
            std::mem::transmute::<*mut std::ffi::c_void, MemGetInfo>(mem_get_info),
            std::mem::transmute::<*mut std::ffi::c_void, Init>(init),
        )
    };
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: valid out-pointers.
    let before_init = unsafe { mem_get_info(&mut free, &mut total) };
    // SAFETY: no preconditions.
    let init_result = unsafe { init(0) };
    let without_context = std::thread::spawn(move || {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: valid out-pointers.
        unsafe { mem_get_info(&mut free, &mut total) }
    })
    .join()
    .expect("the query thread does not panic");
    Ok(
        json!({ "before_init": before_init, "init": init_result, "without_context": without_context }),
    )
}

fn probe(args: &Args) -> Result<Value, Error> {
    let loader = Loader::open(
        &args.library,
        args.cuda_version,
        CU_GET_PROC_ADDRESS_DEFAULT,
    )?;
    let early = if args.no_init {
        Value::Null
    } else {
        early_calls(&loader)?
    };
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
            lookups
                .entry(label.to_string())
                .or_default()
                .insert(name.clone(), entry);
        }
    }
    let memory = if args.no_init {
        Value::Null
    } else {
        memory(&args.library)?
    };
    Ok(json!({
        "pid": std::process::id(),
        "cuda_version": args.cuda_version,
        "probe_empty": { "result": loader.probe.result, "status": loader.probe.status, "ptr": pointer_json(Some(loader.probe.pointer))["ptr"] },
        "dlsym": dlsym,
        "get_proc_address": lookups,
        "memory": memory,
        "early": early,
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
            println!(
                "{}",
                json!({ "ok": false, "error": e.to_string(), "code": e.code() })
            );
            std::process::exit(1);
        }
    }
}
