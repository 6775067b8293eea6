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
//!   at `Credit` locations. Credits commute with each other, so many transactions can pay one
//!   account without depending on each other. A full read of the account folds the credits
//!   between the last full write (at its `Basic` location) and the reader onto that write.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::map::DefaultHashBuilder;
use alloy_primitives::{Address, U256};
use dashmap::DashMap;
use revm::primitives::hardfork::SpecId;
use smallvec::SmallVec;

use super::TxIdx;
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
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    incarnation: u32,
    /// `None`: an estimate.
    value: Option<Value>,
}

/// Where a read's value came from, recorded in the read set for validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOrigin {
    /// No transaction below the reader wrote the location: the pre-state.
    PreState,
    /// The write of this transaction's incarnation.
    Version(TxIdx, u32),
    /// An account: its last full write with later credits folded on; validated by value.
    Account(Option<AccountBasic>),
    /// Only the account's code hash mattered (the recipient of a plain transfer); validated
    /// by comparing it.
    CodeHash(alloy_primitives::B256),
    /// A contract read without credits whose balance was not observed: its code hash and
    /// nonce; validated by comparing them with its last full write.
    Lazy(alloy_primitives::B256, u64),
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
type Entries = SmallVec<[(TxIdx, Entry); 1]>;

/// The position of the first entry of `entries` at or above `tx`.
#[inline]
fn position(entries: &Entries, tx: TxIdx) -> usize {
    entries.partition_point(|(idx, _)| *idx < tx)
}

/// The multi-version store.
///
/// Most reads are of locations no transaction of the block writes (contract code accounts,
/// untouched slots). A filter with one bit per hash bucket, set before a location's first
/// entry is inserted and never cleared, answers those without touching the map: a shard's
/// read lock is an atomic write to a cache line both cores share, which costs more than the
/// read itself when every transaction reads the same few contracts.
pub(crate) struct MvMemory {
    data: DashMap<Location, Entries, DefaultHashBuilder>,
    /// Bit `h(location) mod bits` is set once any entry for the location may exist.
    written: Box<[AtomicU64]>,
    /// `bits - 1` (bits is a power of two).
    mask: u64,
    hasher: DefaultHashBuilder,
    spec: SpecId,
}

impl MvMemory {
    /// A store for a block of `transactions` transactions (sizes the filter).
    pub(crate) fn new(spec: SpecId, transactions: usize) -> Self {
        // About 64 bits per transaction: a block's transactions write a few locations each,
        // so the filter stays sparse.
        let bits = (transactions.saturating_mul(64)).next_power_of_two().clamp(1 << 12, 1 << 26);
        Self {
            // Most transactions write two or three locations: sized for that, the map rarely
            // grows (growing rehashes a shard under its lock while the other workers wait).
            data: DashMap::with_capacity_and_hasher_and_shard_amount(
                transactions.saturating_mul(2),
                DefaultHashBuilder::default(),
                128,
            ),
            written: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: bits as u64 - 1,
            hasher: DefaultHashBuilder::default(),
            spec,
        }
    }

    /// The filter word and bit of `location`.
    #[inline]
    fn filter_bit(&self, location: &Location) -> (&AtomicU64, u64) {
        let bit = self.hasher.hash_one(location) & self.mask;
        (&self.written[(bit >> 6) as usize], 1 << (bit & 63))
    }

    /// Whether `location` may have entries. A `false` is final for every reader that
    /// synchronised with the writers it must see (through the scheduler), as the bit is set
    /// before the entry is inserted.
    #[inline]
    fn may_have_entries(&self, location: &Location) -> bool {
        let (word, bit) = self.filter_bit(location);
        word.load(Ordering::Acquire) & bit != 0
    }

    /// Reserves room for `entries` entries at `location` (one allocation instead of many, for
    /// a location every transaction writes, such as the beneficiary's fee credit).
    pub(crate) fn reserve(&self, location: Location, entries: usize) {
        self.data.entry(location).or_default().reserve_exact(entries);
    }

    /// Records `value` as transaction `tx`'s write to `location`.
    pub(crate) fn write(&self, location: Location, tx: TxIdx, incarnation: u32, value: Value) {
        let entry = Entry { incarnation, value: Some(value) };
        let (word, bit) = self.filter_bit(&location);
        if word.load(Ordering::Relaxed) & bit == 0 {
            word.fetch_or(bit, Ordering::Release);
        }
        let mut entries = self.data.entry(location).or_default();
        // Transactions mostly finish in order: appending needs no search.
        if entries.last().is_none_or(|(idx, _)| *idx < tx) {
            entries.push((tx, entry));
            return;
        }
        let at = position(&entries, tx);
        match entries.get_mut(at) {
            Some((idx, existing)) if *idx == tx => *existing = entry,
            _ => entries.insert(at, (tx, entry)),
        }
    }

    /// Removes transaction `tx`'s entry at `location`.
    pub(crate) fn remove(&self, location: &Location, tx: TxIdx) {
        if let Some(mut entries) = self.data.get_mut(location) {
            let at = position(&entries, tx);
            if entries.get(at).is_some_and(|(idx, _)| *idx == tx) {
                entries.remove(at);
            }
        }
    }

    /// Turns transaction `tx`'s entry at `location` into an estimate.
    pub(crate) fn mark_estimate(&self, location: &Location, tx: TxIdx) {
        if let Some(mut entries) = self.data.get_mut(location) {
            let at = position(&entries, tx);
            if let Some((idx, entry)) = entries.get_mut(at) {
                if *idx == tx {
                    entry.value = None;
                }
            }
        }
    }

    /// The value of `location` as transaction `tx` must see it.
    pub(crate) fn read(&self, location: &Location, tx: TxIdx) -> Read {
        if !self.may_have_entries(location) {
            return Read::PreState;
        }
        let Some(entries) = self.data.get(location) else {
            return Read::PreState;
        };
        match entries[..position(&entries, tx)].last() {
            None => Read::PreState,
            Some(&(idx, Entry { value: None, .. })) => Read::Blocked(idx),
            Some(&(idx, Entry { value: Some(value), incarnation })) => {
                Read::Value(value, idx, incarnation)
            }
        }
    }

    /// The credits to `address` by transactions after `after` (all if `None`) and before
    /// `tx`, in block order; `Err` names a transaction with an estimate among them.
    pub(crate) fn credits(
        &self,
        address: Address,
        after: Option<TxIdx>,
        tx: TxIdx,
    ) -> Result<Vec<U256>, TxIdx> {
        let location = Location::Credit(address);
        if !self.may_have_entries(&location) {
            return Ok(Vec::new());
        }
        let Some(entries) = self.data.get(&location) else {
            return Ok(Vec::new());
        };
        let from = after.map_or(0, |a| a + 1);
        if from >= tx {
            return Ok(Vec::new());
        }
        entries[position(&entries, from)..position(&entries, tx)]
            .iter()
            .map(|&(idx, entry)| match entry.value {
                Some(Value::Credit(amount)) => Ok(amount),
                _ => Err(idx),
            })
            .collect()
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    const A: Address = address!("0x00000000000000000000000000000000000000aa");

    fn account(balance: u64) -> Option<AccountBasic> {
        Some(AccountBasic { balance: U256::from(balance), ..Default::default() })
    }

    #[test]
    fn reads_see_the_highest_lower_write() {
        let mv = MvMemory::new(SpecId::CANCUN, 10);
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
        // A location reserved but never written reads the pre-state.
        let reserved = Location::Credit(A);
        mv.reserve(reserved, 100);
        assert!(matches!(mv.read(&reserved, 50), Read::PreState));
        assert_eq!(mv.credits(A, None, 50), Ok(Vec::new()));
    }

    #[test]
    fn credits_between_full_writes() {
        let mv = MvMemory::new(SpecId::CANCUN, 10);
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
}
