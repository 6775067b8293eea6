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

use alloy_evm::block::calc;
use alloy_evm::block::state_changes::post_block_withdrawals_balance_increments;
use alloy_evm::eth::dao_fork::{DAO_HARDFORK_ACCOUNTS, DAO_HARDFORK_BENEFICIARY};
use alloy_hardforks::EthereumHardfork;

use crate::block::ForksUpTo;
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

/// The parent beacon block root the EIP-4788 call stores, if the block makes that call.
fn beacon_root_call(block: &BlockInput) -> Option<alloy_primitives::B256> {
    block.parent_beacon_block_root.filter(|_| block.spec.is_enabled_in(SpecId::CANCUN))
}

/// Whether the block makes the EIP-2935 block-hash history call.
fn history_call(block: &BlockInput) -> bool {
    block.spec.is_enabled_in(SpecId::PRAGUE) && block.env.number > U256::ZERO
}

/// Whether [`pre_block`] makes any system call for `block` (a caller without another use
/// for a revm instance need not build one otherwise).
pub(crate) fn has_pre_block_calls(block: &BlockInput) -> bool {
    beacon_root_call(block).is_some() || history_call(block)
}

/// Whether [`post_block_calls`] makes any system call for `block`.
pub(crate) fn has_post_block_calls(block: &BlockInput) -> bool {
    block.spec.is_enabled_in(SpecId::PRAGUE)
}

/// System calls at the start of the block: EIP-4788 beacon roots (Cancun) and EIP-2935
/// block-hash history (Prague).
pub(crate) fn pre_block<S: Storage>(
    evm: &mut BlockEvm<'_, S>,
    block: &BlockInput,
) -> Result<(), ExecutionError> {
    if let Some(root) = beacon_root_call(block) {
        system_call(evm, BEACON_ROOTS_ADDRESS, Bytes::copy_from_slice(root.as_slice()))?;
    }
    if history_call(block) {
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
    if has_post_block_calls(block) {
        system_call(evm, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, Bytes::new())?;
        system_call(evm, CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS, Bytes::new())?;
    }
    Ok(())
}

/// Ethereum mainnet's chain id.
const MAINNET_CHAIN_ID: u64 = 1;

/// Credits block and uncle rewards (before the merge) and withdrawals (from Shanghai on),
/// in the amounts alloy-evm's `calc` and withdrawal functions give, and applies the DAO
/// fork's state change at its mainnet block.
pub(crate) fn post_block_balances<S: Storage>(
    changes: &mut StateChanges,
    storage: &S,
    block: &BlockInput,
) -> Result<(), StorageError> {
    let forks = ForksUpTo(block.spec);
    let number = block.env.number.saturating_to::<u64>();
    let base = if block.block_rewards { calc::base_block_reward(forks, number) } else { None };
    let mut credits: Vec<(Address, u128)> = Vec::new();
    if let Some(base) = base.filter(|base| *base != 0) {
        // Uncles known only by hash still earn the beneficiary its 1/32.
        let uncles = block.ommers.len() + block.unknown_ommers;
        credits.push((block.env.beneficiary, calc::block_reward(base, uncles)));
        if number <= u64::MAX - 8 {
            for ommer in &block.ommers {
                // Out of range only in an invalid block: no older than 8 blocks (no reward),
                // none from the future.
                let ommer_number = ommer.number.clamp(number.saturating_sub(8), number);
                credits.push((ommer.beneficiary, calc::ommer_reward(base, number, ommer_number)));
            }
        }
    }
    // The DAO fork's irregular state change, on Ethereum mainnet: the DAO's accounts drained
    // into its refund contract (alloy-evm's list, before the credits as alloy-evm does it).
    if block.chain_id == MAINNET_CHAIN_ID
        && EthereumHardfork::Dao.mainnet_activation_block() == Some(number)
    {
        let mut drained = U256::ZERO;
        for address in DAO_HARDFORK_ACCOUNTS {
            drained += changes.drain_balance(storage, address)?;
        }
        credits.push((DAO_HARDFORK_BENEFICIARY, drained.saturating_to()));
    }
    let timestamp = block.env.timestamp.saturating_to::<u64>();
    // Withdrawals are summed per address (credits commute); iterated in address order.
    let mut withdrawals: Vec<_> =
        post_block_withdrawals_balance_increments(forks, timestamp, &block.withdrawals)
            .into_iter()
            .collect();
    withdrawals.sort_unstable();
    credits.extend(withdrawals);
    for (address, wei) in credits {
        changes.increment_balance(storage, address, U256::from(wei), block.spec)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;

    fn block(spec: SpecId, number: u64, beacon_root: Option<B256>) -> BlockInput {
        let env = BlockEnv { number: U256::from(number), ..Default::default() };
        let mut block = BlockInput::new(spec, 1, env, Vec::new());
        block.parent_beacon_block_root = beacon_root;
        block
    }

    #[test]
    fn system_calls_are_announced_exactly_for_the_forks_that_make_them() {
        let root = Some(B256::repeat_byte(1));
        // Before Cancun: none, whatever the header carries.
        assert!(!has_pre_block_calls(&block(SpecId::SHANGHAI, 5, root)));
        assert!(!has_post_block_calls(&block(SpecId::SHANGHAI, 5, root)));
        // Cancun: the beacon root call, if the header has a root; nothing after.
        assert!(has_pre_block_calls(&block(SpecId::CANCUN, 5, root)));
        assert!(!has_pre_block_calls(&block(SpecId::CANCUN, 5, None)));
        assert!(!has_post_block_calls(&block(SpecId::CANCUN, 5, root)));
        // Prague: the history call above the genesis block, and the request calls after.
        assert!(has_pre_block_calls(&block(SpecId::PRAGUE, 5, None)));
        assert!(!has_pre_block_calls(&block(SpecId::PRAGUE, 0, None)));
        assert!(has_post_block_calls(&block(SpecId::PRAGUE, 0, None)));
    }
}
