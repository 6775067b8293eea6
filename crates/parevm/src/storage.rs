//! The state an embedder gives the engine to execute a block on.
//!
//! [`Storage`] is the one trait a node implements over its own database. The engine only
//! reads through it (`&self`, from many worker threads at once), never writes: the result
//! of a block is returned as [`StateChanges`](crate::StateChanges) for the embedder to apply.

use std::convert::Infallible;
use std::fmt;

use alloy_primitives::map::{AddressMap, B256Map, HashMap};
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use revm::bytecode::Bytecode;
use revm::primitives::KECCAK_EMPTY;
use revm::state::AccountInfo;
use revm::DatabaseRef;

/// Balance, nonce and code hash of an account: the part of an account that is not storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountBasic {
    /// Balance in wei.
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// Keccak of the code, or [`KECCAK_EMPTY`] for an account without code.
    pub code_hash: B256,
}

impl Default for AccountBasic {
    fn default() -> Self {
        Self { balance: U256::ZERO, nonce: 0, code_hash: KECCAK_EMPTY }
    }
}

impl AccountBasic {
    /// Empty in the sense of EIP-161: no balance, no nonce, no code.
    pub fn is_empty(&self) -> bool {
        self.balance.is_zero() && self.nonce == 0 && self.code_hash == KECCAK_EMPTY
    }
}

impl From<&AccountInfo> for AccountBasic {
    fn from(info: &AccountInfo) -> Self {
        Self { balance: info.balance, nonce: info.nonce, code_hash: info.code_hash }
    }
}

/// Read access to the state a block executes on (the state after the parent block).
///
/// Implementations must be cheap to call concurrently: the parallel executor calls them
/// from every worker thread. Errors are returned as values and end the block's execution
/// with [`ExecutionError::Storage`](crate::ExecutionError::Storage); they are never retried.
pub trait Storage: Sync {
    /// The embedder's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Balance, nonce and code hash of `address`, or `None` if the account does not exist.
    fn basic(&self, address: &Address) -> Result<Option<AccountBasic>, Self::Error>;

    /// The code with hash `code_hash`, or `None` if it is unknown.
    ///
    /// Returning analysed [`Bytecode`] that is shared (it is reference-counted) lets the
    /// engine skip jump-table analysis; implementations should cache it.
    fn code_by_hash(&self, code_hash: &B256) -> Result<Option<Bytecode>, Self::Error>;

    /// The value of storage slot `index` of `address` (zero if unset).
    fn storage(&self, address: &Address, index: &U256) -> Result<U256, Self::Error>;

    /// Whether `address` has at least one non-zero storage slot (its storage root is not the
    /// empty trie's).
    ///
    /// Asked only for EIP-7610 (a creation fails where the new address has storage but no
    /// code and no nonce), about accounts that exist without code or nonce at the address a
    /// creation targets; a node answers it from the account's storage root.
    fn has_storage(&self, address: &Address) -> Result<bool, Self::Error>;

    /// The hash of block `number`, for the `BLOCKHASH` opcode.
    fn block_hash(&self, number: u64) -> Result<B256, Self::Error>;
}

impl<S: Storage + ?Sized> Storage for &S {
    type Error = S::Error;
    fn basic(&self, address: &Address) -> Result<Option<AccountBasic>, Self::Error> {
        (**self).basic(address)
    }
    fn code_by_hash(&self, code_hash: &B256) -> Result<Option<Bytecode>, Self::Error> {
        (**self).code_by_hash(code_hash)
    }
    fn storage(&self, address: &Address, index: &U256) -> Result<U256, Self::Error> {
        (**self).storage(address, index)
    }
    fn has_storage(&self, address: &Address) -> Result<bool, Self::Error> {
        (**self).has_storage(address)
    }
    fn block_hash(&self, number: u64) -> Result<B256, Self::Error> {
        (**self).block_hash(number)
    }
}

/// One account of an [`InMemoryStorage`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InMemoryAccount {
    /// Balance, nonce and code hash.
    pub basic: AccountBasic,
    /// Non-zero storage slots.
    pub storage: HashMap<U256, U256>,
}

/// A [`Storage`] held entirely in memory: for tests, benchmarks and replaying snapshots.
///
/// Code is analysed once when it is inserted and shared afterwards.
#[derive(Clone, Debug, Default)]
pub struct InMemoryStorage {
    accounts: AddressMap<InMemoryAccount>,
    codes: B256Map<Bytecode>,
    block_hashes: HashMap<u64, B256>,
}

impl InMemoryStorage {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts (or replaces) an account with the given code (empty for none) and storage.
    pub fn insert_account(
        &mut self,
        address: Address,
        balance: U256,
        nonce: u64,
        code: Bytes,
        storage: impl IntoIterator<Item = (U256, U256)>,
    ) {
        let code_hash = self.insert_code(code);
        let storage = storage.into_iter().filter(|(_, v)| !v.is_zero()).collect();
        self.accounts.insert(
            address,
            InMemoryAccount { basic: AccountBasic { balance, nonce, code_hash }, storage },
        );
    }

    /// Stores `code` (analysing it once) and returns its hash.
    pub fn insert_code(&mut self, code: Bytes) -> B256 {
        if code.is_empty() {
            return KECCAK_EMPTY;
        }
        let hash = keccak256(&code);
        self.codes.entry(hash).or_insert_with(|| Bytecode::new_raw(code));
        hash
    }

    /// Records the hash of block `number`.
    pub fn insert_block_hash(&mut self, number: u64, hash: B256) {
        self.block_hashes.insert(number, hash);
    }

    /// The code with hash `hash`, if stored.
    pub fn code(&self, hash: &B256) -> Option<&Bytecode> {
        self.codes.get(hash)
    }

    /// The account at `address`, if any.
    pub fn account(&self, address: &Address) -> Option<&InMemoryAccount> {
        self.accounts.get(address)
    }

    /// All accounts.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &InMemoryAccount)> {
        self.accounts.iter()
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Applies a block's changes, making this the state after the block.
    pub fn apply(&mut self, changes: &crate::StateChanges) {
        for (hash, code) in &changes.contracts {
            self.codes.entry(*hash).or_insert_with(|| code.clone());
        }
        for (address, change) in &changes.accounts {
            match &change.info {
                None => {
                    self.accounts.remove(address);
                }
                Some(basic) => {
                    let account = self.accounts.entry(*address).or_default();
                    account.basic = *basic;
                    if change.storage_cleared {
                        account.storage.clear();
                    }
                    for (slot, value) in &change.storage {
                        if value.is_zero() {
                            account.storage.remove(slot);
                        } else {
                            account.storage.insert(*slot, *value);
                        }
                    }
                }
            }
        }
    }
}

impl Storage for InMemoryStorage {
    type Error = Infallible;

    fn basic(&self, address: &Address) -> Result<Option<AccountBasic>, Infallible> {
        Ok(self.accounts.get(address).map(|a| a.basic))
    }

    fn code_by_hash(&self, code_hash: &B256) -> Result<Option<Bytecode>, Infallible> {
        Ok(self.codes.get(code_hash).cloned())
    }

    fn storage(&self, address: &Address, index: &U256) -> Result<U256, Infallible> {
        Ok(self
            .accounts
            .get(address)
            .and_then(|a| a.storage.get(index).copied())
            .unwrap_or_default())
    }

    fn has_storage(&self, address: &Address) -> Result<bool, Infallible> {
        Ok(self.accounts.get(address).is_some_and(|a| a.storage.values().any(|v| !v.is_zero())))
    }

    fn block_hash(&self, number: u64) -> Result<B256, Infallible> {
        // Unknown ancestors read as zero, as `BLOCKHASH` does outside its 256-block window.
        Ok(self.block_hashes.get(&number).copied().unwrap_or_default())
    }
}

/// Adapts any revm [`DatabaseRef`] (for example revm's `CacheDB` or a node's provider) to
/// [`Storage`].
///
/// revm's `DatabaseRef` cannot say whether an account has storage, so
/// [`Storage::has_storage`] answers `false` here, which is what revm itself assumes (it does
/// not implement EIP-7610): a creation at an address with storage but no code or nonce then
/// succeeds. No such address is reachable by CREATE or CREATE2 on Ethereum mainnet, but a
/// node should implement [`Storage`] over its own database rather than rely on this.
#[derive(Clone, Debug, Default)]
pub struct DatabaseRefStorage<D>(pub D);

/// An error from a [`DatabaseRef`] wrapped by [`DatabaseRefStorage`].
#[derive(Debug)]
pub struct DatabaseRefError(pub String);

impl fmt::Display for DatabaseRefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DatabaseRefError {}

impl<D: DatabaseRef + Sync> Storage for DatabaseRefStorage<D> {
    type Error = DatabaseRefError;

    fn basic(&self, address: &Address) -> Result<Option<AccountBasic>, Self::Error> {
        let info = self.0.basic_ref(*address).map_err(|e| DatabaseRefError(e.to_string()))?;
        Ok(info.as_ref().map(AccountBasic::from))
    }

    fn code_by_hash(&self, code_hash: &B256) -> Result<Option<Bytecode>, Self::Error> {
        let code =
            self.0.code_by_hash_ref(*code_hash).map_err(|e| DatabaseRefError(e.to_string()))?;
        Ok(Some(code))
    }

    fn storage(&self, address: &Address, index: &U256) -> Result<U256, Self::Error> {
        self.0.storage_ref(*address, *index).map_err(|e| DatabaseRefError(e.to_string()))
    }

    fn has_storage(&self, _address: &Address) -> Result<bool, Self::Error> {
        Ok(false)
    }

    fn block_hash(&self, number: u64) -> Result<B256, Self::Error> {
        self.0.block_hash_ref(number).map_err(|e| DatabaseRefError(e.to_string()))
    }
}

/// revm's [`DatabaseRef`] over a [`Storage`]: the same state for revm's and alloy-evm's
/// executors (`State::builder().with_database_ref(StorageDatabase(&storage))`), for
/// comparing them with parevm or running them on a parevm storage.
#[derive(Clone, Copy, Debug, Default)]
pub struct StorageDatabase<S>(pub S);

impl<S: Storage> DatabaseRef for StorageDatabase<S> {
    type Error = crate::StorageError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let basic = self
            .0
            .basic(&address)
            .map_err(|e| crate::StorageError::new(crate::Location::Account(address), e))?;
        Ok(basic.map(crate::block_db::account_info))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        crate::block_db::read_code(&self.0, &crate::StateChanges::default(), code_hash)
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        crate::block_db::read_storage(&self.0, &crate::StateChanges::default(), address, index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        crate::block_db::read_block_hash(&self.0, number)
    }
}
