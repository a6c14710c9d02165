//! Tests of the registry: footprints per device, lookups by address, its invariants.

use super::*;
use proptest::prelude::*;

fn allocation(device: CUdevice, bytes: u64, resident: bool) -> Allocation {
    Allocation {
        device,
        bytes,
        kind: AllocKind::Device,
        resident,
        last_use: 0,
    }
}

/// Sums recomputed from scratch, to compare with the registry's running totals.
fn recomputed(registry: &Registry, device: CUdevice) -> Usage {
    registry
        .allocations_on(device)
        .iter()
        .fold(Usage::default(), |mut usage, (_, a)| {
            usage.footprint += a.bytes;
            if a.resident {
                usage.resident += a.bytes;
            }
            usage
        })
}

#[test]
fn containing_finds_interior_addresses_and_not_the_end() {
    let mut registry = Registry::default();
    registry.insert(0x1000, allocation(0, 0x100, true));
    assert_eq!(registry.containing(0x1000).map(|(b, _)| b), Some(0x1000));
    assert_eq!(registry.containing(0x10ff).map(|(b, _)| b), Some(0x1000));
    assert!(registry.containing(0x1100).is_none());
    assert!(registry.containing(0xfff).is_none());
}

#[test]
fn replacing_an_entry_keeps_totals_right() {
    let mut registry = Registry::default();
    registry.insert(0x1000, allocation(0, 10, true));
    let old = registry.insert(0x1000, allocation(0, 30, false));
    assert_eq!(old.map(|a| a.bytes), Some(10));
    assert_eq!(
        registry.usage(0),
        Usage {
            footprint: 30,
            resident: 0
        }
    );
}

#[test]
fn later_uses_get_later_clock_values() {
    let mut registry = Registry::default();
    registry.insert(0x1000, allocation(0, 10, true));
    registry.insert(0x2000, allocation(0, 10, true));
    registry.set_resident(0x1000, true);
    let entries = registry.allocations_on(0);
    assert!(entries[0].1.last_use > entries[1].1.last_use);
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        slot: u8,
        device: CUdevice,
        bytes: u64,
        resident: bool,
    },
    Remove {
        slot: u8,
    },
    SetResident {
        slot: u8,
        resident: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..32, 0..3, 1u64..0x1_0000, any::<bool>()).prop_map(
            |(slot, device, bytes, resident)| {
                Op::Insert {
                    slot,
                    device,
                    bytes,
                    resident,
                }
            }
        ),
        (0u8..32).prop_map(|slot| Op::Remove { slot }),
        (0u8..32, any::<bool>()).prop_map(|(slot, resident)| Op::SetResident { slot, resident }),
    ]
}

/// Slots are 1 MiB apart and allocations smaller, so entries never overlap.
fn base_of(slot: u8) -> CUdeviceptr {
    0x7f00_0000_0000 + u64::from(slot) * 0x10_0000
}

proptest! {
    #[test]
    fn totals_always_equal_the_sum_of_entries(ops in proptest::collection::vec(op(), 1..200)) {
        let mut registry = Registry::default();
        for op in ops {
            match op {
                Op::Insert { slot, device, bytes, resident } => {
                    registry.insert(base_of(slot), allocation(device, bytes, resident));
                }
                Op::Remove { slot } => {
                    registry.remove(base_of(slot));
                }
                Op::SetResident { slot, resident } => {
                    registry.set_resident(base_of(slot), resident);
                }
            }
            for device in 0..3 {
                prop_assert_eq!(registry.usage(device), recomputed(&registry, device));
            }
        }
    }

    #[test]
    fn every_address_maps_to_the_allocation_holding_it(
        sizes in proptest::collection::vec(1u64..0x10_0000, 1..32),
        probes in proptest::collection::vec((0usize..32, 0u64..0x10_0000), 1..64),
    ) {
        let mut registry = Registry::default();
        for (slot, &bytes) in sizes.iter().enumerate() {
            registry.insert(base_of(slot as u8), allocation(0, bytes, true));
        }
        for (slot, offset) in probes {
            let address = base_of(slot as u8) + offset;
            let expected = sizes.get(slot).is_some_and(|&bytes| offset < bytes);
            let found = registry.containing(address).map(|(base, _)| base);
            prop_assert_eq!(found, expected.then(|| base_of(slot as u8)));
        }
    }
}
