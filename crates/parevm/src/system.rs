//! The fork rules around a block's transactions: system calls before and after them, and
//! the balance credits (block and uncle rewards, withdrawals) after them.

use alloy_eips::eip2935::HISTORY_STORAGE_ADDRESS;
use alloy_eips::eip4788::BEACON_ROOTS_ADDRESS;
use alloy_eips::eip7002::WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS;
use alloy_eips::eip7251::CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS;
use alloy_primitives::{Address, Bytes, U256};
use revm::context::{BlockEnv, CfgEnv, Context, Journal, TxEnv};
use revm::handler::MainnetEvm;
use revm::primitives::hardfork::SpecId;
use revm::{Database, ExecuteEvm, MainBuilder, SystemCallEvm};

use crate::block::base_block_reward;
use crate::block_db::BlockDb;
use crate::{BlockInput, ExecutionError, StateChanges, Storage, StorageError};

/// The revm instance the sequential path (and the parallel path's pre- and post-block phase)
/// runs on.
pub(crate) type BlockEvm<'a, S> =
    MainnetEvm<Context<BlockEnv, TxEnv, CfgEnv, BlockDb<'a, S>, Journal<BlockDb<'a, S>>, ()>>;

/// A revm instance over `storage` with `changes` applied, for the block's system calls and
/// for sequential execution.
pub(crate) fn block_evm<'a, S: Storage>(
    storage: &'a S,
    block: &BlockInput,
    changes: StateChanges,
) -> BlockEvm<'a, S> {
    Context::<BlockEnv, TxEnv, CfgEnv, BlockDb<'a, S>, Journal<BlockDb<'a, S>>, ()>::new(
        BlockDb::with_changes(storage, changes),
        block.spec,
    )
    .with_cfg(block.cfg())
    .with_block(block.env.clone())
    .build_mainnet()
}

/// Runs one system call and commits only the system contract's own state, as clients do.
/// A contract without code is skipped (EIP-4788: the call "fails silently").
fn system_call<S: Storage>(
    evm: &mut BlockEvm<'_, S>,
    address: Address,
    data: Bytes,
) -> Result<(), ExecutionError> {
    let has_code = evm
        .ctx
        .journaled_state
        .database
        .basic(address)?
        .is_some_and(|info| !info.is_empty_code_hash());
    if !has_code {
        return Ok(());
    }
    let result = evm.system_call_one(address, data);
    let mut state = evm.finalize();
    let result = result.map_err(|e| match e {
        revm::context::result::EVMError::Database(e) => ExecutionError::Storage(e),
        other => ExecutionError::SystemCall { address, message: other.to_string() },
    })?;
    if !result.is_success() {
        return Err(ExecutionError::SystemCall { address, message: format!("{result:?}") });
    }
    state.retain(|a, _| *a == address);
    evm.ctx.journaled_state.database.changes.commit_tx(state);
    Ok(())
}

/// System calls at the start of the block: EIP-4788 beacon roots (Cancun) and EIP-2935
/// block-hash history (Prague).
pub(crate) fn pre_block<S: Storage>(
    evm: &mut BlockEvm<'_, S>,
    block: &BlockInput,
) -> Result<(), ExecutionError> {
    if block.spec.is_enabled_in(SpecId::CANCUN) {
        if let Some(root) = block.parent_beacon_block_root {
            system_call(evm, BEACON_ROOTS_ADDRESS, Bytes::copy_from_slice(root.as_slice()))?;
        }
    }
    if block.spec.is_enabled_in(SpecId::PRAGUE) && block.env.number > U256::ZERO {
        system_call(
            evm,
            HISTORY_STORAGE_ADDRESS,
            Bytes::copy_from_slice(block.parent_hash.as_slice()),
        )?;
    }
    Ok(())
}

/// System calls after the transactions: the EIP-7002 and EIP-7251 request queues (Prague).
pub(crate) fn post_block_calls<S: Storage>(
    evm: &mut BlockEvm<'_, S>,
    block: &BlockInput,
) -> Result<(), ExecutionError> {
    if block.spec.is_enabled_in(SpecId::PRAGUE) {
        system_call(evm, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, Bytes::new())?;
        system_call(evm, CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS, Bytes::new())?;
    }
    Ok(())
}

/// Credits block and uncle rewards (before the merge) and withdrawals (from Shanghai on).
pub(crate) fn post_block_balances<S: Storage>(
    changes: &mut StateChanges,
    storage: &S,
    block: &BlockInput,
) -> Result<(), StorageError> {
    let reward = if block.block_rewards { base_block_reward(block.spec) } else { U256::ZERO };
    if !reward.is_zero() {
        let uncles = block.ommers.len() + block.unknown_ommers;
        let beneficiary_reward = reward + reward / U256::from(32) * U256::from(uncles);
        changes.increment_balance(
            storage,
            block.env.beneficiary,
            beneficiary_reward,
            block.spec,
        )?;
        let number = block.env.number.saturating_to::<u64>();
        for ommer in &block.ommers {
            // (uncle number + 8 - block number) / 8 of the base reward.
            let eighths = (ommer.number + 8).saturating_sub(number);
            changes.increment_balance(
                storage,
                ommer.beneficiary,
                reward * U256::from(eighths) / U256::from(8),
                block.spec,
            )?;
        }
    }
    if block.spec.is_enabled_in(SpecId::SHANGHAI) {
        for withdrawal in &block.withdrawals {
            // Withdrawal amounts are in gwei.
            let wei = U256::from(withdrawal.amount) * U256::from(1_000_000_000u64);
            changes.increment_balance(storage, withdrawal.address, wei, block.spec)?;
        }
    }
    Ok(())
}
