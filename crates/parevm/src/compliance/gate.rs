//! Where the engine asks the [`ComplianceHook`], both from the executors' handlers: the
//! transaction's own call, after validation and before the first frame (the cheap early
//! check), and every account the transaction changed, after its last frame and before the
//! refund and the beneficiary's fee ([`check_changes`]). Both executors' databases carry a
//! [`Gate`]; with none, both checks return at their first branch.

use alloy_primitives::{Address, U256};
use revm::context::result::EVMError;
use revm::context::{BlockEnv, CfgEnv, Context, Journal, TxEnv};
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

/// Checks every account the transaction changed except its sender's own: called by the
/// handlers after the last frame (a reverted frame's changes are undone by then), before
/// the refund and the beneficiary's fee. Accounts are checked in address order, so that the
/// rejection named is the same in both executors.
pub(crate) fn check_changes<'h, DB: GatedDb<'h>>(
    ctx: &mut TxContext<DB>,
) -> Result<(), EVMError<DB::Error>> {
    if ctx.journaled_state.database.gate().is_none() {
        return Ok(());
    }
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
        match check(&mut ctx.journaled_state, origin, account, ctx.block.timestamp) {
            Ok(()) => {}
            Err(Stop::Rejected) => return Err(EVMError::Custom(REJECTED.into())),
            Err(Stop::Read(e)) => return Err(EVMError::Database(e)),
        }
    }
    Ok(())
}
