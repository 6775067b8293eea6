//! The fork rules around a block's transactions: system calls before and after them, and
//! the balance credits (block and uncle rewards, withdrawals) after them.

use alloy_eips::eip2935::HISTORY_STORAGE_ADDRESS;
use alloy_eips::eip4788::BEACON_ROOTS_ADDRESS;
use alloy_eips::eip7002::{WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, WITHDRAWAL_REQUEST_TYPE};
use alloy_eips::eip7251::{CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS, CONSOLIDATION_REQUEST_TYPE};
use alloy_eips::eip7685::Requests;
use alloy_evm::block::system_calls::SystemCaller;
use alloy_evm::block::{BlockExecutionError, BlockValidationError};
use alloy_evm::eth::{eip6110, EthEvm};
use alloy_evm::Evm;
use alloy_primitives::{Address, U256};
use revm::context::{BlockEnv, CfgEnv, Context, Journal, TxEnv};
use revm::handler::{EthPrecompiles, MainnetEvm};
use revm::inspector::NoOpInspector;
use revm::primitives::hardfork::SpecId;
use revm::MainBuilder;

use alloy_evm::block::calc;
use alloy_evm::block::state_changes::post_block_withdrawals_balance_increments;
use alloy_evm::eth::dao_fork::{DAO_HARDFORK_ACCOUNTS, DAO_HARDFORK_BENEFICIARY};
use alloy_hardforks::EthereumHardfork;

use crate::block::ForksUpTo;
use crate::block_db::BlockDb;
use crate::output::TxOutcome;
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

/// Whether [`pre_block`] may make a system call for `block` (a caller without another use
/// for a revm instance need not build one otherwise): EIP-4788 from Cancun on, EIP-2935
/// from Prague on.
pub(crate) fn has_pre_block_calls(block: &BlockInput) -> bool {
    block.block_rules && block.spec.is_enabled_in(SpecId::CANCUN)
}

/// Whether [`post_block_calls`] makes system calls for `block`: EIP-7002 and 7251 from
/// Prague on.
pub(crate) fn has_post_block_calls(block: &BlockInput) -> bool {
    block.block_rules && block.spec.is_enabled_in(SpecId::PRAGUE)
}

/// alloy-evm's view of the block's revm instance, for its [`SystemCaller`].
type SystemEvm<'a, S> = EthEvm<BlockDb<'a, S>, NoOpInspector, EthPrecompiles>;

/// The block's revm instance as alloy-evm's (the same instance; alloy-evm wants an
/// inspector type, revm's handler none).
fn system_evm<S: Storage>(evm: BlockEvm<'_, S>) -> SystemEvm<'_, S> {
    EthEvm::new(evm.with_inspector(NoOpInspector), false)
}

/// The block's revm instance back from alloy-evm.
fn block_evm_of<S: Storage>(evm: SystemEvm<'_, S>) -> BlockEvm<'_, S> {
    evm.into_inner().with_inspector(())
}

/// The system calls at the start of the block, made by alloy-evm's [`SystemCaller`]:
/// EIP-2935 block-hash history (Prague) and EIP-4788 beacon roots (Cancun; a Cancun block
/// without a root is an invalid header, the genesis block makes no call).
pub(crate) fn pre_block<'a, S: Storage>(
    evm: BlockEvm<'a, S>,
    block: &BlockInput,
) -> Result<BlockEvm<'a, S>, ExecutionError> {
    if !has_pre_block_calls(block) {
        return Ok(evm);
    }
    let mut evm = system_evm(evm);
    let mut caller = SystemCaller::new(ForksUpTo(block.spec));
    caller
        .apply_blockhashes_contract_call(block.parent_hash, &mut evm)
        .map_err(|e| system_call_error(&mut evm, HISTORY_STORAGE_ADDRESS, e))?;
    caller
        .apply_beacon_root_contract_call(block.parent_beacon_block_root, &mut evm)
        .map_err(|e| system_call_error(&mut evm, BEACON_ROOTS_ADDRESS, e))?;
    Ok(block_evm_of(evm))
}

/// The block's EIP-7685 requests and the system calls after the transactions (Prague):
/// EIP-6110 deposits from the deposit contract's events in `transactions`, then the
/// EIP-7002 and EIP-7251 request queues, called by alloy-evm's [`SystemCaller`].
pub(crate) fn post_block_calls<'a, S: Storage>(
    evm: BlockEvm<'a, S>,
    block: &BlockInput,
    transactions: &[TxOutcome],
) -> Result<(BlockEvm<'a, S>, Requests), ExecutionError> {
    let mut requests = Requests::default();
    if !has_post_block_calls(block) {
        return Ok((evm, requests));
    }
    let mut deposits = Vec::new();
    let logs = transactions.iter().flat_map(TxOutcome::logs);
    eip6110::accumulate_deposits_from_logs(block.deposit_contract, logs, &mut deposits)
        .map_err(|e| ExecutionError::Requests(e.to_string()))?;
    if !deposits.is_empty() {
        requests.push_request_with_type(eip6110::DEPOSIT_REQUEST_TYPE, deposits);
    }
    let mut evm = system_evm(evm);
    let mut caller = SystemCaller::new(ForksUpTo(block.spec));
    let withdrawals = caller
        .apply_withdrawal_requests_contract_call(&mut evm)
        .map_err(|e| system_call_error(&mut evm, WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, e))?;
    if !withdrawals.is_empty() {
        requests.push_request_with_type(WITHDRAWAL_REQUEST_TYPE, withdrawals);
    }
    let consolidations = caller
        .apply_consolidation_requests_contract_call(&mut evm)
        .map_err(|e| system_call_error(&mut evm, CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS, e))?;
    if !consolidations.is_empty() {
        requests.push_request_with_type(CONSOLIDATION_REQUEST_TYPE, consolidations);
    }
    Ok((block_evm_of(evm), requests))
}

/// The engine's error for alloy-evm's failure of the system call to `address`. alloy-evm
/// passes revm's error on as text; a storage read that failed is taken back from the
/// database, so that it stays an [`ExecutionError::Storage`].
fn system_call_error<S: Storage>(
    evm: &mut SystemEvm<'_, S>,
    address: Address,
    error: BlockExecutionError,
) -> ExecutionError {
    if let Some(failed) = evm.db_mut().failed_read.take() {
        return ExecutionError::Storage(failed);
    }
    match error {
        BlockExecutionError::Validation(
            e @ (BlockValidationError::MissingParentBeaconBlockRoot
            | BlockValidationError::CancunGenesisParentBeaconBlockRootNotZero { .. }),
        ) => ExecutionError::InvalidHeader(e.to_string()),
        other => ExecutionError::SystemCall { address, message: other.to_string() },
    }
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
    let base = if block.block_rules { calc::base_block_reward(forks, number) } else { None };
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
    use crate::{ExecutionMode, InMemoryStorage};
    use alloy_eips::{eip2935::HISTORY_STORAGE_CODE, eip4788::BEACON_ROOTS_CODE};
    use alloy_primitives::B256;
    use revm::context::BlockEnv;

    fn block(spec: SpecId, number: u64, beacon_root: Option<B256>) -> BlockInput {
        let env = BlockEnv {
            number: U256::from(number),
            timestamp: U256::from(12),
            ..Default::default()
        };
        let mut block =
            BlockInput { block_rules: true, ..BlockInput::new(spec, 1, env, Vec::new()) };
        block.parent_beacon_block_root = beacon_root;
        block.parent_hash = B256::repeat_byte(0x99);
        block
    }

    /// The EIP-4788 and 2935 contracts, with their mainnet code.
    fn storage() -> InMemoryStorage {
        let mut storage = InMemoryStorage::new();
        storage.insert_account(BEACON_ROOTS_ADDRESS, U256::ZERO, 1, BEACON_ROOTS_CODE.clone(), []);
        storage.insert_account(
            HISTORY_STORAGE_ADDRESS,
            U256::ZERO,
            1,
            HISTORY_STORAGE_CODE.clone(),
            [],
        );
        storage
    }

    fn execute(block: &BlockInput) -> Result<crate::BlockOutput, ExecutionError> {
        let storage = storage();
        let run = |mode| {
            let config = crate::Config::default().with_mode(mode);
            crate::Executor::new(config)?.execute(&storage, block).map(|e| e.output)
        };
        let sequential = run(ExecutionMode::Sequential);
        match (&sequential, run(ExecutionMode::Parallel)) {
            (Ok(s), Ok(p)) => assert_eq!(*s, p),
            (s, p) => assert_eq!(format!("{s:?}"), format!("{p:?}")),
        }
        sequential
    }

    fn written(output: &crate::BlockOutput, address: Address) -> usize {
        output.state.accounts.get(&address).map_or(0, |a| a.storage.len())
    }

    #[test]
    fn system_calls_follow_alloy_evms_rules() {
        let root = Some(B256::repeat_byte(1));
        // Before Cancun: none, whatever the header carries.
        let output = execute(&block(SpecId::SHANGHAI, 5, root)).unwrap();
        assert_eq!(written(&output, BEACON_ROOTS_ADDRESS), 0);
        // Cancun: the root and its timestamp are stored; the history contract is not called.
        let output = execute(&block(SpecId::CANCUN, 5, root)).unwrap();
        assert_eq!(written(&output, BEACON_ROOTS_ADDRESS), 2);
        assert_eq!(written(&output, HISTORY_STORAGE_ADDRESS), 0);
        // Prague: the parent hash is stored too.
        let output = execute(&block(SpecId::PRAGUE, 5, root)).unwrap();
        assert_eq!(written(&output, BEACON_ROOTS_ADDRESS), 2);
        // The parent of block 5 is kept at slot (5 - 1) mod 8191.
        let slot = U256::from(4);
        let parent = output.state.storage(&HISTORY_STORAGE_ADDRESS, &slot);
        assert_eq!(parent, Some(U256::from_be_bytes(B256::repeat_byte(0x99).0)));
        // A Cancun header without a root is invalid.
        let error = execute(&block(SpecId::CANCUN, 5, None)).unwrap_err();
        assert!(matches!(error, ExecutionError::InvalidHeader(_)), "{error}");
        // The genesis block makes no call, and its root must be zero.
        let output = execute(&block(SpecId::PRAGUE, 0, Some(B256::ZERO))).unwrap();
        assert_eq!(written(&output, BEACON_ROOTS_ADDRESS), 0);
        assert_eq!(written(&output, HISTORY_STORAGE_ADDRESS), 0);
        let error = execute(&block(SpecId::CANCUN, 0, root)).unwrap_err();
        assert!(matches!(error, ExecutionError::InvalidHeader(_)), "{error}");
        // A state test (no block-level rules) makes none.
        let state_test = BlockInput { block_rules: false, ..block(SpecId::PRAGUE, 5, root) };
        let output = execute(&state_test).unwrap();
        assert!(output.state.accounts.is_empty(), "{:?}", output.state);
    }
}
