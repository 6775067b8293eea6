//! [`BlockDb`]: revm's view of the pre-state with the block's changes so far on top.

use alloy_primitives::{Address, B256, U256};
use revm::bytecode::Bytecode;
use revm::primitives::{StorageKey, StorageValue, KECCAK_EMPTY};
use revm::state::AccountInfo;
use revm::{Database, DatabaseCommit};

use crate::compliance::gate::{Gating, SequentialDb};
use crate::state_changes::{read_basic, read_has_storage, StateChanges};
use crate::storage::{AccountBasic, Storage};
use crate::storage_collision::HasStorage;
use crate::{Location, StorageError};

/// The database the sequential executor runs revm on: one hash lookup in the block's
/// changes, then one in the embedder's storage. No locking, no copying of state.
pub(crate) struct BlockDb<'a, S> {
    storage: &'a S,
    /// Changes committed so far.
    pub(crate) changes: StateChanges,
    /// The compliance state of the transactions (no gate without a hook).
    pub(crate) gating: Gating<'a>,
    /// The first storage read that failed, for callers that get revm's error back only as
    /// text (alloy-evm's system calls).
    pub(crate) failed_read: Option<StorageError>,
}

impl<'a, S: Storage> BlockDb<'a, S> {
    /// A view of `storage` with `changes` already applied.
    pub(crate) fn with_changes(storage: &'a S, changes: StateChanges) -> Self {
        Self { storage, changes, gating: Gating::default(), failed_read: None }
    }

    /// Passes `read` on, keeping its error if it is the first.
    #[inline]
    fn keep_failure<T>(&mut self, read: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e) = &read {
            self.failed_read.get_or_insert_with(|| e.clone());
        }
        read
    }
}

impl<S> std::fmt::Debug for BlockDb<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockDb")
            .field("changes", &self.changes)
            .field("gating", &self.gating)
            .field("failed_read", &self.failed_read)
            .finish_non_exhaustive()
    }
}

/// Turns an [`AccountBasic`] into revm's account info; code is left for revm to fetch by
/// hash when it needs it, except for accounts without code.
#[inline]
pub(crate) fn account_info(basic: AccountBasic) -> AccountInfo {
    let code = (basic.code_hash == KECCAK_EMPTY).then(Bytecode::default);
    AccountInfo {
        balance: basic.balance,
        nonce: basic.nonce,
        code_hash: basic.code_hash,
        code,
        ..Default::default()
    }
}

/// Reads a storage slot from `changes`, falling back to `storage`.
#[inline]
pub(crate) fn read_storage<S: Storage>(
    storage: &S,
    changes: &StateChanges,
    address: Address,
    index: U256,
) -> Result<U256, StorageError> {
    if let Some(value) = changes.storage(&address, &index) {
        return Ok(value);
    }
    storage
        .storage(&address, &index)
        .map_err(|e| StorageError::new(Location::Storage(address, index), e))
}

/// Reads code from the block's new contracts, then from storage.
#[inline]
pub(crate) fn read_code<S: Storage>(
    storage: &S,
    changes: &StateChanges,
    hash: B256,
) -> Result<Bytecode, StorageError> {
    if hash == KECCAK_EMPTY {
        return Ok(Bytecode::default());
    }
    if let Some(code) = changes.code(&hash) {
        return Ok(code.clone());
    }
    match storage.code_by_hash(&hash) {
        Ok(Some(code)) => Ok(code),
        Ok(None) => Err(StorageError::new(Location::Code(hash), MissingCode)),
        Err(e) => Err(StorageError::new(Location::Code(hash), e)),
    }
}

/// Reads a block hash from `storage`.
#[inline]
pub(crate) fn read_block_hash<S: Storage>(storage: &S, number: u64) -> Result<B256, StorageError> {
    storage.block_hash(number).map_err(|e| StorageError::new(Location::BlockHash(number), e))
}

/// Storage knows an account's code hash but not the code.
#[derive(Debug, thiserror::Error)]
#[error("code not found in storage")]
pub(crate) struct MissingCode;

impl<S: Storage> Database for BlockDb<'_, S> {
    type Error = StorageError;

    #[inline]
    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, StorageError> {
        let read = read_basic(self.storage, &self.changes, address);
        Ok(self.keep_failure(read)?.map(account_info))
    }

    #[inline]
    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, StorageError> {
        let read = read_code(self.storage, &self.changes, code_hash);
        self.keep_failure(read)
    }

    #[inline]
    fn storage(
        &mut self,
        address: Address,
        index: StorageKey,
    ) -> Result<StorageValue, StorageError> {
        let read = read_storage(self.storage, &self.changes, address, index);
        self.keep_failure(read)
    }

    #[inline]
    fn block_hash(&mut self, number: u64) -> Result<B256, StorageError> {
        let read = read_block_hash(self.storage, number);
        self.keep_failure(read)
    }
}

/// alloy-evm's system calls commit their state through this, as a transaction's is.
impl<S: Storage> DatabaseCommit for BlockDb<'_, S> {
    fn commit(&mut self, changes: revm::state::EvmState) {
        self.changes.commit_tx(changes);
    }
}

impl<S: Storage> HasStorage for BlockDb<'_, S> {
    fn has_storage(&mut self, address: Address) -> Result<bool, StorageError> {
        let read = read_has_storage(self.storage, &self.changes, address);
        self.keep_failure(read)
    }
}

impl<'a, S: Storage> SequentialDb<'a> for BlockDb<'a, S> {
    fn gating(&mut self) -> &mut Gating<'a> {
        &mut self.gating
    }
}
