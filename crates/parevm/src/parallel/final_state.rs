//! The block's state changes, built once from the multi-version store's final entries after
//! every transaction is final, instead of committing each transaction's revm state in order.
//!
//! The result equals what the sequential executor builds by committing each included
//! transaction's revm state with [`StateChanges::commit_tx`] and each credit with
//! [`StateChanges::credit`], in block order:
//! - an account's writes (full writes, wipes, credits) are replayed in block order onto its
//!   pre-state; within one transaction a wipe comes before the full write (a creation or a
//!   destruction), and a transaction never both writes an account fully and credits it;
//! - a storage slot keeps its last write unless the account's storage was cleared later
//!   (a wipe, or a credit that creates or removes the account under [`Credited`]); a write
//!   by the clearing transaction itself comes after the clear;
//! - an account appears in the output if the pre-block system calls changed it, if any
//!   transaction wrote, wiped or credited it with an effect, wrote one of its slots, or
//!   touched it without changing it (`touched`, kept by each transaction's output);
//! - code created by included transactions is kept even if the contract is destroyed later.
//!
//! Only the last incarnation of each transaction has entries in the store, and excluded or
//! invalid transactions have none, so the entries are exactly the included transactions'
//! writes.
//!
//! The work is shared: when the scheduler is done, each worker builds the changes of the
//! accounts in its shards of the store, with their slots ([`build_share`]); the calling thread then merges the
//! shares into the pre-block changes ([`merge`]): one map insertion per account, the same
//! map work a sequential commit does.

use alloy_primitives::map::{AddressMap, Entry};
use alloy_primitives::{Address, B256};
use revm::bytecode::Bytecode;
use revm::primitives::hardfork::SpecId;

use super::mv_memory::{AccountWrite, MvMemory};
use super::read_set::Base;
use super::TxIdx;
use crate::state_changes::{AccountChange, Credited};
use crate::{ExecutionError, StateChanges, Storage};

/// The changes of the accounts one worker built.
pub(crate) type Share = AddressMap<AccountChange>;

/// The changes of the written accounts that are share `share` of `shares`, on top of `base`
/// (the pre-state with the pre-block system calls applied).
pub(crate) fn build_share<S: Storage>(
    base: &Base<'_, S>,
    mv: &MvMemory,
    share: usize,
    shares: usize,
    spec: SpecId,
) -> Result<Share, ExecutionError> {
    let mut changes = Share::default();
    changes.reserve(mv.written_accounts() / shares + 16);
    // Accounts whose storage a transaction cleared, with the last one that did (rare).
    let mut cleared = AddressMap::<TxIdx>::default();
    mv.for_each_final_account(
        share,
        shares,
        |address, writes| {
            // The account so far; `None` until known. The pre-state is read only if needed:
            // a full write replaces it.
            let mut current = None;
            let known = |current: Option<_>| current.map_or_else(|| base.basic(address), Ok);
            let mut listed = false;
            let mut cleared_at = None;
            for &(tx, write) in writes {
                match write {
                    AccountWrite::Wipe => {
                        cleared_at = Some(tx);
                        listed = true;
                    }
                    AccountWrite::Set(account) => {
                        current = Some(account);
                        listed = true;
                    }
                    AccountWrite::Credit(amount) => {
                        let before = known(current)?;
                        let credited = Credited::of(before, amount, spec);
                        if matches!(credited, Credited::Created(_) | Credited::Removed) {
                            cleared_at = Some(tx);
                        }
                        listed |= credited != Credited::Unchanged;
                        current = Some(credited.account(before));
                    }
                }
            }
            if listed {
                let info = known(current)?;
                // Each account comes once, so the share has no change of it yet.
                let change = changes.entry(address).or_insert_with(|| {
                    base.changes.accounts.get(&address).cloned().unwrap_or_default()
                });
                change.info = info;
                if let Some(tx) = cleared_at {
                    change.storage_cleared = true;
                    change.storage.clear();
                    cleared.insert(address, tx);
                }
            }
            Ok(())
        },
        left_estimate,
    )?;
    mv.for_each_final_slot(
        share,
        shares,
        |address, slot, tx, value| {
            if cleared.get(&address).is_none_or(|cleared| tx >= *cleared) {
                listed_change(&mut changes, base, address)?.storage.insert(slot, value);
            }
            Ok(())
        },
        left_estimate,
    )?;
    Ok(changes)
}

/// The block's state changes after its transactions: the pre-block changes of `base` with
/// the workers' `shares`, the accounts the included transactions `touched` and the code they
/// `created`.
pub(crate) fn merge<S: Storage>(
    base: &Base<'_, S>,
    shares: Vec<Share>,
    touched: &[Address],
    created: Vec<(B256, Bytecode)>,
) -> Result<StateChanges, ExecutionError> {
    // The largest share's map becomes the block's (no entry is moved twice); a share holds
    // the pre-block change of each account it has, so pre-block changes go in only where no
    // share has the account.
    let mut shares = shares;
    let largest = (0..shares.len()).max_by_key(|&i| shares[i].len());
    let mut accounts = largest.map(|i| shares.swap_remove(i)).unwrap_or_default();
    let others: usize = shares.iter().map(|share| share.len()).sum();
    // Not `touched.len()` more: nearly every transaction touches a contract it calls, so the
    // list repeats a few accounts that are mostly here already, and reserving for it doubled
    // (rehashed and copied) the block's map for nothing.
    accounts.reserve(others + base.changes.accounts.len());
    for share in shares {
        accounts.extend(share);
    }
    for (address, change) in &base.changes.accounts {
        accounts.entry(*address).or_insert_with(|| change.clone());
    }
    let mut changes = StateChanges { accounts, contracts: base.changes.contracts.clone() };
    for address in touched {
        listed_change(&mut changes.accounts, base, *address)?;
    }
    for (hash, code) in created {
        changes.contracts.entry(hash).or_insert(code);
    }
    Ok(changes)
}

/// The change of `address` in `changes`, created from the pre-block change or, if the
/// pre-block system calls did not change it, the account as it was (an account written only
/// in its storage, or touched without a change, is the one the transactions read).
fn listed_change<'c, S: Storage>(
    changes: &'c mut AddressMap<AccountChange>,
    base: &Base<'_, S>,
    address: Address,
) -> Result<&'c mut AccountChange, ExecutionError> {
    Ok(match changes.entry(address) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => entry.insert(match base.changes.accounts.get(&address) {
            Some(change) => change.clone(),
            None => AccountChange { info: base.basic(address)?, ..Default::default() },
        }),
    })
}

/// A transaction's entry is still an estimate after every transaction became final.
fn left_estimate(tx: TxIdx) -> ExecutionError {
    ExecutionError::Internal(format!(
        "transaction {tx} left an estimate in the multi-version store"
    ))
}
