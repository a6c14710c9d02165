//! Operator requests (`nvshare-ctl`): status for anyone, settings changes
//! only for root or the daemon's own user.

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
    scheduler: &mut Scheduler,
) -> (ControlReply, Vec<Action>) {
    let now = daemon.uptime;
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
        ControlRequest::SetQuantum { quantum_ms } => {
            if let Err(refused) = authorize(peer_uid, daemon.uid, "set the quantum") {
                return (ControlReply::Error(refused), Vec::new());
            }
            if quantum_ms == 0 {
                return (
                    ControlReply::Error(ErrorReply {
                        code: ErrorCode::InvalidArgument,
                        message: "the quantum must be at least 1 ms".to_owned(),
                    }),
                    Vec::new(),
                );
            }
            let actions = scheduler.set_quantum(now, Duration::from_millis(quantum_ms));
            tracing::info!(peer_uid, quantum_ms, "quantum changed by operator");
            (ControlReply::Done, actions)
        }
        ControlRequest::SetPolicy { policy } => {
            if let Err(refused) = authorize(peer_uid, daemon.uid, "set the policy") {
                return (ControlReply::Error(refused), Vec::new());
            }
            let actions = scheduler.set_policy(now, policy);
            tracing::info!(peer_uid, %policy, "policy changed by operator");
            (ControlReply::Done, actions)
        }
    }
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
