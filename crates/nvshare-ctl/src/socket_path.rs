//! Where the scheduler's socket is: the rule every nvshare program shares.
//!
//! `--socket`, else `NVSHARE_SOCK`, else `/var/run/nvshare/scheduler.sock`
//! for root (the original nvshare's path), else
//! `$XDG_RUNTIME_DIR/nvshare/scheduler.sock`, else
//! `/tmp/nvshare-<uid>/scheduler.sock`. The daemon applies the same rule, so
//! the same user finds the same daemon without options.

use nvshare_proto::socket::default_socket_path;
use std::path::PathBuf;

/// The socket to use: `explicit` (from `--socket` or `NVSHARE_SOCK`) if
/// given, else the default for this process's user and environment.
pub fn resolve_socket_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        default_socket_path(
            nix::unistd::geteuid().as_raw(),
            std::env::var_os("XDG_RUNTIME_DIR"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_path_wins() {
        let explicit = PathBuf::from("/somewhere/else.sock");
        assert_eq!(resolve_socket_path(Some(explicit.clone())), explicit);
    }
}
