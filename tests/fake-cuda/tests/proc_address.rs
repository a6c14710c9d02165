//! Symbol resolution as libcudart does it: dlsym of exported names and
//! cuGetProcAddress_v2 with versions and stream flags.

use crate::common::{assert_success, run_program};
use serde_json::Value;

fn probe(names: &str, version: &str) -> Value {
    let (output, report) = run_program(
        "cuda-probe",
        &["--names", names, "--cuda-version", version, "--no-init"],
        &[],
    );
    assert_success(&output);
    report
}

#[test]
fn the_empty_probe_is_not_found() {
    let report = probe("cuInit", "13000");
    assert_eq!(report["probe_empty"]["result"], 500, "CUDA_ERROR_NOT_FOUND");
    assert_eq!(
        report["probe_empty"]["status"], 1,
        "CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND"
    );
    assert_eq!(report["probe_empty"]["ptr"], Value::Null);
}

#[test]
fn base_names_resolve_to_the_versioned_and_per_thread_exports() {
    let report = probe(
        "cuMemAlloc,cuMemcpyHtoD,cuMemcpyHtoDAsync,cuLaunchKernel,cuMemPrefetchAsync,cuCtxCreate",
        "13000",
    );
    let resolved =
        |flag: &str, name: &str| report["get_proc_address"][flag][name]["same_as_dlsym_of"].clone();
    for flag in ["default", "legacy", "per_thread"] {
        assert_eq!(resolved(flag, "cuMemAlloc"), "cuMemAlloc_v2");
        assert_eq!(resolved(flag, "cuCtxCreate"), "cuCtxCreate_v4");
        let entry = &report["get_proc_address"][flag]["cuMemAlloc"];
        assert_eq!(entry["result"], 0);
        assert_eq!(entry["status"], 0);
        assert!(
            entry["file"].as_str().unwrap().ends_with("libcuda.so.1"),
            "{entry}"
        );
    }
    assert_eq!(resolved("default", "cuMemcpyHtoD"), "cuMemcpyHtoD_v2");
    assert_eq!(
        resolved("per_thread", "cuMemcpyHtoD"),
        "cuMemcpyHtoD_v2_ptds"
    );
    assert_eq!(
        resolved("per_thread", "cuMemcpyHtoDAsync"),
        "cuMemcpyHtoDAsync_v2_ptsz"
    );
    assert_eq!(resolved("legacy", "cuLaunchKernel"), "cuLaunchKernel");
    assert_eq!(
        resolved("per_thread", "cuLaunchKernel"),
        "cuLaunchKernel_ptsz"
    );
    assert_eq!(
        resolved("default", "cuMemPrefetchAsync"),
        "cuMemPrefetchAsync_v2"
    );
    // dlsym finds exactly the exported names.
    assert!(report["dlsym"]["cuMemAlloc"]["ptr"].is_string());
    assert_ne!(
        report["dlsym"]["cuMemAlloc"]["ptr"],
        report["get_proc_address"]["default"]["cuMemAlloc"]["ptr"]
    );
}

#[test]
fn older_versions_get_older_exports_or_version_not_sufficient() {
    let report = probe(
        "cuMemPrefetchAsync,cuMemAllocAsync,cuCtxCreate,cuNoSuchFunction,cuMemAlloc_v2",
        "11000",
    );
    let lookup = |name: &str| report["get_proc_address"]["default"][name].clone();
    assert_eq!(
        lookup("cuMemPrefetchAsync")["same_as_dlsym_of"],
        "cuMemPrefetchAsync"
    );
    assert_eq!(lookup("cuCtxCreate")["same_as_dlsym_of"], "cuCtxCreate_v2");
    assert_eq!(
        lookup("cuMemAllocAsync")["status"],
        2,
        "VERSION_NOT_SUFFICIENT"
    );
    assert_eq!(lookup("cuMemAllocAsync")["result"], 500);
    assert_eq!(lookup("cuNoSuchFunction")["status"], 1, "SYMBOL_NOT_FOUND");
    assert_eq!(
        lookup("cuMemAlloc_v2")["status"],
        1,
        "versioned names are not base names"
    );
    assert_eq!(report["dlsym"]["cuNoSuchFunction"]["ptr"], Value::Null);
    assert!(report["dlsym"]["cuMemAlloc_v2"]["ptr"].is_string());
}
