//! An operator connection.

use super::PATIENCE;
use super::wire::{Wire, handshake};
use nvshare_proto::{ControlReply, ControlRequest, Role};
use std::path::Path;

/// An operator connection (what `nvshare-ctl` opens).
pub struct Control {
    pub wire: Wire,
}

impl Control {
    pub fn connect(socket: &Path) -> Control {
        Control {
            wire: handshake(socket, Role::Control).0,
        }
    }

    pub fn request(&mut self, request: &ControlRequest) -> ControlReply {
        self.wire.send(request);
        self.wire.recv(PATIENCE).unwrap()
    }

    pub fn status(&mut self) -> nvshare_proto::StatusReport {
        match self.request(&ControlRequest::Status) {
            ControlReply::Status(report) => report,
            other => panic!("expected a status, got {other:?}"),
        }
    }
}
