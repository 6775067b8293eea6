//! The sequential executor: plain revm, one transaction after another. It is the reference
//! every parallel result is compared against, so it stays as fast as revm itself.

use revm::context::result::EVMError;
use revm::context::ContextSetters;
use revm::handler::Handler;
use revm::ExecuteEvm;
use tracing::debug_span;

use crate::compliance::gate::{self, CheckedHandler, Gating};
use crate::compliance::Ledger;
use crate::output::{BlockOutput, TxOutcome};
use crate::system::{block_evm, post_block_balances, post_block_calls, pre_block};
use crate::{BlockInput, Compliance, ExecutionError, StateChanges, Storage};

/// Executes `block` on `storage` sequentially, with the compliance hook `compliance` if
/// given.
pub(crate) fn execute_sequential_with<S: Storage>(
    storage: &S,
    block: &BlockInput,
    compliance: Option<&Compliance>,
) -> Result<BlockOutput, ExecutionError> {
    let _span = debug_span!("execute_sequential", txs = block.transactions.len()).entered();
    let mut evm = pre_block(block_evm(storage, block, StateChanges::default()), block)?;

    if let Some(compliance) = compliance {
        evm.ctx.journaled_state.database.gating = Gating::new(compliance);
    }
    let mut ledger = Ledger::of(compliance);
    let mut transactions = Vec::with_capacity(block.transactions.len());
    let mut cumulative_gas_used = 0u64;
    for (index, tx) in block.transactions.iter().enumerate() {
        check_gas_available(block, index, tx.gas_limit, cumulative_gas_used)?;
        evm.ctx.set_tx(tx.clone());
        let result = CheckedHandler::new().run(&mut evm);
        let state = evm.finalize();
        let rejection = evm.ctx.journaled_state.database.gating.take_rejection();
        let (result, reverted_by) =
            gate::classify(result, rejection).map_err(|e| evm_error(index, e))?;
        let Some(result) = ledger.decide(index, tx.caller, tx.nonce, result)? else { continue };
        if let Some(rejection) = reverted_by {
            ledger.note_reverted(index, rejection);
        }
        evm.ctx.journaled_state.database.changes.commit_tx(state);
        cumulative_gas_used += result.tx_gas_used();
        transactions.push(TxOutcome { index, tx_type: tx.tx_type, result, cumulative_gas_used });
    }
    evm.ctx.journaled_state.database.gating = Gating::default();

    let (mut evm, requests) = post_block_calls(evm, block, &transactions)?;
    let mut state = std::mem::take(&mut evm.ctx.journaled_state.database.changes);
    post_block_balances(&mut state, storage, block)?;
    let (excluded, rejected) = ledger.into_outcomes();
    let gas_used = cumulative_gas_used;
    Ok(BlockOutput { transactions, excluded, rejected, state, requests, gas_used })
}

/// The block-level gas rule: a transaction may only start if its gas limit fits in what the
/// block has left.
pub(crate) fn check_gas_available(
    block: &BlockInput,
    index: usize,
    gas_limit: u64,
    used_before: u64,
) -> Result<(), ExecutionError> {
    let available = block.env.gas_limit.saturating_sub(used_before);
    if gas_limit > available {
        return Err(ExecutionError::BlockGasLimitExceeded { index, gas_limit, available });
    }
    Ok(())
}

/// Maps revm's error for transaction `index` to the engine's.
pub(crate) fn evm_error(index: usize, error: EVMError<crate::StorageError>) -> ExecutionError {
    match error {
        EVMError::Transaction(reason) => ExecutionError::InvalidTransaction { index, reason },
        EVMError::Database(e) => ExecutionError::Storage(e),
        EVMError::Header(e) => ExecutionError::InvalidHeader(e.to_string()),
        other => ExecutionError::Evm { index, message: other.to_string() },
    }
}
