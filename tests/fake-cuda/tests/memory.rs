//! Allocation, capacity and VMM behaviour of the fake driver, through the
//! real test programs.

use crate::common::{assert_success, run_program};

#[test]
fn every_allocation_mode_computes_the_right_checksum() {
    for (alloc, extra) in [
        ("device", vec![]),
        ("managed", vec![]),
        ("vmm", vec!["--chunk", "2097152"]),
        ("vmm", vec!["--streams", "2", "--per-thread"]),
    ] {
        let mut args = vec!["--bytes", "8388608", "--iterations", "6", "--alloc", alloc];
        args.extend(extra);
        let (output, report) = run_program("cuda-worker", &args, &[]);
        assert_success(&output);
        let count = 8388608u64 / 4;
        assert_eq!(report["ok"], true);
        assert_eq!(report["checksum"], (7 + 21) * count, "{alloc}: {report}");
        assert_eq!(report["iterations"], 6);
    }
}

#[test]
fn allocations_beyond_the_capacity_fail_with_out_of_memory() {
    let env = [("FAKE_CUDA_MEMORY", "32MiB")];
    let (output, report) = run_program("cuda-worker", &["--bytes", "16777216"], &env);
    assert_success(&output);
    for alloc in ["device", "vmm"] {
        let (output, report) = run_program(
            "cuda-worker",
            &["--bytes", "67108864", "--alloc", alloc],
            &env,
        );
        assert_eq!(output.status.code(), Some(1), "{report}");
        assert_eq!(report["ok"], false);
        assert_eq!(report["code"], 2, "{alloc}: {report}");
    }
    assert_eq!(report["ok"], true);
}

#[test]
fn memory_queries_report_the_configured_capacity() {
    let env = [("FAKE_CUDA_MEMORY", "3GiB")];
    let (output, report) = run_program("cuda-probe", &["--names", "cuInit"], &env);
    assert_success(&output);
    let gib3 = 3u64 << 30;
    assert_eq!(report["memory"]["total"], gib3);
    assert_eq!(report["memory"]["device_total"], gib3);
    assert_eq!(report["memory"]["free"], gib3);
}

#[test]
fn devices_are_selectable_and_out_of_range_ordinals_are_refused() {
    let env = [("FAKE_CUDA_DEVICES", "2")];
    let (output, report) = run_program("cuda-worker", &["--bytes", "4096", "--device", "1"], &env);
    assert_success(&output);
    assert_eq!(report["device"], 1);
    let (output, report) = run_program("cuda-worker", &["--bytes", "4096", "--device", "2"], &env);
    assert!(!output.status.success());
    assert_eq!(report["code"], 101, "CUDA_ERROR_INVALID_DEVICE: {report}");
}

#[test]
fn unmapped_reserved_va_is_refused_like_the_real_driver() {
    let (output, report) = run_program("cuda-scenario", &["unmapped-queries"], &[]);
    assert_success(&output);
    let mapped = &report["mapped"];
    assert_eq!(mapped["memory_type"]["code"], 0);
    assert_eq!(mapped["memory_type_value"], 2, "CU_MEMORYTYPE_DEVICE");
    assert_eq!(mapped["range_base"], report["mapped_base"]);
    assert_eq!(mapped["range_bytes"], 2 << 20, "the whole mapping");
    assert_eq!(mapped["ipc"]["code"], 1, "VMM memory has no legacy IPC");
    assert_eq!(mapped["memset"]["code"], 0);
    let unmapped = &report["unmapped"];
    assert_eq!(unmapped["memory_type"]["code"], 1, "INVALID_VALUE");
    assert_eq!(unmapped["range_size"]["code"], 1, "INVALID_VALUE");
    assert_eq!(unmapped["address_range"]["code"], 500, "NOT_FOUND");
    assert_eq!(unmapped["memset"]["code"], 1, "INVALID_VALUE");
    let device = &report["device"];
    assert_eq!(device["ipc"]["code"], 0, "cuMemAlloc memory can be shared");
    assert_eq!(device["range_base"], report["device_base"]);
    assert_eq!(device["range_bytes"], 1 << 20);
}

#[test]
fn vmm_contents_survive_swap_out_and_in_and_free_memory_follows() {
    let bytes = 8u64 << 20;
    let (output, report) = run_program(
        "cuda-scenario",
        &["remap", "--bytes", &bytes.to_string()],
        &[],
    );
    assert_success(&output);
    assert_eq!(report["restored_first"], 42, "fill 41, restored, then +1");
    assert_eq!(
        report["shared_first"], 42,
        "the imported fd maps the same memory"
    );
    let (mapped, out) = (
        report["free_mapped"].as_u64().unwrap(),
        report["free_swapped_out"].as_u64().unwrap(),
    );
    assert_eq!(
        out - mapped,
        bytes,
        "cuMemRelease gives the memory back at once"
    );
}

#[test]
fn pinning_beyond_the_pinned_limit_fails_until_memory_is_released() {
    let env = [("FAKE_CUDA_PINNED_LIMIT", "8MiB")];
    let args = ["pin", "--bytes", "3145728", "--count", "4"];
    let (output, report) = run_program("cuda-scenario", &args, &env);
    assert_success(&output);
    let codes: Vec<u64> = report["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_u64().unwrap())
        .collect();
    assert_eq!(
        codes,
        vec![0, 0, 2, 2],
        "3 + 3 MiB fit in 8 MiB, a third 3 MiB does not: {report}"
    );
    assert_eq!(report["after_release"]["code"], 0);
    let (output, report) = run_program("cuda-scenario", &args, &[]);
    assert_success(&output);
    assert!(
        report["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["code"] == 0),
        "no limit by default"
    );
}

#[test]
fn many_small_buffers_each_keep_their_own_contents() {
    for alloc in ["device", "vmm"] {
        let args = [
            "--bytes",
            "100000",
            "--buffers",
            "9",
            "--iterations",
            "3",
            "--alloc",
            alloc,
        ];
        let (output, report) = run_program("cuda-worker", &args, &[]);
        assert_success(&output);
        assert_eq!(
            report["checksum"],
            9 * (7 + 6) * (100000u64 / 4),
            "{alloc}: {report}"
        );
    }
}

#[test]
fn devices_have_distinct_stable_names_and_uuids() {
    let env = [("FAKE_CUDA_DEVICES", "3")];
    let (output, first) = run_program("cuda-probe", &["--names", "cuInit"], &env);
    assert_success(&output);
    let (_, second) = run_program("cuda-probe", &["--names", "cuInit"], &env);
    let devices = first["memory"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3);
    assert_eq!(devices[1]["name"], "Fake GPU 1");
    let uuids: std::collections::HashSet<&str> = devices
        .iter()
        .map(|d| d["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(uuids.len(), 3, "distinct per device");
    assert_eq!(
        first["memory"]["devices"], second["memory"]["devices"],
        "the same in every process"
    );
}

#[test]
fn calls_before_init_or_without_a_context_fail_with_cuda_codes() {
    let (output, report) = run_program("cuda-probe", &["--names", "cuInit"], &[]);
    assert_success(&output);
    assert_eq!(
        report["early"]["before_init"], 3,
        "CUDA_ERROR_NOT_INITIALIZED"
    );
    assert_eq!(report["early"]["init"], 0);
    assert_eq!(
        report["early"]["without_context"], 201,
        "CUDA_ERROR_INVALID_CONTEXT"
    );
}
