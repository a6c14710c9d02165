//! Where the scheduler's socket is: the one rule the hook, the daemon and
//! `nvshare-ctl` share, so that the same user finds the same daemon without
//! options.
//!
//! An explicit path (`--socket` or `NVSHARE_SOCK`) wins; otherwise
//! [`SYSTEM_SOCKET`] for root (the original nvshare's path), else
//! `$XDG_RUNTIME_DIR/nvshare/scheduler.sock`, else
//! `/tmp/nvshare-<uid>/scheduler.sock`.

use std::ffi::OsString;
use std::path::PathBuf;

/// The socket path used by root, as in the original nvshare.
pub const SYSTEM_SOCKET: &str = "/var/run/nvshare/scheduler.sock";

/// The socket path for a process of effective user `euid` whose
/// `XDG_RUNTIME_DIR` is `xdg_runtime_dir`, when no path is given.
pub fn default_socket_path(euid: u32, xdg_runtime_dir: Option<OsString>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    match xdg_runtime_dir.filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("nvshare/scheduler.sock"),
        None => PathBuf::from(format!("/tmp/nvshare-{euid}/scheduler.sock")),
    }
}

/// The socket to use: `explicit` (from `--socket` or [`crate::env::SOCK`])
/// if given, else the default for this process's user and environment.
pub fn resolve(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        default_socket_path(euid, std::env::var_os("XDG_RUNTIME_DIR"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_path_wins() {
        let explicit = PathBuf::from("/somewhere/else.sock");
        assert_eq!(resolve(Some(explicit.clone())), explicit);
    }

    #[test]
    fn root_uses_the_system_socket_whatever_the_environment() {
        let path = default_socket_path(0, Some("/run/user/0".into()));
        assert_eq!(path, PathBuf::from(SYSTEM_SOCKET));
    }

    #[test]
    fn users_use_their_runtime_dir_else_a_tmp_dir_of_their_own() {
        assert_eq!(
            default_socket_path(1000, Some("/run/user/1000".into())),
            PathBuf::from("/run/user/1000/nvshare/scheduler.sock")
        );
        assert_eq!(
            default_socket_path(1000, None),
            PathBuf::from("/tmp/nvshare-1000/scheduler.sock")
        );
        assert_eq!(
            default_socket_path(1000, Some("".into())),
            PathBuf::from("/tmp/nvshare-1000/scheduler.sock")
        );
    }
}
