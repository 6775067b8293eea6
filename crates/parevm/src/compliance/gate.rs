//! Where the engine asks the [`ComplianceHook`]: the transaction's own call (from the
//! handler, after validation) and the `CALL`/`CALLCODE` instructions (wrapped in the
//! instruction table). Both executors' databases carry a [`Gate`]; with none, the wrappers
//! are not installed (sequential) or return at their first branch (parallel).

use alloy_primitives::{Address, B256, U256};
use revm::bytecode::opcode;
use revm::context::result::EVMError;
use revm::context::{BlockEnv, CfgEnv, Context, ContextError, Journal, TxEnv};
use revm::handler::instructions::EthInstructions;
use revm::interpreter::instructions::contract;
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_types::RuntimeFlag;
use revm::interpreter::{
    Instruction, InstructionContext, InstructionExecResult, InstructionResult,
};
use revm::primitives::TxKind;
use revm::state::EvmState;
use revm::Database;

use super::{ComplianceHook, GatedCall, ReadError, Rejection, StateView};

/// The message of the context error that stops a rejected transaction. The executors
/// recognise a rejection by the [`Gate`]'s record, never by this text.
const REJECTED: &str = "rejected by the compliance hook";

/// A database's compliance state for the transaction being executed.
#[derive(Debug)]
pub(crate) struct Gate<'h> {
    hook: &'h dyn ComplianceHook,
    rejection: Option<Rejection>,
}

impl<'h> Gate<'h> {
    pub(crate) fn new(hook: &'h dyn ComplianceHook) -> Self {
        Self { hook, rejection: None }
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
}

/// The revm context both executors run transactions in.
pub(crate) type TxContext<DB> = Context<BlockEnv, TxEnv, CfgEnv, DB, Journal<DB>, ()>;

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

/// Asks the hook about a call to `pool` by the current transaction, recording a rejection
/// in the gate.
fn check<'h, DB: GatedDb<'h>>(
    journal: &mut Journal<DB>,
    origin: Address,
    pool: Address,
    timestamp: U256,
) -> Result<(), Stop<DB::Error>> {
    let Some(gate) = journal.database.gate() else { return Ok(()) };
    let hook = gate.hook;
    let call = GatedCall { origin, pool, timestamp: timestamp.saturating_to() };
    let mut view = TxView { state: &journal.inner.state, db: &mut journal.database };
    match hook.check(&call, &mut view) {
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

/// Checks the transaction's own call, if it is one. Called by the handlers after validation,
/// before the first frame.
pub(crate) fn check_transaction<'h, DB: GatedDb<'h>>(
    ctx: &mut TxContext<DB>,
) -> Result<(), EVMError<DB::Error>> {
    let TxKind::Call(to) = ctx.tx.kind else { return Ok(()) };
    match check(&mut ctx.journaled_state, ctx.tx.caller, to, ctx.block.timestamp) {
        Ok(()) => Ok(()),
        Err(Stop::Rejected) => Err(EVMError::Custom(REJECTED.into())),
        Err(Stop::Read(e)) => Err(EVMError::Database(e)),
    }
}

type Ictx<'c, DB> = InstructionContext<'c, TxContext<DB>, EthInterpreter>;

/// Checks the target of the `CALL` or `CALLCODE` about to execute, unless the frame is
/// static (it cannot change state). On a rejection or a failed read, sets the context error
/// and halts: the handler then stops the transaction.
pub(crate) fn check_call<'h, DB: GatedDb<'h>>(ctx: &mut Ictx<'_, DB>) -> InstructionExecResult {
    if ctx.host.journaled_state.database.gate().is_none()
        || ctx.interpreter.runtime_flag.is_static()
    {
        return Ok(());
    }
    // CALL and CALLCODE: gas, address, value, ... (an underflow is the instruction's to report).
    let Ok(word) = ctx.interpreter.stack.peek(1) else { return Ok(()) };
    let pool = Address::from_word(B256::from(word));
    let host = &mut *ctx.host;
    match check(&mut host.journaled_state, host.tx.caller, pool, host.block.timestamp) {
        Ok(()) => Ok(()),
        Err(stop) => {
            host.error = Err(match stop {
                Stop::Rejected => ContextError::Custom(REJECTED.into()),
                Stop::Read(e) => ContextError::Db(e),
            });
            Err(InstructionResult::FatalExternalError)
        }
    }
}

fn call<'h, DB: GatedDb<'h>>(mut ctx: Ictx<'_, DB>) -> InstructionExecResult {
    check_call(&mut ctx)?;
    contract::call::<{ opcode::CALL }, _, _>(ctx)
}

fn callcode<'h, DB: GatedDb<'h>>(mut ctx: Ictx<'_, DB>) -> InstructionExecResult {
    check_call(&mut ctx)?;
    contract::call::<{ opcode::CALLCODE }, _, _>(ctx)
}

/// Replaces `CALL` and `CALLCODE` of `instructions` with checked ones, keeping their gas.
pub(crate) fn install<'h, DB: GatedDb<'h>>(
    instructions: &mut EthInstructions<EthInterpreter, TxContext<DB>>,
) {
    let hooks: [(u8, Instruction<EthInterpreter, TxContext<DB>>); 2] = [
        (opcode::CALL, Instruction::new(call::<DB>)),
        (opcode::CALLCODE, Instruction::new(callcode::<DB>)),
    ];
    for (op, hook) in hooks {
        let gas = instructions.gas_table()[op as usize];
        instructions.insert_instruction(op, hook, gas);
    }
}
