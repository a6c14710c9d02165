//! Operator requests (`nvshare-ctl`): status for anyone, settings changes
//! only for root or the daemon's own user.

use super::SharedInventory;
use crate::policy::{Action, Scheduler};
use nvshare_proto::{ControlReply, ControlRequest, ErrorCode, ErrorReply, StatusReport};
use std::time::Duration;

/// What the shell knows about the daemon when answering.
#[derive(Debug, Clone, Copy)]
pub struct DaemonInfo {
    /// The daemon's pid.
    pub pid: u32,
    /// The daemon's effective uid.
    pub uid: u32,
    /// Time since the daemon started (also the policy's `now`).
    pub uptime: Duration,
}

/// Answers one request from a peer with uid `peer_uid`; returns the reply and
/// what the policy wants done (e.g. telling clients the new quantum).
pub fn answer(
    request: ControlRequest,
    peer_uid: u32,
    daemon: DaemonInfo,
    inventory: &SharedInventory,
    scheduler: &mut Scheduler,
) -> (ControlReply, Vec<Action>) {
    let now = daemon.uptime;
    let refused = |error| (ControlReply::Error(error), Vec::new());
    match request {
        ControlRequest::Status => (
            ControlReply::Status(StatusReport {
                scheduler_pid: daemon.pid,
                scheduler_version: env!("CARGO_PKG_VERSION").to_owned(),
                uptime_s: daemon.uptime.as_secs(),
                gpus: scheduler.status(now),
            }),
            Vec::new(),
        ),
        ControlRequest::HostShadows => (
            ControlReply::HostShadows(scheduler.host_shadows()),
            Vec::new(),
        ),
        ControlRequest::Waits => (ControlReply::Waits(scheduler.waits(now)), Vec::new()),
        ControlRequest::Inventory => {
            let inventory = match inventory.lock() {
                Ok(inventory) => inventory.clone(),
                // The XID watcher only adds counts: what it left is usable.
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            (ControlReply::Inventory(inventory), Vec::new())
        }
        ControlRequest::SetQuantum { quantum_ms } => {
            let checked = authorize(peer_uid, daemon.uid, "set the quantum")
                .and_then(|()| quantum(quantum_ms));
            match checked {
                Ok(quantum) => {
                    tracing::info!(
                        peer_uid,
                        quantum_ms,
                        "quantum of every GPU changed by operator"
                    );
                    (ControlReply::Done, scheduler.set_quantum(now, quantum))
                }
                Err(error) => refused(error),
            }
        }
        ControlRequest::SetGpuQuantum { gpu, quantum_ms } => {
            let checked = authorize(peer_uid, daemon.uid, "set the quantum")
                .and_then(|()| Ok((quantum(quantum_ms)?, scheduler.resolve_gpu(gpu)?)));
            match checked {
                Ok((quantum, uuid)) => {
                    tracing::info!(peer_uid, quantum_ms, gpu = %uuid, "quantum of one GPU changed by operator");
                    (
                        ControlReply::Done,
                        scheduler.set_gpu_quantum(now, uuid, quantum),
                    )
                }
                Err(error) => refused(error),
            }
        }
        ControlRequest::SetPolicy { policy } => {
            if let Err(error) = authorize(peer_uid, daemon.uid, "set the policy") {
                return refused(error);
            }
            tracing::info!(peer_uid, %policy, "policy of every GPU changed by operator");
            (ControlReply::Done, scheduler.set_policy(now, policy))
        }
        ControlRequest::SetGpuPolicy { gpu, policy } => {
            let checked = authorize(peer_uid, daemon.uid, "set the policy")
                .and_then(|()| scheduler.resolve_gpu(gpu));
            match checked {
                Ok(uuid) => {
                    tracing::info!(peer_uid, %policy, gpu = %uuid, "policy of one GPU changed by operator");
                    (
                        ControlReply::Done,
                        scheduler.set_gpu_policy(now, uuid, policy),
                    )
                }
                Err(error) => refused(error),
            }
        }
    }
}

/// A quantum an operator asked for, if it is one.
fn quantum(quantum_ms: u64) -> Result<Duration, ErrorReply> {
    if quantum_ms == 0 {
        return Err(ErrorReply {
            code: ErrorCode::InvalidArgument,
            message: "the quantum must be at least 1 ms".to_owned(),
        });
    }
    Ok(Duration::from_millis(quantum_ms))
}

/// Settings changes are for root and the daemon's own user.
pub fn authorize(peer_uid: u32, daemon_uid: u32, what: &str) -> Result<(), ErrorReply> {
    if peer_uid == 0 || peer_uid == daemon_uid {
        return Ok(());
    }
    tracing::warn!(peer_uid, "refused an unprivileged request to {what}");
    Err(ErrorReply {
        code: ErrorCode::PermissionDenied,
        message: format!(
            "permission denied: only root or the scheduler's user (uid {daemon_uid}) may {what}; \
             you are uid {peer_uid}. Run the command as root (e.g. with sudo)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_daemon_user_may_change_settings_others_not() {
        assert!(authorize(0, 1000, "set the quantum").is_ok());
        assert!(authorize(1000, 1000, "set the quantum").is_ok());
        let refused = authorize(65534, 1000, "set the quantum").unwrap_err();
        assert_eq!(refused.code, ErrorCode::PermissionDenied);
        assert!(refused.message.contains("uid 1000"));
        assert!(refused.message.contains("uid 65534"));
    }
}
