//! Tests of the program's own mapped handles: which are swappable, how access merges.

use super::*;

use nvshare_proto::units::MIB;

fn prop(device: CUdevice) -> Prop {
    Prop {
        type_: CU_MEM_ALLOCATION_TYPE_PINNED,
        handle_types: 0,
        location: CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: device,
        },
        flags: CUmemAllocationPropFlags::default(),
    }
}

fn rw(device: CUdevice) -> CUmemAccessDesc {
    CUmemAccessDesc {
        location: CUmemLocation {
            type_: CU_MEM_LOCATION_TYPE_DEVICE,
            id: device,
        },
        flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    }
}

/// A handle of `bytes` on device 0 mapped whole at `va` with read-write access.
fn mapped(table: &mut Table, va: u64, bytes: u64) -> u64 {
    let id = table.create(0, bytes, prop(0), 0x1000 + va);
    table.add_mapping(va, bytes, 0, id);
    table.set_access(va, va, bytes, &[rw(0)]);
    id
}

#[test]
fn handles_are_tagged_and_distinct() {
    let mut table = Table::new();
    let a = table.create(0, 2 * MIB, prop(0), 7);
    let b = table.create(0, 2 * MIB, prop(0), 7);
    assert_ne!(a, b);
    assert_eq!(a & ID_TAG, ID_TAG);
    assert!(table.is_ours(a) && table.is_ours(b));
    assert!(!table.is_ours(7), "real handles are not the program's");
}

#[test]
fn a_handle_mapped_once_whole_with_access_is_swappable() {
    let mut table = Table::new();
    let id = mapped(&mut table, 0x10_0000_0000, 20 * MIB);
    let (va, remap) = table.swappable(id).expect("swappable");
    assert_eq!(va, 0x10_0000_0000);
    assert_eq!(remap.id, id);
    assert_eq!(remap.access.len(), 1);
}

#[test]
fn unmapped_unaccessible_partial_exported_or_doubly_mapped_handles_stay() {
    let mut table = Table::new();
    let alive = table.create(0, 2 * MIB, prop(0), 1);
    assert!(table.swappable(alive).is_none(), "unmapped");

    let no_access = table.create(0, 2 * MIB, prop(0), 2);
    table.add_mapping(0x100_0000, 2 * MIB, 0, no_access);
    assert!(table.swappable(no_access).is_none(), "no access set");

    let part = table.create(0, 4 * MIB, prop(0), 3);
    table.add_mapping(0x200_0000, 4 * MIB, 0, part);
    table.set_access(0x200_0000, 0x200_0000, 2 * MIB, &[rw(0)]);
    assert!(table.swappable(part).is_none(), "access on half of it");

    let short = table.create(0, 4 * MIB, prop(0), 4);
    table.add_mapping(0x300_0000, 2 * MIB, 0, short);
    table.set_access(0x300_0000, 0x300_0000, 2 * MIB, &[rw(0)]);
    assert!(table.swappable(short).is_none(), "mapped in part");

    let twice = mapped(&mut table, 0x400_0000, 2 * MIB);
    assert!(table.swappable(twice).is_some());
    table.add_mapping(0x500_0000, 2 * MIB, 0, twice);
    assert!(table.swappable(twice).is_none(), "mapped twice");

    let exported = mapped(&mut table, 0x600_0000, 2 * MIB);
    table.records.get_mut(&exported).unwrap().exported = true;
    assert!(table.swappable(exported).is_none(), "exported");

    let peer_only = table.create(0, 2 * MIB, prop(0), 5);
    table.add_mapping(0x700_0000, 2 * MIB, 0, peer_only);
    table.set_access(0x700_0000, 0x700_0000, 2 * MIB, &[rw(1)]);
    assert!(
        table.swappable(peer_only).is_none(),
        "its own device cannot write it"
    );
}

#[test]
fn access_merges_by_location_and_none_revokes() {
    let mut table = Table::new();
    let id = mapped(&mut table, 0x800_0000, 2 * MIB);
    table.set_access(0x800_0000, 0x800_0000, 2 * MIB, &[rw(1)]);
    assert_eq!(
        table.swappable(id).expect("still swappable").1.access.len(),
        2
    );
    let revoke = CUmemAccessDesc {
        flags: CU_MEM_ACCESS_FLAGS_PROT_NONE,
        ..rw(0)
    };
    table.set_access(0x800_0000, 0x800_0000, 2 * MIB, &[revoke]);
    assert!(
        table.swappable(id).is_none(),
        "its own device lost access: a restore could not write it"
    );
}

#[test]
fn one_set_access_over_several_mappings_covers_each_whole() {
    let mut table = Table::new();
    let base = 0x1_0000_0000;
    let ids: Vec<u64> = (0..3)
        .map(|i| {
            let id = table.create(0, 2 * MIB, prop(0), i);
            table.add_mapping(base + i * 2 * MIB, 2 * MIB, 0, id);
            id
        })
        .collect();
    for va in table.overlapping(base, 6 * MIB) {
        table.set_access(va, base, 6 * MIB, &[rw(0)]);
    }
    assert!(ids.iter().all(|&id| table.swappable(id).is_some()));
}

#[test]
fn ranges_find_overlapping_mappings_and_exact_covers() {
    let mut table = Table::new();
    let base = 0x2_0000_0000;
    mapped(&mut table, base, 2 * MIB);
    mapped(&mut table, base + 2 * MIB, 20 * MIB);
    mapped(&mut table, base + 30 * MIB, 2 * MIB);
    assert_eq!(
        table.overlapping(base, 22 * MIB),
        vec![base, base + 2 * MIB]
    );
    assert_eq!(table.overlapping(base + MIB, MIB), vec![base]);
    assert_eq!(
        table.overlapping(base + 22 * MIB, 8 * MIB),
        Vec::<u64>::new()
    );
    assert!(table.exactly_covered(base, 22 * MIB));
    assert!(!table.exactly_covered(base, 20 * MIB), "cuts a mapping");
    assert!(!table.exactly_covered(base, 32 * MIB), "has a hole");
    assert_eq!(table.containing(base + 5 * MIB), Some(base + 2 * MIB));
    assert_eq!(table.containing(base + 23 * MIB), None);
}

#[test]
fn held_counts_only_handles_that_never_move() {
    let mut table = Table::new();
    table.create(0, 2 * MIB, prop(0), 1);
    table.create(1, 4 * MIB, prop(1), 2);
    let moving = mapped(&mut table, 0x900_0000, 8 * MIB);
    table.records.get_mut(&moving).unwrap().backing = Backing::Unit(0x900_0000);
    assert_eq!(table.held(0), 2 * MIB);
    assert_eq!(table.held(1), 4 * MIB);
}

#[test]
fn properties_round_trip_without_the_windows_pointer() {
    let mut c = prop(3).to_c();
    c.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    let back = Prop::from_c(&c).to_c();
    assert_eq!(back.location.id, 3);
    assert_eq!(
        back.requestedHandleTypes,
        CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
    );
    assert!(back.win32HandleMetaData.is_null());
}
