//! gRPC client channels over Unix sockets: how the plugin reaches the
//! kubelet, and how tests reach the plugin.

use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long connecting may take: the peer is local, so only a wedged
/// process is slower.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the gRPC server listening on the Unix socket at `path`.
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_owned();
    // The URI only fills the HTTP/2 :authority; the connector ignores it.
    Endpoint::from_static("http://localhost")
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}
