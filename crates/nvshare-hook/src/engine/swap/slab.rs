//! Sub-allocation of small allocations from 2 MiB slabs, so that a program
//! making thousands of tiny allocations (cuBLAS workspaces, PyTorch's small
//! blocks) does not pay a whole VMM granule for each.
//!
//! A slab is one granule-sized VMM range (one swappable unit) cut into
//! blocks of one size class. Classes are multiples of [`MIN_BLOCK`] with at
//! most eight classes per power of two, so a block wastes at most about an
//! eighth of its size; requests above [`MAX_SLAB_CLASS`] get a unit of their
//! own. This module is pure bookkeeping: offsets in, offsets out.

/// The smallest block and the alignment of every block (the alignment
/// `cuMemAlloc` guarantees).
pub const MIN_BLOCK: u64 = 512;

/// The largest request served from a slab; larger ones get their own unit.
pub const MAX_SLAB_CLASS: u64 = 1 << 20;

/// The block size that serves a request of `bytes` (1..=[`MAX_SLAB_CLASS`]).
pub fn class_of(bytes: u64) -> u64 {
    debug_assert!(bytes > 0 && bytes <= MAX_SLAB_CLASS);
    if bytes <= MIN_BLOCK {
        return MIN_BLOCK;
    }
    let step = (bytes.next_power_of_two() / 8).max(MIN_BLOCK);
    bytes.div_ceil(step) * step
}

/// Whether a request of `bytes` is served from a slab.
pub fn is_small(bytes: u64) -> bool {
    bytes > 0 && bytes <= MAX_SLAB_CLASS
}

/// One slab's blocks of one class: which are taken.
#[derive(Debug, Clone)]
pub struct Slab {
    class: u64,
    taken: Vec<bool>,
    in_use: usize,
}

impl Slab {
    /// An empty slab of `slab_bytes` cut into blocks of `class` bytes.
    pub fn new(class: u64, slab_bytes: u64) -> Self {
        let blocks = (slab_bytes / class) as usize;
        debug_assert!(blocks > 0, "a slab holds at least one block");
        Slab {
            class,
            taken: vec![false; blocks],
            in_use: 0,
        }
    }

    /// The block size.
    pub fn class(&self) -> u64 {
        self.class
    }

    /// Takes a free block and returns its offset in the slab.
    pub fn take(&mut self) -> Option<u64> {
        let index = self.taken.iter().position(|taken| !taken)?;
        self.taken[index] = true;
        self.in_use += 1;
        Some(index as u64 * self.class)
    }

    /// Gives back the block at `offset`; false if no block taken starts
    /// there (a double or foreign free).
    pub fn give_back(&mut self, offset: u64) -> bool {
        if !offset.is_multiple_of(self.class) {
            return false;
        }
        match self.taken.get_mut((offset / self.class) as usize) {
            Some(taken) if *taken => {
                *taken = false;
                self.in_use -= 1;
                true
            }
            _ => false,
        }
    }

    /// Whether the block at `offset` is taken.
    pub fn holds(&self, offset: u64) -> bool {
        offset.is_multiple_of(self.class)
            && self
                .taken
                .get((offset / self.class) as usize)
                .copied()
                .unwrap_or(false)
    }

    /// Whether every block is taken.
    pub fn is_full(&self) -> bool {
        self.in_use == self.taken.len()
    }

    /// Whether no block is taken (the slab can go).
    pub fn is_empty(&self) -> bool {
        self.in_use == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SLAB: u64 = 2 << 20;

    #[test]
    fn classes_are_aligned_and_close_to_the_request() {
        assert_eq!(class_of(1), 512);
        assert_eq!(class_of(512), 512);
        assert_eq!(class_of(513), 1024);
        assert_eq!(class_of(4097), 4096 + 1024);
        assert_eq!(class_of(MAX_SLAB_CLASS), MAX_SLAB_CLASS);
        assert!(is_small(MAX_SLAB_CLASS) && !is_small(MAX_SLAB_CLASS + 1) && !is_small(0));
    }

    #[test]
    fn blocks_are_reused_after_being_given_back() {
        let mut slab = Slab::new(class_of(1000), SLAB);
        let a = slab.take().unwrap();
        let b = slab.take().unwrap();
        assert_ne!(a, b);
        assert!(slab.give_back(a));
        assert!(!slab.give_back(a), "a double free is refused");
        assert_eq!(slab.take(), Some(a));
        assert!(!slab.give_back(b + 1), "an interior pointer is refused");
    }

    #[test]
    fn a_slab_fills_up_and_empties() {
        let mut slab = Slab::new(MAX_SLAB_CLASS, SLAB);
        let offsets: Vec<_> = std::iter::from_fn(|| slab.take()).collect();
        assert_eq!(offsets, vec![0, MAX_SLAB_CLASS]);
        assert!(slab.is_full());
        for offset in offsets {
            assert!(slab.give_back(offset));
        }
        assert!(slab.is_empty());
    }

    /// The waste of a typical mix of small allocations (what the report
    /// quotes): one slab per class in use, blocks rounded up to their class.
    #[test]
    fn waste_of_a_mix_of_small_allocations_is_reported_and_bounded() {
        let requests: Vec<u64> = (0..4000u64)
            .map(|i| match i % 5 {
                0 => 512,
                1 => 4 * 1024 + 16 * i,
                2 => 100 + i,
                3 => 64 * 1024 + 64 * i,
                _ => 300 * 1024,
            })
            .collect();
        let mut slabs: Vec<Slab> = Vec::new();
        for &bytes in &requests {
            let class = class_of(bytes);
            match slabs
                .iter_mut()
                .find(|s| s.class() == class && !s.is_full())
            {
                Some(slab) => {
                    slab.take().unwrap();
                }
                None => {
                    let mut slab = Slab::new(class, SLAB);
                    slab.take().unwrap();
                    slabs.push(slab);
                }
            }
        }
        let asked: u64 = requests.iter().sum();
        let used = slabs.len() as u64 * SLAB;
        let one_granule_each = requests.len() as u64 * SLAB;
        let waste = (used - asked) as f64 / used as f64;
        eprintln!(
            "{} small allocations, {asked} bytes asked: {} slabs = {used} bytes ({:.1}% waste); a granule each would take {one_granule_each} bytes",
            requests.len(),
            slabs.len(),
            waste * 100.0
        );
        assert!(waste < 0.25, "waste {waste}");
        assert!(used * 10 < one_granule_each);
    }

    proptest! {
        #[test]
        fn a_class_fits_the_request_and_wastes_at_most_an_eighth_beyond_min_block(
            bytes in 1u64..=MAX_SLAB_CLASS,
        ) {
            let class = class_of(bytes);
            prop_assert!(class >= bytes);
            prop_assert_eq!(class % MIN_BLOCK, 0);
            prop_assert!(class - bytes < MIN_BLOCK.max(bytes.next_power_of_two() / 8));
            prop_assert!(class <= MAX_SLAB_CLASS);
        }

        #[test]
        fn taken_blocks_never_overlap_and_stay_inside_the_slab(
            bytes in 1u64..=MAX_SLAB_CLASS,
            frees in proptest::collection::vec(any::<bool>(), 0..64),
        ) {
            let class = class_of(bytes);
            let mut slab = Slab::new(class, SLAB);
            let mut live = std::collections::BTreeSet::new();
            for free in frees {
                if free && !live.is_empty() {
                    let offset = *live.iter().next().unwrap();
                    live.remove(&offset);
                    prop_assert!(slab.give_back(offset));
                } else if let Some(offset) = slab.take() {
                    prop_assert!(offset + class <= SLAB);
                    prop_assert!(live.insert(offset), "a block handed out twice");
                }
            }
            for offset in &live {
                prop_assert!(slab.holds(*offset));
            }
            prop_assert_eq!(slab.is_empty(), live.is_empty());
        }
    }
}
