//! Running the test programs against the fake driver, without the hook.

#![allow(dead_code)]

use std::process::{Command, Output};
use std::time::Duration;

use cuda_programs::artifacts::{fake_cuda_command, program, run};
use serde_json::Value;

/// The longest any single test program may run on a loaded CI machine.
pub const LIMIT: Duration = Duration::from_secs(120);

/// A command for one of the programs, loading the fake driver.
pub fn command(name: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = fake_cuda_command(&program(name));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Runs a program to completion; returns its output and its last JSON line.
pub fn run_program(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, Value) {
    let output = run(&mut command(name, args, env), LIMIT);
    let report = last_json(&output);
    (output, report)
}

/// The last line of stdout, parsed as JSON (Null if there is none).
pub fn last_json(output: &Output) -> Value {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null)
}

/// Asserts a program succeeded, showing its output if not.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "program failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
