//! The read set: what each read of an incarnation recorded ([`ReadOrigin`]), the account
//! reads that produce those records, and how a read set is validated.
//!
//! An account is read through the store in one of three ways (see `architecture.md`,
//! "Credits"):
//! - **full** ([`resolve_account`]): the last full write below the reader, or the
//!   pre-state, with the credits after it folded on; validated by value;
//! - **lazy** ([`resolve_full_write`]): the last full write or pre-state without the
//!   credits, for a plain transfer's recipient (only its code hash matters) and for a
//!   contract whose balance the transaction does not observe (its code hash and nonce
//!   matter); validated by comparing those;
//! - a read that found nothing in the store below the reader recorded the pre-state, which
//!   cannot change: it is validated by finding nothing still, without reading storage.
//!
//! Storage slots and wipes are validated by the version they read.

use alloy_primitives::Address;
use revm::primitives::KECCAK_EMPTY;

use super::mv_memory::{Location, MvMemory, Read, Value};
use super::TxIdx;
use revm::database_interface::DBErrorMarker;

use crate::state_changes::read_basic;
use crate::storage::AccountBasic;
use crate::{StateChanges, Storage, StorageError};

/// What the pre-state of the parallel phase is: the embedder's storage with the block's
/// pre-transaction system calls applied.
pub(crate) struct Base<'a, S> {
    pub(crate) storage: &'a S,
    pub(crate) changes: &'a StateChanges,
}

impl<S: Storage> Base<'_, S> {
    pub(crate) fn basic(&self, address: Address) -> Result<Option<AccountBasic>, StorageError> {
        read_basic(self.storage, self.changes, address)
    }
}

/// Why an incarnation's read could not complete.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum VmError {
    /// It met an estimate of this transaction: wait for it.
    #[error("blocked by transaction {0}")]
    Blocked(TxIdx),
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A question the multi-version store cannot answer exactly (see
    /// [`HasStorage`](crate::storage_collision::HasStorage) for [`super::vm::VmDb`]): the
    /// block is executed sequentially instead.
    #[error("the block needs sequential execution")]
    Sequential,
}

impl DBErrorMarker for VmError {}

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
    /// A `CodeHash` or `Lazy` read that found no full write below the reader: the
    /// pre-state's account, which cannot change; validated by finding none still (no
    /// storage read).
    PreStateBasic,
    /// An `Account` read that found neither a full write nor a credit below the reader;
    /// validated by finding neither still.
    PreStateAccount,
}

/// The last full write of `address` below `tx` and the transaction that made it, or `None`
/// if no transaction below `tx` wrote the account fully.
fn last_full_write(
    mv: &MvMemory,
    address: Address,
    tx: TxIdx,
) -> Result<Option<(Option<AccountBasic>, TxIdx)>, VmError> {
    match mv.read(&Location::Basic(address), tx) {
        Read::PreState => Ok(None),
        Read::Value(Value::Basic(account), idx, _) => Ok(Some((account, idx))),
        Read::Value(..) => unreachable!("Basic locations hold Basic values"),
        Read::Blocked(idx) => Err(VmError::Blocked(idx)),
    }
}

/// The account at `address` as transaction `tx` sees it: the last full write below `tx` (or
/// the pre-state) with the credits after it folded on.
pub(crate) fn resolve_account<S: Storage>(
    mv: &MvMemory,
    base: &Base<'_, S>,
    address: Address,
    tx: TxIdx,
) -> Result<Option<AccountBasic>, VmError> {
    Ok(account_with_origin(mv, base, address, tx)?.0)
}

/// [`resolve_account`], and whether the account is the pre-state's (no full write and no
/// credit below `tx`).
pub(crate) fn account_with_origin<S: Storage>(
    mv: &MvMemory,
    base: &Base<'_, S>,
    address: Address,
    tx: TxIdx,
) -> Result<(Option<AccountBasic>, bool), VmError> {
    let write = last_full_write(mv, address, tx)?;
    let credits = mv.credits(address, write.map(|(_, idx)| idx), tx).map_err(VmError::Blocked)?;
    let from_base = write.is_none() && credits.is_empty();
    let account = match write {
        Some((account, _)) => account,
        None => base.basic(address)?,
    };
    Ok((mv.fold(account, &credits), from_base))
}

/// The last full write of `address` below `tx` (or the pre-state), ignoring credits: right
/// for everything but the balance.
pub(crate) fn resolve_full_write<S: Storage>(
    mv: &MvMemory,
    base: &Base<'_, S>,
    address: Address,
    tx: TxIdx,
) -> Result<Option<AccountBasic>, VmError> {
    Ok(full_write_with_origin(mv, base, address, tx)?.0)
}

/// [`resolve_full_write`], and whether it is the pre-state's (no full write below `tx`).
pub(crate) fn full_write_with_origin<S: Storage>(
    mv: &MvMemory,
    base: &Base<'_, S>,
    address: Address,
    tx: TxIdx,
) -> Result<(Option<AccountBasic>, bool), VmError> {
    match last_full_write(mv, address, tx)? {
        Some((account, _)) => Ok((account, false)),
        None => Ok((base.basic(address)?, true)),
    }
}

/// Whether every read of `reads`, made by transaction `tx`, would read the same now.
pub(crate) fn still_valid<S: Storage>(
    reads: &[(Location, ReadOrigin)],
    mv: &MvMemory,
    base: &Base<'_, S>,
    tx: TxIdx,
) -> bool {
    // The account a read of `location` resolves to with `resolve`, or `None` if it cannot
    // be resolved now (an estimate, or a storage error that re-execution will report).
    let resolved = |location: &Location, resolve: Resolver<S>| {
        let Location::Basic(address) = location else { return None };
        resolve(mv, base, *address, tx).ok()
    };
    // No transaction below `tx` wrote the account fully.
    let no_full_write = |location: &Location| matches!(mv.read(location, tx), Read::PreState);
    reads.iter().all(|(location, origin)| match origin {
        ReadOrigin::PreState => matches!(mv.read(location, tx), Read::PreState),
        ReadOrigin::Version(i, n) => matches!(
            mv.read(location, tx),
            Read::Value(_, idx, inc) if idx == *i && inc == *n
        ),
        ReadOrigin::PreStateBasic => no_full_write(location),
        ReadOrigin::PreStateAccount => {
            no_full_write(location)
                && matches!(location, Location::Basic(address)
                    if mv.credits(*address, None, tx).is_ok_and(|c| c.is_empty()))
        }
        ReadOrigin::Account(seen) => {
            resolved(location, resolve_account).is_some_and(|a| a == *seen)
        }
        ReadOrigin::CodeHash(hash) => resolved(location, resolve_full_write)
            .is_some_and(|a| a.map_or(KECCAK_EMPTY, |a| a.code_hash) == *hash),
        ReadOrigin::Lazy(hash, nonce) => resolved(location, resolve_full_write)
            .is_some_and(|a| a.is_some_and(|a| a.code_hash == *hash && a.nonce == *nonce)),
    })
}

/// Resolves an account read with the store and the pre-state.
type Resolver<S> =
    fn(&MvMemory, &Base<'_, S>, Address, TxIdx) -> Result<Option<AccountBasic>, VmError>;

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, U256};
    use revm::primitives::hardfork::SpecId;

    use crate::InMemoryStorage;

    const A: Address = address!("0x00000000000000000000000000000000000000aa");
    const BENEFICIARY: Address = address!("0x00000000000000000000000000000000000000be");

    #[test]
    fn pre_state_reads_are_invalidated_by_lower_writes_only() {
        let mut storage = InMemoryStorage::new();
        let balance = U256::from(100);
        storage.insert_account(A, balance, 0, Default::default(), []);
        let changes = StateChanges::default();
        let base = Base { storage: &storage, changes: &changes };
        let reader = 5;
        let account =
            |reads: &[(Location, ReadOrigin)], mv: &MvMemory| still_valid(reads, mv, &base, reader);
        let full = [(Location::Basic(A), ReadOrigin::PreStateAccount)];
        let lazy = [(Location::Basic(A), ReadOrigin::PreStateBasic)];
        let by_value = [(
            Location::Basic(A),
            ReadOrigin::Account(Some(AccountBasic { balance, ..Default::default() })),
        )];

        let mv = MvMemory::new(SpecId::CANCUN, BENEFICIARY, 10, 20);
        assert!(account(&full, &mv) && account(&lazy, &mv) && account(&by_value, &mv));
        // Writes above the reader do not matter.
        mv.write(Location::Basic(A), 7, 0, Value::Basic(None));
        mv.write(Location::Credit(A), 8, 0, Value::Credit(U256::from(1)));
        assert!(account(&full, &mv) && account(&lazy, &mv) && account(&by_value, &mv));
        // A credit below: the full read is stale, the lazy one (no balance) is not.
        mv.write(Location::Credit(A), 2, 0, Value::Credit(U256::from(1)));
        assert!(!account(&full, &mv) && account(&lazy, &mv) && !account(&by_value, &mv));
        // A full write below invalidates both.
        mv.write(Location::Basic(A), 3, 0, Value::Basic(None));
        assert!(!account(&full, &mv) && !account(&lazy, &mv));
        // An estimate below invalidates by-value reads too (they cannot be resolved now).
        mv.remove(&Location::Credit(A), 2);
        mv.mark_estimate(&Location::Basic(A), 3);
        assert!(!account(&by_value, &mv) && !account(&lazy, &mv));
    }
}
