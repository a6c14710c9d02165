//! Where the list of physical GPUs comes from. In production that is NVML
//! (through `nvshare-gpus`, as the scheduler finds them), or `nvidia-smi`
//! when asked; tests and special setups give a fixed list or a file that
//! can be rewritten while the plugin runs.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// How long one `nvidia-smi` run may take before the scan counts as failed
/// (a wedged driver can make it hang).
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(30);

/// A GPU a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundGpu {
    /// Its uuid (`GPU-...`).
    pub uuid: String,
    /// Its memory in bytes, where the source tells (NVML does).
    pub memory: Option<u64>,
}

/// A source of GPU uuids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSource {
    /// Ask NVML, loaded from this library, at every scan.
    Nvml(PathBuf),
    /// Run `nvidia-smi --query-gpu=uuid,index --format=csv,noheader`.
    NvidiaSmi(PathBuf),
    /// These GPUs, always.
    Fixed(Vec<String>),
    /// Read the file at every scan: one GPU per line, the uuid first
    /// (nvidia-smi's CSV lines are accepted), `#` comments and blank lines
    /// ignored.
    File(PathBuf),
}

/// Why a scan could not tell which GPUs are there.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// nvidia-smi is not installed or not on PATH: no GPUs.
    #[error(
        "{0} was not found: no GPUs advertised (run the plugin with the NVIDIA container runtime, or pass --nvidia-smi PATH)"
    )]
    NvidiaSmiMissing(PathBuf),
    /// nvidia-smi ran and failed.
    #[error("{program} failed ({status}): {stderr}; check the driver with nvidia-smi on the node")]
    NvidiaSmiFailed {
        /// The program run.
        program: PathBuf,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// nvidia-smi did not finish in time.
    #[error(
        "{0} did not answer within {NVIDIA_SMI_TIMEOUT:?}; check the driver with nvidia-smi on the node"
    )]
    NvidiaSmiTimedOut(PathBuf),
    /// nvidia-smi could not be started for another reason.
    #[error("could not run {program}: {source}")]
    NvidiaSmiSpawn {
        /// The program run.
        program: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The thread asking NVML failed.
    #[error("the thread asking NVML for the GPUs failed: {0}")]
    NvmlThread(String),
    /// NVML could not list the GPUs.
    #[error(transparent)]
    Nvml(#[from] nvshare_gpus::DiscoveryError),
    /// The GPU list file could not be read.
    #[error("could not read the GPU list file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl ScanError {
    /// True when the error means "this node has no GPUs" rather than "the
    /// GPUs could not be checked".
    pub fn means_no_gpus(&self) -> bool {
        matches!(
            self,
            ScanError::NvidiaSmiMissing(_)
                | ScanError::Nvml(nvshare_gpus::DiscoveryError::Unavailable { .. })
        )
    }
}

impl GpuSource {
    /// The GPUs present now, in the source's order, without duplicates.
    pub async fn scan(&self) -> Result<Vec<FoundGpu>, ScanError> {
        let without_memory = |uuids: Vec<String>| {
            uuids
                .into_iter()
                .map(|uuid| FoundGpu { uuid, memory: None })
                .collect()
        };
        match self {
            GpuSource::Fixed(uuids) => Ok(without_memory(first_of_each(
                uuids.iter().cloned(),
                String::as_str,
            ))),
            GpuSource::File(path) => {
                let text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|source| ScanError::File {
                            path: path.clone(),
                            source,
                        })?;
                Ok(without_memory(parse_gpu_list(&text)))
            }
            GpuSource::NvidiaSmi(program) => Ok(without_memory(run_nvidia_smi(program).await?)),
            GpuSource::Nvml(library) => {
                let library = library.clone();
                // NVML's calls block (a wedged driver can make them hang):
                // off the async threads.
                let found = tokio::task::spawn_blocking(move || {
                    nvshare_gpus::discover(Some(library.as_os_str()))
                })
                .await
                .map_err(|error| ScanError::NvmlThread(error.to_string()))??;
                let gpus = found.into_iter().map(|gpu| FoundGpu {
                    uuid: gpu.uuid.to_string(),
                    memory: Some(gpu.memory),
                });
                Ok(first_of_each(gpus, |gpu| gpu.uuid.as_str()))
            }
        }
    }
}

async fn run_nvidia_smi(program: &PathBuf) -> Result<Vec<String>, ScanError> {
    let child = tokio::process::Command::new(program)
        .args(["--query-gpu=uuid,index", "--format=csv,noheader"])
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(NVIDIA_SMI_TIMEOUT, child).await {
        Err(_) => return Err(ScanError::NvidiaSmiTimedOut(program.clone())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ScanError::NvidiaSmiMissing(program.clone()));
        }
        Ok(Err(source)) => {
            return Err(ScanError::NvidiaSmiSpawn {
                program: program.clone(),
                source,
            });
        }
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        return Err(ScanError::NvidiaSmiFailed {
            program: program.clone(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(parse_gpu_list(&String::from_utf8_lossy(&output.stdout)))
}

/// Parses a GPU list: one GPU per line, its uuid the first comma-separated
/// field (so `nvidia-smi --query-gpu=uuid,index --format=csv,noheader`
/// output parses as is). Blank lines, `#` comments and fields that cannot be
/// a uuid (empty, containing whitespace) are skipped; duplicates are dropped.
pub fn parse_gpu_list(text: &str) -> Vec<String> {
    let uuids = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .map(|line| line.split(',').next().unwrap_or("").trim())
        .filter(|uuid| is_plausible_uuid(uuid))
        .map(str::to_owned);
    first_of_each(uuids, String::as_str)
}

/// A uuid must be usable inside a device ID and inside the comma-separated
/// `NVIDIA_VISIBLE_DEVICES`.
fn is_plausible_uuid(uuid: &str) -> bool {
    !uuid.is_empty()
        && !uuid.contains(crate::constants::DEVICE_ID_SEPARATOR)
        && uuid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// The first of `items` with each `key` (a uuid, a device ID), in order.
pub(crate) fn first_of_each<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &str,
) -> Vec<T> {
    let mut seen = Vec::<T>::new();
    for item in items {
        if !seen.iter().any(|s| key(s) == key(&item)) {
            seen.push(item);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_csv_parses_to_uuids_in_order() {
        let out = "GPU-5a1c2f3e-0000-1111-2222-333344445555, 0\nGPU-6b2d3f4a-aaaa-bbbb-cccc-ddddeeeeffff, 1\n";
        assert_eq!(
            parse_gpu_list(out),
            [
                "GPU-5a1c2f3e-0000-1111-2222-333344445555",
                "GPU-6b2d3f4a-aaaa-bbbb-cccc-ddddeeeeffff"
            ]
        );
    }

    #[test]
    fn comments_blanks_bad_fields_and_duplicates_are_skipped() {
        let text = "# the node's GPUs\n\nGPU-a\n  GPU-b  # second\nGPU-a\nnot a uuid\nGPU__x\n,\n";
        assert_eq!(parse_gpu_list(text), ["GPU-a", "GPU-b"]);
    }

    /// The fake NVML (`tests/fake-nvml`), built by `cargo build --workspace`.
    fn fake_nvml() -> std::path::PathBuf {
        cuda_programs::artifacts::artifact("libnvidia_ml.so")
    }

    #[tokio::test]
    async fn nvml_lists_the_gpus_the_scheduler_sees() {
        // The fake NVML's defaults: one 16 GiB GPU.
        let gpus = GpuSource::Nvml(fake_nvml()).scan().await.unwrap();
        assert_eq!(
            gpus,
            [FoundGpu {
                uuid: "GPU-46414b45-4355-4441-0000-000000000001".into(),
                memory: Some(16 << 30),
            }]
        );
    }

    #[tokio::test]
    async fn no_nvml_means_no_gpus() {
        let source = GpuSource::Nvml(PathBuf::from("/nonexistent/libnvidia-ml.so.1"));
        let err = source.scan().await.unwrap_err();
        assert!(err.means_no_gpus(), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/libnvidia-ml.so.1"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_nvidia_smi_means_no_gpus() {
        let source = GpuSource::NvidiaSmi(PathBuf::from("/nonexistent/nvidia-smi"));
        let err = source.scan().await.unwrap_err();
        assert!(err.means_no_gpus(), "{err}");
    }

    #[tokio::test]
    async fn a_failing_nvidia_smi_is_an_error_not_an_empty_list() {
        let source = GpuSource::NvidiaSmi(PathBuf::from("false"));
        let err = source.scan().await.unwrap_err();
        assert!(!err.means_no_gpus(), "{err}");
    }

    #[tokio::test]
    async fn nvidia_smi_is_asked_for_uuids_in_csv() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("nvidia-smi");
        // Answers only the exact query the plugin must make.
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$*\" = \"--query-gpu=uuid,index --format=csv,noheader\" ] || exit 9\necho 'GPU-x, 0'\necho 'GPU-y, 1'\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let source = GpuSource::NvidiaSmi(script);
        // A process forked by a parallel test may briefly hold the script
        // open for writing (ETXTBSY): try again then.
        let mut result = source.scan().await;
        for _ in 0..20 {
            let busy = matches!(&result, Err(ScanError::NvidiaSmiSpawn { source, .. })
                if source.kind() == io::ErrorKind::ExecutableFileBusy);
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            result = source.scan().await;
        }
        let uuids: Vec<String> = result.unwrap().into_iter().map(|g| g.uuid).collect();
        assert_eq!(uuids, ["GPU-x", "GPU-y"]);
    }

    #[tokio::test]
    async fn a_missing_file_is_an_error() {
        let source = GpuSource::File(PathBuf::from("/nonexistent/gpus"));
        assert!(matches!(source.scan().await, Err(ScanError::File { .. })));
    }
}
