//! The GPUs seen on the node, their health, and the virtual devices the
//! kubelet sees: `replicas` shares of each GPU, with IDs `<uuid>__<k>`,
//! and, with a memory unit, its memory in units, with IDs `<uuid>__mem<k>`
//! (the `nvshare.com/gpumem` resource).
//!
//! A GPU once seen stays in the inventory: when a scan no longer finds it,
//! its shares turn Unhealthy (the kubelet stops placing pods on them and
//! keeps counting the pods already there), and Healthy again if it comes
//! back. A GPU the driver reported a critical XID error for stays Unhealthy
//! until the plugin restarts (as NVIDIA's device plugin does: such a GPU
//! usually needs a reset).

use crate::constants::{DEVICE_ID_SEPARATOR, HEALTHY, MEMORY_DEVICE_MARK, UNHEALTHY};
use crate::gpus::FoundGpu;
use std::collections::BTreeMap;

/// One share of a physical GPU, as advertised to the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualDevice {
    /// `<gpu uuid>__<share number>`.
    pub id: String,
    /// The physical GPU's uuid.
    pub gpu_uuid: String,
    /// Whether the GPU was found by the last scan and has had no critical
    /// XID error.
    pub healthy: bool,
}

impl VirtualDevice {
    /// The kubelet's spelling of this device's health.
    pub fn health(&self) -> &'static str {
        if self.healthy { HEALTHY } else { UNHEALTHY }
    }
}

/// The device ID of share `share` of GPU `gpu_uuid`.
pub fn device_id(gpu_uuid: &str, share: u32) -> String {
    format!("{gpu_uuid}{DEVICE_ID_SEPARATOR}{share}")
}

/// The GPU uuid and share number in a device ID, if it has that shape.
pub fn parse_device_id(id: &str) -> Option<(&str, u32)> {
    let (uuid, share) = id.rsplit_once(DEVICE_ID_SEPARATOR)?;
    if uuid.is_empty() || share.starts_with('+') {
        return None;
    }
    Some((uuid, share.parse().ok()?))
}

/// The device ID of memory unit `unit` of GPU `gpu_uuid`.
pub fn memory_device_id(gpu_uuid: &str, unit: u64) -> String {
    format!("{gpu_uuid}{DEVICE_ID_SEPARATOR}{MEMORY_DEVICE_MARK}{unit}")
}

/// The GPU uuid and unit number in a memory device ID, if it has that shape.
pub fn parse_memory_device_id(id: &str) -> Option<(&str, u64)> {
    let (uuid, unit) = id.rsplit_once(DEVICE_ID_SEPARATOR)?;
    let unit = unit.strip_prefix(MEMORY_DEVICE_MARK)?;
    if uuid.is_empty() || unit.starts_with('+') {
        return None;
    }
    Some((uuid, unit.parse().ok()?))
}

/// How GPU memory is advertised, if it is (`--memory-unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryResource {
    /// Bytes per device.
    pub unit: u64,
    /// The memory of GPUs whose source does not tell it (`--gpu-memory`).
    pub default_memory: Option<u64>,
}

/// Every GPU seen since the plugin started, and whether it is present now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    replicas: u32,
    present: BTreeMap<String, bool>,
    /// GPUs with a critical XID error: the last code.
    failed: BTreeMap<String, u64>,
    /// How memory is advertised, if it is.
    memory_resource: Option<MemoryResource>,
    /// The memory each GPU was last found with, where its source told.
    memory: BTreeMap<String, u64>,
}

impl Inventory {
    /// An empty inventory advertising `replicas` shares per GPU.
    pub fn new(replicas: u32) -> Self {
        Inventory {
            replicas,
            present: BTreeMap::new(),
            failed: BTreeMap::new(),
            memory_resource: None,
            memory: BTreeMap::new(),
        }
    }

    /// This inventory, also advertising each GPU's memory as `resource`
    /// says.
    pub fn with_memory_resource(mut self, resource: MemoryResource) -> Self {
        self.memory_resource = Some(resource);
        self
    }

    /// Records a scan that found exactly `gpus`, with their memory where
    /// the source told it. Returns whether anything the kubelet sees
    /// changed.
    pub fn observe_found(&mut self, gpus: &[FoundGpu]) -> bool {
        let uuids: Vec<String> = gpus.iter().map(|g| g.uuid.clone()).collect();
        let mut changed = self.observe(&uuids);
        for gpu in gpus {
            if let Some(memory) = gpu.memory {
                let before = self.memory.insert(gpu.uuid.clone(), memory);
                changed |= self.memory_resource.is_some() && before != Some(memory);
            }
        }
        changed
    }

    /// The memory units GPU `uuid` is advertised with: none when its memory
    /// is not known or memory is not advertised.
    pub fn memory_units(&self, uuid: &str) -> u64 {
        let Some(resource) = self.memory_resource else {
            return 0;
        };
        let memory = self.memory.get(uuid).copied().or(resource.default_memory);
        memory.map_or(0, |bytes| bytes / resource.unit)
    }

    /// The bytes one memory device stands for, if memory is advertised.
    pub fn memory_unit(&self) -> Option<u64> {
        self.memory_resource.map(|r| r.unit)
    }

    /// Every memory device, ordered by GPU uuid then unit number (none
    /// without a memory unit).
    pub fn memory_devices(&self) -> Vec<VirtualDevice> {
        self.present
            .keys()
            .flat_map(|uuid| {
                let healthy = self.is_healthy(uuid);
                (0..self.memory_units(uuid)).map(move |unit| VirtualDevice {
                    id: memory_device_id(uuid, unit),
                    gpu_uuid: uuid.clone(),
                    healthy,
                })
            })
            .collect()
    }

    /// The memory device with this ID, if this inventory advertises it.
    pub fn lookup_memory(&self, id: &str) -> Option<VirtualDevice> {
        let (uuid, unit) = parse_memory_device_id(id)?;
        self.present.get(uuid)?;
        (unit < self.memory_units(uuid) && memory_device_id(uuid, unit) == id).then(|| {
            VirtualDevice {
                id: id.to_owned(),
                gpu_uuid: uuid.to_owned(),
                healthy: self.is_healthy(uuid),
            }
        })
    }

    /// Records a critical XID error `xid` of GPU `uuid`: its shares turn
    /// Unhealthy for good. Returns whether anything the kubelet sees
    /// changed.
    pub fn fail(&mut self, uuid: &str, xid: u64) -> bool {
        let healthy_before = self.is_healthy(uuid);
        self.failed.insert(uuid.to_owned(), xid);
        healthy_before != self.is_healthy(uuid)
    }

    fn is_healthy(&self, uuid: &str) -> bool {
        self.present.get(uuid).copied().unwrap_or(false) && !self.failed.contains_key(uuid)
    }

    /// Records a scan that found exactly `gpus`. Returns whether anything
    /// the kubelet sees changed.
    pub fn observe(&mut self, gpus: &[String]) -> bool {
        let mut changed = false;
        for (uuid, present) in &mut self.present {
            let now = gpus.contains(uuid);
            changed |= *present != now;
            *present = now;
        }
        for uuid in gpus {
            if !self.present.contains_key(uuid) {
                self.present.insert(uuid.clone(), true);
                changed = true;
            }
        }
        changed
    }

    /// Every GPU ever seen, with whether it is healthy now (present, and
    /// no critical XID error).
    pub fn gpus(&self) -> impl Iterator<Item = (&str, bool)> {
        self.present
            .keys()
            .map(|uuid| (uuid.as_str(), self.is_healthy(uuid)))
    }

    /// Every virtual device, ordered by GPU uuid then share number.
    pub fn devices(&self) -> Vec<VirtualDevice> {
        self.present
            .keys()
            .flat_map(|uuid| {
                let healthy = self.is_healthy(uuid);
                (0..self.replicas).map(move |share| VirtualDevice {
                    id: device_id(uuid, share),
                    gpu_uuid: uuid.clone(),
                    healthy,
                })
            })
            .collect()
    }

    /// The device with this ID, if this inventory advertises it.
    pub fn lookup(&self, id: &str) -> Option<VirtualDevice> {
        let (uuid, share) = parse_device_id(id)?;
        self.present.get(uuid)?;
        let healthy = self.is_healthy(uuid);
        // `device_id` must give back `id` exactly: "GPU-a__01" names no device.
        (share < self.replicas && device_id(uuid, share) == id).then(|| VirtualDevice {
            id: id.to_owned(),
            gpu_uuid: uuid.to_owned(),
            healthy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uuids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_gpu_gives_replicas_healthy_devices() {
        let mut inv = Inventory::new(3);
        assert!(inv.observe(&uuids(&["GPU-b", "GPU-a"])));
        let ids: Vec<_> = inv.devices().into_iter().map(|d| d.id).collect();
        assert_eq!(
            ids,
            [
                "GPU-a__0", "GPU-a__1", "GPU-a__2", "GPU-b__0", "GPU-b__1", "GPU-b__2"
            ]
        );
        assert!(inv.devices().iter().all(|d| d.health() == HEALTHY));
    }

    #[test]
    fn a_gpu_with_a_critical_xid_stays_unhealthy() {
        let mut inv = Inventory::new(2);
        inv.observe(&uuids(&["GPU-a", "GPU-b"]));
        assert!(inv.fail("GPU-a", 79));
        assert!(!inv.fail("GPU-a", 48), "already unhealthy");
        inv.observe(&uuids(&["GPU-a", "GPU-b"]));
        let health: Vec<(String, bool)> = inv
            .devices()
            .into_iter()
            .map(|d| (d.id, d.healthy))
            .collect();
        assert_eq!(
            health,
            [
                ("GPU-a__0".to_owned(), false),
                ("GPU-a__1".to_owned(), false),
                ("GPU-b__0".to_owned(), true),
                ("GPU-b__1".to_owned(), true),
            ]
        );
        assert!(!inv.lookup("GPU-a__1").unwrap().healthy);
    }

    #[test]
    fn a_vanished_gpu_turns_unhealthy_and_recovers() {
        let mut inv = Inventory::new(2);
        inv.observe(&uuids(&["GPU-a", "GPU-b"]));
        assert!(
            !inv.observe(&uuids(&["GPU-b", "GPU-a"])),
            "same set, no change"
        );
        assert!(inv.observe(&uuids(&["GPU-b"])));
        let health: Vec<_> = inv
            .devices()
            .iter()
            .map(|d| (d.id.clone(), d.healthy))
            .collect();
        assert_eq!(
            health,
            [
                ("GPU-a__0".to_owned(), false),
                ("GPU-a__1".to_owned(), false),
                ("GPU-b__0".to_owned(), true),
                ("GPU-b__1".to_owned(), true)
            ]
        );
        assert!(inv.observe(&uuids(&["GPU-a", "GPU-b"])));
        assert!(inv.devices().iter().all(|d| d.healthy));
    }

    #[test]
    fn lookup_refuses_ids_this_inventory_does_not_advertise() {
        let mut inv = Inventory::new(2);
        inv.observe(&uuids(&["GPU-a"]));
        assert!(inv.lookup("GPU-a__1").is_some());
        for bad in [
            "GPU-a__2",
            "GPU-a__01",
            "GPU-a__+1",
            "GPU-z__0",
            "GPU-a",
            "__0",
            "",
            "GPU-a__-1",
        ] {
            assert_eq!(inv.lookup(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn every_advertised_device_looks_up_to_itself(
            gpus in proptest::collection::vec("GPU-[a-f0-9-]{1,12}", 0..5),
            later in proptest::collection::vec("GPU-[a-f0-9-]{1,12}", 0..5),
            replicas in 1u32..20,
        ) {
            let mut inv = Inventory::new(replicas);
            inv.observe(&gpus);
            inv.observe(&later);
            let devices = inv.devices();
            let mut distinct: Vec<_> = gpus.iter().chain(&later).collect();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(devices.len(), distinct.len() * replicas as usize);
            for device in &devices {
                prop_assert_eq!(inv.lookup(&device.id), Some(device.clone()));
                prop_assert_eq!(device.healthy, later.contains(&device.gpu_uuid));
            }
        }

        #[test]
        fn every_memory_unit_looks_up_to_itself_and_never_as_a_share(
            gpus in proptest::collection::vec(("GPU-[a-f0-9-]{1,12}", proptest::option::of(0u64..40)), 0..5),
            unit in 1u64..8,
            default_memory in proptest::option::of(0u64..40),
        ) {
            let found: Vec<FoundGpu> = gpus
                .iter()
                .map(|(uuid, memory)| FoundGpu { uuid: uuid.clone(), memory: *memory })
                .collect();
            let mut inv = Inventory::new(2).with_memory_resource(MemoryResource { unit, default_memory });
            inv.observe_found(&found);
            let units = inv.memory_devices();
            for device in &units {
                prop_assert_eq!(inv.lookup_memory(&device.id), Some(device.clone()));
                prop_assert_eq!(inv.lookup(&device.id), None);
            }
            for device in inv.devices() {
                prop_assert_eq!(inv.lookup_memory(&device.id), None);
            }
            let counted: u64 = inv.gpus().map(|(uuid, _)| inv.memory_units(uuid)).sum();
            prop_assert_eq!(units.len() as u64, counted);
        }
    }

    fn found(uuid: &str, memory: Option<u64>) -> FoundGpu {
        FoundGpu {
            uuid: uuid.into(),
            memory,
        }
    }

    #[test]
    fn memory_is_advertised_in_units_from_the_scan_or_the_default() {
        const GIB: u64 = 1 << 30;
        let resource = MemoryResource {
            unit: GIB,
            default_memory: Some(2 * GIB),
        };
        let mut inv = Inventory::new(2).with_memory_resource(resource);
        assert!(inv.observe_found(&[found("GPU-a", Some(3 * GIB + 5)), found("GPU-b", None)]));
        let ids: Vec<String> = inv.memory_devices().into_iter().map(|d| d.id).collect();
        assert_eq!(
            ids,
            [
                "GPU-a__mem0",
                "GPU-a__mem1",
                "GPU-a__mem2",
                "GPU-b__mem0",
                "GPU-b__mem1"
            ]
        );
        assert_eq!(inv.devices().len(), 4, "shares are advertised as before");
        // Share and memory IDs never stand for each other.
        assert_eq!(inv.lookup("GPU-a__mem0"), None);
        assert_eq!(inv.lookup_memory("GPU-a__0"), None);
        assert_eq!(inv.lookup_memory("GPU-a__mem3"), None);
        assert_eq!(inv.lookup_memory("GPU-a__mem01"), None);
        assert!(inv.lookup_memory("GPU-a__mem2").unwrap().healthy);
        // The same scan changes nothing; a vanished GPU's units turn
        // Unhealthy with its shares.
        assert!(!inv.observe_found(&[found("GPU-a", Some(3 * GIB + 5)), found("GPU-b", None)]));
        assert!(inv.observe_found(&[found("GPU-b", None)]));
        assert!(!inv.lookup_memory("GPU-a__mem2").unwrap().healthy);
        // Without a memory unit nothing is advertised.
        let mut plain = Inventory::new(2);
        assert!(plain.observe_found(&[found("GPU-a", Some(3 * GIB))]));
        assert!(plain.memory_devices().is_empty());
        assert_eq!(plain.lookup_memory("GPU-a__mem0"), None);
    }
}
