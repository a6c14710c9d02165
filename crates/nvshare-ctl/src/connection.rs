//! One control connection to the scheduler: the handshake, then requests
//! each answered by one reply.

use crate::error::CtlError;
use nvshare_proto::{
    ControlReply, ControlRequest, Hello, HelloReply, Role, decode, read_payload, write_msg,
};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long to wait for any answer: the daemon answers control requests at
/// once, so a silent daemon is a hung one.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A control connection that completed its handshake.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    path: PathBuf,
}

impl Connection {
    /// Connects to the scheduler at `path` and introduces itself as an
    /// operator tool.
    pub fn open(path: &Path) -> Result<Self, CtlError> {
        let unreachable = |source| CtlError::Unreachable {
            path: path.to_owned(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .map_err(unreachable)?;
        let mut conn = Connection {
            stream,
            path: path.to_owned(),
        };
        write_msg(&mut conn.stream, &Hello::new(Role::Control)).map_err(|e| conn.proto(e))?;
        let payload = read_payload(&mut conn.stream).map_err(|e| conn.proto(e))?;
        match decode::<HelloReply>(&payload).map_err(|e| conn.proto(e))? {
            HelloReply::Accepted { client_id, version } => {
                tracing::debug!(client_id, version, path = %path.display(), "connected");
                Ok(conn)
            }
            HelloReply::Rejected(reply) => Err(CtlError::Refused(reply.message)),
        }
    }

    /// Sends `request` and waits for its reply.
    pub fn call(&mut self, request: &ControlRequest) -> Result<ControlReply, CtlError> {
        tracing::debug!(?request, "sending");
        write_msg(&mut self.stream, request).map_err(|e| self.proto(e))?;
        let payload = read_payload(&mut self.stream).map_err(|e| self.proto(e))?;
        let reply = decode::<ControlReply>(&payload).map_err(|e| self.proto(e))?;
        tracing::debug!(?reply, "received");
        Ok(reply)
    }

    /// The socket this connection uses.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn proto(&self, source: nvshare_proto::ProtoError) -> CtlError {
        CtlError::Protocol {
            path: self.path.clone(),
            source,
        }
    }
}
