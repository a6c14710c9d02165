//! Per-job memory limits (`NVSHARE_MEMORY_LIMIT`): a program sees its limit
//! as the GPU's memory, an allocation past it fails with
//! `CUDA_ERROR_OUT_OF_MEMORY` and one warning that names the limit, the
//! request and what to change, the scheduler shows the limit, and a program
//! beside it is not affected.

use cuda_programs::artifacts::wait_with_timeout;
use nvshare_e2e::worker::Worker;
use nvshare_e2e::{MIB, PROGRAM_LIMIT, Sandbox, finish_ok, json_result, wait_until};
use std::time::Duration;

/// `CUDA_ERROR_OUT_OF_MEMORY`.
const OUT_OF_MEMORY: u64 = 2;

#[test]
fn a_program_sees_its_limit_and_is_refused_past_it_while_the_other_runs() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "60"]);

    // What the program sees: its limit, not the capacity.
    let probe = finish_ok(
        sandbox.spawn(
            sandbox
                .hooked("cuda-probe")
                .env("NVSHARE_MEMORY_LIMIT", "24MiB"),
        ),
        "cuda-probe",
    );
    let memory = json_result(&probe)["memory"].clone();
    assert_eq!(memory["total"], 24 * MIB, "{memory}");
    assert_eq!(memory["device_total"], 24 * MIB, "{memory}");
    assert!(memory["free"].as_u64().unwrap() <= 24 * MIB, "{memory}");

    // A job within its limit keeps running meanwhile.
    let stop = sandbox.path().join("stop");
    let steady = Worker::swap("steady")
        .env("NVSHARE_MEMORY_LIMIT", "32MiB")
        .buffers(2)
        .bytes(8 * MIB)
        .iterations(3)
        .arg("--until-file", stop.display())
        .pause_ms(2)
        .spawn(&sandbox);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let clients = sandbox.clients_named("steady");
            clients.len() == 1 && clients[0]["memory_limit"] == 32 * MIB
        }),
        "the scheduler never showed the steady job's limit: {}",
        sandbox.status()
    );

    // A job that asks for more than its limit: refused, with the reason.
    let greedy = Worker::swap("greedy")
        .env("NVSHARE_MEMORY_LIMIT", "16MiB")
        .buffers(1)
        .bytes(20 * MIB)
        .iterations(1)
        .spawn(&sandbox);
    let output = wait_with_timeout(greedy, PROGRAM_LIMIT);
    assert!(
        !output.status.success(),
        "the allocation past the limit succeeded"
    );
    let result = json_result(&output);
    assert_eq!(result["code"], OUT_OF_MEMORY, "{result}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("NVSHARE_MEMORY_LIMIT"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {stderr}");
    assert!(
        warnings[0].contains("an allocation of 20.0 MiB")
            && warnings[0].contains("its memory limit is 16.0 MiB")
            && warnings[0].contains("Raise the program's NVSHARE_MEMORY_LIMIT"),
        "{}",
        warnings[0]
    );

    // The steady job was not disturbed, and ends verified.
    assert_eq!(
        sandbox.clients_named("steady")[0]["state"]
            .as_str()
            .map(str::to_owned),
        Some("running".to_owned()),
        "{}",
        sandbox.status()
    );
    std::fs::write(&stop, "").unwrap();
    let done = json_result(&finish_ok(steady, "steady"));
    assert_eq!(done["ok"], true, "{done}");
}
