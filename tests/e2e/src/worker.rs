//! The `cuda-worker` command line the e2e tests run under the hook: one
//! builder instead of a `worker()` function per test file.

use crate::Sandbox;
use std::process::{Child, Command, Output};

/// A `cuda-worker` run: a verified job that allocates, fills, iterates and
/// checks its checksum. Unset fields keep the worker's own defaults.
#[derive(Debug, Clone)]
pub struct Worker {
    name: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Worker {
    /// A worker named `name` (`NVSHARE_NAME`) in the hook's default mode.
    pub fn new(name: &str) -> Self {
        Worker {
            name: name.to_owned(),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    /// A worker in swap mode.
    pub fn swap(name: &str) -> Self {
        Worker::new(name).env("NVSHARE_MODE", "swap")
    }

    /// Sets an environment variable of the program.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// Adds `--flag value`.
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.args.push(flag.to_owned());
        self.args.push(value.to_string());
        self
    }

    /// `--buffers`: how many buffers of [`Worker::bytes`] each.
    pub fn buffers(self, count: u32) -> Self {
        self.arg("--buffers", count)
    }

    /// `--bytes`: the size of each buffer.
    pub fn bytes(self, bytes: u64) -> Self {
        self.arg("--bytes", bytes)
    }

    /// `--iterations`.
    pub fn iterations(self, count: u32) -> Self {
        self.arg("--iterations", count)
    }

    /// `--sleep-us`: a sleep kernel of `ms` before each iteration's add.
    pub fn kernel_ms(self, ms: u64) -> Self {
        self.arg("--sleep-us", ms * 1000)
    }

    /// `--pause-ms`: synchronize and pause after every iteration, as a
    /// training loop does (a drop then waits for one iteration only).
    pub fn pause_ms(self, ms: u64) -> Self {
        self.arg("--pause-ms", ms)
    }

    /// Logs the swap engine's moves (the tests read them from stderr).
    pub fn swap_log(self) -> Self {
        self.env("NVSHARE_LOG", "info,nvshare::engine::swap=debug")
    }

    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The command, under the hook in `sandbox`.
    pub fn command(&self, sandbox: &Sandbox) -> Command {
        let mut command = sandbox.hooked("cuda-worker");
        command.env("NVSHARE_NAME", &self.name);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command.args(&self.args);
        command
    }

    /// Starts it in `sandbox`.
    pub fn spawn(&self, sandbox: &Sandbox) -> Child {
        sandbox.spawn(&mut self.command(sandbox))
    }
}

/// Waits for every worker, failing the test unless each exits successfully
/// and reports a verified result; returns their outputs in order.
pub fn finish_verified(workers: Vec<Child>, what: &str) -> Vec<Output> {
    workers
        .into_iter()
        .map(|worker| {
            let output = crate::finish_ok(worker, what);
            let result = crate::json_result(&output);
            assert_eq!(result["ok"], true, "{what}: {result}");
            output
        })
        .collect()
}
