//! A switch that waits on a holder's long queued kernels, on a card with no
//! room to run the next program beside it: the drain timeout fires (logged
//! once), and `nvshare-ctl status` says what the next program waits for
//! while it waits; both programs then finish with correct results.

use nvshare_e2e::worker::{Worker, finish_verified};
use nvshare_e2e::{MIB, Sandbox, wait_until};
use std::time::Duration;

#[test]
fn a_drain_past_its_timeout_without_room_is_shown_and_both_programs_finish() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&[
        "--memory-capacity",
        "64MiB",
        "--memory-reserve",
        "0",
        "--quantum",
        "200ms",
        "--drain-timeout",
        "500ms",
    ]);
    // 40 + 40 MiB of claims do not fit the 72 MiB card: nobody may run
    // beside a stuck holder. Without a pause the worker queues all of its
    // kernels at once (2.4 s of them), so a drain waits for all of them.
    let worker = |name: &str| {
        Worker::new(name)
            .env("FAKE_CUDA_MEMORY", "72MiB")
            .bytes(40 * MIB)
            .iterations(6)
            .kernel_ms(400)
    };
    let first = worker("first").spawn(&sandbox);
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .client_in_state("first", "running")),
        "first never ran: {}",
        sandbox.status()
    );
    let second = worker("second").spawn(&sandbox);
    let mut reasons = Vec::new();
    let shown = wait_until(Duration::from_secs(20), || {
        let status = sandbox.status();
        let next = &status["gpus"][0]["next"];
        if let Some(reason) = next["reason"].as_str() {
            reasons.push(reason.to_owned());
        }
        next["reason"] == "drain_without_room"
            && next["description"]
                .as_str()
                .is_some_and(|d| d.contains("first (") && d.contains("past the drain timeout"))
    });
    assert!(
        shown,
        "status never showed the stuck drain; reasons seen: {reasons:?}; now {}",
        sandbox.status()
    );
    finish_verified(vec![first, second], "programs behind a stuck drain");
    let log = std::fs::read_to_string(sandbox.path().join("daemon.log")).unwrap_or_default();
    let stuck = log
        .matches("no room to run the next program beside it")
        .count();
    assert!(stuck >= 1, "the stuck drain was never logged:\n{log}");
    assert!(
        !log.contains("letting the next program in beside it")
            && !log.contains("the next program runs beside it"),
        "a program was let in beside a holder on a card without room:\n{log}"
    );
}
