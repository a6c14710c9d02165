//! What a container that gets shares of GPUs is given: the hook library and
//! the scheduler socket directory mounted from the node, and the environment
//! that makes the hook load, find the node's scheduler and see the right GPU.
//!
//! `NVSHARE_NAME` is deliberately not set: Allocate does not say which pod
//! it is for. Without it the hook names a job after its program; pods set it
//! from the downward API (`metadata.name`), and a pod's own env wins over
//! the plugin's.

use crate::api::{ContainerAllocateResponse, Mount};
use crate::constants::{CONTAINER_LIB_PATH, env};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The node paths an allocation mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationSettings {
    /// libnvshare.so on the node (the plugin sees the node's lib directory
    /// at the same path).
    pub host_lib_path: PathBuf,
    /// The scheduler socket, the same path on the node and in containers;
    /// its directory is what gets mounted, so a restarted scheduler's new
    /// socket is seen.
    pub scheduler_socket: PathBuf,
}

/// Why no container may be given a share right now.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotReady {
    /// The hook library is not on the node.
    #[error(
        "{0} is missing on the node: the plugin installs it at start (--install), check its log and that the node directory is mounted at the same path in the plugin container"
    )]
    LibraryMissing(PathBuf),
}

impl AllocationSettings {
    /// The directory holding the scheduler socket.
    pub fn scheduler_socket_dir(&self) -> &Path {
        self.scheduler_socket.parent().unwrap_or(Path::new("/"))
    }

    /// Checks what must exist on the node before a container can use it: a
    /// bind mount of a missing file would make the runtime create a
    /// directory in its place.
    pub fn check_ready(&self) -> Result<(), NotReady> {
        if self.host_lib_path.is_file() {
            Ok(())
        } else {
            Err(NotReady::LibraryMissing(self.host_lib_path.clone()))
        }
    }

    /// The response for one container given shares of `gpu_uuids` (the
    /// physical GPUs, without duplicates).
    pub fn container_response(&self, gpu_uuids: &[String]) -> ContainerAllocateResponse {
        let socket_dir = self.scheduler_socket_dir().to_string_lossy().into_owned();
        let mounts = vec![
            Mount {
                container_path: CONTAINER_LIB_PATH.to_owned(),
                host_path: self.host_lib_path.to_string_lossy().into_owned(),
                read_only: true,
            },
            // Connecting to a socket needs no write access to its mount.
            Mount {
                container_path: socket_dir.clone(),
                host_path: socket_dir,
                read_only: true,
            },
        ];
        let envs = HashMap::from([
            (env::LD_PRELOAD.to_owned(), CONTAINER_LIB_PATH.to_owned()),
            (
                env::NVSHARE_SOCK.to_owned(),
                self.scheduler_socket.to_string_lossy().into_owned(),
            ),
            (
                env::NVSHARE_SCHEDULER.to_owned(),
                env::SCHEDULER_EXTERNAL.to_owned(),
            ),
            (env::NVIDIA_VISIBLE_DEVICES.to_owned(), gpu_uuids.join(",")),
        ]);
        ContainerAllocateResponse {
            envs,
            mounts,
            ..Default::default()
        }
    }
}

/// The response for one container given `bytes` of GPU memory (units of
/// `nvshare.com/gpumem`): its memory limit, which the hook enforces and
/// reports as the GPU's memory. The kubelet merges it with the share's
/// response, which loads the hook.
pub fn memory_response(bytes: u64) -> ContainerAllocateResponse {
    let limit = format!("{}MiB", bytes >> 20);
    ContainerAllocateResponse {
        envs: HashMap::from([(env::NVSHARE_MEMORY_LIMIT.to_owned(), limit)]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(lib: &Path) -> AllocationSettings {
        AllocationSettings {
            host_lib_path: lib.to_owned(),
            scheduler_socket: PathBuf::from("/var/run/nvshare/scheduler.sock"),
        }
    }

    #[test]
    fn the_response_wires_hook_socket_and_gpus() {
        let s = settings(Path::new("/node/lib/libnvshare.so"));
        let r = s.container_response(&["GPU-a".into(), "GPU-b".into()]);
        assert_eq!(r.envs[env::LD_PRELOAD], CONTAINER_LIB_PATH);
        assert_eq!(r.envs[env::NVSHARE_SOCK], "/var/run/nvshare/scheduler.sock");
        assert_eq!(r.envs[env::NVSHARE_SCHEDULER], "external");
        assert_eq!(r.envs[env::NVIDIA_VISIBLE_DEVICES], "GPU-a,GPU-b");
        assert!(!r.envs.contains_key(env::NVSHARE_NAME));
        let mounts: Vec<_> = r
            .mounts
            .iter()
            .map(|m| (m.host_path.as_str(), m.container_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                ("/node/lib/libnvshare.so", CONTAINER_LIB_PATH, true),
                ("/var/run/nvshare", "/var/run/nvshare", true)
            ]
        );
    }

    #[test]
    fn memory_units_become_the_containers_memory_limit() {
        let r = memory_response(3 << 30);
        assert_eq!(r.envs[env::NVSHARE_MEMORY_LIMIT], "3072MiB");
        assert_eq!(
            nvshare_proto::units::parse_size(&r.envs[env::NVSHARE_MEMORY_LIMIT]),
            Ok(3 << 30),
            "the hook reads it back as it was given"
        );
        assert!(r.mounts.is_empty() && !r.envs.contains_key(env::LD_PRELOAD));
    }

    #[test]
    fn a_missing_library_is_reported_not_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libnvshare.so");
        assert_eq!(
            settings(&lib).check_ready(),
            Err(NotReady::LibraryMissing(lib.clone()))
        );
        std::fs::write(&lib, b"\x7fELF").unwrap();
        assert_eq!(settings(&lib).check_ready(), Ok(()));
    }
}
