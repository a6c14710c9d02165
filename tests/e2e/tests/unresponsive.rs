//! A program under the hook facing a scheduler socket whose listener never
//! answers (a stuck or overwhelmed daemon): it waits a bounded time, says so
//! once, and runs unshared to a correct result instead of hanging.

use nvshare_e2e::{Sandbox, finish_ok, json_result};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

#[test]
fn a_scheduler_that_never_answers_does_not_hang_the_program() {
    let sandbox = Sandbox::new();
    let listener = UnixListener::bind(sandbox.socket()).expect("bind the silent socket");
    // Accepts every connection and never says anything.
    let accepting = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64) {
            match stream {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
        }
        held
    });
    let started = Instant::now();
    let worker = sandbox.spawn(sandbox.hooked("cuda-worker").args([
        "--bytes",
        "1048576",
        "--iterations",
        "3",
    ]));
    let output = finish_ok(worker, "a worker facing a silent scheduler");
    let took = started.elapsed();
    assert_eq!(json_result(&output)["ok"], true);
    assert!(
        took < Duration::from_secs(30),
        "the program took {took:?} with a silent scheduler"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let count = |text: &str| stderr.lines().filter(|l| l.contains(text)).count();
    assert_eq!(count("tries again"), 1, "one warning as it waits: {stderr}");
    assert_eq!(
        count("this program runs unshared"),
        1,
        "one when it gives up: {stderr}"
    );
    drop(accepting);
}
