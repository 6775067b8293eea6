//! parevm behind alloy-evm's block-executor interface: [`ParallelBlockExecutor`] is used
//! where a node uses [`EthBlockExecutor`], and executes the block's transactions with
//! Block-STM.
//!
//! Everything around the transactions is alloy-evm's own code, run by an
//! [`EthBlockExecutor`] inside: the pre-block system calls (EIP-2935, EIP-4788), the
//! post-block ones (EIP-7002, EIP-7251) and EIP-6110 deposits, block and uncle rewards,
//! withdrawals, the DAO fork, receipts and the block gas rule. Between them, Block-STM runs
//! the transactions on a read-only view of revm's [`State`] (the pre-block calls already
//! applied), keeps each transaction's revm state, and the states are committed to `State`
//! in block order through the inner executor's `commit_transaction`, exactly as sequential
//! execution commits them. `State` therefore holds the same transitions, and
//! `take_bundle()` gives the same `BundleState`, reverts included.
//!
//! The block runs sequentially (through the inner executor, so identically) where Block-STM
//! cannot be used as is: [`ExecutionMode::Auto`](crate::ExecutionMode::Auto) judges it too
//! small, the state carries an EIP-7928 block access list, Amsterdam's two-dimensional gas
//! is on, or a transaction is invalid (so the error is alloy-evm's). From the first
//! transaction whose kept state cannot be made exact ([`tx_state`]), the rest of the block
//! runs sequentially too.
//!
//! The per-transaction methods of [`BlockExecutor`] execute sequentially: a node that
//! builds a block transaction by transaction gets alloy-evm's behaviour unchanged.

mod state_view;
pub(crate) mod tx_state;

use alloy_consensus::{Transaction, TransactionEnvelope, TxReceipt};
use alloy_eips::Encodable2718;
use alloy_evm::block::{
    BlockExecutionError, BlockExecutionResult, BlockExecutor, ExecutableTx, ExecutableTxParts,
    GasOutput, StateDB,
};
use alloy_evm::eth::receipt_builder::ReceiptBuilder;
use alloy_evm::eth::spec::EthExecutorSpec;
use alloy_evm::eth::{EthBlockExecutionCtx, EthBlockExecutor, EthTxResult};
use alloy_evm::{Evm, FromRecoveredTx, FromTxWithEncoded, RecoveredTx};
use alloy_primitives::Log;
use revm::context::result::{HaltReason, ResultAndState};
use revm::context::{BlockEnv, TxEnv};
use revm::database::State;
use revm::inspector::NoOpInspector;
use revm::primitives::hardfork::SpecId;
use revm::DatabaseRef;

use self::state_view::StateView;
use self::tx_state::exact_state;
use crate::{parallel, BlockInput, ExecutionError, Executor};

/// The database of an EVM the parallel executor can run: revm's [`State`] (owned or
/// borrowed, as reth passes it) over a database that worker threads can read at once.
pub trait BlockState {
    /// The database under the state.
    type Database: DatabaseRef + Sync;

    /// The state.
    fn block_state(&self) -> &State<Self::Database>;
}

impl<DB: DatabaseRef + Sync> BlockState for State<DB> {
    type Database = DB;

    fn block_state(&self) -> &State<DB> {
        self
    }
}

impl<DB: DatabaseRef + Sync> BlockState for &mut State<DB> {
    type Database = DB;

    fn block_state(&self) -> &State<DB> {
        self
    }
}

/// An alloy-evm [`BlockExecutor`] that executes a block's transactions with Block-STM on
/// an [`Executor`]'s threads; a drop-in for [`EthBlockExecutor`] with the same inputs and
/// outputs (see the [module documentation](self)).
///
/// The EVM must be an Ethereum EVM without an inspector (`EthEvm<DB, NoOpInspector, _>` as
/// `EthEvmFactory::create_evm` makes it) with mainnet precompiles: the worker threads run
/// revm's mainnet handler and precompiles for the EVM's spec. Use [`EthBlockExecutor`] to
/// trace, or with custom precompiles.
pub struct ParallelBlockExecutor<'a, E, Spec, R: ReceiptBuilder> {
    inner: EthBlockExecutor<'a, E, Spec, R>,
    engine: &'a Executor,
}

impl<E, Spec, R: ReceiptBuilder> std::fmt::Debug for ParallelBlockExecutor<'_, E, Spec, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelBlockExecutor")
            .field("engine", self.engine)
            .field("transactions", &self.inner.receipts.len())
            .finish_non_exhaustive()
    }
}

impl<'a, E, Spec: Clone, R: ReceiptBuilder> ParallelBlockExecutor<'a, E, Spec, R> {
    /// An executor for one block on `evm` (its state, environment and configuration), with
    /// `ctx`, `spec` and `receipt_builder` as [`EthBlockExecutor::new`] takes them, running
    /// Block-STM as `engine`'s [`Config`](crate::Config) says.
    ///
    /// Fails with [`ExecutionError::Unsupported`] if the configuration has a compliance
    /// hook: this interface does not apply one yet.
    pub fn new(
        engine: &'a Executor,
        evm: E,
        ctx: EthBlockExecutionCtx<'a>,
        spec: Spec,
        receipt_builder: R,
    ) -> Result<Self, ExecutionError> {
        if engine.config().compliance.is_some() {
            return Err(ExecutionError::Unsupported(
                "a compliance hook through the alloy-evm executor".into(),
            ));
        }
        Ok(Self { inner: EthBlockExecutor::new(evm, ctx, spec, receipt_builder), engine })
    }

    /// The alloy-evm executor inside, which does everything but the parallel transactions.
    pub fn into_inner(self) -> EthBlockExecutor<'a, E, Spec, R> {
        self.inner
    }
}

impl<E, Spec, R> BlockExecutor for ParallelBlockExecutor<'_, E, Spec, R>
where
    E: Evm<
        DB: StateDB + BlockState<Database: DatabaseRef<Error: Send + Sync + 'static>>,
        Tx = TxEnv,
        Spec = SpecId,
        BlockEnv = BlockEnv,
        HaltReason = HaltReason,
        Inspector = NoOpInspector,
    >,
    TxEnv: FromRecoveredTx<R::Transaction> + FromTxWithEncoded<R::Transaction>,
    Spec: EthExecutorSpec,
    R: ReceiptBuilder<Transaction: Transaction + Encodable2718, Receipt: TxReceipt<Log = Log>>,
    <R::Transaction as TransactionEnvelope>::TxType: Send + 'static,
{
    type Transaction = R::Transaction;
    type Receipt = R::Receipt;
    type Evm = E;
    type Result = EthTxResult<HaltReason, <R::Transaction as TransactionEnvelope>::TxType>;

    fn apply_pre_execution_changes(&mut self) -> Result<(), BlockExecutionError> {
        self.inner.apply_pre_execution_changes()
    }

    fn execute_transaction_without_commit(
        &mut self,
        tx: impl ExecutableTx<Self>,
    ) -> Result<Self::Result, BlockExecutionError> {
        self.inner.execute_transaction_without_commit(tx)
    }

    fn commit_transaction(&mut self, output: Self::Result) -> GasOutput {
        self.inner.commit_transaction(output)
    }

    fn finish(self) -> Result<(E, BlockExecutionResult<R::Receipt>), BlockExecutionError> {
        self.inner.finish()
    }

    fn evm_mut(&mut self) -> &mut E {
        self.inner.evm_mut()
    }

    fn evm(&self) -> &E {
        self.inner.evm()
    }

    fn receipts(&self) -> &[R::Receipt] {
        self.inner.receipts()
    }

    /// Pre-block changes, the transactions with Block-STM (committed in block order), then
    /// post-block changes: the same result as [`EthBlockExecutor::execute_block`].
    fn execute_block(
        self,
        transactions: impl IntoIterator<Item = impl ExecutableTx<Self>>,
    ) -> Result<BlockExecutionResult<R::Receipt>, BlockExecutionError> {
        self.execute_block_with_report(transactions).map(|(result, _)| result)
    }
}

/// How [`ParallelBlockExecutor::execute_block_with_report`] executed a block's
/// transactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionReport {
    /// Transactions executed by Block-STM and committed from its states.
    pub parallel: usize,
    /// Transactions executed sequentially by the inner executor.
    pub sequential: usize,
}

impl<E, Spec, R> ParallelBlockExecutor<'_, E, Spec, R>
where
    E: Evm<
        DB: StateDB + BlockState<Database: DatabaseRef<Error: Send + Sync + 'static>>,
        Tx = TxEnv,
        Spec = SpecId,
        BlockEnv = BlockEnv,
        HaltReason = HaltReason,
        Inspector = NoOpInspector,
    >,
    TxEnv: FromRecoveredTx<R::Transaction> + FromTxWithEncoded<R::Transaction>,
    Spec: EthExecutorSpec,
    R: ReceiptBuilder<Transaction: Transaction + Encodable2718, Receipt: TxReceipt<Log = Log>>,
    <R::Transaction as TransactionEnvelope>::TxType: Send + 'static,
{
    /// [`BlockExecutor::execute_block`], also saying how many transactions Block-STM ran.
    pub fn execute_block_with_report(
        mut self,
        transactions: impl IntoIterator<Item = impl ExecutableTx<Self>>,
    ) -> Result<(BlockExecutionResult<R::Receipt>, ExecutionReport), BlockExecutionError> {
        self.inner.apply_pre_execution_changes()?;
        let parts: Vec<_> = transactions.into_iter().map(ExecutableTxParts::into_parts).collect();
        let runs_parallel = {
            let config = self.engine.config();
            self.state_allows_parallel()
                && config.runs_parallel_on(parts.len(), || parts.iter().map(|(env, _)| env))
        };
        let (mut parallel, mut sequential) = (0, parts.len());
        if runs_parallel {
            let (envs, recovered): (Vec<TxEnv>, Vec<_>) = parts.into_iter().unzip();
            let evm = self.inner.evm();
            let cfg = evm.cfg_env();
            let block = BlockInput::new(cfg.spec, cfg.chain_id, evm.block().clone(), envs);
            parallel = self.commit_parallel(&block, &recovered)?;
            sequential -= parallel;
            for (env, tx) in block.transactions.into_iter().zip(recovered).skip(parallel) {
                self.inner.execute_transaction((env, tx))?;
            }
        } else {
            for part in parts {
                self.inner.execute_transaction(part)?;
            }
        }
        let result = self.inner.apply_post_execution_changes()?;
        Ok((result, ExecutionReport { parallel, sequential }))
    }

    /// Whether Block-STM can reproduce execution on this state and configuration exactly:
    /// not with an EIP-7928 block access list or Amsterdam's two-dimensional gas.
    fn state_allows_parallel(&self) -> bool {
        let state = self.inner.evm().db().block_state();
        let bal = state.bal_state.bal.is_some() || state.bal_state.bal_builder.is_some();
        !bal && !self.inner.evm().cfg_env().enable_amsterdam_eip8037
    }

    /// Executes `block`'s transactions with Block-STM and commits them in block order;
    /// returns how many were committed (the rest run sequentially).
    fn commit_parallel<T: RecoveredTx<R::Transaction>>(
        &mut self,
        block: &BlockInput,
        recovered: &[T],
    ) -> Result<usize, BlockExecutionError> {
        let run = {
            let evm = self.inner.evm();
            let view = StateView::new(evm.db().block_state());
            parallel::execute_transactions(
                &view,
                block,
                evm.cfg_env().clone(),
                self.engine.workers(),
            )
        };
        let (outcomes, states) = match run {
            Ok(Some(done)) => done,
            Ok(None) => return Ok(0),
            Err(error) => return sequential_or_error(error),
        };
        if outcomes.len() != recovered.len() || states.len() != recovered.len() {
            return Err(BlockExecutionError::msg(format!(
                "parevm: {} outcomes and {} states for {} transactions",
                outcomes.len(),
                states.len(),
                recovered.len()
            )));
        }
        let (beneficiary, spec) = (block.env.beneficiary, block.spec);
        for (index, ((outcome, kept), tx)) in
            outcomes.into_iter().zip(states).zip(recovered).enumerate()
        {
            let state = self.inner.evm().db().block_state();
            let exact = exact_state(
                kept,
                beneficiary,
                spec,
                |address| state.basic_ref(address),
                |address| state.cache.accounts.contains_key(address),
            )
            .map_err(BlockExecutionError::other)?;
            let Ok(state) = exact else { return Ok(index) };
            let tx = tx.tx();
            self.inner.commit_transaction(EthTxResult {
                result: ResultAndState { result: outcome.result, state },
                blob_gas_used: tx.blob_gas_used().unwrap_or_default(),
                tx_type: tx.tx_type(),
            });
        }
        Ok(recovered.len())
    }
}

/// What to do when Block-STM stops with `error`: a transaction that is invalid, or does not
/// fit in the block, makes the block invalid, and the sequential run reports it in
/// alloy-evm's words; anything else (the database failed, an invariant broke) is returned.
fn sequential_or_error(error: ExecutionError) -> Result<usize, BlockExecutionError> {
    match error {
        ExecutionError::InvalidTransaction { .. }
        | ExecutionError::BlockGasLimitExceeded { .. }
        | ExecutionError::InvalidHeader(_)
        | ExecutionError::Evm { .. } => Ok(0),
        other => Err(BlockExecutionError::other(other)),
    }
}
