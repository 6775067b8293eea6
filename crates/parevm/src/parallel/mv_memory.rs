//! The multi-version store (Block-STM's `MVMemory`).
//!
//! For every state location, the values written by each transaction's latest incarnation,
//! keyed by transaction index. A read by transaction `k` sees the write of the highest
//! transaction below `k`, or the pre-state if there is none.
//!
//! Invariants:
//! - An entry of transaction `i` is either what its latest *finished* incarnation wrote, or
//!   an `Estimate` marker left when that incarnation was aborted: a reader that meets an
//!   estimate waits for `i` rather than read stale data.
//! - After a transaction's incarnation is recorded, exactly the locations in its write set
//!   hold entries for it (stale entries of earlier incarnations are removed).
//! - Balance increases that did not depend on the account's previous balance (the
//!   beneficiary's fee, the value paid to the recipient of a plain transfer) are kept apart,
//!   as credits. Credits commute with each other, so many transactions can pay one account
//!   without depending on each other. A full read of the account folds the credits between
//!   the last full write (at its `Basic` location) and the reader onto that write.
//!
//! Layout: one entry per account holds its full writes, credits and wipes together (a read
//! of an account needs the first two, and the block's state changes are built per account
//! at the end: [`super::final_state`]); storage slots have a map of their own. The
//! beneficiary's fees, which nearly every transaction pays, are not a shared entry list
//! that every transaction appends to under one lock: each transaction has its own
//! cache-line-sized slot, folded only when a transaction reads the beneficiary in full. The
//! exclusion budget's running total ([`Location::ExcludedGas`]) has one entry list of its own.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::map::DefaultHashBuilder;
use alloy_primitives::{Address, U256};
use parking_lot::Mutex;
use revm::primitives::hardfork::SpecId;
use smallvec::SmallVec;

use super::sharded_map::{with_home, Hashed, ShardedMap};
use super::{CacheLine, TxIdx};
use crate::state_changes::Credited;
use crate::storage::AccountBasic;

/// A state location tracked separately for conflict detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Location {
    /// Balance, nonce and code hash of an account (or its absence).
    Basic(Address),
    /// One storage slot.
    Storage(Address, U256),
    /// The account's storage was wiped (self-destruct, creation, EIP-161 removal).
    Wipe(Address),
    /// Balance credits to the account.
    Credit(Address),
    /// The gas the block's excluded transactions spent up to and including the writer
    /// (with an exclusion budget, [`crate::Compliance::exclusion_budget`]): written and read
    /// only by rejected transactions, never part of the block's state.
    ExcludedGas,
}

/// A value in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// For [`Location::Basic`]: the account, or `None` if it does not exist.
    Basic(Option<AccountBasic>),
    /// For [`Location::Credit`]: a balance credit (the account is touched, as by revm).
    Credit(U256),
    /// For [`Location::Storage`].
    Storage(U256),
    /// For [`Location::Wipe`].
    Wipe,
    /// For [`Location::ExcludedGas`].
    Gas(u64),
}

/// One transaction's entry at a location.
#[derive(Clone, Copy, Debug)]
struct Entry<T> {
    incarnation: u32,
    /// `None`: an estimate.
    value: Option<T>,
}

/// The outcome of a read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Read {
    /// Read the pre-state.
    PreState,
    /// A transaction's write.
    Value(Value, TxIdx, u32),
    /// Transaction `TxIdx` has an estimate here: wait for it.
    Blocked(TxIdx),
}

/// The entries of one location, sorted by transaction index. Most locations are written by
/// one transaction, so one entry is kept inline.
struct Versions<T>(SmallVec<[(TxIdx, Entry<T>); 1]>);

impl<T> Default for Versions<T> {
    fn default() -> Self {
        Self(SmallVec::new())
    }
}

impl<T: Copy> Versions<T> {
    /// The position of the first entry at or above `tx`.
    #[inline]
    fn position(&self, tx: TxIdx) -> usize {
        self.0.partition_point(|(idx, _)| *idx < tx)
    }

    fn write(&mut self, tx: TxIdx, incarnation: u32, value: T) {
        let entry = Entry { incarnation, value: Some(value) };
        // Transactions mostly finish in order: appending needs no search.
        if self.0.last().is_none_or(|(idx, _)| *idx < tx) {
            self.0.push((tx, entry));
            return;
        }
        let at = self.position(tx);
        match self.0.get_mut(at) {
            Some((idx, existing)) if *idx == tx => *existing = entry,
            _ => self.0.insert(at, (tx, entry)),
        }
    }

    fn remove(&mut self, tx: TxIdx) {
        let at = self.position(tx);
        if self.0.get(at).is_some_and(|(idx, _)| *idx == tx) {
            self.0.remove(at);
        }
    }

    fn mark_estimate(&mut self, tx: TxIdx) {
        let at = self.position(tx);
        if let Some((idx, entry)) = self.0.get_mut(at) {
            if *idx == tx {
                entry.value = None;
            }
        }
    }

    /// The last entry below `tx`, as a read.
    #[inline]
    fn read(&self, tx: TxIdx, wrap: impl FnOnce(T) -> Value) -> Read {
        match self.0[..self.position(tx)].last() {
            None => Read::PreState,
            Some(&(idx, Entry { value: None, .. })) => Read::Blocked(idx),
            Some(&(idx, Entry { value: Some(value), incarnation })) => {
                Read::Value(wrap(value), idx, incarnation)
            }
        }
    }

    /// The entries from `from` up to (not including) `to`.
    fn between(&self, from: TxIdx, to: TxIdx) -> &[(TxIdx, Entry<T>)] {
        &self.0[self.position(from)..self.position(to)]
    }

    /// Every entry's value in block order; `Err` names a transaction with an estimate.
    fn values(&self) -> impl Iterator<Item = Result<(TxIdx, T), TxIdx>> + '_ {
        self.0.iter().map(|&(idx, entry)| entry.value.map(|v| (idx, v)).ok_or(idx))
    }
}

/// Everything written to one account but its storage slots.
#[derive(Default)]
struct AccountEntries {
    /// Full writes: the account, or `None` if it does not exist.
    basic: Versions<Option<AccountBasic>>,
    /// Balance credits.
    credits: Versions<U256>,
    /// Storage wipes.
    wipes: Versions<()>,
}

/// One write of an account, as [`super::final_state`] replays them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccountWrite {
    /// Its storage was wiped.
    Wipe,
    /// A full write: the account, or `None` if it no longer exists.
    Set(Option<AccountBasic>),
    /// A balance credit.
    Credit(U256),
}

impl AccountWrite {
    /// The order of one transaction's writes of an account: a wipe before the full write
    /// (a creation or destruction). A transaction never both writes an account fully and
    /// credits it.
    fn rank(&self) -> u8 {
        match self {
            Self::Wipe => 0,
            Self::Set(_) => 1,
            Self::Credit(_) => 2,
        }
    }
}

/// A transaction's fee to the beneficiary: `None` if it has none (it read the beneficiary in
/// full and paid it in its full write, or it is not included). Before its transaction's
/// first incarnation is recorded a slot holds an estimate: nearly every transaction pays a
/// fee, so a transaction that reads the beneficiary in full (its sender, a payment to it)
/// waits for the lower transactions that have not executed yet instead of reading a balance
/// they are about to change and being executed again (a pool paying out from the block's
/// beneficiary: hundreds of re-executions at two threads).
type FeeSlot = CacheLine<Mutex<Option<Entry<U256>>>>;

/// A fee slot before its transaction has executed: an estimate.
fn fee_estimate() -> FeeSlot {
    CacheLine(Mutex::new(Some(Entry { incarnation: 0, value: None })))
}

/// The multi-version store.
///
/// Most reads are of locations no transaction of the block writes (contract code accounts,
/// untouched slots). A filter with one bit per hash bucket, set before a location's first
/// entry is inserted and never cleared, answers those without touching the maps: a shard's
/// read lock is an atomic write to a cache line both cores share, which costs more than the
/// read itself when every transaction reads the same few contracts.
///
/// Every operation hashes its location once ([`MvMemory::key`]): the filter, the shard and
/// the shard's table use that hash; a slot's hash also carries the shard of its account's
/// entry, so the block's state is built account by account, with their slots, by whole
/// shards ([`super::sharded_map`]).
pub(crate) struct MvMemory {
    accounts: ShardedMap<Address, AccountEntries>,
    storage: ShardedMap<(Address, U256), Versions<U256>>,
    /// The block's beneficiary and each transaction's fee to it.
    beneficiary: Address,
    fees: Box<[FeeSlot]>,
    /// [`Location::ExcludedGas`]: rarely written (by rejected transactions only).
    excluded_gas: Mutex<Versions<u64>>,
    /// Bit `h(location) mod bits` is set once any entry for the location may exist.
    written: Box<[AtomicU64]>,
    /// `bits - 1` (bits is a power of two).
    mask: u64,
    hasher: DefaultHashBuilder,
    spec: SpecId,
}

impl MvMemory {
    /// A store for a block of `transactions` transactions whose fees go to `beneficiary`,
    /// with room for about `accounts` written accounts.
    pub(crate) fn new(
        spec: SpecId,
        beneficiary: Address,
        transactions: usize,
        accounts: usize,
    ) -> Self {
        // About 64 bits per transaction: a block's transactions write a few locations each,
        // so the filter stays sparse.
        let bits = (transactions.saturating_mul(64)).next_power_of_two().clamp(1 << 12, 1 << 26);
        // Sized for what most transactions write (their sender's account, a plain
        // transfer's recipient, a slot or two), the maps rarely grow (growing rehashes a
        // shard under its lock while the other workers wait); sized no larger, as every page
        // of a table whose entries land at random becomes resident.
        // Enough shards that two workers rarely want the same one; a small block does not
        // pay for 128 of them.
        let shards = (transactions / 2).next_power_of_two().clamp(4, 128);
        let store = Self {
            accounts: ShardedMap::new(shards, accounts),
            storage: ShardedMap::new(shards, transactions),
            beneficiary,
            fees: (0..transactions).map(|_| fee_estimate()).collect(),
            excluded_gas: Mutex::default(),
            written: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: bits as u64 - 1,
            hasher: DefaultHashBuilder::default(),
            spec,
        };
        // The fee slots hold entries (estimates) from the start.
        let (word, bit) = store.filter_bit(store.key(&Location::Credit(beneficiary)).filter);
        word.fetch_or(bit, Ordering::Relaxed);
        store
    }

    /// The hash of `address` under this store's (randomly seeded) hasher, and the hasher
    /// after it, to hash a slot on.
    #[inline]
    fn hash_account(&self, address: &Address) -> (u64, impl Hasher) {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(address.as_slice());
        (hasher.finish(), hasher)
    }

    /// The key of account `address` in the accounts map.
    #[inline]
    fn account_key(&self, address: Address) -> Hashed<Address> {
        Hashed { hash: self.hash_account(&address).0, key: address }
    }

    /// `location`'s key: its hash for the filter and, for an account's or a slot's entries,
    /// its key in the map that holds them. One hash: a slot's hash continues its account's
    /// and carries the account's shard bits ([`with_home`]).
    #[inline]
    fn key(&self, location: &Location) -> LocationKey {
        let (address, kind) = match *location {
            Location::Storage(address, slot) => {
                let (account, mut hasher) = self.hash_account(&address);
                for limb in slot.as_limbs() {
                    hasher.write_u64(*limb);
                }
                let hash = with_home(hasher.finish(), account);
                let key = Hashed { hash, key: (address, slot) };
                return LocationKey { filter: hash, map: MapKey::Slot(key) };
            }
            Location::ExcludedGas => {
                return LocationKey { filter: EXCLUDED_GAS_FILTER, map: MapKey::None }
            }
            Location::Basic(address) => (address, 0),
            Location::Credit(address) => (address, 1),
            Location::Wipe(address) => (address, 2),
        };
        let hash = self.hash_account(&address).0;
        // The three locations of one account take different bits of its hash for the filter.
        LocationKey {
            filter: hash.rotate_left(21 * kind),
            map: MapKey::Account(Hashed { hash, key: address }),
        }
    }

    /// The filter word and bit of a location's filter hash.
    #[inline]
    fn filter_bit(&self, hash: u64) -> (&AtomicU64, u64) {
        let bit = hash & self.mask;
        (&self.written[(bit >> 6) as usize], 1 << (bit & 63))
    }

    /// Whether a location with filter hash `hash` may have entries. A `false` is final for
    /// every reader that synchronised with the writers it must see (through the scheduler),
    /// as the bit is set before the entry is inserted.
    #[inline]
    fn may_have_entries(&self, hash: u64) -> bool {
        let (word, bit) = self.filter_bit(hash);
        word.load(Ordering::Acquire) & bit != 0
    }

    /// Whether `location` holds the beneficiary's fees.
    #[inline]
    pub(crate) fn is_fee(&self, location: &Location) -> bool {
        *location == Location::Credit(self.beneficiary)
    }

    /// Records that transaction `tx`'s latest incarnation pays no deferred fee (its slot
    /// held an estimate, or the fee of an earlier incarnation).
    pub(crate) fn no_fee(&self, tx: TxIdx) {
        *self.fees[tx].lock() = None;
    }

    /// Records `value` as transaction `tx`'s write to `location`.
    pub(crate) fn write(&self, location: Location, tx: TxIdx, incarnation: u32, value: Value) {
        if self.is_fee(&location) {
            // The fee slots' filter bit is set from the start.
            let Value::Credit(amount) = value else { unreachable!("{value:?} written as a fee") };
            *self.fees[tx].lock() = Some(Entry { incarnation, value: Some(amount) });
            return;
        }
        let key = self.key(&location);
        let (word, bit) = self.filter_bit(key.filter);
        if word.load(Ordering::Relaxed) & bit == 0 {
            word.fetch_or(bit, Ordering::Release);
        }
        match (key.map, value) {
            (MapKey::Slot(key), Value::Storage(value)) => {
                self.storage.upsert(key, |versions| versions.write(tx, incarnation, value))
            }
            (MapKey::Account(key), Value::Credit(amount)) => {
                self.accounts.upsert(key, |entries| entries.credits.write(tx, incarnation, amount))
            }
            (MapKey::Account(key), Value::Basic(account)) => {
                self.accounts.upsert(key, |entries| entries.basic.write(tx, incarnation, account))
            }
            (MapKey::Account(key), Value::Wipe) => {
                self.accounts.upsert(key, |entries| entries.wipes.write(tx, incarnation, ()))
            }
            (MapKey::None, Value::Gas(gas)) => self.excluded_gas.lock().write(tx, incarnation, gas),
            (_, value) => unreachable!("{value:?} written to {location:?}"),
        }
    }

    /// Applies `f` to the entries of `location` of transaction `tx`, if the location has
    /// any.
    fn with_entries(&self, location: &Location, tx: TxIdx, f: impl Fn(&mut dyn EntryOps)) {
        if self.is_fee(location) {
            let mut slot = self.fees[tx].lock();
            f(&mut FeeOps(&mut slot));
            return;
        }
        match self.key(location).map {
            MapKey::Slot(key) => {
                self.storage.get_mut(&key, |versions| f(versions));
            }
            MapKey::None => f(&mut *self.excluded_gas.lock()),
            MapKey::Account(key) => {
                self.accounts.get_mut(&key, |entries| match location {
                    Location::Basic(_) => f(&mut entries.basic),
                    Location::Credit(_) => f(&mut entries.credits),
                    _ => f(&mut entries.wipes),
                });
            }
        }
    }

    /// Removes transaction `tx`'s entry at `location`.
    pub(crate) fn remove(&self, location: &Location, tx: TxIdx) {
        self.with_entries(location, tx, |entries| entries.remove(tx));
    }

    /// Turns transaction `tx`'s entry at `location` into an estimate.
    pub(crate) fn mark_estimate(&self, location: &Location, tx: TxIdx) {
        self.with_entries(location, tx, |entries| entries.mark_estimate(tx));
    }

    /// The value of `location` as transaction `tx` must see it.
    pub(crate) fn read(&self, location: &Location, tx: TxIdx) -> Read {
        if self.is_fee(location) {
            let last = (0..tx).rev().find_map(|idx| Some((idx, (*self.fees[idx].lock())?)));
            return match last {
                None => Read::PreState,
                Some((idx, Entry { value: None, .. })) => Read::Blocked(idx),
                Some((idx, Entry { value: Some(v), incarnation })) => {
                    Read::Value(Value::Credit(v), idx, incarnation)
                }
            };
        }
        let key = self.key(location);
        if !self.may_have_entries(key.filter) {
            return Read::PreState;
        }
        let read = match key.map {
            MapKey::Slot(key) => {
                self.storage.get(&key, |versions| versions.read(tx, Value::Storage))
            }
            MapKey::None => Some(self.excluded_gas.lock().read(tx, Value::Gas)),
            MapKey::Account(key) => self.accounts.get(&key, |entries| match location {
                Location::Basic(_) => entries.basic.read(tx, Value::Basic),
                Location::Credit(_) => entries.credits.read(tx, Value::Credit),
                _ => entries.wipes.read(tx, |()| Value::Wipe),
            }),
        };
        read.unwrap_or(Read::PreState)
    }

    /// The credits to `address` by transactions after `after` (all if `None`) and before
    /// `tx`, in block order; `Err` names a transaction with an estimate among them.
    pub(crate) fn credits(
        &self,
        address: Address,
        after: Option<TxIdx>,
        tx: TxIdx,
    ) -> Result<Vec<U256>, TxIdx> {
        let from = after.map_or(0, |a| a + 1);
        if from >= tx {
            return Ok(Vec::new());
        }
        let location = Location::Credit(address);
        let mut credits = Vec::new();
        let key = self.key(&location);
        if self.may_have_entries(key.filter) {
            let MapKey::Account(key) = key.map else { unreachable!("a credit is an account's") };
            let regular = self.accounts.get(&key, |entries| -> Result<(), TxIdx> {
                for &(idx, entry) in entries.credits.between(from, tx) {
                    credits.push((idx, entry.value.ok_or(idx)?));
                }
                Ok(())
            });
            regular.unwrap_or(Ok(()))?;
            if self.is_fee(&location) {
                let regular = credits.len();
                for (idx, slot) in self.fees[from..tx].iter().enumerate() {
                    if let Some(entry) = *slot.lock() {
                        credits.push((from + idx, entry.value.ok_or(from + idx)?));
                    }
                }
                if regular > 0 {
                    credits.sort_by_key(|(idx, _)| *idx);
                }
            }
        }
        Ok(credits.into_iter().map(|(_, amount)| amount).collect())
    }

    /// Applies `credits` in order onto `base`.
    pub(crate) fn fold(
        &self,
        base: Option<AccountBasic>,
        credits: &[U256],
    ) -> Option<AccountBasic> {
        credits.iter().fold(base, |account, amount| {
            Credited::of(account, *amount, self.spec).account(account)
        })
    }

    /// Once every transaction is final: the exclusion budget's running total after each
    /// transaction that wrote it (index, total), in block order.
    pub(crate) fn excluded_gas_totals(&self) -> Vec<(TxIdx, u64)> {
        self.excluded_gas.lock().values().filter_map(Result::ok).collect()
    }

    /// How many accounts have entries (an upper bound while transactions still write).
    pub(crate) fn written_accounts(&self) -> usize {
        self.accounts.len() + 1
    }

    /// Once every transaction is final: calls `f` with each written account of share
    /// `share` of `shares` (whole shards: [`ShardedMap::for_each_in_share`]) and its writes
    /// in block order (see [`AccountWrite::rank`] within one transaction). `estimate` makes
    /// the error for a transaction that left an estimate. Each account is in exactly one
    /// share, with its slots ([`MvMemory::for_each_final_slot`]).
    pub(crate) fn for_each_final_account<E>(
        &self,
        share: usize,
        shares: usize,
        mut f: impl FnMut(Address, &AccountWrites) -> Result<(), E>,
        estimate: impl Fn(TxIdx) -> E,
    ) -> Result<(), E> {
        let mut writes = AccountWrites::new();
        let beneficiary_hash = self.account_key(self.beneficiary).hash;
        let with_fees = self.accounts.share_of(beneficiary_hash, shares) == share;
        let mut beneficiary_seen = false;
        self.accounts.for_each_in_share(share, shares, |address, entries| {
            writes.clear();
            for write in entries.wipes.values() {
                writes.push(write.map(|(idx, ())| (idx, AccountWrite::Wipe)).map_err(&estimate)?);
            }
            for write in entries.basic.values() {
                writes.push(write.map(|(idx, a)| (idx, AccountWrite::Set(a))).map_err(&estimate)?);
            }
            for write in entries.credits.values() {
                let write = write.map(|(idx, a)| (idx, AccountWrite::Credit(a)));
                writes.push(write.map_err(&estimate)?);
            }
            if *address == self.beneficiary {
                beneficiary_seen = true;
                self.final_fees(&mut writes).map_err(&estimate)?;
            }
            if writes.len() > 1 {
                writes.sort_unstable_by_key(|(idx, write)| (*idx, write.rank()));
            }
            f(*address, &writes)
        })?;
        if with_fees && !beneficiary_seen {
            writes.clear();
            self.final_fees(&mut writes).map_err(&estimate)?;
            if !writes.is_empty() {
                f(self.beneficiary, &writes)?;
            }
        }
        Ok(())
    }

    /// Appends the beneficiary's fees, in block order.
    fn final_fees(&self, writes: &mut AccountWrites) -> Result<(), TxIdx> {
        // Nearly every transaction pays one: room for all at once, instead of growing (and
        // copying) the list by doubling through the block.
        writes.reserve(self.fees.len());
        for (idx, slot) in self.fees.iter().enumerate() {
            if let Some(entry) = *slot.lock() {
                writes.push((idx, AccountWrite::Credit(entry.value.ok_or(idx)?)));
            }
        }
        Ok(())
    }

    /// Once every transaction is final: calls `f` with the last write of each written slot
    /// of an account of share `share` of `shares`: address, slot, transaction, value.
    pub(crate) fn for_each_final_slot<E>(
        &self,
        share: usize,
        shares: usize,
        mut f: impl FnMut(Address, U256, TxIdx, U256) -> Result<(), E>,
        estimate: impl Fn(TxIdx) -> E,
    ) -> Result<(), E> {
        self.storage.for_each(|key, versions| {
            if self.accounts.home_share_of(key.hash, shares) != share {
                return Ok(());
            }
            let (address, slot) = key.key;
            let Some(&(idx, entry)) = versions.0.last() else { return Ok(()) };
            f(address, slot, idx, entry.value.ok_or_else(|| estimate(idx))?)
        })
    }
}

/// Where a location's entries are: its hash for the filter, and its key in the map that
/// holds them ([`MvMemory::key`]).
struct LocationKey {
    filter: u64,
    map: MapKey,
}

/// A location's key in the store's maps.
enum MapKey {
    /// In the accounts map (full writes, credits, wipes).
    Account(Hashed<Address>),
    /// In the slots map.
    Slot(Hashed<(Address, U256)>),
    /// Neither: the excluded gas, which has an entry list of its own.
    None,
}

/// The filter hash of [`Location::ExcludedGas`] (any constant).
const EXCLUDED_GAS_FILTER: u64 = 0x9e37_79b9_7f4a_7c15;

/// One account's writes in block order.
pub(crate) type AccountWrites = SmallVec<[(TxIdx, AccountWrite); 2]>;

/// What [`MvMemory::remove`] and [`MvMemory::mark_estimate`] do to one location's entries.
trait EntryOps {
    fn remove(&mut self, tx: TxIdx);
    fn mark_estimate(&mut self, tx: TxIdx);
}

impl<T: Copy> EntryOps for Versions<T> {
    fn remove(&mut self, tx: TxIdx) {
        Versions::remove(self, tx)
    }
    fn mark_estimate(&mut self, tx: TxIdx) {
        Versions::mark_estimate(self, tx)
    }
}

/// A fee slot, as the entries of its transaction.
struct FeeOps<'a>(&'a mut Option<Entry<U256>>);

impl EntryOps for FeeOps<'_> {
    fn remove(&mut self, _: TxIdx) {
        *self.0 = None;
    }
    fn mark_estimate(&mut self, _: TxIdx) {
        if let Some(entry) = self.0 {
            entry.value = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    const A: Address = address!("0x00000000000000000000000000000000000000aa");
    const BENEFICIARY: Address = address!("0x00000000000000000000000000000000000000be");

    fn account(balance: u64) -> Option<AccountBasic> {
        Some(AccountBasic { balance: U256::from(balance), ..Default::default() })
    }

    fn store() -> MvMemory {
        MvMemory::new(SpecId::CANCUN, BENEFICIARY, 10, 20)
    }

    /// A store whose ten transactions have each executed once without paying a fee.
    fn executed_store() -> MvMemory {
        let mv = store();
        for tx in 0..10 {
            mv.no_fee(tx);
        }
        mv
    }

    #[test]
    fn reads_see_the_highest_lower_write() {
        let mv = store();
        let loc = Location::Storage(A, U256::from(1));
        assert!(matches!(mv.read(&loc, 5), Read::PreState));
        mv.write(loc, 2, 0, Value::Storage(U256::from(20)));
        mv.write(loc, 4, 1, Value::Storage(U256::from(40)));
        assert!(matches!(mv.read(&loc, 2), Read::PreState));
        assert!(
            matches!(mv.read(&loc, 3), Read::Value(Value::Storage(v), 2, 0) if v == U256::from(20))
        );
        assert!(matches!(mv.read(&loc, 9), Read::Value(_, 4, 1)));
        mv.mark_estimate(&loc, 4);
        assert!(matches!(mv.read(&loc, 9), Read::Blocked(4)));
        mv.remove(&loc, 4);
        assert!(matches!(mv.read(&loc, 9), Read::Value(_, 2, 0)));
        // Out of order: 7 first, then 3 goes before it.
        mv.write(loc, 7, 0, Value::Storage(U256::from(70)));
        mv.write(loc, 3, 2, Value::Storage(U256::from(30)));
        assert!(matches!(mv.read(&loc, 5), Read::Value(_, 3, 2)));
        assert!(matches!(mv.read(&loc, 8), Read::Value(_, 7, 0)));
        // The account's locations are separate from its slots and from each other.
        assert!(matches!(mv.read(&Location::Basic(A), 9), Read::PreState));
        mv.write(Location::Wipe(A), 5, 0, Value::Wipe);
        assert!(matches!(mv.read(&Location::Basic(A), 9), Read::PreState));
        assert!(matches!(mv.read(&Location::Wipe(A), 9), Read::Value(Value::Wipe, 5, 0)));
        assert_eq!(mv.credits(A, None, 9), Ok(Vec::new()));
    }

    #[test]
    fn credits_between_full_writes() {
        let mv = store();
        let credit_at = Location::Credit(A);
        mv.write(credit_at, 0, 0, Value::Credit(U256::from(1)));
        mv.write(Location::Basic(A), 1, 0, Value::Basic(account(100)));
        mv.write(credit_at, 2, 0, Value::Credit(U256::from(5)));
        mv.write(credit_at, 3, 0, Value::Credit(U256::from(7)));
        let credits = mv.credits(A, Some(1), 4).unwrap();
        assert_eq!(credits, vec![U256::from(5), U256::from(7)]);
        assert_eq!(mv.fold(account(100), &credits), account(112));
        assert_eq!(mv.credits(A, None, 1).unwrap(), vec![U256::from(1)]);
        assert_eq!(mv.credits(A, Some(3), 4).unwrap(), Vec::<U256>::new());
        mv.mark_estimate(&credit_at, 2);
        assert_eq!(mv.credits(A, Some(1), 4), Err(2));
    }

    #[test]
    fn fees_are_per_transaction_slots() {
        let mv = store();
        let fee = Location::Credit(BENEFICIARY);
        // Before a transaction has executed, its slot is an estimate: a full reader of the
        // beneficiary waits for the lowest such transaction.
        assert_eq!(mv.credits(BENEFICIARY, None, 9), Err(0));
        assert_eq!(mv.credits(BENEFICIARY, Some(4), 9), Err(5));
        assert!(matches!(mv.read(&fee, 9), Read::Blocked(8)));
        for tx in 0..10 {
            mv.no_fee(tx);
        }
        assert_eq!(mv.credits(BENEFICIARY, None, 9), Ok(Vec::new()));
        mv.write(fee, 1, 0, Value::Credit(U256::from(10)));
        mv.write(fee, 3, 0, Value::Credit(U256::from(30)));
        mv.write(fee, 6, 2, Value::Credit(U256::from(60)));
        assert_eq!(mv.credits(BENEFICIARY, None, 6), Ok(vec![U256::from(10), U256::from(30)]));
        assert_eq!(mv.credits(BENEFICIARY, Some(1), 9), Ok(vec![U256::from(30), U256::from(60)]));
        assert!(matches!(mv.read(&fee, 9), Read::Value(Value::Credit(_), 6, 2)));
        // A full write of the beneficiary ends the credits a reader folds.
        mv.write(Location::Basic(BENEFICIARY), 4, 0, Value::Basic(account(1)));
        assert!(matches!(mv.read(&Location::Basic(BENEFICIARY), 9), Read::Value(_, 4, 0)));
        mv.mark_estimate(&fee, 3);
        assert_eq!(mv.credits(BENEFICIARY, None, 9), Err(3));
        assert_eq!(mv.credits(BENEFICIARY, Some(3), 9), Ok(vec![U256::from(60)]));
        mv.remove(&fee, 3);
        assert_eq!(mv.credits(BENEFICIARY, None, 9), Ok(vec![U256::from(10), U256::from(60)]));
        // An incarnation that pays no fee empties its slot again.
        mv.no_fee(6);
        assert_eq!(mv.credits(BENEFICIARY, None, 9), Ok(vec![U256::from(10)]));
        // Other credits to the beneficiary (none come from the executor today) merge in order.
        let mv = executed_store();
        mv.write(fee, 1, 0, Value::Credit(U256::from(10)));
        mv.write(fee, 3, 0, Value::Credit(U256::from(30)));
        let key = mv.account_key(BENEFICIARY);
        mv.accounts.upsert(key, |entries| entries.credits.write(2, 0, U256::from(20)));
        let all = mv.credits(BENEFICIARY, None, 9).unwrap();
        assert_eq!(all, vec![U256::from(10), U256::from(20), U256::from(30)]);
    }

    #[test]
    fn every_slot_is_built_by_the_share_of_its_account() {
        let mv = MvMemory::new(SpecId::CANCUN, BENEFICIARY, 400, 800);
        for tx in 0..400 {
            mv.no_fee(tx);
        }
        let accounts: Vec<Address> =
            (1..=200u64).map(|i| Address::left_padding_from(&i.to_be_bytes())).collect();
        for (tx, address) in accounts.iter().enumerate() {
            mv.write(Location::Basic(*address), tx, 0, Value::Basic(account(1)));
            for slot in 0..3u64 {
                let location = Location::Storage(*address, U256::from(slot));
                mv.write(location, tx, 0, Value::Storage(U256::from(slot + 1)));
            }
        }
        for shares in 1..=5 {
            let mut owner = std::collections::HashMap::new();
            let mut slots = 0;
            for share in 0..shares {
                let mark = |a: Address, _: &AccountWrites| {
                    assert!(owner.insert(a, share).is_none(), "{a} in two shares");
                    Ok::<_, TxIdx>(())
                };
                mv.for_each_final_account(share, shares, mark, |tx| tx).unwrap();
            }
            assert_eq!(owner.len(), accounts.len());
            for share in 0..shares {
                let check = |a: Address, _, _, _| {
                    assert_eq!(owner[&a], share, "a slot of {a} outside its account's share");
                    slots += 1;
                    Ok::<_, TxIdx>(())
                };
                mv.for_each_final_slot(share, shares, check, |tx| tx).unwrap();
            }
            assert_eq!(slots, 3 * accounts.len());
        }
    }

    #[test]
    fn final_writes_in_block_order() {
        let mv = executed_store();
        mv.write(Location::Credit(A), 4, 0, Value::Credit(U256::from(4)));
        mv.write(Location::Basic(A), 2, 1, Value::Basic(account(2)));
        mv.write(Location::Wipe(A), 2, 1, Value::Wipe);
        mv.write(Location::Credit(BENEFICIARY), 0, 0, Value::Credit(U256::from(9)));
        mv.write(Location::Storage(A, U256::from(1)), 1, 0, Value::Storage(U256::from(11)));
        mv.write(Location::Storage(A, U256::from(1)), 3, 0, Value::Storage(U256::from(13)));
        let mut accounts = Vec::new();
        mv.for_each_final_account(
            0,
            1,
            |address, writes| {
                accounts.push((address, writes.to_vec()));
                Ok::<_, TxIdx>(())
            },
            |tx| tx,
        )
        .unwrap();
        accounts.sort_by_key(|(address, _)| *address);
        assert_eq!(
            accounts,
            vec![
                (
                    A,
                    vec![
                        (2, AccountWrite::Wipe),
                        (2, AccountWrite::Set(account(2))),
                        (4, AccountWrite::Credit(U256::from(4)))
                    ]
                ),
                (BENEFICIARY, vec![(0, AccountWrite::Credit(U256::from(9)))]),
            ]
        );
        let mut slots = Vec::new();
        mv.for_each_final_slot(
            0,
            1,
            |address, slot, tx, value| {
                slots.push((address, slot, tx, value));
                Ok::<_, TxIdx>(())
            },
            |tx| tx,
        )
        .unwrap();
        assert_eq!(slots, vec![(A, U256::from(1), 3, U256::from(13))]);
        // Shares take each account, with its slots, exactly once.
        for shares in 1..=9 {
            let (mut accounts, mut slots) = (Vec::new(), Vec::new());
            for share in 0..shares {
                let mut mine = Vec::new();
                mv.for_each_final_account(
                    share,
                    shares,
                    |a, _| {
                        mine.push(a);
                        Ok::<_, TxIdx>(())
                    },
                    |tx| tx,
                )
                .unwrap();
                mv.for_each_final_slot(
                    share,
                    shares,
                    |a, _, _, _| {
                        slots.push((a, share));
                        Ok::<_, TxIdx>(())
                    },
                    |tx| tx,
                )
                .unwrap();
                accounts.extend(mine.iter().map(|a| (*a, share)));
            }
            accounts.sort();
            assert_eq!(accounts.iter().map(|(a, _)| *a).collect::<Vec<_>>(), vec![A, BENEFICIARY]);
            let share_of_a = accounts.iter().find(|(a, _)| *a == A).unwrap().1;
            assert_eq!(slots, vec![(A, share_of_a)], "{shares} shares");
        }

        // An estimate left behind is reported, not folded: a transaction that never
        // executed, or whose fee was marked.
        assert_eq!(store().for_each_final_account(0, 1, |_, _| Ok(()), |tx| tx), Err(0));
        let mv = executed_store();
        mv.write(Location::Credit(BENEFICIARY), 5, 0, Value::Credit(U256::from(9)));
        mv.mark_estimate(&Location::Credit(BENEFICIARY), 5);
        assert_eq!(mv.for_each_final_account(0, 1, |_, _| Ok(()), |tx| tx), Err(5));
    }
}
