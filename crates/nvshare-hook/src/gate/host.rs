//! Reporting the host memory the engine keeps as shadows of a device's
//! memory (`ClientBody::HostShadows`), each time it changed.

use super::Gate;
use super::device::DeviceGate;
use crate::engine;
use nvshare_proto::ClientBody;

/// Sends `device`'s host shadow bytes if they changed since the last report
/// (or always, with `force`: after an attach, to a scheduler that knows
/// nothing yet).
pub(crate) fn report(gate: &Gate, device: &DeviceGate, force: bool) {
    let now = engine::current().host_shadows(device.ordinal);
    let now = (now.pinned, now.pageable);
    {
        let mut last = device.host_reported.lock();
        if !force && *last == Some(now) {
            return;
        }
        *last = Some(now);
    }
    gate.session.send(
        &ClientBody::HostShadows {
            pinned: now.0,
            pageable: now.1,
        }
        .on(device.uuid),
    );
}
