//! Rescans the GPUs every few seconds and publishes the inventory when what
//! the kubelet sees changes (a GPU appears, vanishes or comes back), and,
//! with NVML as the source, turns a GPU's shares Unhealthy on a critical
//! XID error.

use crate::gpus::{GpuSource, ScanError};
use crate::inventory::Inventory;
use nvshare_gpus::Xid;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Scans `source` and publishes changes into `inventory`.
pub struct Monitor {
    source: GpuSource,
    inventory: watch::Sender<Inventory>,
    /// The last scan error logged, so a persistent one is logged once.
    last_error: Option<String>,
    /// XID events from NVML, once [`Monitor::watch_xids`] started them.
    xids: Option<mpsc::UnboundedReceiver<Xid>>,
    /// XID codes that leave a GPU healthy.
    ignored_xids: Vec<u64>,
}

impl Monitor {
    /// A monitor publishing into `inventory`.
    pub fn new(source: GpuSource, inventory: watch::Sender<Inventory>) -> Self {
        Monitor {
            source,
            inventory,
            last_error: None,
            xids: None,
            ignored_xids: Vec::new(),
        }
    }

    /// With NVML as the source, starts receiving its critical XID events
    /// (all but `ignored`); a GPU that reports one turns Unhealthy. Logs
    /// why when there are none to watch.
    pub fn watch_xids(&mut self, ignored: &[u64]) {
        let GpuSource::Nvml(library) = &self.source else {
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        match nvshare_gpus::watch_xids(Some(library.clone().into_os_string()), move |xid| {
            let _ = tx.send(xid);
        }) {
            Ok(gpus) => {
                tracing::info!(gpus, "watching the GPUs for XID errors");
                self.receive_xids(rx, ignored);
            }
            Err(error) => tracing::info!("no XID health events: {error}"),
        }
    }

    /// Takes XID events from `events` (all but `ignored` critical).
    pub fn receive_xids(&mut self, events: mpsc::UnboundedReceiver<Xid>, ignored: &[u64]) {
        self.xids = Some(events);
        self.ignored_xids = ignored.to_vec();
    }

    /// Applies one XID event: a critical one turns the GPU's shares
    /// Unhealthy for good, one of an application's is only logged.
    fn on_xid(&mut self, xid: Xid) {
        let uuid = xid.uuid.to_string();
        let code = xid.code.unwrap_or(u64::MAX);
        if xid.code.is_some_and(|c| self.ignored_xids.contains(&c)) {
            tracing::info!(gpu = %uuid, xid = code, "an application's XID error; the GPU stays healthy");
            return;
        }
        tracing::error!(
            gpu = %uuid,
            xid = ?xid.code,
            "a critical XID error: this GPU's shares are Unhealthy until the plugin restarts (check the GPU with nvidia-smi and the kernel log; it may need a reset)"
        );
        self.inventory
            .send_if_modified(|inventory| inventory.fail(&uuid, code));
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
            let changed = inventory.observe_found(&found);
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
        let mut next_scan = tokio::time::Instant::now() + interval;
        loop {
            let xid = async {
                match self.xids.as_mut() {
                    Some(xids) => xids.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = crate::stop_signal::stopped(&mut stop) => return,
                () = tokio::time::sleep_until(next_scan) => {
                    self.scan_once().await;
                    next_scan = tokio::time::Instant::now() + interval;
                }
                event = xid => match event {
                    Some(event) => self.on_xid(event),
                    // The watcher is gone: no more events.
                    None => self.xids = None,
                },
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

    #[tokio::test]
    async fn a_critical_xid_makes_its_gpus_shares_unhealthy_and_an_applications_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gpus");
        let (a, b) = (
            "GPU-00000000-0000-0000-0000-00000000000a",
            "GPU-00000000-0000-0000-0000-00000000000b",
        );
        std::fs::write(&file, format!("{a}\n{b}\n")).unwrap();
        let (tx, mut rx) = watch::channel(Inventory::new(1));
        let mut monitor = Monitor::new(GpuSource::File(file.clone()), tx);
        monitor.scan_once().await;
        rx.borrow_and_update();
        let (events, received) = mpsc::unbounded_channel();
        monitor.receive_xids(received, &[13, 43]);
        let (stop_tx, stop) = watch::channel(false);
        let running = tokio::spawn(monitor.run(Duration::from_millis(20), stop));
        let xid = |uuid: &str, code| Xid {
            uuid: uuid.parse().unwrap(),
            index: 0,
            code: Some(code),
        };
        events.send(xid(a, 13)).unwrap();
        events.send(xid(b, 79)).unwrap();
        let health = || {
            rx.borrow()
                .devices()
                .into_iter()
                .map(|d| (d.gpu_uuid, d.healthy))
                .collect::<Vec<_>>()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while health() != [(a.to_owned(), true), (b.to_owned(), false)] {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", health());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Rescans find b again; it stays Unhealthy.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(health(), [(a.to_owned(), true), (b.to_owned(), false)]);
        stop_tx.send(true).unwrap();
        running.await.unwrap();
    }
}
