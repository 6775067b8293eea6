//! `replay --shard i/n`: a deterministic partition of a list of blocks over `n` machines,
//! balanced by gas, so that each of `n` processes replays a disjoint share and together they
//! replay every block once.
//!
//! The partition is longest-processing-time first: blocks sorted by gas (largest first,
//! then by name), each given to the shard with the least gas so far (the lower index on a
//! tie). It depends only on the blocks' names and gas, never on the order they were found
//! in or on the machine, and it keeps every shard's gas within the largest block's gas of
//! every other's.

use std::fmt;
use std::str::FromStr;

/// One share of `count`: shard `index` (from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole list: one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = || format!("`{s}` is not a shard: expected I/N with 0 <= I < N");
        let (index, count) = s.split_once('/').ok_or_else(invalid)?;
        let index: usize = index.trim().parse().map_err(|_| invalid())?;
        let count: usize = count.trim().parse().map_err(|_| invalid())?;
        if index >= count {
            return Err(invalid());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (from 0 to `count - 1`) of each block of `blocks` (name, gas), in their order.
pub fn partition(blocks: &[(String, u64)], count: usize) -> Vec<usize> {
    let count = count.max(1);
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by(|&a, &b| {
        blocks[b].1.cmp(&blocks[a].1).then_with(|| blocks[a].0.cmp(&blocks[b].0))
    });
    let mut load = vec![0u128; count];
    let mut shard_of = vec![0; blocks.len()];
    for i in order {
        let lightest = (0..count).min_by_key(|&s| (load[s], s)).expect("at least one shard");
        load[lightest] += u128::from(blocks[i].1);
        shard_of[i] = lightest;
    }
    shard_of
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard::ALL));
        for bad in ["4/4", "1", "a/2", "1/0", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    fn blocks() -> impl Strategy<Value = Vec<(String, u64)>> {
        proptest::collection::btree_map("[0-9]{1,8}", 0u64..40_000_000, 0..80)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// Disjoint and covering by construction (one shard per block, in range), balanced
        /// within the largest block, and independent of the order the blocks come in.
        #[test]
        fn a_balanced_deterministic_partition(blocks in blocks(), count in 1usize..9, seed: u64) {
            let shards = partition(&blocks, count);
            prop_assert_eq!(shards.len(), blocks.len());
            prop_assert!(shards.iter().all(|&s| s < count));
            let mut load = vec![0u64; count];
            for (block, &s) in blocks.iter().zip(&shards) {
                load[s] += block.1;
            }
            let largest = blocks.iter().map(|b| b.1).max().unwrap_or(0);
            let (max, min) = (*load.iter().max().unwrap(), *load.iter().min().unwrap());
            prop_assert!(max - min <= largest, "loads {:?}, largest block {}", load, largest);

            let mut shuffled: Vec<usize> = (0..blocks.len()).collect();
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let reordered: Vec<(String, u64)> = shuffled.iter().map(|&i| blocks[i].clone()).collect();
            let again = partition(&reordered, count);
            for (k, &i) in shuffled.iter().enumerate() {
                prop_assert_eq!(again[k], shards[i]);
            }
        }
    }
}
