//! Memory that is unmapped must never be touched: the fake makes such a
//! touch fatal, as a test of the hook's discipline requires.

use crate::common::{LIMIT, command, last_json};
use cuda_programs::artifacts::{run, terminating_signal};

fn assert_dies_touching(by: &str) {
    let output = run(
        &mut command("cuda-scenario", &["touch-unmapped", "--by", by], &[]),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("\"event\":\"touching\""),
        "the program must get as far as the touch; stdout: {stdout}, stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        terminating_signal(&output.status),
        Some(libc::SIGSEGV),
        "touching unmapped memory by {by} must fault; report: {}",
        last_json(&output)
    );
}

#[test]
fn a_kernel_on_unmapped_memory_kills_the_process_with_sigsegv() {
    assert_dies_touching("kernel");
}

#[test]
fn a_host_read_of_unmapped_memory_kills_the_process_with_sigsegv() {
    assert_dies_touching("host");
}
