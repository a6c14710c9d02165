//! The GPUs of this machine, found through NVML at start (so that status
//! lists them before any program attaches and operators may name them by
//! index), and their health: critical XID events, logged, counted in the
//! inventory and exported as metrics.

use crate::metrics::{GpuLabels, Metrics};
use crate::policy::Scheduler;
use crate::server::SharedInventory;
use nvshare_proto::units::Bytes;
use nvshare_proto::{GpuInfo, Inventory};
use std::path::Path;
use std::sync::Arc;
use tracing::{info, warn};

/// Finds the GPUs through the NVML at `library` (none: does not look),
/// tells `scheduler` about them, and starts recording their XIDs. Never
/// fails: without NVML the daemon runs as before, knowing GPUs as programs
/// attach them, and says so in one line.
pub fn discover(
    library: Option<&Path>,
    scheduler: &mut Scheduler,
    metrics: &Arc<Metrics>,
) -> SharedInventory {
    let Some(library) = library else {
        info!("not looking for GPUs (--nvml-library none): GPUs are known as programs attach them");
        return SharedInventory::new(std::sync::Mutex::new(Inventory {
            unavailable: Some("not looked for (--nvml-library none)".into()),
            gpus: Vec::new(),
        }));
    };
    let inventory = match nvshare_gpus::discover(Some(library.as_os_str())) {
        Ok(gpus) => {
            for gpu in &gpus {
                info!(
                    index = gpu.index,
                    uuid = %gpu.uuid,
                    name = %gpu.name,
                    memory = %Bytes(gpu.memory),
                    "found a GPU"
                );
            }
            let unavailable = gpus
                .is_empty()
                .then(|| "NVML lists no GPUs on this machine".to_owned());
            if let Some(reason) = &unavailable {
                info!("{reason}");
            }
            scheduler.know_gpus(gpus.iter().map(|g| (g.index, g.uuid, g.memory)));
            Inventory {
                unavailable,
                gpus: gpus
                    .into_iter()
                    .map(|g| GpuInfo {
                        index: g.index,
                        uuid: g.uuid,
                        name: g.name,
                        memory: g.memory,
                        xids: 0,
                        last_xid: None,
                    })
                    .collect(),
            }
        }
        Err(error) => {
            info!("{error}");
            Inventory {
                unavailable: Some(error.to_string()),
                gpus: Vec::new(),
            }
        }
    };
    let watch = !inventory.gpus.is_empty();
    let shared = SharedInventory::new(std::sync::Mutex::new(inventory));
    if watch {
        watch_health(library, &shared, metrics);
    }
    shared
}

/// Records each critical XID in the inventory and the metrics, with a
/// warning naming the GPU.
fn watch_health(library: &Path, inventory: &SharedInventory, metrics: &Arc<Metrics>) {
    let (inventory, metrics) = (inventory.clone(), metrics.clone());
    let watched = nvshare_gpus::watch_xids(Some(library.as_os_str().to_owned()), move |xid| {
        let code = xid
            .code
            .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
        warn!(
            index = xid.index,
            uuid = %xid.uuid,
            xid = %code,
            "the driver reported a critical XID error on this GPU: programs on it may fail; see NVIDIA's XID catalog and the kernel log (dmesg)"
        );
        metrics
            .xid_errors
            .get_or_create(&GpuLabels {
                gpu: xid.uuid.to_string(),
            })
            .inc();
        let mut inventory = inventory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(gpu) = inventory.gpus.iter_mut().find(|g| g.uuid == xid.uuid) {
            gpu.xids += 1;
            gpu.last_xid = xid.code;
        }
    });
    match watched {
        Ok(gpus) => info!(gpus, "watching the GPUs for XID errors"),
        Err(error) => info!("no XID health events: {error}"),
    }
}
