//! Finding the workspace's built artifacts from an integration test, and
//! running test programs under the hook against the fake driver.
//!
//! Integration tests cannot name other packages' binaries, so the artifacts
//! are found in `target/<profile>/`, the parent of the test executable's
//! `deps/`. `cargo build --workspace` (run before `cargo test --workspace`)
//! puts `libnvshare.so`, the fake `libcuda.so` and the test programs there.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

pub mod device;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous: test programs start in milliseconds, but CI machines are slow.
pub const PROGRAM_TIMEOUT: Duration = Duration::from_secs(120);

/// `target/<profile>` of the running test executable.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let dir = exe
        .parent()
        .expect("the test executable lies in a directory");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent()
            .expect("deps/ lies in target/<profile>")
            .to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The artifact `name` in `target/<profile>`; fails saying how to build it.
pub fn artifact(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`, or \
         `cargo build -p nvshare-hook -p fake-cuda -p cuda-programs`) with the same profile \
         and CARGO_TARGET_DIR as the tests",
        path.display()
    );
    path
}

/// A fresh directory with `libcuda.so.1` → the fake driver, for
/// `LD_LIBRARY_PATH`. Per test, so tests never race on the link.
pub fn fake_driver_dir() -> tempfile::TempDir {
    let library = artifact("libcuda.so");
    let dir = tempfile::tempdir().expect("create a temporary directory");
    std::os::unix::fs::symlink(&library, dir.path().join("libcuda.so.1"))
        .expect("link libcuda.so.1 to the fake driver");
    dir
}

/// `program` with the fake driver on the library path, none of the test
/// environment's driver or hook settings, and the hook preloaded if `hooked`.
pub fn command(program: &Path, driver_dir: &Path, hooked: bool) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let text = key.to_string_lossy();
        if text.starts_with("FAKE_CUDA_") || text.starts_with("NVSHARE_") || text == "LD_PRELOAD" {
            command.env_remove(&key);
        }
    }
    command.env("LD_LIBRARY_PATH", driver_dir);
    if hooked {
        command.env("LD_PRELOAD", artifact("libnvshare.so"));
    }
    command.stdin(Stdio::null());
    command
}

/// Runs `command` to completion, killing it (and failing) after
/// [`PROGRAM_TIMEOUT`] so that no test program outlives its test.
pub fn run(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let deadline = Instant::now() + PROGRAM_TIMEOUT;
    // Drain the pipes on threads so a chatty child never blocks on them.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buffer).map(|_| buffer)
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buffer).map(|_| buffer)
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the test program") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} ran longer than {PROGRAM_TIMEOUT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader").expect("read stdout"),
        stderr: err.join().expect("stderr reader").expect("read stderr"),
    }
}

/// The program's stdout as one JSON value, failing with its output if not.
pub fn json_of(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "expected one JSON object ({e}); status {}, stdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The test's name as the test harness knows it: `module_path!()::name`
/// without the binary's own name in front.
fn test_path(test_name: &str) -> &str {
    test_name
        .split_once("::")
        .map_or(test_name, |(_binary, path)| path)
}

/// Runs test `test_name` (`concat!(module_path!(), "::name")`) of the
/// calling test binary again, in a child
/// process whose environment sets `marker` (so the test runs its in-process
/// scenario there), loads the fake driver, runs `mode` unscheduled with
/// `envs`, and returns the fake driver's trace of the child. The scenario
/// needs its own process: the engines keep process-wide driver state. Fails
/// the test with the child's output if it does not succeed.
pub fn run_scenario_in_child(
    test_name: &str,
    marker: &str,
    mode: &str,
    envs: &[(&str, String)],
) -> String {
    let trace_dir = tempfile::tempdir().expect("a temp dir for the trace");
    let trace = trace_dir.path().join("trace.log");
    artifact("libcuda.so");
    let driver_dir = fake_driver_dir();
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut child = Command::new(exe);
    child
        .args(["--exact", test_path(test_name), "--nocapture"])
        .env(marker, "1")
        .env("LD_LIBRARY_PATH", driver_dir.path())
        .env("NVSHARE_MODE", mode)
        .env("NVSHARE_SCHEDULER", "off")
        .env("FAKE_CUDA_TRACE", &trace)
        .env_remove("LD_PRELOAD");
    for (key, value) in envs {
        child.env(key, value);
    }
    let output = run(child);
    assert!(
        output.status.success(),
        "the {mode} scenario failed: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(&trace).expect("read the fake driver's trace")
}
