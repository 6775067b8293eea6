//! The multi-version store's concurrent maps: hash maps split into shards, each behind its
//! own lock, keyed by a hash the caller computes once ([`Hashed`]).
//!
//! Two things a general concurrent map (`DashMap`) does not give the store:
//! - **One hash per operation.** The store hashes a location once and uses that hash for
//!   its filter, for choosing the shard and inside the shard's table; a general map hashes
//!   the key again.
//! - **The block's state built by shards.** The block's state is built per account by
//!   several workers at the end ([`super::final_state`]): each takes whole shards of the
//!   accounts map ([`ShardedMap::for_each_in_share`]) instead of every worker walking every
//!   account and hashing its address to see whether it is its own. (A slot's shard comes
//!   from the slot's own hash, so that the slots of a contract every transaction uses are
//!   spread over all the shards' locks; its hash also carries its account's shard
//!   ([`HOME_SHIFT`]), which says without hashing which worker takes it.)
//!
//! Invariant: two keys are equal only if their hashes are equal (the hash is a function of
//! the key under one store's hasher), so a shard's table may compare hashes first.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crossbeam::utils::CachePadded;
use parking_lot::RwLock;

/// The lowest bit of a hash that chooses the shard: bits `SHARD_SHIFT..SHARD_SHIFT + 7`
/// (at most 128 shards). They are below the top 7 bits a table keeps as a tag and above the
/// bits it indexes buckets by, so that the slots of one account still spread over the
/// buckets and tags of their shard.
const SHARD_SHIFT: u32 = 40;

/// The bits of a hash that choose the shard.
const SHARD_BITS: u64 = 0x7f << SHARD_SHIFT;

/// Where a slot's hash carries the shard bits of its account's hash (bits
/// `HOME_SHIFT..HOME_SHIFT + 7`): neither a shard's choice nor its table's tag or buckets use
/// them ([`with_home`]).
const HOME_SHIFT: u32 = SHARD_SHIFT + 7;

/// `hash` with the shard bits of `home` (another key's hash) carried in its home bits
/// ([`HOME_SHIFT`]), which [`ShardedMap::home_share_of`] reads back.
pub(crate) fn with_home(hash: u64, home: u64) -> u64 {
    let to_home = HOME_SHIFT - SHARD_SHIFT;
    (hash & !(SHARD_BITS << to_home)) | ((home & SHARD_BITS) << to_home)
}

/// Most shards a map has.
const MAX_SHARDS: usize = 128;

/// A key with its hash, computed once by the caller.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hashed<K> {
    pub(crate) hash: u64,
    pub(crate) key: K,
}

impl<K: PartialEq> PartialEq for Hashed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Hashed<K> {}

impl<K> Hash for Hashed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes a [`Hashed`] key's hash through.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("only Hashed keys are hashed, with write_u64")
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

type Table<K, V> = HashMap<Hashed<K>, V, BuildHasherDefault<PassThrough>>;

/// One shard: a table behind its lock, on a cache line of its own.
type Shard<K, V> = CachePadded<RwLock<Table<K, V>>>;

/// A hash map split into shards, each behind a read-write lock on a cache line of its own.
pub(crate) struct ShardedMap<K, V> {
    shards: Box<[Shard<K, V>]>,
    /// `shards - 1` (a power of two).
    mask: u64,
}

impl<K: Eq, V> ShardedMap<K, V> {
    /// A map of `shards` shards (a power of two, at most 128) with room for about
    /// `capacity` entries.
    pub(crate) fn new(shards: usize, capacity: usize) -> Self {
        assert!(shards.is_power_of_two() && shards <= MAX_SHARDS, "bad shard count {shards}");
        let each = capacity.div_ceil(shards);
        let shards: Box<[_]> = (0..shards)
            .map(|_| {
                CachePadded::new(RwLock::new(Table::with_capacity_and_hasher(
                    each,
                    Default::default(),
                )))
            })
            .collect();
        let mask = shards.len() as u64 - 1;
        Self { shards, mask }
    }

    /// The shard of a hash.
    pub(crate) fn shard_of(&self, hash: u64) -> usize {
        ((hash >> SHARD_SHIFT) & self.mask) as usize
    }

    /// The share (of `shares`) that owns the shard of `hash`: shard `i` belongs to share
    /// `i % shares` ([`ShardedMap::for_each_in_share`]).
    pub(crate) fn share_of(&self, hash: u64, shares: usize) -> usize {
        self.shard_of(hash) % shares.max(1)
    }

    /// The share (of `shares`) that owns the key of this map whose shard bits `hash` carries
    /// in its home bits ([`with_home`]).
    pub(crate) fn home_share_of(&self, hash: u64, shares: usize) -> usize {
        self.share_of(hash >> (HOME_SHIFT - SHARD_SHIFT), shares)
    }

    fn shard(&self, hash: u64) -> &RwLock<Table<K, V>> {
        &self.shards[self.shard_of(hash)]
    }

    /// `f` of the value at `key`, if there is one (under the shard's read lock).
    #[inline]
    pub(crate) fn get<R>(&self, key: &Hashed<K>, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.shard(key.hash).read().get(key).map(f)
    }

    /// `f` on the value at `key`, if there is one (under the shard's write lock).
    pub(crate) fn get_mut<R>(&self, key: &Hashed<K>, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.shard(key.hash).write().get_mut(key).map(f)
    }

    /// `f` on the value at `key`, inserted as the default first if there is none (under the
    /// shard's write lock).
    #[inline]
    pub(crate) fn upsert<R>(&self, key: Hashed<K>, f: impl FnOnce(&mut V) -> R) -> R
    where
        V: Default,
    {
        f(self.shard(key.hash).write().entry(key).or_default())
    }

    /// The number of entries (exact once no one writes).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().len()).sum()
    }

    /// Calls `f` with every entry, holding each shard's read lock meanwhile.
    pub(crate) fn for_each<E>(
        &self,
        mut f: impl FnMut(&Hashed<K>, &V) -> Result<(), E>,
    ) -> Result<(), E> {
        for shard in self.shards.iter() {
            for (key, value) in shard.read().iter() {
                f(key, value)?;
            }
        }
        Ok(())
    }

    /// Calls `f` with every entry of the shards that belong to share `share` of `shares`
    /// (shard `i` belongs to share `i % shares`), holding each shard's read lock meanwhile.
    pub(crate) fn for_each_in_share<E>(
        &self,
        share: usize,
        shares: usize,
        mut f: impl FnMut(&K, &V) -> Result<(), E>,
    ) -> Result<(), E> {
        for shard in self.shards.iter().skip(share).step_by(shares.max(1)) {
            for (key, value) in shard.read().iter() {
                f(&key.key, value)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hash: u64, key: u32) -> Hashed<u32> {
        Hashed { hash, key }
    }

    #[test]
    fn entries_are_found_by_hash_and_key() {
        let map = ShardedMap::<u32, u64>::new(4, 16);
        // Equal hashes, different keys: two entries.
        map.upsert(key(7, 1), |v| *v += 10);
        map.upsert(key(7, 2), |v| *v += 20);
        map.upsert(key(7, 1), |v| *v += 1);
        assert_eq!(map.get(&key(7, 1), |v| *v), Some(11));
        assert_eq!(map.get(&key(7, 2), |v| *v), Some(20));
        assert_eq!(map.get(&key(8, 1), |v| *v), None);
        assert_eq!(map.get_mut(&key(7, 2), std::mem::take), Some(20));
        assert_eq!(map.get_mut(&key(9, 9), |v| *v), None);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn each_shard_belongs_to_exactly_one_share() {
        let map = ShardedMap::<u32, u64>::new(8, 64);
        // One entry in each shard: the shard bits are its number.
        for shard in 0..8u64 {
            let hash = shard << SHARD_SHIFT | 0x1234;
            assert_eq!(map.shard_of(hash), shard as usize);
            map.upsert(key(hash, shard as u32), |v| *v = shard);
        }
        for shares in 1..=10 {
            let mut seen = Vec::new();
            for share in 0..shares {
                map.for_each_in_share(share, shares, |k, _| {
                    // The share the map names for a key is the one that visits it, and so
                    // is the share named by a hash carrying the key's shard as its home.
                    let hash = u64::from(*k) << SHARD_SHIFT | 0x1234;
                    assert_eq!(map.share_of(hash, shares), share);
                    assert_eq!(map.home_share_of(with_home(0x5678, hash), shares), share);
                    seen.push(*k);
                    Ok::<_, ()>(())
                })
                .unwrap();
            }
            seen.sort();
            assert_eq!(seen, (0..8).collect::<Vec<_>>(), "{shares} shares");
        }
    }
}
