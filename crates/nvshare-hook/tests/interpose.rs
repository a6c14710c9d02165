//! End to end against the fake driver: test programs that reach the driver
//! the way libcudart does (`dlopen`, `dlsym`, `cuGetProcAddress_v2` with
//! each stream flag), run with `libnvshare.so` preloaded and no scheduler.

use crate::support::{artifact, command, fake_driver_dir, json_of, run};
use serde_json::Value;

/// Intercepted names, asked for by `dlsym` exactly as written.
const INTERCEPTED: &[&str] = &[
    "cuGetProcAddress",
    "cuGetProcAddress_v2",
    "cuMemAlloc",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemAllocManaged",
    "cuMemGetInfo",
    "cuMemGetInfo_v2",
    "cuDeviceTotalMem_v2",
    "cuLaunchKernel",
    "cuLaunchKernelEx",
    "cuMemcpyHtoD_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemsetD32_v2",
    "cuMemPrefetchAsync",
    "cuMemPrefetchAsync_v2",
    "cuMemCreate",
    "cuMemMap",
    "cuMemUnmap",
    "cuMemRelease",
    "cuMemSetAccess",
];

/// Names the hook leaves to the driver.
const PASSED_THROUGH: &[&str] = &[
    "cuInit",
    "cuDeviceGetName",
    "cuGetExportTable",
    "cuMemAdvise",
    "cuMemAddressReserve",
    "cuMemGetAllocationGranularity",
];

/// `(base name, flag label, the export whose wrapper must answer)`.
const PROC_ADDRESS: &[(&str, &str, &str)] = &[
    ("cuMemAlloc", "default", "cuMemAlloc_v2"),
    ("cuMemAlloc", "per_thread", "cuMemAlloc_v2"),
    ("cuMemGetInfo", "legacy", "cuMemGetInfo_v2"),
    ("cuDeviceTotalMem", "default", "cuDeviceTotalMem_v2"),
    ("cuLaunchKernel", "default", "cuLaunchKernel"),
    ("cuLaunchKernel", "legacy", "cuLaunchKernel"),
    ("cuLaunchKernel", "per_thread", "cuLaunchKernel_ptsz"),
    ("cuMemcpyHtoD", "default", "cuMemcpyHtoD_v2"),
    ("cuMemcpyHtoD", "per_thread", "cuMemcpyHtoD_v2_ptds"),
    (
        "cuMemcpyDtoHAsync",
        "per_thread",
        "cuMemcpyDtoHAsync_v2_ptsz",
    ),
    ("cuMemsetD32", "per_thread", "cuMemsetD32_v2_ptds"),
    ("cuGetProcAddress", "default", "cuGetProcAddress_v2"),
    ("cuMemCreate", "default", "cuMemCreate"),
    ("cuMemMap", "per_thread", "cuMemMap"),
];

fn probe(hooked: bool, names: &[&str]) -> Value {
    let driver = fake_driver_dir();
    let mut probe = command(&artifact("cuda-probe"), driver.path(), hooked);
    probe.arg("--names").arg(names.join(","));
    probe.env("NVSHARE_SCHEDULER", "off");
    let output = run(probe);
    assert!(
        output.status.success(),
        "cuda-probe failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    json_of(&output)
}

fn file_of(entry: &Value) -> &str {
    entry["file"].as_str().unwrap_or("(null)")
}

fn all_names() -> Vec<&'static str> {
    let mut names: Vec<_> = INTERCEPTED.iter().chain(PASSED_THROUGH).copied().collect();
    names.extend(PROC_ADDRESS.iter().map(|(base, _, _)| *base));
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn dlsym_hands_out_wrappers_for_intercepted_names_only() {
    let report = probe(true, &all_names());
    for name in INTERCEPTED {
        let file = file_of(&report["dlsym"][name]);
        assert!(
            file.ends_with("libnvshare.so"),
            "dlsym({name}) resolved into {file}"
        );
    }
    for name in PASSED_THROUGH {
        let file = file_of(&report["dlsym"][name]);
        assert!(
            file.ends_with("libcuda.so.1"),
            "dlsym({name}) resolved into {file}"
        );
    }
}

#[test]
fn get_proc_address_hands_out_the_wrapper_of_the_right_variant() {
    let report = probe(true, &all_names());
    for (base, flags, expected) in PROC_ADDRESS {
        let entry = &report["get_proc_address"][flags][base];
        assert_eq!(entry["result"], 0, "{base} with {flags}: {entry}");
        assert!(
            file_of(entry).ends_with("libnvshare.so"),
            "{base} with {flags}: {entry}"
        );
        // The probe names the export whose dlsym (also through the hook)
        // gives the same pointer: the wrapper of exactly that variant.
        assert_eq!(
            entry["same_as_dlsym_of"], *expected,
            "{base} with {flags}: {entry}"
        );
    }
    for name in PASSED_THROUGH {
        for flags in ["default", "legacy", "per_thread"] {
            let entry = &report["get_proc_address"][flags][name];
            assert!(
                file_of(entry).ends_with("libcuda.so.1"),
                "{name} with {flags}: {entry}"
            );
        }
    }
}

#[test]
fn the_driver_answers_every_lookup_the_same_with_and_without_the_hook() {
    let names = all_names();
    let plain = probe(false, &names);
    let hooked = probe(true, &names);
    assert_eq!(
        plain["probe_empty"], hooked["probe_empty"],
        "the empty-name probe changed"
    );
    for name in &names {
        for flags in ["default", "legacy", "per_thread"] {
            let (a, b) = (
                &plain["get_proc_address"][flags][name],
                &hooked["get_proc_address"][flags][name],
            );
            assert_eq!(a["result"], b["result"], "{name} with {flags}");
            assert_eq!(a["status"], b["status"], "{name} with {flags}");
            assert_eq!(
                a["ptr"].is_null(),
                b["ptr"].is_null(),
                "{name} with {flags}"
            );
        }
        let (a, b) = (&plain["dlsym"][name], &hooked["dlsym"][name]);
        assert_eq!(a["ptr"].is_null(), b["ptr"].is_null(), "dlsym({name})");
    }
    // Unscheduled, memory queries pass through unchanged.
    assert_eq!(plain["memory"], hooked["memory"]);
}

/// Runs `cuda-worker` under the hook and returns the fake driver's trace.
fn worker_trace(mode: &str, extra: &[&str]) -> String {
    let driver = fake_driver_dir();
    let trace = driver.path().join("trace.log");
    let mut worker = command(&artifact("cuda-worker"), driver.path(), true);
    worker
        .args(["--bytes", "4194304", "--iterations", "3", "--streams", "2"])
        .args(extra)
        .env("NVSHARE_SCHEDULER", "off")
        .env("NVSHARE_MODE", mode)
        .env("FAKE_CUDA_TRACE", &trace);
    let output = run(worker);
    let report = json_of(&output);
    assert!(
        output.status.success() && report["ok"] == true,
        "cuda-worker in {mode} mode {extra:?} failed: {report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(&trace).expect("read the fake driver's trace")
}

#[test]
fn a_worker_finishes_correct_in_uvm_mode_on_managed_memory() {
    for extra in [&[][..], &["--per-thread"][..]] {
        let trace = worker_trace("uvm", extra);
        assert!(
            trace.contains("alloc kind=managed") && trace.contains("bytes=4194304"),
            "uvm mode must back device allocations with managed memory:\n{trace}"
        );
        assert!(!trace.contains("alloc kind=device"), "{trace}");
    }
}

#[test]
fn a_worker_finishes_correct_in_swap_mode_on_device_memory() {
    for extra in [&[][..], &["--per-thread"][..], &["--alloc", "managed"][..]] {
        let trace = worker_trace("swap", extra);
        assert!(trace.contains("bytes=4194304"), "{trace}");
        assert!(trace.contains("kernel_end name=add_u32"), "{trace}");
    }
}

#[test]
fn a_program_that_never_uses_cuda_sees_no_trace_of_the_hook() {
    let driver = fake_driver_dir();
    let socket = driver.path().join("scheduler.sock");
    let mut shell = command("/bin/sh".as_ref(), driver.path(), true);
    shell
        .args(["-c", "echo dormant"])
        .env("NVSHARE_DEBUG", "1")
        .env("NVSHARE_SOCK", &socket);
    let output = run(shell);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "dormant\n");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "",
        "the hook must stay silent"
    );
    assert!(
        !socket.exists(),
        "a dormant hook must not start a scheduler"
    );
}
