//! Device memory accounting across processes (FAKE_CUDA_STATE_DIR), as a
//! real GPU's cuMemGetInfo shows every process's use.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use crate::common::{LIMIT, assert_success, command, run_program};
use cuda_programs::artifacts::wait_with_timeout;
use serde_json::Value;

const GIB: u64 = 1 << 30;

/// Starts a `hold` scenario and waits until it holds its memory.
fn start_holder(bytes: u64, env: &[(&str, &str)]) -> (Child, Value) {
    let mut child = command(
        "cuda-scenario",
        &["hold", "--bytes", &bytes.to_string()],
        env,
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the holder");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the holder's first line");
    let report: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    assert_eq!(report["event"], "holding", "the holder must hold: {line}");
    (child, report)
}

fn free_bytes(env: &[(&str, &str)]) -> u64 {
    let (output, report) = run_program("cuda-probe", &["--names", "cuInit"], env);
    assert_success(&output);
    report["memory"]["free"].as_u64().expect("free bytes")
}

#[test]
fn free_memory_reflects_other_processes_and_ignores_dead_ones() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let env = [("FAKE_CUDA_MEMORY", "4GiB"), ("FAKE_CUDA_STATE_DIR", state)];
    assert_eq!(free_bytes(&env), 4 * GIB);

    let (mut polite, report) = start_holder(GIB, &env);
    assert_eq!(report["free"], 3 * GIB);
    assert_eq!(free_bytes(&env), 3 * GIB);
    let (output, report) = run_program(
        "cuda-worker",
        &["--bytes", &(3 * GIB + 4096).to_string()],
        &env,
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        report["code"], 2,
        "the other process's gigabyte is taken: {report}"
    );

    let (mut killed, _) = start_holder(GIB, &env);
    assert_eq!(free_bytes(&env), 2 * GIB);
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert_eq!(
        free_bytes(&env),
        3 * GIB,
        "a dead process's memory is free again"
    );

    drop(polite.stdin.take());
    let output = wait_with_timeout(polite, LIMIT);
    assert_success(&output);
    assert_eq!(free_bytes(&env), 4 * GIB);
}

#[test]
fn without_a_state_dir_each_process_sees_only_itself() {
    let env = [("FAKE_CUDA_MEMORY", "2GiB")];
    let (mut holder, report) = start_holder(GIB, &env);
    assert_eq!(report["free"], GIB);
    assert_eq!(free_bytes(&env), 2 * GIB);
    drop(holder.stdin.take());
    assert_success(&wait_with_timeout(holder, LIMIT));
}
