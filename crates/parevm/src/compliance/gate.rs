//! Where the engine asks the [`ComplianceHook`], both from the executors' handlers: the
//! transaction's own call, after validation and before the first frame (the cheap early
//! check), and every account the transaction changed, after its last frame and before the
//! refund and the beneficiary's fee ([`check_changed_accounts`]). Both executors'
//! databases carry a [`Gate`]; with none, both checks return at their first branch.

use std::marker::PhantomData;

use alloy_primitives::Bytes;
use alloy_primitives::{Address, U256};
use revm::context::result::{EVMError, ExecutionResult, HaltReason};
use revm::context::Journal;
use revm::context_interface::journaled_state::JournalCheckpoint;
use revm::handler::{EthFrame, EvmTr, FrameResult, FrameTr, Handler, ItemOrResult, MainnetEvm};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_action::FrameInit;
use revm::interpreter::{
    CallOutcome, CreateOutcome, FrameInput, Gas, InstructionResult, InterpreterResult,
};
use revm::primitives::TxKind;
use revm::state::EvmState;
use revm::Database;

use super::call_tree::CallTree;
use super::{
    storage_error_of, CallerChain, Compliance, ComplianceHook, ComplianceMode, GatedCall,
    ReadError, ReadErrorKind, Rejection, StateView, TxFailure,
};
use crate::frame_loop;
use crate::storage_collision::{self, HasStorage};
use crate::tx_context::TxContext;
use crate::StorageError;

/// The message of the context error that stops a rejected transaction. The executors
/// recognise a rejection by the [`Gate`]'s record, never by this text.
const REJECTED: &str = "rejected by the compliance hook";

/// A database's compliance state for the transaction being executed.
#[derive(Debug)]
pub(crate) struct Gate<'h> {
    hook: &'h dyn ComplianceHook,
    /// [`ComplianceMode::Revert`]: a rejected transaction's changes are undone and it is
    /// included as failed, where they can be.
    revert: bool,
    /// [`ComplianceMode::Exclude`]: the gas excluded transactions may spend in the block
    /// ([`Compliance::exclusion_budget`]).
    budget: Option<u64>,
    rejection: Option<Rejection>,
    /// The current transaction's frames, for the caller chains of its changes.
    tree: CallTree,
}

impl<'h> Gate<'h> {
    pub(crate) fn new(compliance: &'h Compliance) -> Self {
        let exclude = compliance.mode == ComplianceMode::Exclude;
        Self {
            hook: &*compliance.hook,
            revert: compliance.mode == ComplianceMode::Revert,
            budget: compliance.exclusion_budget.filter(|_| exclude),
            rejection: None,
            tree: CallTree::default(),
        }
    }

    /// The current transaction's rejection, if any, clearing it for the next transaction.
    pub(crate) fn take_rejection(&mut self) -> Option<Rejection> {
        self.rejection.take()
    }
}

/// A database that can carry a [`Gate`].
pub(crate) trait GatedDb<'h>: Database {
    /// The gate, if compliance is configured.
    fn gate(&mut self) -> Option<&mut Gate<'h>>;
    /// A read error of this database as the hook sees it.
    fn to_read_error(error: Self::Error) -> ReadError;
    /// A read error the hook returned, as this database's error.
    fn from_read_error(error: ReadError) -> Self::Error;
    /// The gas the block's transactions below this one spent before being excluded (with
    /// an exclusion budget; parallel execution reads it as a versioned location).
    fn excluded_gas(&mut self) -> Result<u64, Self::Error>;
    /// Records that this transaction is excluded within the budget, the block's excluded
    /// gas becoming `total`.
    fn set_excluded_gas(&mut self, total: u64);
}

/// The compliance state a sequential executor's database carries through a block: the gate
/// (none without a hook) and the gas the block's excluded transactions spent so far.
#[derive(Debug, Default)]
pub(crate) struct Gating<'h> {
    pub(crate) gate: Option<Gate<'h>>,
    /// With an exclusion budget: the running total ([`GatedDb::excluded_gas`]).
    pub(crate) excluded_gas: u64,
}

impl<'h> Gating<'h> {
    pub(crate) fn new(compliance: &'h Compliance) -> Self {
        Self { gate: Some(Gate::new(compliance)), excluded_gas: 0 }
    }

    /// The current transaction's rejection, if any, clearing it for the next transaction.
    pub(crate) fn take_rejection(&mut self) -> Option<Rejection> {
        self.gate.as_mut().and_then(Gate::take_rejection)
    }
}

/// The database of a sequential executor (the engine's, or the alloy-evm executor's gated
/// path): its errors are storage errors, and it carries its [`Gating`].
pub(crate) trait SequentialDb<'h>: Database<Error = StorageError> {
    fn gating(&mut self) -> &mut Gating<'h>;
}

impl<'h, DB: SequentialDb<'h>> GatedDb<'h> for DB {
    fn gate(&mut self) -> Option<&mut Gate<'h>> {
        self.gating().gate.as_mut()
    }

    fn to_read_error(error: StorageError) -> ReadError {
        ReadError(ReadErrorKind::Storage(error))
    }

    fn from_read_error(error: ReadError) -> StorageError {
        storage_error_of(error)
    }

    fn excluded_gas(&mut self) -> Result<u64, StorageError> {
        Ok(self.gating().excluded_gas)
    }

    fn set_excluded_gas(&mut self, total: u64) {
        self.gating().excluded_gas = total;
    }
}

/// revm's mainnet handler with EIP-7610's storage collision and, where the database carries
/// a [`Gate`], the compliance checks ([`run_checked`]): what the sequential executors run.
pub(crate) struct CheckedHandler<'h, DB>(PhantomData<fn() -> (&'h (), DB)>);

impl<DB> CheckedHandler<'_, DB> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<'h, DB: GatedDb<'h> + HasStorage> Handler for CheckedHandler<'h, DB> {
    type Evm = MainnetEvm<TxContext<DB>>;
    type Error = EVMError<DB::Error>;
    type HaltReason = HaltReason;

    fn run_exec_loop(
        &mut self,
        evm: &mut Self::Evm,
        first_frame_input: <<Self::Evm as EvmTr>::Frame as FrameTr>::FrameInit,
    ) -> Result<FrameResult, Self::Error> {
        run_checked(evm, first_frame_input)
    }
}

/// A transaction's result, or why it has none.
pub(crate) type TxResult = Result<ExecutionResult<HaltReason>, TxFailure>;

/// How a gated transaction ended, from revm's result and the gate's rejection: its result,
/// or why it has none, and the rejection that made it fail where it was included as failed
/// ([`ComplianceMode::Revert`]). revm's errors other than an invalid transaction are
/// returned (a storage failure comes before a rejection: the check may have read it).
pub(crate) fn classify<E>(
    result: Result<ExecutionResult<HaltReason>, EVMError<E>>,
    rejection: Option<Rejection>,
) -> Result<(TxResult, Option<Rejection>), EVMError<E>> {
    match (result, rejection) {
        (Ok(result), rejection) => Ok((Ok(result), rejection)),
        (Err(EVMError::Database(e)), _) => Err(EVMError::Database(e)),
        (_, Some(rejection)) => Ok((Err(TxFailure::Rejected(rejection)), None)),
        (Err(EVMError::Transaction(reason)), None) => Ok((Err(TxFailure::Invalid(reason)), None)),
        (Err(other), None) => Err(other),
    }
}

/// The state as the transaction sees it: its own (journaled) writes, then the database.
struct TxView<'j, DB> {
    state: &'j EvmState,
    db: &'j mut DB,
}

impl<'h, DB: GatedDb<'h>> StateView for TxView<'_, DB> {
    fn storage(&mut self, address: Address, slot: U256) -> Result<U256, ReadError> {
        if let Some(account) = self.state.get(&address) {
            if let Some(value) = account.storage.get(&slot) {
                return Ok(value.present_value);
            }
            if account.is_created() {
                return Ok(U256::ZERO);
            }
        }
        self.db.storage(address, slot).map_err(DB::to_read_error)
    }
}

/// How a check ended when the call may not proceed.
enum Stop<E> {
    Rejected,
    Read(E),
}

/// Asks the hook about a call to `pool` by the current transaction, or, `changed`, about
/// its change of `pool` (with the contracts between the sender and the change), recording
/// a rejection in the gate.
fn check<'h, DB: GatedDb<'h>>(
    journal: &mut Journal<DB>,
    origin: Address,
    pool: Address,
    timestamp: U256,
    changed: bool,
) -> Result<(), Stop<DB::Error>> {
    let Some(gate) = journal.database.gate() else { return Ok(()) };
    let hook = gate.hook;
    let call = GatedCall { origin, pool, timestamp: timestamp.saturating_to() };
    let verdict = if changed {
        // The tree moves out of the gate while the view borrows the database.
        let tree = std::mem::take(&mut gate.tree);
        let callers =
            CallerChain { tree: &tree, journal: &journal.inner.journal, account: pool, origin };
        let mut view = TxView { state: &journal.inner.state, db: &mut journal.database };
        let verdict = hook.check_change(&call, &callers, &mut view);
        journal.database.gate().expect("checked above").tree = tree;
        verdict
    } else {
        let mut view = TxView { state: &journal.inner.state, db: &mut journal.database };
        hook.check(&call, &mut view)
    };
    match verdict {
        Ok(None) => Ok(()),
        Ok(Some(rejection)) => {
            if let Some(gate) = journal.database.gate() {
                gate.rejection.get_or_insert(rejection);
            }
            Err(Stop::Rejected)
        }
        Err(e) => Err(Stop::Read(DB::from_read_error(e))),
    }
}

/// Asks the hook about the transaction's own call, if it is one, and about the accounts its
/// EIP-7702 authorizations changed, if it has any: both are known before any work.
fn check_transaction<'h, DB: GatedDb<'h>>(ctx: &mut TxContext<DB>) -> Result<(), Stop<DB::Error>> {
    if let TxKind::Call(to) = ctx.tx.kind {
        check(&mut ctx.journaled_state, ctx.tx.caller, to, ctx.block.timestamp, false)?;
    }
    if !ctx.tx.authorization_list.is_empty() {
        check_changed_accounts(ctx)?;
    }
    Ok(())
}

/// Whether the transaction changed `account`: its balance, nonce or code, a storage slot,
/// or it created or destroyed it. Values written and restored within the transaction, and
/// accounts only read or touched, are not changes. (In parallel execution some accounts
/// are read without the credits of other transactions; the comparison is of two values
/// of this transaction's journal, which carry the same offset, so it decides the same.)
fn changed(account: &revm::state::Account) -> bool {
    account.is_created()
        || account.is_selfdestructed()
        || account.is_changed()
        || account.storage.values().any(|slot| slot.is_changed())
}

/// Asks the hook about every account the transaction changed except its sender's own, in
/// address order (so that the rejection named is the same in both executors).
fn check_changed_accounts<'h, DB: GatedDb<'h>>(
    ctx: &mut TxContext<DB>,
) -> Result<(), Stop<DB::Error>> {
    let origin = ctx.tx.caller;
    let mut changes: smallvec::SmallVec<[Address; 8]> = ctx
        .journaled_state
        .inner
        .state
        .iter()
        .filter(|(address, account)| **address != origin && changed(account))
        .map(|(address, _)| *address)
        .collect();
    changes.sort_unstable();
    for account in changes {
        check(&mut ctx.journaled_state, origin, account, ctx.block.timestamp, true)?;
    }
    Ok(())
}

/// Whether a rejected transaction that spent `spent` gas is included as failed (`true`)
/// rather than excluded: in [`ComplianceMode::Revert`], and in [`ComplianceMode::Exclude`]
/// once its gas would pass the exclusion budget. An exclusion within the budget is counted
/// against it here.
fn include_as_failed<'h, DB: GatedDb<'h>>(
    db: &mut DB,
    spent: u64,
) -> Result<bool, Stop<DB::Error>> {
    let Some(gate) = db.gate() else { return Ok(false) };
    if gate.revert {
        return Ok(true);
    }
    let Some(budget) = gate.budget else { return Ok(false) };
    let total = db.excluded_gas().map_err(Stop::Read)?.saturating_add(spent);
    if total > budget {
        return Ok(true);
    }
    db.set_excluded_gas(total);
    Ok(false)
}

/// The gas limit of a transaction's first frame: its gas limit less the intrinsic gas.
fn frame_gas_limit(input: &FrameInput) -> u64 {
    match input {
        FrameInput::Create(inputs) => inputs.gas_limit(),
        FrameInput::Call(inputs) => inputs.gas_limit,
        FrameInput::Empty => 0,
    }
}

/// The journal's position before the transaction's first frame, to undo the frames' changes
/// to (without the depth a [`Journal::checkpoint`] would add, which revm reads).
fn before_frames<DB: Database>(journal: &Journal<DB>) -> JournalCheckpoint {
    JournalCheckpoint {
        log_i: journal.inner.logs.len(),
        journal_i: journal.inner.journal.len(),
        selfdestructed_i: journal.inner.selfdestructed_addresses.len(),
    }
}

/// The result of frames that reverted: no output, no refund, the gas spent kept.
fn as_reverted(result: &mut FrameResult) {
    let interpreted = match result {
        FrameResult::Call(outcome) => &mut outcome.result,
        FrameResult::Create(outcome) => {
            outcome.address = None;
            &mut outcome.result
        }
    };
    interpreted.result = InstructionResult::Revert;
    interpreted.output = Bytes::new();
    interpreted.gas.set_refunded(0);
}

/// The result of a transaction stopped before its first frame: reverted, none of the
/// frame's gas spent.
fn reverted_before_frames(input: &FrameInput) -> FrameResult {
    let gas = |limit, reservoir| Gas::new_with_regular_gas_and_reservoir(limit, reservoir);
    let result = |gas| InterpreterResult::new(InstructionResult::Revert, Bytes::new(), gas);
    match input {
        FrameInput::Create(inputs) => FrameResult::Create(CreateOutcome::new(
            result(gas(inputs.gas_limit(), inputs.reservoir())),
            None,
        )),
        FrameInput::Call(inputs) => FrameResult::Call(CallOutcome::new(
            result(gas(inputs.gas_limit, inputs.reservoir)),
            inputs.return_memory_offset.clone(),
        )),
        FrameInput::Empty => unreachable!("a transaction's first frame has an input"),
    }
}

/// Runs a transaction's frames between the two checks (the [`frame_loop`], recording the
/// frames in the gate's [`CallTree`]; without a gate, only the loop):
/// its own call before them, the accounts it changed after them. A rejection is a context
/// error, recorded in the gate, that the executors turn into [`super::TxFailure`]; in
/// [`ComplianceMode::Revert`], and past the exclusion budget, the frames' changes are undone
/// instead and the transaction ends as reverted, paying for the gas it spent up to the
/// rejection (the rejection still recorded) — unless what it changed before its frames (an
/// EIP-7702 authorization) is itself rejected, which no revert undoes.
pub(crate) fn run_checked<'h, DB, EVM>(
    evm: &mut EVM,
    input: FrameInit,
) -> Result<FrameResult, EVMError<DB::Error>>
where
    DB: GatedDb<'h> + HasStorage,
    EVM: EvmTr<Context = TxContext<DB>, Frame = EthFrame<EthInterpreter>>,
{
    match evm.ctx_mut().journaled_state.database.gate() {
        None => return frame_loop::run(evm, input, frame_loop::start, |_, _| {}),
        Some(gate) => gate.tree.clear(),
    }
    let stop = |stop: Stop<DB::Error>| match stop {
        Stop::Rejected => EVMError::Custom(REJECTED.into()),
        Stop::Read(e) => EVMError::Database(e),
    };
    let gas_limit = evm.ctx_mut().tx.gas_limit;
    let intrinsic = gas_limit.saturating_sub(frame_gas_limit(&input.frame_input));
    let start = before_frames(&evm.ctx_mut().journaled_state);
    let mut result = match check_transaction(evm.ctx_mut()) {
        Ok(()) => frame_loop::run(evm, input, start_frame, |evm, result| {
            let end = journal_len(evm);
            tree(evm.ctx_mut()).end(end, result.instruction_result().is_ok());
        })?,
        Err(Stop::Rejected) => {
            let db = &mut evm.ctx_mut().journaled_state.database;
            if !include_as_failed(db, intrinsic).map_err(stop)? {
                return Err(stop(Stop::Rejected));
            }
            reverted_before_frames(&input.frame_input)
        }
        Err(other) => return Err(stop(other)),
    };
    let ctx = evm.ctx_mut();
    match check_changed_accounts(ctx) {
        Ok(()) => Ok(result),
        Err(Stop::Rejected) => {
            let spent = intrinsic.saturating_add(result.gas().total_gas_spent());
            if !include_as_failed(&mut ctx.journaled_state.database, spent).map_err(stop)? {
                return Err(stop(Stop::Rejected));
            }
            ctx.journaled_state.inner.checkpoint_revert(start);
            // The frames are undone: none is between the sender and what is left.
            if let Some(gate) = ctx.journaled_state.database.gate() {
                gate.tree.clear();
            }
            as_reverted(&mut result);
            check_changed_accounts(ctx).map_err(stop)?;
            Ok(result)
        }
        Err(other) => Err(stop(other)),
    }
}

/// Starts the frame of `input`, recording it in the gate's [`CallTree`] (where it starts
/// in the journal; its end is recorded when it returns): `None` if it runs, or the result
/// of a call or creation that ended as it started (no code, a precompile, a failure before
/// its first instruction).
fn start_frame<'h, DB, EVM>(
    evm: &mut EVM,
    input: FrameInit,
) -> Result<Option<FrameResult>, EVMError<DB::Error>>
where
    DB: GatedDb<'h> + HasStorage,
    EVM: EvmTr<Context = TxContext<DB>, Frame = EthFrame<EthInterpreter>>,
{
    let start = journal_len(evm);
    let callee = match &input.frame_input {
        FrameInput::Call(inputs) => Some(inputs.target_address),
        _ => None,
    };
    let result = match storage_collision::frame_init(evm, input)? {
        ItemOrResult::Item(frame) => {
            let target = frame.interpreter.input.target_address;
            tree(evm.ctx_mut()).start(target, start);
            return Ok(None);
        }
        ItemOrResult::Result(result) => result,
    };
    let target = match &result {
        FrameResult::Call(_) => callee,
        FrameResult::Create(outcome) => outcome.address,
    };
    if let Some(target) = target {
        let end = journal_len(evm);
        tree(evm.ctx_mut()).immediate(target, start, end, result.instruction_result().is_ok());
    }
    Ok(Some(result))
}

fn journal_len<'h, DB: GatedDb<'h>, EVM: EvmTr<Context = TxContext<DB>>>(evm: &mut EVM) -> usize {
    evm.ctx_mut().journaled_state.inner.journal.len()
}

fn tree<'a, 'h: 'a, DB: GatedDb<'h>>(ctx: &'a mut TxContext<DB>) -> &'a mut CallTree {
    let gate = ctx.journaled_state.database.gate();
    &mut gate.expect("frames are recorded only with a gate").tree
}
