//! From the revm state Block-STM kept for a transaction to the state sequential execution
//! commits for it.
//!
//! Block-STM keeps each transaction's finalized journal ([`TxState`]). Every read in it was
//! validated against the transactions below, so it is the sequential journal except where
//! the engine deliberately read without the credits of lower transactions:
//! - a plain transfer's recipient and contracts whose balance the transaction did not
//!   observe were read from the last full write below, without the credits since (and
//!   validated on their code, not on that balance): the transaction only added to the
//!   balance it read, so the sequential balance is the committed one plus that addition
//!   (a recipient's nonce, which a transfer cannot see, is the committed one too);
//! - the beneficiary's fee was deferred: the beneficiary is missing.
//!
//! [`exact_state`] repairs both from the state committed so far (the caller commits the
//! transactions in block order, so that is the state before this one). Where the repair
//! cannot be exact it says so, and the caller executes the rest of the block sequentially:
//! - a lazily read account whose code differs from the committed one, that is empty after
//!   the transaction in one but not the other, or that exists where the committed state
//!   has none: revm would have journalled it differently;
//! - a lazily read account that differs from the committed one although the committed
//!   state has not loaded it: `State` would take its pre-transaction value from the
//!   journal's, which is the stale one. (Rare: every credit comes from a transaction whose
//!   state holds the account, so only a read of a write that a lower transaction's earlier
//!   incarnation made, and its last one did not, can differ so.)

use alloy_primitives::{Address, U256};
use revm::primitives::hardfork::SpecId;
use revm::primitives::KECCAK_EMPTY;
use revm::state::{Account, AccountInfo, AccountStatus, EvmState, TransactionId};

use crate::parallel::TxState;
use crate::storage::AccountBasic;

/// A kept state that cannot be made the sequential one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NotExact;

/// The sequential state of a transaction from the state Block-STM `kept` for it: `current`
/// reads an account as committed before the transaction, and `loaded` says whether the
/// committed state holds the account already.
pub(crate) fn exact_state<E>(
    kept: TxState,
    beneficiary: Address,
    spec: SpecId,
    mut current: impl FnMut(Address) -> Result<Option<AccountInfo>, E>,
    loaded: impl Fn(&Address) -> bool,
) -> Result<Result<EvmState, NotExact>, E> {
    let TxState { mut state, lazy, deferred_fee } = kept;
    for (address, view) in lazy {
        let Some(account) = state.get_mut(&address) else { continue };
        let before = current(address)?.as_ref().map(AccountBasic::from);
        if before == view {
            continue;
        }
        if !account.is_touched() {
            // Not committed, unless the journal untouched an account it saw empty (before
            // Spurious Dragon) that the credits it missed keep non-empty.
            if account.info.is_empty() {
                return Ok(Err(NotExact));
            }
            continue;
        }
        let Some(before) = before else { return Ok(Err(NotExact)) };
        if !loaded(&address) || account.is_created() || account.is_selfdestructed() {
            return Ok(Err(NotExact));
        }
        // Only the balance was read without the credits in between (and a plain
        // transfer's recipient also without its nonce, which the transfer cannot see): the
        // engine validated the code hash, and the transaction only added to the balance.
        let view_balance = view.map_or(U256::ZERO, |view| view.balance);
        let view_code = view.map_or(KECCAK_EMPTY, |view| view.code_hash);
        if view_code != before.code_hash || account.info.balance < view_balance {
            return Ok(Err(NotExact));
        }
        let balance = before.balance + (account.info.balance - view_balance);
        // Before Spurious Dragon the journal treats an account left empty specially (see
        // `credited`): empty after the transaction in both or in neither. (From Spurious
        // Dragon on, `State` applies EIP-161 to the repaired account itself.)
        let empty = balance.is_zero() && before.nonce == 0 && before.code_hash == KECCAK_EMPTY;
        if !spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) && empty != account.info.is_empty() {
            return Ok(Err(NotExact));
        }
        account.info.balance = balance;
        account.info.nonce = before.nonce;
        // Read as missing, but lower transactions made it exist: revm would have loaded it
        // as existing.
        account.status.remove(AccountStatus::LoadedAsNotExisting);
    }
    if let Some(fee) = deferred_fee {
        if state.contains_key(&beneficiary) {
            return Ok(Err(NotExact));
        }
        state.insert(beneficiary, credited(current(beneficiary)?, fee, spec));
    }
    Ok(Ok(state))
}

/// The journal's account after revm's `reward_beneficiary` credits `fee` to an account that
/// is `before` (`None`: it does not exist) and the journal is finalized: loaded, touched,
/// credited (unless the sum overflows, as revm's `incr_balance`), and before Spurious
/// Dragon an empty account created or left untouched instead of removed.
fn credited(before: Option<AccountInfo>, fee: U256, spec: SpecId) -> Account {
    let mut account = match before {
        Some(info) => Account::from(info),
        None => Account::new_not_existing(TransactionId::ZERO),
    };
    account.mark_touch();
    if let Some(balance) = account.info.balance.checked_add(fee) {
        account.info.balance = balance;
    }
    if !spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) && account.is_empty() {
        if account.is_loaded_as_not_existing() {
            account.mark_created();
        } else {
            account.unmark_touch();
        }
    }
    account
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;
    use revm::context::{BlockEnv, CfgEnv, Context, Journal, TxEnv};
    use revm::context_interface::journaled_state::account::JournaledAccountTr;
    use revm::context_interface::JournalTr;
    use revm::database::{CacheDB, EmptyDB};

    /// The journal's real output for a credit of `fee` to `address` holding `before`.
    fn via_journal(before: Option<AccountInfo>, fee: U256, spec: SpecId) -> Account {
        let address = address!("0x00000000000000000000000000000000000000cb");
        let mut db = CacheDB::new(EmptyDB::new());
        if let Some(info) = before.clone() {
            db.insert_account_info(address, info);
        }
        let mut ctx = Context::<BlockEnv, TxEnv, CfgEnv, _, Journal<_>, ()>::new(db, spec);
        ctx.journaled_state.set_spec_id(spec);
        ctx.journaled_state.load_account_mut(address).unwrap().data.incr_balance(fee);
        let mut state = ctx.journaled_state.finalize();
        state.remove(&address).unwrap()
    }

    /// The flags `State`'s commit looks at.
    fn flags(account: &Account) -> [bool; 4] {
        [
            account.is_touched(),
            account.is_created(),
            account.is_selfdestructed(),
            account.is_loaded_as_not_existing(),
        ]
    }

    #[test]
    fn a_deferred_fee_is_credited_as_the_journal_credits_it() {
        let info = |balance: u64, nonce: u64| AccountInfo {
            balance: U256::from(balance),
            nonce,
            code_hash: KECCAK_EMPTY,
            ..Default::default()
        };
        for spec in [SpecId::FRONTIER, SpecId::HOMESTEAD, SpecId::SPURIOUS_DRAGON, SpecId::CANCUN] {
            for before in [None, Some(info(0, 0)), Some(info(5, 0)), Some(info(0, 2))] {
                for fee in [U256::ZERO, U256::from(7)] {
                    let ours = credited(before.clone(), fee, spec);
                    let revm = via_journal(before.clone(), fee, spec);
                    let what = format!("{spec:?} {before:?} {fee}");
                    assert_eq!(ours.info, revm.info, "{what}");
                    assert_eq!(flags(&ours), flags(&revm), "{what}");
                }
            }
        }
    }
}
