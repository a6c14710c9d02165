//! The GPUs of this machine, found through NVML (`libnvidia-ml.so.1`, part
//! of the NVIDIA driver), which is loaded with `dlopen` when asked: a
//! program that uses this crate still starts where there is no driver and
//! is told why there are no GPUs. The scheduler uses it to know every GPU
//! before any program attaches; the device plugin to advertise them.
//!
//! # Layout
//! - this file: [`discover`] (index, UUID, name and memory of each GPU)
//!   and [`watch_xids`] (critical XID events, the driver's health reports,
//!   delivered on a thread of their own).

use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvshare_proto::GpuUuid;
use std::ffi::{OsStr, OsString};
use std::time::Duration;

/// The library NVML is loaded from when no path is given (found by the
/// dynamic loader, as the driver installs it).
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

/// One GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// NVML's index (the order of `nvidia-smi`).
    pub index: u32,
    /// The UUID (the scheduler's domain).
    pub uuid: GpuUuid,
    /// The product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Total memory in bytes.
    pub memory: u64,
}

/// Why the GPUs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// NVML could not be loaded or initialised: no driver on this machine
    /// (or not visible to this process).
    #[error(
        "NVML ({library}) is not available: {reason}; no GPUs are known until programs attach (install the NVIDIA driver, run with the NVIDIA container runtime, or give the library's path)"
    )]
    Unavailable {
        /// The library asked for.
        library: String,
        /// What NVML or the loader said.
        reason: String,
    },
    /// NVML was loaded but a query failed.
    #[error("NVML could not tell {what} of GPU {index}: {reason}; check the GPU with nvidia-smi")]
    Query {
        /// What was asked.
        what: &'static str,
        /// The GPU's index (`u32::MAX` for the count).
        index: u32,
        /// What NVML said.
        reason: String,
    },
    /// NVML reported a UUID that is not a GPU UUID (e.g. a MIG instance's).
    #[error("NVML reported {text:?} as the UUID of GPU {index}, which is not a GPU UUID")]
    BadUuid {
        /// The GPU's index.
        index: u32,
        /// What NVML said.
        text: String,
    },
}

/// A critical XID event: the driver reports a GPU error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xid {
    /// The GPU it concerns.
    pub uuid: GpuUuid,
    /// Its NVML index.
    pub index: u32,
    /// The XID code (e.g. 79: fallen off the bus); `None` if NVML could not
    /// tell which.
    pub code: Option<u64>,
}

fn library_name(library: Option<&OsStr>) -> String {
    library
        .map(|path| path.to_string_lossy().into_owned())
        .unwrap_or_else(|| DEFAULT_LIBRARY.to_owned())
}

fn open(library: Option<&OsStr>) -> Result<Nvml, DiscoveryError> {
    let mut builder = Nvml::builder();
    if let Some(path) = library {
        builder.lib_path(path);
    }
    builder.init().map_err(|error| DiscoveryError::Unavailable {
        library: library_name(library),
        reason: error.to_string(),
    })
}

fn query(what: &'static str, index: u32) -> impl Fn(NvmlError) -> DiscoveryError {
    move |error| DiscoveryError::Query {
        what,
        index,
        reason: error.to_string(),
    }
}

fn gpus_of(nvml: &Nvml) -> Result<Vec<Gpu>, DiscoveryError> {
    let count = nvml.device_count().map_err(query("the count", u32::MAX))?;
    (0..count)
        .map(|index| {
            let device = nvml
                .device_by_index(index)
                .map_err(query("the handle", index))?;
            let text = device.uuid().map_err(query("the UUID", index))?;
            let uuid = text
                .parse()
                .map_err(|_| DiscoveryError::BadUuid { index, text })?;
            Ok(Gpu {
                index,
                uuid,
                name: device.name().map_err(query("the name", index))?,
                memory: device
                    .memory_info()
                    .map_err(query("the memory", index))?
                    .total,
            })
        })
        .collect()
}

/// Every GPU NVML sees, in index order. `library` is NVML's path
/// ([`DEFAULT_LIBRARY`] when `None`).
pub fn discover(library: Option<&OsStr>) -> Result<Vec<Gpu>, DiscoveryError> {
    gpus_of(&open(library)?)
}

/// How long one wait for an event lasts before it is asked again.
const EVENT_WAIT_MS: u32 = 1000;

/// After an error other than a timeout, the wait before the next try.
const EVENT_RETRY: Duration = Duration::from_secs(5);

/// Calls `on_xid` for every critical XID event of any GPU, on a thread that
/// lives as long as the process. Returns once the events are registered;
/// an error means no GPU delivers them (no NVML, or none supports it), and
/// `Ok(count)` how many GPUs do.
pub fn watch_xids(
    library: Option<OsString>,
    mut on_xid: impl FnMut(Xid) + Send + 'static,
) -> Result<usize, DiscoveryError> {
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("nvml-xid".into())
        .spawn(move || {
            let nvml = match open(library.as_deref()) {
                Ok(nvml) => nvml,
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return;
                }
            };
            let (set, registered) = match register(&nvml) {
                Ok(found) => found,
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return;
                }
            };
            let _ = ready.send(Ok(registered));
            loop {
                match set.wait(EVENT_WAIT_MS) {
                    Ok(event) => {
                        let code = match event.event_data {
                            Some(XidError::Value(code)) => Some(code),
                            _ => None,
                        };
                        let uuid = event.device.uuid().ok().and_then(|t| t.parse().ok());
                        let index = event.device.index().unwrap_or(u32::MAX);
                        match uuid {
                            Some(uuid) => on_xid(Xid { uuid, index, code }),
                            None => tracing::warn!(
                                index,
                                ?code,
                                "NVML reported an XID for a GPU whose UUID it cannot tell"
                            ),
                        }
                    }
                    Err(NvmlError::Timeout) => {}
                    Err(error) => {
                        tracing::warn!(%error, "waiting for NVML events failed; trying again in 5 s");
                        std::thread::sleep(EVENT_RETRY);
                    }
                }
            }
        })
        .map_err(|error| DiscoveryError::Unavailable {
            library: "the XID watcher".into(),
            reason: format!("could not start its thread: {error}"),
        })?;
    started.recv().unwrap_or_else(|_| {
        Err(DiscoveryError::Unavailable {
            library: "the XID watcher".into(),
            reason: "its thread ended before it started".into(),
        })
    })
}

/// An event set with every GPU that supports critical XID events.
fn register(nvml: &Nvml) -> Result<(nvml_wrapper::EventSet<'_>, usize), DiscoveryError> {
    let mut set = nvml
        .create_event_set()
        .map_err(query("an event set", u32::MAX))?;
    let mut registered = 0;
    let count = nvml.device_count().map_err(query("the count", u32::MAX))?;
    for index in 0..count {
        let device = nvml
            .device_by_index(index)
            .map_err(query("the handle", index))?;
        // A failed registration consumes the set: ask first.
        let supported = device
            .supported_event_types()
            .is_ok_and(|types| types.contains(EventTypes::CRITICAL_XID_ERROR));
        if !supported {
            tracing::debug!(index, "no XID events from this GPU");
            continue;
        }
        set = device
            .register_events(EventTypes::CRITICAL_XID_ERROR, set)
            .map_err(|failed| DiscoveryError::Query {
                what: "XID events",
                index,
                reason: failed.error.to_string(),
            })?;
        registered += 1;
    }
    if registered == 0 {
        return Err(DiscoveryError::Query {
            what: "XID events",
            index: u32::MAX,
            reason: "no GPU supports them".into(),
        });
    }
    Ok((set, registered))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fake NVML (`tests/fake-nvml`), built by `cargo build --workspace`.
    fn fake_nvml() -> std::path::PathBuf {
        cuda_programs::artifacts::artifact("libnvidia_ml.so")
    }

    #[test]
    fn the_fake_driver_gpus_are_discovered_and_their_xids_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let xids = dir.path().join("xids");
        std::fs::write(&xids, "").unwrap();
        // SAFETY: no other thread of this test binary reads these variables
        // (the only other tests load no fake NVML).
        unsafe {
            std::env::set_var("FAKE_CUDA_DEVICES", "2");
            std::env::set_var("FAKE_CUDA_MEMORY", "3GiB");
            std::env::set_var("FAKE_NVML_XID_FILE", &xids);
        }
        let library = fake_nvml();
        let gpus = discover(Some(library.as_os_str())).unwrap();
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].index, 1);
        assert_eq!(gpus[1].name, "Fake GPU 1");
        assert_eq!(gpus[1].memory, 3 << 30);
        assert_eq!(
            gpus[0].uuid.to_string(),
            "GPU-46414b45-4355-4441-0000-000000000001"
        );
        let (seen, events) = std::sync::mpsc::channel();
        let registered = watch_xids(Some(library.into_os_string()), move |xid| {
            let _ = seen.send(xid);
        })
        .unwrap();
        assert_eq!(registered, 2);
        std::fs::write(&xids, "1 79\nnot a line\n0 13\n").unwrap();
        let first = events.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (first.index, first.code, first.uuid),
            (1, Some(79), gpus[1].uuid)
        );
        let second = events.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((second.index, second.code), (0, Some(13)));
    }

    #[test]
    fn a_missing_library_says_there_is_no_nvml_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libnvidia-ml.so.1");
        let error = discover(Some(path.as_os_str())).unwrap_err();
        assert!(matches!(error, DiscoveryError::Unavailable { .. }));
        let text = error.to_string();
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
        assert!(text.contains("install the NVIDIA driver"), "{text}");
    }

    #[test]
    fn a_library_that_is_not_nvml_is_unavailable_too() {
        // libc loads but has no nvmlInit_v2.
        let error = discover(Some(OsStr::new("libc.so.6"))).unwrap_err();
        assert!(
            matches!(error, DiscoveryError::Unavailable { .. }),
            "{error}"
        );
    }
}
