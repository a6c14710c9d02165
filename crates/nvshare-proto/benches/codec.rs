//! CPU micro-benchmark of the wire codec: encode + frame + decode of the
//! messages on the lock-handoff hot path and of a large status report.
//!
//! Run with `cargo bench -p nvshare-proto --bench codec`; prints one line per
//! message kind with nanoseconds per round trip.

use nvshare_proto::*;
use std::hint::black_box;
use std::time::Instant;

fn bench<T>(label: &str, msg: &T, iterations: u32)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut buffer = FrameBuffer::new();
    let start = Instant::now();
    for _ in 0..iterations {
        let frame = encode_frame(black_box(msg)).expect("encode");
        buffer.extend(&frame);
        let payload = buffer.next_payload().expect("frame").expect("complete");
        let back: T = decode(payload).expect("decode");
        black_box(back);
    }
    let per = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    let size = encode_frame(msg).expect("encode").len();
    println!("codec {label:<24} {size:>6} bytes/frame {per:>10.1} ns/round-trip");
}

fn main() {
    let gpu = GpuUuid([0xab; 16]);
    bench("RequestLock", &ClientBody::RequestLock.on(gpu), 1_000_000);
    bench(
        "LockReleased",
        &ClientBody::LockReleased { resident: 12 << 30 }.on(gpu),
        1_000_000,
    );
    bench(
        "LockGranted",
        &SchedulerBody::LockGranted { room: 12 << 30 }.on(gpu),
        1_000_000,
    );
    bench(
        "DropLock",
        &SchedulerBody::DropLock {
            evict_bytes: 8 << 30,
        }
        .on(gpu),
        1_000_000,
    );
    let clients = (0..64)
        .map(|i| ClientStatus {
            client_id: i,
            pid: 1000 + i as u32,
            name: format!("train-job-{i}"),
            state: ClientState::Waiting,
            footprint: 12 << 30,
            resident: 6 << 30,
            held_ms: 123_456,
            grants: 42,
            memory_limit: Some(16 << 30),
            priority: 0,
            weight: 1,
            waiting_ms: 0,
        })
        .collect();
    let report = ControlReply::Status(StatusReport {
        scheduler_pid: 1,
        scheduler_version: "0.1.0".into(),
        uptime_s: 3600,
        gpus: vec![GpuStatus {
            uuid: gpu,
            physical_memory: 80 << 30,
            capacity: 16 << 30,
            policy: Policy::Auto,
            quantum_ms: 30_000,
            resident: 16 << 30,
            grants: 1000,
            switches: 999,
            bytes_evicted: 1 << 40,
            bytes_restored: 1 << 40,
            swap_time_us: 1_000_000,
            clients,
        }],
    });
    bench("Status (64 clients)", &report, 20_000);
}
