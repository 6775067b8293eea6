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
//!
//! With a compliance hook in the engine's [`Config`](crate::Config), Block-STM applies it as
//! [`Executor`] does, and the transactions that run sequentially run through it too
//! ([`gated`]): on a revm instance of the engine's over the EVM's state, since alloy-evm's
//! EVM cannot call the hook. In [`execute_block`](BlockExecutor::execute_block) the
//! [`ComplianceMode`](crate::ComplianceMode) applies as in [`Executor::execute`]: an
//! excluded transaction has no receipt and no state change
//! ([`ExecutionReport::excluded`] names it), and in `FailBlock` mode a rejection fails the
//! block with [`ExecutionError::ComplianceRejected`]. The per-transaction methods have no
//! block to exclude from: a rejected transaction is an error
//! ([`ExecutionError::ComplianceRejected`]; nothing is executed or committed), or, in
//! `Revert` mode, a failed result to commit.

mod gated;
mod state_view;
pub(crate) mod tx_state;

use alloy_consensus::{Transaction, TransactionEnvelope, TxReceipt};
use alloy_eips::Encodable2718;
use alloy_evm::block::{
    BlockExecutionError, BlockExecutionResult, BlockExecutor, BlockValidationError, ExecutableTx,
    ExecutableTxParts, GasOutput, StateDB,
};
use alloy_evm::eth::receipt_builder::ReceiptBuilder;
use alloy_evm::eth::spec::EthExecutorSpec;
use alloy_evm::eth::{EthBlockExecutionCtx, EthBlockExecutor, EthTxResult};
use alloy_evm::{Evm, FromRecoveredTx, FromTxWithEncoded, RecoveredTx};
use alloy_primitives::{Log, B256};
use revm::context::result::{EVMError, HaltReason, ResultAndState};
use revm::context::{BlockEnv, TxEnv};
use revm::context_interface::Cfg;
use revm::database::State;
use revm::inspector::NoOpInspector;
use revm::primitives::hardfork::SpecId;
use revm::DatabaseRef;

use self::gated::{GatedTx, Gating};
use self::state_view::StateView;
use self::tx_state::exact_state;
use crate::compliance::{Ledger, TxFailure};
use crate::parallel::KeptTransactions;
use crate::{parallel, BlockInput, Exclusion, ExecutionError, Executor, RejectedTx, StorageError};

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
    /// The compliance gate of the transactions run outside Block-STM, if the engine has a
    /// hook.
    gating: Option<Gating<'a>>,
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
    /// Block-STM and the compliance hook as `engine`'s [`Config`](crate::Config) says.
    pub fn new(
        engine: &'a Executor,
        evm: E,
        ctx: EthBlockExecutionCtx<'a>,
        spec: Spec,
        receipt_builder: R,
    ) -> Self {
        let gating = engine.config().compliance.as_ref().map(Gating::new);
        Self { inner: EthBlockExecutor::new(evm, ctx, spec, receipt_builder), engine, gating }
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

    /// alloy-evm's, or with a compliance hook the same through it (see the
    /// [module documentation](self)).
    fn execute_transaction_without_commit(
        &mut self,
        tx: impl ExecutableTx<Self>,
    ) -> Result<Self::Result, BlockExecutionError> {
        if self.gating.is_none() {
            return self.inner.execute_transaction_without_commit(tx);
        }
        let (env, tx) = tx.into_parts();
        let GatedTx { result, state, .. } = self.transact_gated(env, &tx)?;
        let tx = tx.tx();
        let result = match result {
            Ok(result) => result,
            Err(TxFailure::Invalid(reason)) => return Err(invalid(reason, tx.trie_hash())),
            Err(TxFailure::Rejected(rejection)) => {
                let index = self.inner.receipts.len();
                let error = ExecutionError::ComplianceRejected { index, rejection };
                return Err(BlockExecutionError::other(error));
            }
        };
        Ok(tx_result(tx, result, state))
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionReport {
    /// Transactions Block-STM executed and decided (committed from its states, or excluded).
    pub parallel: usize,
    /// Transactions executed sequentially (by the inner executor, or through the compliance
    /// hook).
    pub sequential: usize,
    /// The transactions the compliance hook excluded ([`crate::ComplianceMode::Exclude`]):
    /// no receipt, no state change.
    pub excluded: Vec<Exclusion>,
    /// The rejected transactions included as failed ([`crate::ComplianceMode::Revert`]).
    pub rejected: Vec<RejectedTx>,
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
    /// [`BlockExecutor::execute_block`], also saying how Block-STM and the compliance hook
    /// took the transactions.
    pub fn execute_block_with_report(
        mut self,
        transactions: impl IntoIterator<Item = impl ExecutableTx<Self>>,
    ) -> Result<(BlockExecutionResult<R::Receipt>, ExecutionReport), BlockExecutionError> {
        self.inner.apply_pre_execution_changes()?;
        let parts: Vec<_> = transactions.into_iter().map(ExecutableTxParts::into_parts).collect();
        let exact = self.state_allows_parallel();
        if self.gating.is_some() && !exact {
            let error = "a compliance hook with an EIP-7928 block access list or Amsterdam's gas";
            return Err(BlockExecutionError::other(ExecutionError::Unsupported(error.into())));
        }
        let config = self.engine.config();
        let runs_parallel =
            exact && config.runs_parallel_on(parts.len(), || parts.iter().map(|(env, _)| env));
        let mut ledger = Ledger::of(config.compliance.as_ref());
        let n = parts.len();
        let (parallel, rest) = if runs_parallel {
            let (envs, recovered): (Vec<TxEnv>, Vec<_>) = parts.into_iter().unzip();
            let evm = self.inner.evm();
            let cfg = evm.cfg_env();
            let block = BlockInput::new(cfg.spec, cfg.chain_id, evm.block().clone(), envs);
            let parallel = self.commit_parallel(&block, &recovered, &mut ledger)?;
            // What Block-STM left (usually nothing: no allocation).
            let rest = block.transactions.into_iter().zip(recovered).skip(parallel).collect();
            (parallel, rest)
        } else {
            (0, parts)
        };
        for (index, (env, tx)) in (parallel..).zip(rest) {
            if self.gating.is_some() {
                self.execute_gated_in_block(index, env, tx, &mut ledger)?;
            } else {
                self.inner.execute_transaction((env, tx))?;
            }
        }
        let (excluded, rejected) = ledger.into_outcomes();
        let result = self.inner.apply_post_execution_changes()?;
        Ok((result, ExecutionReport { parallel, sequential: n - parallel, excluded, rejected }))
    }

    /// Whether Block-STM can reproduce execution on this state and configuration exactly:
    /// not with an EIP-7928 block access list or Amsterdam's two-dimensional gas.
    fn state_allows_parallel(&self) -> bool {
        let state = self.inner.evm().db().block_state();
        let bal = state.bal_state.bal.is_some() || state.bal_state.bal_builder.is_some();
        !bal && !self.inner.evm().cfg_env().enable_amsterdam_eip8037
    }

    /// Executes `block`'s transactions with Block-STM and commits them in block order,
    /// taking its compliance decisions into `ledger`; returns below which transaction it
    /// decided them all (the rest run sequentially).
    fn commit_parallel<T: RecoveredTx<R::Transaction>>(
        &mut self,
        block: &BlockInput,
        recovered: &[T],
        ledger: &mut Ledger,
    ) -> Result<usize, BlockExecutionError> {
        let run = {
            let evm = self.inner.evm();
            let view = StateView::new(evm.db().block_state());
            parallel::execute_transactions(
                &view,
                block,
                evm.cfg_env().clone(),
                self.engine.workers(),
                self.engine.config().compliance.as_ref(),
            )
        };
        let kept = match run {
            Ok(Some(kept)) => kept,
            Ok(None) => return Ok(0),
            Err(error) => return sequential_or_error(error),
        };
        let KeptTransactions { outcomes, states, excluded, rejected, excluded_gas } = kept;
        let decided = outcomes.len() + excluded.len();
        if decided != recovered.len() || states.len() != outcomes.len() {
            return Err(BlockExecutionError::msg(format!(
                "parevm: {} outcomes, {} exclusions and {} states for {} transactions",
                outcomes.len(),
                excluded.len(),
                states.len(),
                recovered.len()
            )));
        }
        let (beneficiary, spec) = (block.env.beneficiary, block.spec);
        let mut end = recovered.len();
        for (outcome, kept) in outcomes.into_iter().zip(states) {
            let state = self.inner.evm().db().block_state();
            let exact = exact_state(
                kept,
                beneficiary,
                spec,
                |address| state.basic_ref(address),
                |address| state.cache.accounts.contains_key(address),
            )
            .map_err(BlockExecutionError::other)?;
            let Ok(state) = exact else {
                end = outcome.index;
                break;
            };
            let tx = recovered[outcome.index].tx();
            self.inner.commit_transaction(tx_result(tx, outcome.result, state));
        }
        let decisions = Decisions { excluded, rejected, excluded_gas };
        let excluded_gas = decisions.carry_over(end, &block.transactions, ledger);
        if let Some(gating) = &mut self.gating {
            gating.excluded_gas = excluded_gas;
        }
        Ok(end)
    }

    /// Transaction `index` of the block, executed through the compliance hook, decided by
    /// `ledger` and committed if included.
    fn execute_gated_in_block(
        &mut self,
        index: usize,
        env: TxEnv,
        tx: impl RecoveredTx<R::Transaction>,
        ledger: &mut Ledger,
    ) -> Result<(), BlockExecutionError> {
        let (sender, nonce) = (env.caller, env.nonce);
        let GatedTx { result, state, reverted_by } = self.transact_gated(env, &tx)?;
        let tx = tx.tx();
        let result = match ledger.decide(index, sender, nonce, result) {
            Ok(Some(result)) => result,
            Ok(None) => return Ok(()),
            Err(ExecutionError::InvalidTransaction { reason, .. }) => {
                return Err(invalid(reason, tx.trie_hash()))
            }
            Err(other) => return Err(BlockExecutionError::other(other)),
        };
        if let Some(rejection) = reverted_by {
            ledger.note_reverted(index, rejection);
        }
        self.inner.commit_transaction(tx_result(tx, result, state));
        Ok(())
    }

    /// Executes `env` through the compliance hook on the EVM's state, after alloy-evm's
    /// block gas rule (as [`EthBlockExecutor`] checks it, before Amsterdam); nothing is
    /// committed.
    fn transact_gated(
        &mut self,
        env: TxEnv,
        tx: &impl RecoveredTx<R::Transaction>,
    ) -> Result<GatedTx, BlockExecutionError> {
        let tx = tx.tx();
        let used = self.inner.cumulative_tx_gas_used;
        let evm = self.inner.evm_mut();
        let available = evm.block().gas_limit.saturating_sub(used);
        if tx.gas_limit().min(evm.cfg_env().tx_gas_limit_cap()) > available {
            return Err(BlockValidationError::TransactionGasLimitMoreThanAvailableBlockGas {
                transaction_gas_limit: tx.gas_limit(),
                block_available_gas: available,
            }
            .into());
        }
        let (cfg, block) = (evm.cfg_env().clone(), evm.block().clone());
        let gating = self.gating.as_mut().expect("called only with a compliance hook");
        gated::transact(evm.db_mut(), gating, cfg, block, env)
            .map_err(|e| BlockExecutionError::evm(e, tx.trie_hash()))
    }
}

/// Block-STM's compliance decisions on a block.
struct Decisions {
    excluded: Vec<Exclusion>,
    rejected: Vec<RejectedTx>,
    /// The exclusion budget's running totals ([`KeptTransactions::excluded_gas`]).
    excluded_gas: Vec<(usize, u64)>,
}

impl Decisions {
    /// Takes the decisions on the transactions below `end` (of `txs`) into `ledger`, as if
    /// it had made them, and returns the gas excluded below `end`: a sequential run from
    /// `end` then decides as if it had run the whole block. (Block-STM's decisions are the
    /// sequential ones: every transaction below `end` was committed or excluded in order.)
    fn carry_over(self, end: usize, txs: &[TxEnv], ledger: &mut Ledger) -> u64 {
        for exclusion in self.excluded.into_iter().take_while(|e| e.index < end) {
            let tx = &txs[exclusion.index];
            ledger.record_exclusion(exclusion, tx.caller, tx.nonce);
        }
        for reverted in self.rejected.into_iter().take_while(|r| r.index < end) {
            ledger.note_reverted(reverted.index, reverted.rejection);
        }
        let below = self.excluded_gas.iter().take_while(|(index, _)| *index < end).last();
        below.map_or(0, |(_, total)| *total)
    }
}

/// The result alloy-evm's executor commits for `tx`: its revm result and state, its blob
/// gas and type (for the receipt).
fn tx_result<T: Transaction + TransactionEnvelope>(
    tx: &T,
    result: revm::context::result::ExecutionResult<HaltReason>,
    state: revm::state::EvmState,
) -> EthTxResult<HaltReason, T::TxType> {
    EthTxResult {
        result: ResultAndState { result, state },
        blob_gas_used: tx.blob_gas_used().unwrap_or_default(),
        tx_type: tx.tx_type(),
    }
}

/// An invalid transaction, in alloy-evm's words.
fn invalid(reason: revm::context::result::InvalidTransaction, hash: B256) -> BlockExecutionError {
    BlockExecutionError::evm(EVMError::<StorageError>::Transaction(reason), hash)
}

/// What to do when Block-STM stops with `error`: a transaction that is invalid, does not
/// fit in the block or is rejected in `FailBlock` mode makes the block invalid, and the
/// sequential run reports it (in alloy-evm's words where it has them); anything else (the
/// database failed, an invariant broke) is returned.
fn sequential_or_error(error: ExecutionError) -> Result<usize, BlockExecutionError> {
    match error {
        ExecutionError::InvalidTransaction { .. }
        | ExecutionError::BlockGasLimitExceeded { .. }
        | ExecutionError::InvalidHeader(_)
        | ExecutionError::ComplianceRejected { .. }
        | ExecutionError::Evm { .. } => Ok(0),
        other => Err(BlockExecutionError::other(other)),
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::Address;
    use revm::context::result::InvalidTransaction;

    use super::*;
    use crate::{ComplianceMode, Rejection, RejectionReason};

    #[test]
    fn a_sequential_run_takes_over_block_stms_decisions_below_where_it_starts() {
        let sender = Address::repeat_byte(1);
        let txs: Vec<TxEnv> = (0..6)
            .map(|nonce| TxEnv { caller: sender, nonce: 10 + nonce, ..Default::default() })
            .collect();
        let rejection = Rejection::of_sender(Address::ZERO, 3, RejectionReason::Revoked);
        let exclusion = |index, cascaded_from| Exclusion { index, rejection, cascaded_from };
        // 0 rejected, 1 and 3 cascading from it, 2 (another nonce) included as failed.
        let decisions = || Decisions {
            excluded: vec![exclusion(0, None), exclusion(1, Some(0)), exclusion(3, Some(0))],
            rejected: vec![RejectedTx { index: 2, rejection }],
            excluded_gas: vec![(0, 21_000), (3, 50_000)],
        };
        let mut ledger = Ledger::new(ComplianceMode::Exclude);
        assert_eq!(decisions().carry_over(3, &txs, &mut ledger), 21_000);
        // Transaction 3's nonce follows two excluded ones: it cascades from the first.
        let too_high = InvalidTransaction::NonceTooHigh { tx: 12, state: 10 };
        let decided = ledger.decide(3, sender, 12, Err(TxFailure::Invalid(too_high))).unwrap();
        assert_eq!(decided, None);
        let (excluded, rejected) = ledger.into_outcomes();
        assert_eq!(excluded, decisions().excluded);
        assert_eq!(rejected, decisions().rejected);
        // Taking over at the start takes nothing; after the end, everything.
        let mut ledger = Ledger::new(ComplianceMode::Exclude);
        assert_eq!(decisions().carry_over(0, &txs, &mut ledger), 0);
        assert_eq!(ledger.into_outcomes(), (vec![], vec![]));
        let mut ledger = Ledger::new(ComplianceMode::Exclude);
        assert_eq!(decisions().carry_over(6, &txs, &mut ledger), 50_000);
        assert_eq!(ledger.into_outcomes().0.len(), 3);
    }
}
