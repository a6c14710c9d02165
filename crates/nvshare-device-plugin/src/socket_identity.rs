//! Telling a recreated socket file from the one seen before. The kubelet
//! recreates `kubelet.sock` when it restarts (and removes every plugin's
//! socket): both show up as a missing file or a new identity. The identity
//! includes the change time, since a new socket may reuse a freed inode
//! number.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Which file a path named when it was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketIdentity {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl SocketIdentity {
    /// The identity of the socket at `path`, or None when there is no
    /// socket there.
    pub fn of(path: &Path) -> Option<SocketIdentity> {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        meta.file_type().is_socket().then(|| SocketIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recreated_socket_has_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubelet.sock");
        assert_eq!(SocketIdentity::of(&path), None);
        let first = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let before = SocketIdentity::of(&path).expect("a socket");
        assert_eq!(SocketIdentity::of(&path), Some(before));
        std::fs::remove_file(&path).unwrap();
        // Keep the old socket's inode alive so the new one cannot reuse it.
        let _second = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_ne!(SocketIdentity::of(&path), Some(before));
        drop(first);
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        assert_eq!(SocketIdentity::of(&plain), None, "not a socket");
    }
}
