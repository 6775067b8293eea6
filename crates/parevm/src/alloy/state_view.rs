//! The engine's [`Storage`] over revm's [`State`]: what a transaction executed through
//! alloy-evm would read, shared by the worker threads.
//!
//! `State` itself cannot be shared (its commit hook is `Send` but not `Sync`), so this view
//! borrows the parts its `DatabaseRef` implementation reads and reads them the same way:
//! the cache first (the block's changes so far and what was loaded), then the preloaded
//! bundle for accounts and code if the state uses one, then the database.

use alloy_primitives::{Address, B256, U256};
use revm::bytecode::Bytecode;
use revm::database::{BundleState, CacheState, State};
use revm::DatabaseRef;

use crate::storage::{AccountBasic, Storage};

/// A read-only view of a [`State`] for the worker threads.
pub(crate) struct StateView<'a, DB> {
    cache: &'a CacheState,
    bundle: Option<&'a BundleState>,
    block_hashes: &'a revm::database::states::block_hash_cache::BlockHashCache,
    database: &'a DB,
}

impl<'a, DB> StateView<'a, DB> {
    /// A view of `state` as it is now.
    pub(crate) fn new(state: &'a State<DB>) -> Self {
        Self {
            cache: &state.cache,
            bundle: state.use_preloaded_bundle.then_some(&state.bundle_state),
            block_hashes: &state.block_hashes,
            database: &state.database,
        }
    }
}

impl<DB> Storage for StateView<'_, DB>
where
    DB: DatabaseRef + Sync,
    DB::Error: Send + Sync + 'static,
{
    type Error = DB::Error;

    fn basic(&self, address: &Address) -> Result<Option<AccountBasic>, DB::Error> {
        if let Some(account) = self.cache.accounts.get(address) {
            return Ok(account.account.as_ref().map(|a| AccountBasic::from(&a.info)));
        }
        if let Some(account) = self.bundle.and_then(|bundle| bundle.account(address)) {
            return Ok(account.account_info().as_ref().map(AccountBasic::from));
        }
        Ok(self.database.basic_ref(*address)?.as_ref().map(AccountBasic::from))
    }

    fn code_by_hash(&self, code_hash: &B256) -> Result<Option<Bytecode>, DB::Error> {
        if let Some(code) = self.cache.contracts.get(code_hash) {
            return Ok(Some(code.clone()));
        }
        if let Some(code) = self.bundle.and_then(|bundle| bundle.contracts.get(code_hash)) {
            return Ok(Some(code.clone()));
        }
        self.database.code_by_hash_ref(*code_hash).map(Some)
    }

    fn storage(&self, address: &Address, index: &U256) -> Result<U256, DB::Error> {
        // As `State::storage_ref`: a cached slot, else zero where the cache knows the whole
        // storage (a new or destroyed account), else the database.
        if let Some(account) = self.cache.accounts.get(address) {
            if let Some(plain) = &account.account {
                if let Some(value) = plain.storage.get(index) {
                    return Ok(*value);
                }
                if account.status.is_storage_known() {
                    return Ok(U256::ZERO);
                }
            }
        }
        self.database.storage_ref(*address, *index)
    }

    /// revm's `State` does not track whether an account has storage, and revm's own
    /// creation check looks only at code and nonce: `false`, as alloy-evm's executor
    /// behaves (EIP-7610's storage half is then the node's database's concern).
    fn has_storage(&self, _address: &Address) -> Result<bool, DB::Error> {
        Ok(false)
    }

    fn block_hash(&self, number: u64) -> Result<B256, DB::Error> {
        if let Some(hash) = self.block_hashes.get(number) {
            return Ok(hash);
        }
        self.database.block_hash_ref(number)
    }
}
