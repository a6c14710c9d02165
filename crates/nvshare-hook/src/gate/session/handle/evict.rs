//! `Evict` and the eviction a drop makes: memory moved out to the host,
//! each piece reported as it is freed.

use crate::engine;
use crate::gate::Gate;
use crate::gate::device::DeviceGate;
use crate::gate::platform;
use nvshare_proto::ClientBody;
use std::time::Instant;

/// `Evict`: declined while the program holds the GPU (moving memory from
/// under running work would fault; the scheduler asks others or drops the
/// lock instead), else the memory is moved out.
pub fn evict(gate: &Gate, device: &DeviceGate, bytes: u64) {
    if device.is_held() {
        gate.session.send(
            &ClientBody::EvictFailed {
                resident: engine::current().usage(device.ordinal).resident,
                reason: "the program holds the GPU; drop the lock first".into(),
            }
            .on(device.uuid),
        );
        return;
    }
    move_out(gate, device, bytes);
}

/// Moves `bytes` of the device's memory out, reporting each piece freed and
/// the outcome (also the end of a drop).
pub fn move_out(gate: &Gate, device: &DeviceGate, bytes: u64) {
    if bytes == 0 {
        return;
    }
    let started = Instant::now();
    let _current = platform::ContextGuard::enter(device.ordinal);
    let before = engine::current().usage(device.ordinal).resident;
    // Each piece freed is reported at once: the scheduler lets the next
    // program's restore into it while the rest is still being copied.
    let mut report = |released: u64| {
        gate.session.send(
            &ClientBody::Evicting {
                resident: before.saturating_sub(released),
            }
            .on(device.uuid),
        );
    };
    match engine::current().evict(device.ordinal, bytes, &mut report) {
        Ok(moved) => {
            let usage = engine::current().usage(device.ordinal);
            let elapsed_us = started.elapsed().as_micros() as u64;
            tracing::debug!(gpu = %device.uuid, bytes = moved, elapsed_us, "memory evicted");
            gate.session.send(
                &ClientBody::Evicted {
                    bytes: moved,
                    resident: usage.resident,
                    elapsed_us,
                }
                .on(device.uuid),
            );
        }
        Err(e) => {
            tracing::warn!(gpu = %device.uuid, error = %e, "eviction failed; the memory stays on the GPU");
            let usage = engine::current().usage(device.ordinal);
            gate.session.send(
                &ClientBody::EvictFailed {
                    resident: usage.resident,
                    reason: e.to_string(),
                }
                .on(device.uuid),
            );
        }
    }
    crate::gate::host::report(gate, device, false);
}
