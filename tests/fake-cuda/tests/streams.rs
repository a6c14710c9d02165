//! GPU asynchrony: queued work runs later, and queries and synchronization
//! see it as a real GPU's would.

use crate::common::{assert_success, run_program};

#[test]
fn a_long_kernel_is_pending_until_synchronized() {
    let (output, report) = run_program("cuda-scenario", &["async", "--sleep-us", "300000"], &[]);
    assert_success(&output);
    assert_eq!(
        report["query_running"]["code"], 600,
        "NOT_READY while the kernel runs: {report}"
    );
    assert_eq!(report["event_running"]["code"], 600, "NOT_READY: {report}");
    assert_eq!(report["query_done"]["code"], 0);
    assert_eq!(report["event_done"]["code"], 0);
    // Lower bounds only: synchronization cannot return before the kernel ends.
    assert!(report["sync_ms"].as_f64().unwrap() >= 290.0, "{report}");
    assert!(
        report["legacy_copy_ms"].as_f64().unwrap() >= 290.0,
        "a legacy-stream copy waits for blocking streams: {report}"
    );
    assert_eq!(report["query_after_copy"]["code"], 0);
}

#[test]
fn long_kernels_on_two_streams_with_host_pauses_still_verify() {
    let args = [
        "--bytes",
        "4194304",
        "--iterations",
        "4",
        "--streams",
        "2",
        "--sleep-us",
        "20000",
        "--pause-ms",
        "10",
    ];
    let (output, report) = run_program("cuda-worker", &args, &[]);
    assert_success(&output);
    assert_eq!(report["ok"], true);
    assert!(
        report["elapsed_ms"].as_f64().unwrap() >= 4.0 * 20.0,
        "{report}"
    );
}

#[test]
fn captured_work_runs_only_when_the_graph_is_launched() {
    let (output, report) = run_program("cuda-scenario", &["graph", "--launches", "3"], &[]);
    assert_success(&output);
    assert_eq!(
        report["query_capturing"]["code"], 900,
        "STREAM_CAPTURE_UNSUPPORTED: {report}"
    );
    assert_eq!(
        report["after_capture"], 10,
        "capture records, it does not run"
    );
    assert_eq!(report["after_launches"], 10 + 3 * (1 + 2));
}
