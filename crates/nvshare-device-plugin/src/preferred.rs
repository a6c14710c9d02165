//! The devices suggested when the kubelet asks (GetPreferredAllocation):
//! spread containers over GPUs. A container asking for one share gets one
//! of the least used GPU (most shares still free); one asking for several
//! gets shares of as many different GPUs as it can, since several shares of
//! one GPU give a container nothing more under nvshare.
//!
//! Memory units (`nvshare.com/gpumem`) are the other way round: a
//! container's units are taken from as few GPUs as possible, the GPU with
//! the most free units first, so the memory a node's pods were promised
//! stays with the GPUs that have it.

use crate::gpus::first_of_each;
use crate::inventory::{parse_device_id, parse_memory_device_id};
use std::collections::BTreeMap;

/// Picks `size` devices from `available`, starting with `must_include`.
pub fn preferred_allocation(
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let mut chosen = first_of_each(must_include.iter().cloned(), String::as_str);
    // Free shares per GPU, each list sorted so picks are deterministic.
    let mut free: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for id in available {
        if !chosen.contains(id) {
            free.entry(gpu_of(id)).or_default().push(id);
        }
    }
    for ids in free.values_mut() {
        ids.sort();
        ids.dedup();
        ids.reverse(); // pop() takes the smallest
    }
    while chosen.len() < size {
        let used = |gpu: &str| chosen.iter().filter(|id| gpu_of(id) == gpu).count();
        // Fewest shares already in this container, then most free shares,
        // then the smallest uuid.
        let pick = free
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .min_by_key(|(gpu, ids)| (used(gpu), std::cmp::Reverse(ids.len()), **gpu))
            .map(|(gpu, _)| *gpu);
        let Some(gpu) = pick else { break };
        let id = free
            .get_mut(gpu)
            .and_then(Vec::pop)
            .expect("the picked GPU has a free share");
        chosen.push(id.clone());
    }
    chosen
}

/// Picks `size` memory units from `available`, starting with
/// `must_include`, then from the GPU with the most free units, then the
/// next.
pub fn preferred_memory(available: &[String], must_include: &[String], size: usize) -> Vec<String> {
    let mut chosen = first_of_each(must_include.iter().cloned(), String::as_str);
    let mut free: BTreeMap<&str, Vec<(u64, &String)>> = BTreeMap::new();
    for id in available {
        if !chosen.contains(id) {
            let (gpu, unit) = parse_memory_device_id(id).unwrap_or((id, 0));
            free.entry(gpu).or_default().push((unit, id));
        }
    }
    let mut gpus: Vec<(&str, Vec<(u64, &String)>)> = free.into_iter().collect();
    // Most free units first, then the smallest uuid.
    gpus.sort_by_key(|(gpu, ids)| (std::cmp::Reverse(ids.len()), *gpu));
    for (_, mut ids) in gpus {
        ids.sort();
        ids.dedup();
        for (_, id) in ids {
            if chosen.len() >= size {
                return chosen;
            }
            chosen.push(id.clone());
        }
    }
    chosen
}

/// The GPU a device ID belongs to; an ID of another shape is its own group.
fn gpu_of(id: &str) -> &str {
    parse_device_id(id).map_or(id, |(uuid, _)| uuid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::device_id;
    use proptest::prelude::*;

    fn ids(gpu: &str, shares: impl IntoIterator<Item = u32>) -> Vec<String> {
        shares.into_iter().map(|k| device_id(gpu, k)).collect()
    }

    #[test]
    fn one_share_comes_from_the_least_used_gpu() {
        let mut available = ids("GPU-a", 0..3);
        available.extend(ids("GPU-b", 0..7));
        assert_eq!(preferred_allocation(&available, &[], 1), ["GPU-b__0"]);
    }

    #[test]
    fn several_shares_spread_over_gpus() {
        let mut available = ids("GPU-a", 0..5);
        available.extend(ids("GPU-b", 0..5));
        let picked = preferred_allocation(&available, &ids("GPU-a", [3]), 2);
        assert_eq!(picked, ["GPU-a__3", "GPU-b__0"]);
    }

    #[test]
    fn memory_units_come_from_the_gpu_with_the_most_free_first() {
        use crate::inventory::memory_device_id;
        let units =
            |gpu: &str, n: u64| (0..n).map(|k| memory_device_id(gpu, k)).collect::<Vec<_>>();
        let mut available = units("GPU-a", 3);
        available.extend(units("GPU-b", 5));
        assert_eq!(
            preferred_memory(&available, &[], 2),
            ["GPU-b__mem0", "GPU-b__mem1"]
        );
        let all_of_b_then_a = preferred_memory(&available, &[], 6);
        assert_eq!(all_of_b_then_a[5], "GPU-a__mem0");
        assert_eq!(preferred_memory(&available, &[], 20).len(), 8);
        let kept = preferred_memory(&available, &units("GPU-a", 1), 2);
        assert_eq!(kept, ["GPU-a__mem0", "GPU-b__mem0"]);
    }

    proptest! {
        #[test]
        fn picks_are_valid_and_spread(
            free in proptest::collection::btree_map("GPU-[a-d]", 0u32..6, 0..4),
            size in 0usize..12,
            must in 0usize..3,
        ) {
            let available: Vec<String> =
                free.iter().flat_map(|(gpu, n)| ids(gpu, 0..*n)).collect();
            let must_include: Vec<String> = available.iter().take(must.min(size)).cloned().collect();
            let picked = preferred_allocation(&available, &must_include, size);

            prop_assert_eq!(picked.len(), size.min(available.len()).max(must_include.len()));
            prop_assert_eq!(&picked[..must_include.len()], &must_include[..]);
            let mut unique = picked.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), picked.len());
            prop_assert!(picked.iter().all(|id| available.contains(id)));
            if must_include.is_empty() {
                let gpus_with_free = free.values().filter(|n| **n > 0).count();
                let mut gpus: Vec<_> = picked.iter().map(|id| gpu_of(id)).collect();
                gpus.sort();
                gpus.dedup();
                prop_assert_eq!(gpus.len(), picked.len().min(gpus_with_free));
            }
        }
    }
}
