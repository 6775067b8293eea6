//! The sequential executor: plain revm, one transaction after another. It is the reference
//! every parallel result is compared against, so it stays as fast as revm itself.

use std::marker::PhantomData;

use revm::context::result::{EVMError, HaltReason};
use revm::context::ContextSetters;
use revm::handler::{EvmTr, FrameResult, FrameTr, Handler, MainnetHandler};
use revm::ExecuteEvm;
use tracing::debug_span;

use crate::compliance::gate::{self, Gate};
use crate::compliance::{Ledger, TxFailure};
use crate::output::{BlockOutput, TxOutcome};
use crate::system::{block_evm, post_block_balances, post_block_calls, pre_block, BlockEvm};
use crate::{BlockInput, Compliance, ExecutionError, StateChanges, Storage, StorageError};

/// Executes `block` on `storage` sequentially.
pub fn execute_sequential<S: Storage>(
    storage: &S,
    block: &BlockInput,
) -> Result<BlockOutput, ExecutionError> {
    execute_sequential_with(storage, block, None)
}

/// Executes `block` on `storage` sequentially, with the compliance hook `compliance` if
/// given.
pub fn execute_sequential_with<S: Storage>(
    storage: &S,
    block: &BlockInput,
    compliance: Option<&Compliance>,
) -> Result<BlockOutput, ExecutionError> {
    let _span = debug_span!("execute_sequential", txs = block.transactions.len()).entered();
    let mut run = SequentialRun::start(storage, block, compliance)?;
    run.run(block.transactions.len())?;
    run.finish()
}

/// A block being executed sequentially: the pre-block system calls are applied, then
/// transactions in order ([`SequentialRun::run`]), then either the rest of the block
/// ([`SequentialRun::finish`]) or a hand-over of what is done so far to the parallel
/// executor ([`SequentialRun::into_prefix`]).
pub(crate) struct SequentialRun<'a, S: Storage> {
    storage: &'a S,
    block: &'a BlockInput,
    gated: bool,
    evm: BlockEvm<'a, S>,
    /// The transactions `0..next` are executed.
    next: usize,
    ledger: Ledger,
    transactions: Vec<TxOutcome>,
    cumulative_gas_used: u64,
}

/// The part of a block executed sequentially, for the parallel executor to go on from.
pub(crate) struct Prefix {
    /// The first transaction not executed.
    pub(crate) next: usize,
    /// The state after the pre-block system calls and the transactions `0..next`.
    pub(crate) changes: StateChanges,
    pub(crate) ledger: Ledger,
    pub(crate) transactions: Vec<TxOutcome>,
    pub(crate) gas_used: u64,
}

impl<'a, S: Storage> SequentialRun<'a, S> {
    /// Applies the pre-block system calls.
    pub(crate) fn start(
        storage: &'a S,
        block: &'a BlockInput,
        compliance: Option<&'a Compliance>,
    ) -> Result<Self, ExecutionError> {
        let mut evm = block_evm(storage, block, StateChanges::default());
        pre_block(&mut evm, block)?;
        if let Some(compliance) = compliance {
            evm.ctx.journaled_state.database.gate = Some(Gate::new(&*compliance.hook));
            gate::install(&mut evm.instruction);
        }
        Ok(Self {
            storage,
            block,
            gated: compliance.is_some(),
            evm,
            next: 0,
            ledger: Ledger::new(compliance.map(|c| c.mode).unwrap_or_default()),
            transactions: Vec::with_capacity(block.transactions.len()),
            cumulative_gas_used: 0,
        })
    }

    /// Executes the transactions up to (not including) `end`.
    pub(crate) fn run(&mut self, end: usize) -> Result<(), ExecutionError> {
        let end = end.min(self.block.transactions.len());
        let evm = &mut self.evm;
        for index in self.next..end {
            let tx = &self.block.transactions[index];
            check_gas_available(self.block, index, tx.gas_limit, self.cumulative_gas_used)?;
            let result = if self.gated {
                evm.ctx.set_tx(tx.clone());
                GatedHandler(PhantomData).run(evm)
            } else {
                evm.transact_one(tx.clone())
            };
            let state = evm.finalize();
            let rejection =
                evm.ctx.journaled_state.database.gate.as_mut().and_then(Gate::take_rejection);
            let result = match (result, rejection) {
                (_, Some(rejection)) => Err(TxFailure::Rejected(rejection)),
                (Ok(result), None) => Ok(result),
                (Err(EVMError::Transaction(reason)), None) => Err(TxFailure::Invalid(reason)),
                (Err(e), None) => return Err(evm_error(index, e)),
            };
            self.next = index + 1;
            let Some(result) = self.ledger.decide(index, tx.caller, result)? else { continue };
            evm.ctx.journaled_state.database.changes.commit_tx(state);
            self.cumulative_gas_used += result.tx_gas_used();
            self.transactions.push(TxOutcome {
                index,
                tx_type: tx.tx_type,
                result,
                cumulative_gas_used: self.cumulative_gas_used,
            });
        }
        Ok(())
    }

    /// Executes the rest of the block and the post-block system calls, rewards and
    /// withdrawals.
    pub(crate) fn finish(mut self) -> Result<BlockOutput, ExecutionError> {
        self.run(self.block.transactions.len())?;
        let mut evm = self.evm;
        evm.ctx.journaled_state.database.gate = None;
        post_block_calls(&mut evm, self.block)?;
        let mut state = std::mem::take(&mut evm.ctx.journaled_state.database.changes);
        post_block_balances(&mut state, self.storage, self.block)?;
        Ok(BlockOutput {
            transactions: self.transactions,
            excluded: self.ledger.into_excluded(),
            state,
            gas_used: self.cumulative_gas_used,
        })
    }

    /// What is done so far, for the parallel executor to go on from.
    pub(crate) fn into_prefix(mut self) -> Prefix {
        Prefix {
            next: self.next,
            changes: std::mem::take(&mut self.evm.ctx.journaled_state.database.changes),
            ledger: self.ledger,
            transactions: self.transactions,
            gas_used: self.cumulative_gas_used,
        }
    }
}

/// revm's mainnet handler with the compliance check of the transaction's own call before
/// its first frame.
struct GatedHandler<'a, S: Storage>(PhantomData<BlockEvm<'a, S>>);

impl<'a, S: Storage> Handler for GatedHandler<'a, S> {
    type Evm = BlockEvm<'a, S>;
    type Error = EVMError<StorageError>;
    type HaltReason = HaltReason;

    fn run_exec_loop(
        &mut self,
        evm: &mut Self::Evm,
        first_frame_input: <<Self::Evm as EvmTr>::Frame as FrameTr>::FrameInit,
    ) -> Result<FrameResult, Self::Error> {
        gate::check_transaction(evm.ctx_mut())?;
        MainnetHandler::default().run_exec_loop(evm, first_frame_input)
    }
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
