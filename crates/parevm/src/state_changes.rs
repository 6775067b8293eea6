//! The state a block changed: the engine's output, and the overlay that sequential execution
//! reads through.
//!
//! Both execution paths build [`StateChanges`] with the same [`StateChanges::commit_tx`], one
//! transaction's revm state after another, in block order. That is what makes their outputs
//! comparable bit for bit.

use alloy_primitives::map::{AddressMap, B256Map, HashMap};
use alloy_primitives::{Address, B256, U256};
use revm::bytecode::Bytecode;
use revm::primitives::hardfork::SpecId;
use revm::primitives::KECCAK_EMPTY;
use revm::state::EvmState;

use crate::storage::{AccountBasic, Storage};
use crate::{Location, StorageError};

/// How one account differs from the pre-state at the end of the block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountChange {
    /// The account after the block, or `None` if it does not exist (self-destructed, or
    /// touched while empty and removed by EIP-161).
    pub info: Option<AccountBasic>,
    /// Whether the pre-state storage of the account was wiped (it was destroyed or created
    /// anew); slots not in `storage` are then zero.
    pub storage_cleared: bool,
    /// Storage slots written, with their final values (zero for cleared slots).
    pub storage: HashMap<U256, U256>,
}

/// All state changes of a block. Hash maps keep lookups cheap during sequential execution;
/// equality does not depend on order, and [`StateChanges::sorted`] gives a stable order for
/// printing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateChanges {
    /// Changed accounts.
    pub accounts: AddressMap<AccountChange>,
    /// Code deployed in the block, by hash.
    pub contracts: B256Map<Bytecode>,
}

impl StateChanges {
    /// Applies one transaction's (or system call's) finalized revm state, following revm's
    /// commit rules: untouched accounts are skipped, self-destructed ones removed, created
    /// ones start from empty storage, and touched empty ones are removed (EIP-161; revm's
    /// journal already normalised pre-Spurious-Dragon accounts so this rule is safe).
    pub fn commit_tx(&mut self, state: EvmState) {
        for (address, account) in state {
            if !account.is_touched() {
                continue;
            }
            if account.is_selfdestructed() || (!account.is_created() && account.is_empty()) {
                let change = self.accounts.entry(address).or_default();
                change.info = None;
                change.storage_cleared = true;
                change.storage.clear();
                continue;
            }
            let change = self.accounts.entry(address).or_default();
            if account.is_created() {
                change.storage_cleared = true;
                change.storage.clear();
            }
            if let Some((hash, code)) = code_set(&account) {
                self.contracts.entry(hash).or_insert_with(|| code.clone());
            }
            change.info = Some(AccountBasic::from(&account.info));
            for (slot, value) in account.storage {
                if value.is_changed() {
                    change.storage.insert(slot, value.present_value);
                }
            }
        }
    }

    /// The account after the changes so far: `Ok(None)` means "not changed, read the
    /// pre-state", `Ok(Some(None))` means the account does not exist.
    #[inline]
    pub fn account(&self, address: &Address) -> Option<Option<AccountBasic>> {
        self.accounts.get(address).map(|c| c.info)
    }

    /// The storage slot after the changes so far, or `None` to read the pre-state.
    #[inline]
    pub fn storage(&self, address: &Address, slot: &U256) -> Option<U256> {
        let change = self.accounts.get(address)?;
        match change.storage.get(slot) {
            Some(value) => Some(*value),
            None if change.storage_cleared => Some(U256::ZERO),
            None => None,
        }
    }

    /// Adds `amount` wei to `address` (block rewards, withdrawals), reading the pre-state
    /// from `storage` if the block has not changed the account yet. A zero amount changes
    /// nothing.
    pub fn increment_balance<S: Storage>(
        &mut self,
        storage: &S,
        address: Address,
        amount: U256,
        spec: SpecId,
    ) -> Result<(), StorageError> {
        if amount.is_zero() {
            return Ok(());
        }
        let current = read_basic(storage, self, address)?;
        self.credit(address, current, amount, spec);
        Ok(())
    }

    /// Takes `address`'s whole balance and returns it: the account keeps its nonce and code
    /// with a zero balance, and one that does not exist is left so. Used only for the DAO
    /// fork, before EIP-161, whose accounts are all contracts on mainnet. (An account without
    /// code or nonce left empty would stay, as geth keeps it; revm's `drain_balances`, which
    /// alloy-evm's executor calls, removes it.)
    pub(crate) fn drain_balance<S: Storage>(
        &mut self,
        storage: &S,
        address: Address,
    ) -> Result<U256, StorageError> {
        let Some(mut info) = read_basic(storage, self, address)? else { return Ok(U256::ZERO) };
        let drained = std::mem::take(&mut info.balance);
        self.accounts.entry(address).or_default().info = Some(info);
        Ok(drained)
    }

    /// Credits `amount` to `address`, whose account is `current` before the credit, exactly
    /// as committing revm's state after `incr_balance` would (see [`Credited`]).
    pub fn credit(
        &mut self,
        address: Address,
        current: Option<AccountBasic>,
        amount: U256,
        spec: SpecId,
    ) {
        match Credited::of(current, amount, spec) {
            Credited::Unchanged => {}
            Credited::Account(info) => self.accounts.entry(address).or_default().info = Some(info),
            Credited::Created(info) => {
                let change = self.accounts.entry(address).or_default();
                change.info = Some(info);
                change.storage_cleared = true;
                change.storage.clear();
            }
            Credited::Removed => {
                let change = self.accounts.entry(address).or_default();
                change.info = None;
                change.storage_cleared = true;
                change.storage.clear();
            }
        }
    }

    /// The changed accounts sorted by address.
    pub fn sorted(&self) -> Vec<(&Address, &AccountChange)> {
        let mut accounts: Vec<_> = self.accounts.iter().collect();
        accounts.sort_unstable_by_key(|(a, _)| **a);
        accounts
    }

    /// Code deployed in this block with hash `hash`, if any.
    pub fn code(&self, hash: &B256) -> Option<&Bytecode> {
        self.contracts.get(hash)
    }
}

/// Reads an account from `changes`, falling back to `storage`.
#[inline]
pub(crate) fn read_basic<S: Storage>(
    storage: &S,
    changes: &StateChanges,
    address: Address,
) -> Result<Option<AccountBasic>, StorageError> {
    match changes.account(&address) {
        Some(info) => Ok(info),
        None => {
            storage.basic(&address).map_err(|e| StorageError::new(Location::Account(address), e))
        }
    }
}

/// Whether `address` has storage after `changes`, for an account without code or nonce
/// (EIP-7610; see [`crate::storage_collision`] for why this is exact for those): none once
/// the block wiped its storage, else what `storage` says of the pre-state.
pub(crate) fn read_has_storage<S: Storage>(
    storage: &S,
    changes: &StateChanges,
    address: Address,
) -> Result<bool, StorageError> {
    if changes.accounts.get(&address).is_some_and(|change| change.storage_cleared) {
        return Ok(false);
    }
    storage.has_storage(&address).map_err(|e| StorageError::new(Location::Account(address), e))
}

/// What a balance credit does to an account: the EIP-161 rule, written once for the block's
/// output ([`StateChanges::credit`]) and for the parallel executor's folding of pending
/// credits. It is the effect of revm's `incr_balance` (which touches the account) followed by
/// a commit: from Spurious Dragon on an account left empty is removed; before it a missing
/// account is created empty and an existing empty one is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Credited {
    /// The account exists with this balance, nonce and code hash.
    Account(AccountBasic),
    /// A missing account was created (empty storage) with these.
    Created(AccountBasic),
    /// The account was left empty and removed (EIP-161).
    Removed,
    /// Nothing changed (an existing empty account credited nothing before Spurious Dragon).
    Unchanged,
}

impl Credited {
    /// Crediting `amount` to an account that is `current` (`None`: it does not exist).
    pub(crate) fn of(current: Option<AccountBasic>, amount: U256, spec: SpecId) -> Self {
        let mut info = current.unwrap_or_default();
        info.balance = info.balance.saturating_add(amount);
        if !info.is_empty() {
            Self::Account(info)
        } else if spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) {
            Self::Removed
        } else if current.is_none() {
            Self::Created(info)
        } else {
            Self::Unchanged
        }
    }

    /// The account afterwards, given that it was `current` before.
    pub(crate) fn account(self, current: Option<AccountBasic>) -> Option<AccountBasic> {
        match self {
            Self::Account(info) | Self::Created(info) => Some(info),
            Self::Removed => None,
            Self::Unchanged => current,
        }
    }
}

/// The code a transaction set on `account`, which a commit stores by its hash: a contract's
/// when the transaction created it, or an EIP-7702 delegation an authorization of the
/// transaction wrote (the account's code hash changed without a creation). Both executors
/// store exactly this.
pub(crate) fn code_set(account: &revm::state::Account) -> Option<(B256, &Bytecode)> {
    let code = account.info.code.as_ref()?;
    if account.info.code_hash == KECCAK_EMPTY {
        return None;
    }
    let set = account.is_created()
        || (code.is_eip7702() && account.original_info().code_hash != account.info.code_hash);
    set.then_some((account.info.code_hash, code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;
    use revm::state::{Account, AccountInfo};

    /// What committing revm's state gives for a credit: the account loaded as `current`,
    /// `incr_balance`, and the journal's pre-Spurious-Dragon normalisation.
    fn via_revm(current: Option<AccountBasic>, amount: U256, spec: SpecId) -> StateChanges {
        let address = address!("0x00000000000000000000000000000000000000c0");
        let mut account = match current {
            Some(basic) => Account::from(AccountInfo {
                balance: basic.balance,
                nonce: basic.nonce,
                code_hash: basic.code_hash,
                ..Default::default()
            }),
            None => Account::new_not_existing(Default::default()),
        };
        account.info.balance += amount;
        account.mark_touch();
        if !spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) && account.is_empty() {
            if account.is_loaded_as_not_existing() {
                account.mark_created();
            } else {
                account.unmark_touch();
            }
        }
        let mut changes = StateChanges::default();
        changes.commit_tx(EvmState::from_iter([(address, account)]));
        changes
    }

    #[test]
    fn credit_matches_revm_commit() {
        let address = address!("0x00000000000000000000000000000000000000c0");
        let some = |balance: u64, nonce: u64| {
            Some(AccountBasic { balance: U256::from(balance), nonce, code_hash: KECCAK_EMPTY })
        };
        for spec in [SpecId::HOMESTEAD, SpecId::SPURIOUS_DRAGON, SpecId::CANCUN] {
            for current in [None, some(0, 0), some(5, 0), some(0, 3)] {
                for amount in [U256::ZERO, U256::from(7)] {
                    let mut changes = StateChanges::default();
                    changes.credit(address, current, amount, spec);
                    let expected = via_revm(current, amount, spec);
                    assert_eq!(changes, expected, "{spec:?} {current:?} {amount}");
                    // The parallel executor folds credits with the same rule: the account it
                    // reads afterwards is the one the output holds.
                    let after = Credited::of(current, amount, spec).account(current);
                    let committed = expected.account(&address).unwrap_or(current);
                    assert_eq!(after, committed, "{spec:?} {current:?} {amount}");
                }
            }
        }
    }
}
