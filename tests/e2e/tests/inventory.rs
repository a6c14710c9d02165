//! GPUs known at start and per-GPU settings: the daemon finds the fake
//! driver's two GPUs through the fake NVML (`tests/fake-nvml`), lists them
//! with their settings before any program attaches, takes settings for one
//! GPU by index or UUID, reports XID errors, and says plainly when there is
//! no NVML.

use cuda_programs::artifacts::artifact;
use nvshare_e2e::{MIB, Sandbox, wait_until};
use std::process::Output;
use std::time::Duration;

/// A daemon that finds two fake GPUs of 64 MiB through the fake NVML,
/// with XID events read from `xids` in the sandbox.
fn two_gpu_daemon(sandbox: &Sandbox) -> nvshare_e2e::Daemon {
    std::fs::write(sandbox.path().join("xids"), "").unwrap();
    let library = artifact("libnvidia_ml.so");
    // The daemon reads the fake driver's variables, as the programs do.
    sandbox.daemon_with_env(
        &[
            "--nvml-library",
            library.to_str().unwrap(),
            "--memory-reserve",
            "16MiB",
        ],
        &[
            ("FAKE_CUDA_DEVICES", "2"),
            ("FAKE_CUDA_MEMORY", "64MiB"),
            (
                "FAKE_NVML_XID_FILE",
                sandbox.path().join("xids").to_str().unwrap(),
            ),
        ],
    )
}

/// Whether the daemon's log soon has a line with every one of `words` (it
/// writes its log from a thread of its own, a little later).
fn daemon_logged(sandbox: &Sandbox, words: &[&str]) -> bool {
    let path = sandbox.path().join("daemon.log");
    let found = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .any(|line| words.iter().all(|w| line.contains(w)))
    });
    if !found {
        eprintln!(
            "no line with {words:?} in the daemon's log:\n{}",
            std::fs::read_to_string(&path).unwrap_or_default()
        );
    }
    found
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "nvshare-ctl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn gpus_are_listed_before_any_program_and_set_one_by_one() {
    let sandbox = Sandbox::new();
    let _daemon = two_gpu_daemon(&sandbox);
    let status = sandbox.status();
    let gpus = status["gpus"].as_array().expect("gpus");
    assert_eq!(gpus.len(), 2, "{status}");
    for (index, gpu) in gpus.iter().enumerate() {
        assert_eq!(gpu["index"], index);
        assert_eq!(gpu["name"], format!("Fake GPU {index}"));
        assert_eq!(gpu["physical_memory"], 64 * MIB);
        assert_eq!(gpu["capacity"], 48 * MIB, "the memory less the reserve");
        assert_eq!(gpu["quantum_ms"], 30_000);
        assert_eq!(gpu["policy"], "auto");
        assert_eq!(gpu["clients"].as_array().unwrap().len(), 0);
    }
    let first_uuid = gpus[0]["uuid"].as_str().unwrap().to_owned();
    let tables = ok(&sandbox.ctl(&["status"]));
    assert!(
        tables.contains(&format!(
            "GPU 0 (Fake GPU 0)  {first_uuid}  capacity 48.0 MiB"
        )),
        "{tables}"
    );

    let said = ok(&sandbox.ctl(&["set-tq", "--gpu", "1", "200ms"]));
    assert!(
        said.contains("time quantum of GPU 1 set to 200 ms"),
        "{said}"
    );
    ok(&sandbox.ctl(&["set-policy", "exclusive", "--gpu", &first_uuid]));
    let status = sandbox.status();
    let settings = |i: usize| {
        let gpu = &status["gpus"][i];
        (gpu["quantum_ms"].clone(), gpu["policy"].clone())
    };
    assert_eq!(settings(0), (30_000.into(), "exclusive".into()));
    assert_eq!(settings(1), (200.into(), "auto".into()));

    // Every GPU again, forms as the daemon's --quantum.
    ok(&sandbox.ctl(&["set-tq", "0.5"]));
    let status = sandbox.status();
    assert_eq!(status["gpus"][0]["quantum_ms"], 500);
    assert_eq!(status["gpus"][1]["quantum_ms"], 500);

    // A GPU that is not there: a clear refusal, exit code 1, nothing changed.
    let refused = sandbox.ctl(&["set-tq", "--gpu", "2", "5"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("there is no GPU 2"), "{stderr}");
    assert!(stderr.contains("GPUs 0 to 1"), "{stderr}");
    let refused = sandbox.ctl(&[
        "set-policy",
        "off",
        "--gpu",
        "GPU-00000000-0000-0000-0000-000000000000",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a GPU of this machine"));
    assert_eq!(sandbox.status()["gpus"][1]["policy"], "auto");
}

#[test]
fn xid_errors_are_reported_per_gpu() {
    let sandbox = Sandbox::new();
    let _daemon = two_gpu_daemon(&sandbox);
    std::fs::write(sandbox.path().join("xids"), "1 79\n").unwrap();
    let reported = wait_until(Duration::from_secs(20), || {
        sandbox.status()["gpus"][1]["xid_errors"] == 1
    });
    assert!(reported, "the XID never showed: {}", sandbox.status());
    let status = sandbox.status();
    assert_eq!(status["gpus"][1]["last_xid"], 79);
    assert_eq!(status["gpus"][0]["xid_errors"], 0);
    let tables = ok(&sandbox.ctl(&["status"]));
    assert!(
        tables.contains("health: 1 critical XID error(s), the last XID 79"),
        "{tables}"
    );
    assert!(daemon_logged(&sandbox, &["critical XID error", "xid=79"]));
}

#[test]
fn without_nvml_the_daemon_says_so_and_runs() {
    let sandbox = Sandbox::new();
    let library = artifact("libnvidia_ml.so");
    let _daemon = sandbox.daemon_with_env(
        &["--nvml-library", library.to_str().unwrap()],
        &[("FAKE_NVML_FAIL_INIT", "1")],
    );
    let status = sandbox.status();
    assert_eq!(status["gpus"].as_array().unwrap().len(), 0);
    let reason = status["gpus_unavailable"].as_str().expect("a reason");
    assert!(reason.contains("is not available"), "{reason}");
    let tables = ok(&sandbox.ctl(&["status"]));
    assert!(tables.contains("no GPUs found at start: NVML"), "{tables}");
    assert!(daemon_logged(&sandbox, &["install the NVIDIA driver"]));
    let refused = sandbox.ctl(&["set-tq", "--gpu", "0", "5"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("give the UUID"));
}
