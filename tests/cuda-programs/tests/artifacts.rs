//! The artifact locator finds exactly what Cargo built. (Having an
//! integration test also makes `cargo test` build this package's binaries,
//! which the fake driver's and the hook's tests run.)

use cuda_programs::artifacts::{profile_dir, program};

#[test]
fn the_locator_finds_the_binaries_cargo_built() {
    for (name, built) in [
        ("cuda-probe", env!("CARGO_BIN_EXE_cuda-probe")),
        ("cuda-worker", env!("CARGO_BIN_EXE_cuda-worker")),
        ("cuda-scenario", env!("CARGO_BIN_EXE_cuda-scenario")),
    ] {
        assert_eq!(program(name), std::path::Path::new(built));
    }
    assert!(profile_dir().join("deps").is_dir());
}

#[test]
fn a_program_without_a_driver_says_what_to_do() {
    let output = std::process::Command::new(program("cuda-worker"))
        .args(["--library", "/nonexistent/libcuda.so.1"])
        .output()
        .expect("run cuda-worker");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["ok"], false);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("LD_LIBRARY_PATH"),
        "{report}"
    );
}
