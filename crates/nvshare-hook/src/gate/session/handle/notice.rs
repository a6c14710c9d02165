//! Connection-wide notices: a changed quantum, a refused message, a
//! scheduler shutting down. Only logged: the program keeps what it holds.

use nvshare_proto::SchedulerMsg;

/// Logs a notice (any other message is not one and is ignored here).
pub fn notice(msg: SchedulerMsg) {
    match msg {
        SchedulerMsg::QuantumChanged { quantum_ms } => {
            tracing::debug!(quantum_ms, "the scheduler's quantum changed");
        }
        SchedulerMsg::Error(reply) => {
            tracing::warn!(code = ?reply.code, "the scheduler refused a message: {}", reply.message);
        }
        SchedulerMsg::ShuttingDown => {
            tracing::info!(
                "the scheduler is shutting down; this program keeps what it holds and reconnects"
            );
        }
        _ => {}
    }
}
