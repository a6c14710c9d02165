//! The host memory each program keeps for its swapped-out GPU memory is
//! reported to the scheduler and shown by `nvshare-ctl status`, per program
//! and per GPU.

use nvshare_e2e::worker::Worker;
use nvshare_e2e::{MIB, Sandbox, finish_ok, json_result, wait_until};
use std::process::{Child, Command};
use std::time::Duration;

fn worker(sandbox: &Sandbox, name: &str, bytes: u64, iterations: u32) -> Command {
    Worker::swap(name)
        .buffers(1)
        .bytes(bytes)
        .iterations(iterations)
        .kernel_ms(5)
        .pause_ms(1)
        .command(sandbox)
}

fn bytes(value: &serde_json::Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

#[test]
fn a_swapped_out_programs_host_shadows_appear_in_status() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon(&["--memory-capacity", "64MiB", "--quantum", "200ms"]);
    // 40 + 32 MiB (+ a slab each) do not fit in 64 MiB: every switch swaps
    // one of them out to host shadows, which they keep until they exit.
    let workers: Vec<Child> = [("big", 40 * MIB), ("small", 32 * MIB)]
        .iter()
        .map(|&(name, size)| sandbox.spawn(&mut worker(&sandbox, name, size, 60)))
        .collect();
    let mut seen = None;
    let found = wait_until(Duration::from_secs(40), || {
        let status = sandbox.status();
        let gpu = &status["gpus"][0];
        let shadowed = gpu["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| bytes(&c["host_pinned"]) + bytes(&c["host_pageable"]) >= 32 * MIB)
            .cloned();
        if let Some(client) = shadowed {
            seen = Some((client, gpu.clone()));
            return true;
        }
        false
    });
    assert!(found, "no program's host shadows appeared in the status");
    let (client, gpu) = seen.unwrap();
    let mine = bytes(&client["host_pinned"]) + bytes(&client["host_pageable"]);
    let total = bytes(&gpu["host_pinned"]) + bytes(&gpu["host_pageable"]);
    assert!(
        total >= mine,
        "the GPU's total {total} is less than one program's {mine}: {gpu}"
    );
    // The shadows cover whole units of what was swapped out (32 or 40 MiB).
    assert_eq!(mine % (2 * MIB), 0, "{client}");

    let table = Command::new(cuda_programs::artifacts::artifact("nvshare-ctl"))
        .arg("--socket")
        .arg(sandbox.socket())
        .arg("status")
        .output()
        .expect("run nvshare-ctl");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("host shadows"), "{text}");
    assert!(text.contains("HOST"), "{text}");

    for child in workers {
        assert_eq!(
            json_result(&finish_ok(child, "a swapped worker"))["ok"],
            true
        );
    }
}
