//! Finding built artifacts from a test executable, for tests in any package
//! of the workspace: the fake driver `libcuda.so` (a cdylib, which Cargo
//! gives no `CARGO_BIN_EXE_*` for) and the test programs (binaries of this
//! package, which other packages' tests cannot name with `env!`).
//!
//! A test executable lives in `target/<profile>/deps/`, so its parent's
//! parent is `target/<profile>`, where Cargo puts every binary and, after
//! `cargo build`, `libcuda.so` and `libnvshare.so`; `cargo test` leaves a
//! cdylib that a test depends on in `target/<profile>/deps/`. `cargo test
//! --workspace` builds all of them before running any test (the binaries
//! because this package has an integration test; `libcuda.so` because
//! `fake-cuda` is also an rlib that tests can depend on); for a single
//! package run `cargo build -p fake-cuda -p cuda-programs` first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// `target/<profile>` of the running test executable.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe
        .parent()
        .expect("the test executable lies in a directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ lies in target/<profile>")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The artifact `name` in `target/<profile>` (or, for libraries, in
/// `target/<profile>/deps`, where `cargo test` leaves a cdylib built as a
/// dependency; the newer file wins). Panics with what to build if missing.
pub fn artifact(name: &str) -> PathBuf {
    let profile = profile_dir();
    let newest = [profile.join(name), profile.join("deps").join(name)]
        .into_iter()
        .filter_map(|path| {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
            Some((modified, path))
        })
        .max_by_key(|(modified, _)| *modified);
    match newest {
        Some((_, path)) => path,
        None => panic!(
            "{} is missing: build it first (`cargo build -p fake-cuda -p cuda-programs`, or `cargo test --workspace`)",
            profile.join(name).display()
        ),
    }
}

/// A test program of this package (`cuda-probe`, `cuda-worker`, `cuda-scenario`).
pub fn program(name: &str) -> PathBuf {
    artifact(name)
}

/// A directory holding `libcuda.so.1` → the fake driver, to put on
/// `LD_LIBRARY_PATH`. Created once per profile; safe to call concurrently.
pub fn fake_libcuda_dir() -> PathBuf {
    let library = artifact("libcuda.so");
    let dir = profile_dir().join("fake-cuda-lib");
    std::fs::create_dir_all(&dir).expect("create target/<profile>/fake-cuda-lib");
    let link = dir.join("libcuda.so.1");
    if std::fs::read_link(&link).ok().as_deref() != Some(library.as_path()) {
        // Create under a name unique to this process and call, then rename
        // over: atomic for racing tests in any process or thread.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = dir.join(format!(".libcuda.so.1.{}.{call}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        std::os::unix::fs::symlink(&library, &temp).expect("symlink the fake libcuda.so.1");
        std::fs::rename(&temp, &link).expect("install the fake libcuda.so.1 symlink");
    }
    dir
}

/// A command for `program` that loads the fake driver, with no `FAKE_CUDA_*`
/// or `LD_PRELOAD` settings inherited from the test's environment.
pub fn fake_cuda_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("FAKE_CUDA_")
            || key_text.starts_with("NVSHARE_")
            || key_text == "LD_PRELOAD"
        {
            command.env_remove(&key);
        }
    }
    command.env("LD_LIBRARY_PATH", fake_libcuda_dir());
    command
}

/// Waits for `child` at most `limit`, killing it (and failing) after that, so
/// a hung test program never outlives its test.
pub fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().expect("poll a test program") {
            Some(_) => {
                return child
                    .wait_with_output()
                    .expect("collect a test program's output");
            }
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let output = child
                    .wait_with_output()
                    .expect("reap a killed test program");
                panic!(
                    "a test program ran longer than {limit:?} and was killed; stderr:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `command` to completion (at most `limit`), capturing its output.
pub fn run(command: &mut Command, limit: Duration) -> Output {
    use std::process::Stdio;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a test program");
    wait_with_timeout(child, limit)
}

/// The signal that ended a process, if one did.
pub fn terminating_signal(status: &ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}
