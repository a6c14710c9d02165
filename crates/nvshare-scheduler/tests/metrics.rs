//! The Prometheus endpoint of the real daemon serves the named metrics with
//! the values that the clients' traffic produced.

use crate::support::{Daemon, HookClient, MIB, PATIENCE};
use std::io::{Read, Write};
use std::net::TcpStream;

fn scrape(daemon: &Daemon) -> String {
    let mut stream = TcpStream::connect(daemon.metrics_addr()).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    reply
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_clients_grants_switches_and_swaps() {
    let daemon = Daemon::start(&[
        "--memory-capacity",
        "1GiB",
        "--quantum",
        "100ms",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let mut a = HookClient::connect_attached(&daemon.socket, "alpha", 800 * MIB);
    let mut b = HookClient::connect_attached(&daemon.socket, "beta", 800 * MIB);
    a.request();
    a.wait_grant(PATIENCE).unwrap();
    b.request();
    // alpha is preempted after its quantum, evicts for beta, beta restores.
    a.wait_drop(PATIENCE).unwrap();
    b.wait_grant(PATIENCE).unwrap();
    b.release();

    let gpu = crate::support::GPU.to_string();
    let label = format!("{{gpu=\"{gpu}\"}}");
    // The loop updates the metrics right after the messages it handles;
    // scrape until the release has been counted.
    let deadline = std::time::Instant::now() + PATIENCE;
    let text = loop {
        let text = scrape(&daemon);
        if text.contains("client=\"beta\"") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(value(&text, "nvshare_clients"), 2.0);
    assert_eq!(value(&text, "nvshare_queue_length"), 0.0);
    assert_eq!(value(&text, &format!("nvshare_grants_total{label}")), 2.0);
    assert_eq!(value(&text, &format!("nvshare_switches_total{label}")), 1.0);
    assert_eq!(
        value(
            &text,
            &format!("nvshare_switch_latency_seconds_count{label}")
        ),
        1.0
    );
    assert!(value(&text, &format!("nvshare_evicted_bytes_total{label}")) > 0.0);
    assert_eq!(
        value(&text, &format!("nvshare_restored_bytes_total{label}")),
        (1600 * MIB) as f64
    );
    let held = value(
        &text,
        &format!("nvshare_lock_held_seconds_total{{gpu=\"{gpu}\",client=\"alpha\"}}"),
    );
    assert!(held >= 0.09, "alpha held the lock {held} s");
    assert_eq!(
        value(
            &text,
            &format!("nvshare_drop_requests_total{{gpu=\"{gpu}\",reason=\"quantum expired\"}}")
        ),
        1.0
    );
    assert!(text.contains("# TYPE nvshare_grant_wait_seconds histogram"));
    assert!(text.contains("# TYPE nvshare_host_shadow_bytes gauge"));
    assert!(text.contains("# TYPE nvshare_rejected_connections counter"));

    // Once both have gone, the GPU is forgotten and so are its series.
    drop((a, b));
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let text = scrape(&daemon);
        if !text.contains(&gpu) {
            assert!(text.contains("# TYPE nvshare_grants counter"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a GPU nobody uses kept its series:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn host_shadow_bytes_follow_the_clients_reports() {
    let daemon = Daemon::start(&["--memory-capacity", "1GiB", "--metrics-addr", "127.0.0.1:0"]);
    let a = HookClient::connect_attached(&daemon.socket, "alpha", 100 * MIB);
    let b = HookClient::connect_attached(&daemon.socket, "beta", 100 * MIB);
    let report = |client: &HookClient, pinned, pageable| {
        client.send(
            &nvshare_proto::ClientBody::HostShadows { pinned, pageable }.on(crate::support::GPU),
        )
    };
    report(&a, 32 * MIB, 0);
    report(&b, 8 * MIB, 2 * MIB);
    let gpu = crate::support::GPU.to_string();
    let pinned = format!("nvshare_host_shadow_bytes{{gpu=\"{gpu}\",memory=\"pinned\"}}");
    let pageable = format!("nvshare_host_shadow_bytes{{gpu=\"{gpu}\",memory=\"pageable\"}}");
    let settled = |want_pinned: u64, want_pageable: u64| {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let text = scrape(&daemon);
            let now = (
                text.contains(&pinned).then(|| value(&text, &pinned)),
                text.contains(&pageable).then(|| value(&text, &pageable)),
            );
            if now == (Some(want_pinned as f64), Some(want_pageable as f64)) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "host shadow gauges stayed at {now:?}, expected {want_pinned}/{want_pageable}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    settled(40 * MIB, 2 * MIB);
    drop(b);
    settled(32 * MIB, 0);
}

/// One sample named `name` with `labels` (name, value pairs), parsed from
/// `text` by a Prometheus exposition parser (prometheus-parse; the
/// openmetrics-parser crate refuses a family with no samples, which the
/// format allows): `None` if there is no such sample.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus_parse::{Scrape, Value};
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("the daemon's metrics do not parse: {e}\n{text}"));
    scrape.samples.iter().find_map(|s| {
        let matches = s.metric == name
            && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            && s.labels.len() == labels.len();
        match (matches, &s.value) {
            (true, Value::Gauge(n) | Value::Counter(n) | Value::Untyped(n)) => Some(*n),
            _ => None,
        }
    })
}

/// The body of a scrape (after the HTTP head).
fn body(reply: &str) -> &str {
    reply.split_once("\r\n\r\n").map_or(reply, |(_, body)| body)
}

/// Scrapes until `done` holds for the body, failing after [`PATIENCE`].
fn scrape_until(daemon: &Daemon, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let reply = scrape(daemon);
        if done(body(&reply)) {
            return body(&reply).to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never showed in the metrics:\n{reply}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn per_gpu_and_per_job_gauges_follow_the_jobs_and_go_with_them() {
    let daemon = Daemon::start(&[
        "--memory-capacity",
        "1GiB",
        "--quantum",
        "60",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let gpu = crate::support::GPU.to_string();
    let mut alpha = HookClient::connect_attached(&daemon.socket, "alpha", 800 * MIB);
    alpha.send(
        &nvshare_proto::ClientBody::JobSettings(nvshare_proto::JobSettings {
            memory_limit: Some(900 * MIB),
            priority: 3,
            weight: 2,
        })
        .on(crate::support::GPU),
    );
    let beta = HookClient::connect_attached(&daemon.socket, "beta", 800 * MIB);
    alpha.request();
    alpha.wait_grant(PATIENCE).unwrap();
    beta.request();
    let job = |name: &'static str, id: &'static str| {
        [("gpu", gpu.as_str()), ("client", name), ("id", id)]
    };
    let text = scrape_until(&daemon, "beta waiting", |text| {
        sample(text, "nvshare_job_waiting_seconds", &job("beta", "2")).is_some_and(|s| s > 0.0)
    });
    let gpu_only = [("gpu", gpu.as_str())];
    assert_eq!(
        sample(&text, "nvshare_gpu_capacity_bytes", &gpu_only),
        Some((1024 * MIB) as f64)
    );
    assert_eq!(sample(&text, "nvshare_gpu_holders", &gpu_only), Some(1.0));
    assert_eq!(sample(&text, "nvshare_gpu_waiting", &gpu_only), Some(1.0));
    assert_eq!(
        sample(&text, "nvshare_gpu_quantum_seconds", &gpu_only),
        Some(60.0)
    );
    assert_eq!(
        sample(&text, "nvshare_job_holding", &job("alpha", "1")),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "nvshare_job_holding", &job("beta", "2")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "nvshare_job_memory_limit_bytes", &job("alpha", "1")),
        Some((900 * MIB) as f64)
    );
    assert_eq!(
        sample(&text, "nvshare_job_memory_limit_bytes", &job("beta", "2")),
        None
    );
    assert_eq!(
        sample(&text, "nvshare_job_priority", &job("alpha", "1")),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "nvshare_job_weight", &job("alpha", "1")),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "nvshare_job_priority", &job("beta", "2")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "nvshare_job_footprint_bytes", &job("beta", "2")),
        Some((800 * MIB) as f64)
    );
    // Some of it may have come back ahead of its grant (a fetch).
    let resident = sample(&text, "nvshare_job_resident_bytes", &job("beta", "2")).unwrap();
    assert_eq!(
        sample(&text, "nvshare_job_swapped_bytes", &job("beta", "2")),
        Some((800 * MIB) as f64 - resident)
    );

    // alpha leaves: its series go, beta holds the GPU.
    drop(alpha);
    let text = scrape_until(&daemon, "alpha gone and beta holding", |text| {
        sample(text, "nvshare_job_holding", &job("alpha", "1")).is_none()
            && sample(text, "nvshare_job_holding", &job("beta", "2")) == Some(1.0)
    });
    assert!(!text.contains("client=\"alpha\",id=\"1\""), "{text}");
    drop(beta);
    scrape_until(&daemon, "every job's series gone", |text| {
        !text.contains("nvshare_job_holding{")
    });
}
