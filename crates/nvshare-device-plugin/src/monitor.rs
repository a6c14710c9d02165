//! Rescans the GPUs every few seconds and publishes the inventory when what
//! the kubelet sees changes (a GPU appears, vanishes or comes back).

use crate::gpus::{GpuSource, ScanError};
use crate::inventory::Inventory;
use std::time::Duration;
use tokio::sync::watch;

/// Scans `source` and publishes changes into `inventory`.
pub struct Monitor {
    source: GpuSource,
    inventory: watch::Sender<Inventory>,
    /// The last scan error logged, so a persistent one is logged once.
    last_error: Option<String>,
}

impl Monitor {
    /// A monitor publishing into `inventory`.
    pub fn new(source: GpuSource, inventory: watch::Sender<Inventory>) -> Self {
        Monitor {
            source,
            inventory,
            last_error: None,
        }
    }

    /// Scans once and publishes the result if it changed anything.
    ///
    /// A scan that cannot tell which GPUs are there (nvidia-smi failing,
    /// the list file unreadable) counts as finding none: every GPU's shares
    /// turn Unhealthy until a scan finds them again, since the kubelet must
    /// not place pods on GPUs nobody can vouch for.
    pub async fn scan_once(&mut self) {
        let found = match self.source.scan().await {
            Ok(gpus) => {
                if self.last_error.take().is_some() {
                    tracing::info!("GPU scan works again");
                }
                gpus
            }
            Err(e) => {
                self.log_scan_error(&e);
                Vec::new()
            }
        };
        self.inventory.send_if_modified(|inventory| {
            let changed = inventory.observe(&found);
            if changed {
                let gpus: Vec<String> = inventory
                    .gpus()
                    .map(|(uuid, present)| {
                        format!("{uuid} {}", if present { "healthy" } else { "unhealthy" })
                    })
                    .collect();
                tracing::info!(gpus = ?gpus, "GPU inventory changed");
            }
            changed
        });
    }

    fn log_scan_error(&mut self, error: &ScanError) {
        let text = error.to_string();
        if self.last_error.as_deref() != Some(text.as_str()) {
            if error.means_no_gpus() {
                tracing::warn!("{text}");
            } else {
                tracing::error!("GPU scan failed, marking every GPU unhealthy: {text}");
            }
            self.last_error = Some(text);
        }
    }

    /// Scans every `interval` until `stop` turns true (or its sender goes).
    pub async fn run(mut self, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = crate::stop_signal::stopped(&mut stop) => return,
                () = tokio::time::sleep(interval) => self.scan_once().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_published_and_repeats_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gpus");
        std::fs::write(&file, "GPU-a\nGPU-b\n").unwrap();
        let (tx, mut rx) = watch::channel(Inventory::new(2));
        let mut monitor = Monitor::new(GpuSource::File(file.clone()), tx);

        monitor.scan_once().await;
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().devices().len(), 4);

        monitor.scan_once().await;
        assert!(!rx.has_changed().unwrap(), "nothing changed");

        std::fs::write(&file, "GPU-b\n").unwrap();
        monitor.scan_once().await;
        assert!(rx.has_changed().unwrap());
        let unhealthy = rx
            .borrow_and_update()
            .devices()
            .into_iter()
            .filter(|d| !d.healthy)
            .count();
        assert_eq!(unhealthy, 2);
    }

    #[tokio::test]
    async fn an_unreadable_list_makes_every_gpu_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gpus");
        std::fs::write(&file, "GPU-a\n").unwrap();
        let (tx, rx) = watch::channel(Inventory::new(1));
        let mut monitor = Monitor::new(GpuSource::File(file.clone()), tx);
        monitor.scan_once().await;
        std::fs::remove_file(&file).unwrap();
        monitor.scan_once().await;
        assert!(rx.borrow().devices().iter().all(|d| !d.healthy));
    }
}
