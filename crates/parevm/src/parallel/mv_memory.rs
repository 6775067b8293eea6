//! The multi-version store (Block-STM's `MVMemory`).
//!
//! For every state location, the values written by each transaction's latest incarnation,
//! keyed by transaction index. A read by transaction `k` sees the write of the highest
//! transaction below `k`, or the pre-state if there is none.
//!
//! Invariants:
//! - An entry of transaction `i` is either the value written by its latest *finished*
//!   incarnation, or an `Estimate` marker left when that incarnation was aborted: a reader
//!   that meets an estimate must wait for `i` rather than read stale data.
//! - After a transaction's incarnation is recorded, exactly the locations in its write set
//!   hold entries for it (stale entries of earlier incarnations are removed).
//! - Fee credits to the block beneficiary are kept as `Fee` entries (one per transaction
//!   that does not otherwise write the beneficiary), so that fee payments do not make every
//!   transaction depend on the previous one. Only a transaction that reads the beneficiary
//!   resolves them, by folding them forward from the last full write.

use std::collections::BTreeMap;

use alloy_primitives::{Address, U256};
use dashmap::DashMap;
use revm::primitives::hardfork::SpecId;

use super::TxIdx;
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
}

/// A value in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// For [`Location::Basic`]: the account, or `None` if it does not exist.
    Basic(Option<AccountBasic>),
    /// For [`Location::Storage`].
    Storage(U256),
    /// For [`Location::Wipe`].
    Wipe,
}

#[derive(Clone, Copy, Debug)]
enum EntryData {
    Estimate,
    Value(Value),
    /// A fee credit to the beneficiary (only at `Basic(beneficiary)`).
    Fee(U256),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    incarnation: u32,
    data: EntryData,
}

/// Where a read's value came from, recorded in the read set for validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOrigin {
    /// No transaction below the reader wrote the location: the pre-state.
    PreState,
    /// The write of this transaction's incarnation.
    Version(TxIdx, u32),
    /// The beneficiary's account, folded from a base and later fee credits; validated by
    /// value.
    Folded(Option<AccountBasic>),
}

/// The outcome of a read.
#[derive(Clone, Debug)]
pub(crate) enum Read {
    /// Read the pre-state.
    PreState,
    /// A transaction's write.
    Value(Value, TxIdx, u32),
    /// The beneficiary's account: fee credits (in block order) to fold onto `base`, the
    /// last full write below the reader (`None`: the pre-state).
    Folded {
        base: Option<Option<AccountBasic>>,
        fees: Vec<U256>,
    },
    /// Transaction `TxIdx` has an estimate here: wait for it.
    Blocked(TxIdx),
}

/// Applies one fee credit the way revm's `reward_beneficiary` does: the account is touched,
/// so after Spurious Dragon an account left empty is removed, and before it a missing
/// account is created.
pub(crate) fn credit(
    account: Option<AccountBasic>,
    fee: U256,
    spec: SpecId,
) -> Option<AccountBasic> {
    let mut info = account.unwrap_or_default();
    info.balance = info.balance.saturating_add(fee);
    if spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) && info.is_empty() {
        None
    } else {
        Some(info)
    }
}

/// The multi-version store.
pub(crate) struct MvMemory {
    data: DashMap<Location, BTreeMap<TxIdx, Entry>, alloy_primitives::map::DefaultHashBuilder>,
    beneficiary: Address,
    spec: SpecId,
}

impl MvMemory {
    pub(crate) fn new(beneficiary: Address, spec: SpecId) -> Self {
        Self {
            data: DashMap::default(),
            beneficiary,
            spec,
        }
    }

    /// Records `value` as transaction `tx`'s write to `location`.
    pub(crate) fn write(&self, location: Location, tx: TxIdx, incarnation: u32, value: Value) {
        self.insert(
            location,
            tx,
            Entry {
                incarnation,
                data: EntryData::Value(value),
            },
        );
    }

    /// Records a fee credit of transaction `tx` to the beneficiary.
    pub(crate) fn write_fee(&self, tx: TxIdx, incarnation: u32, fee: U256) {
        self.insert(
            Location::Basic(self.beneficiary),
            tx,
            Entry {
                incarnation,
                data: EntryData::Fee(fee),
            },
        );
    }

    fn insert(&self, location: Location, tx: TxIdx, entry: Entry) {
        self.data.entry(location).or_default().insert(tx, entry);
    }

    /// Removes transaction `tx`'s entry at `location`.
    pub(crate) fn remove(&self, location: &Location, tx: TxIdx) {
        if let Some(mut entries) = self.data.get_mut(location) {
            entries.remove(&tx);
        }
    }

    /// Turns transaction `tx`'s entry at `location` into an estimate.
    pub(crate) fn mark_estimate(&self, location: &Location, tx: TxIdx) {
        if let Some(mut entries) = self.data.get_mut(location) {
            if let Some(entry) = entries.get_mut(&tx) {
                entry.data = EntryData::Estimate;
            }
        }
    }

    /// The value of `location` as transaction `tx` must see it.
    pub(crate) fn read(&self, location: &Location, tx: TxIdx) -> Read {
        let Some(entries) = self.data.get(location) else {
            return Read::PreState;
        };
        let mut below = entries.range(..tx).rev();
        match below.next() {
            None => Read::PreState,
            Some((&idx, entry)) => match entry.data {
                EntryData::Estimate => Read::Blocked(idx),
                EntryData::Value(value) => Read::Value(value, idx, entry.incarnation),
                EntryData::Fee(_) => {
                    // Walk down to the base (the last full write, or the pre-state),
                    // collecting the fees above it.
                    let mut fees = Vec::new();
                    let mut base = None;
                    for (&idx, entry) in entries.range(..tx).rev() {
                        match entry.data {
                            EntryData::Estimate => return Read::Blocked(idx),
                            EntryData::Fee(fee) => fees.push(fee),
                            EntryData::Value(Value::Basic(account)) => {
                                base = Some(account);
                                break;
                            }
                            EntryData::Value(_) => unreachable!("only Basic values at Basic"),
                        }
                    }
                    fees.reverse();
                    Read::Folded { base, fees }
                }
            },
        }
    }

    /// Applies `fees` in order onto `base`.
    pub(crate) fn fold(&self, base: Option<AccountBasic>, fees: &[U256]) -> Option<AccountBasic> {
        fees.iter()
            .fold(base, |account, fee| credit(account, *fee, self.spec))
    }
}
