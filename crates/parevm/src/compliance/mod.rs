//! The compliance hook: permissioned ("gated") pools that only accept transactions from
//! senders holding the credentials they require.
//!
//! The engine decides *where* to check and what a rejection does; a [`ComplianceHook`]
//! decides *whether* a sender may change an account. The rule is on state: a sender
//! without the credentials a gated account requires may not change it (balance, nonce,
//! code or storage) by any path. The engine asks the hook
//!
//! - about the transaction's own call (`tx.to`), after the transaction has passed
//!   validation and before its first frame (so that obvious cases stop before any work);
//! - about every account the transaction changed but the sender's own, after its last
//!   frame (reverted frames already undone) and before the refund and the beneficiary's
//!   fee: `CALL`, `CALLCODE`, value transfers, `CREATE`/`CREATE2`, EIP-7702 authorizations
//!   and `SELFDESTRUCT` alike, and no rejection for calls that leave an account unchanged.
//!
//! The hook reads state through a [`StateView`]: the state as the transaction sees it at that
//! point (its own writes, then the block's earlier transactions, then storage). In parallel
//! execution those reads enter the transaction's read set, so an issuance, revocation or
//! policy change by an earlier transaction of the block is honoured exactly as sequential
//! execution honours it.
//!
//! A rejected transaction is excluded ([`ComplianceMode::Exclude`]: no state change, no
//! gas, no receipt; later transactions of its sender that its missing nonce invalidates are
//! excluded with it), included as failed and charged for its gas
//! ([`ComplianceMode::Revert`]), or fails the block ([`ComplianceMode::FailBlock`]). An
//! exclusion budget ([`Compliance::exclusion_budget`]) bounds the gas excluded transactions
//! spend: the total so far is one more versioned location of the block, read and written
//! only by rejected transactions, so the parallel executor decides each one exactly as the
//! sequential one does.

mod call_tree;
pub(crate) mod gate;

use self::call_tree::CallTree;
mod ledger;

use std::fmt;
use std::sync::Arc;

use alloy_primitives::{Address, U256};

pub(crate) use self::ledger::{Ledger, TxFailure};
use crate::StorageError;

/// Read access to state as the transaction being checked sees it.
pub trait StateView {
    /// The value of storage slot `slot` of `address`.
    fn storage(&mut self, address: Address, slot: U256) -> Result<U256, ReadError>;
}

/// A read through a [`StateView`] that could not complete. Hooks return it unchanged (with
/// `?`): the engine either reports the storage error or, in parallel execution, retries
/// the transaction once the value it waits for is written.
#[derive(Clone, Debug)]
pub struct ReadError(pub(crate) ReadErrorKind);

#[derive(Clone, Debug)]
pub(crate) enum ReadErrorKind {
    /// The storage backend failed.
    Storage(StorageError),
    /// Parallel execution: the value is an estimate of this transaction's write.
    Blocked(usize),
    /// Parallel execution: the block must be executed sequentially.
    Sequential,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ReadErrorKind::Storage(e) => e.fmt(f),
            ReadErrorKind::Blocked(tx) => write!(f, "waiting for transaction {tx}"),
            ReadErrorKind::Sequential => f.write_str("the block needs sequential execution"),
        }
    }
}

impl std::error::Error for ReadError {}

/// A read error a hook returned to a sequential executor, as that executor's storage error.
/// Only the parallel executor's reads block or stop it: one of those here is the hook's
/// mistake (it kept a read error of another run), reported as such.
pub(crate) fn storage_error_of(error: ReadError) -> StorageError {
    match error.0 {
        ReadErrorKind::Storage(e) => e,
        other => StorageError::new(
            crate::Location::Account(Address::ZERO),
            ForeignReadError(ReadError(other).to_string()),
        ),
    }
}

/// A hook returned a parallel executor's read error to a sequential one.
#[derive(Debug, thiserror::Error)]
#[error("a compliance hook returned a read error of the parallel executor ({0})")]
struct ForeignReadError(String);

/// What the engine asks a [`ComplianceHook`] about: whether `origin`'s transaction may
/// address or change `pool` (the transaction's `to`, or an account it changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatedCall {
    /// The transaction's sender (`tx.origin`).
    pub origin: Address,
    /// The account addressed or changed: a pool if the hook's policy gates it.
    pub pool: Address,
    /// The block's timestamp.
    pub timestamp: u64,
}

/// Decides whether a transaction may address or change an account. Implementations must
/// be deterministic functions of the call and the state they read through the view: the
/// engine relies on that to give the same answer in sequential and parallel execution.
pub trait ComplianceHook: Send + Sync + fmt::Debug {
    /// `None` if `call.origin` may address or change `call.pool`, otherwise why not.
    fn check(
        &self,
        call: &GatedCall,
        state: &mut dyn StateView,
    ) -> Result<Option<Rejection>, ReadError>;

    /// `None` if `call.origin`'s transaction may have changed `call.pool` as it did,
    /// otherwise why not. `callers` gives the contracts between the sender and the change,
    /// for a policy that binds them too (computed only when asked). By default, [`Self::check`].
    fn check_change(
        &self,
        call: &GatedCall,
        callers: &CallerChain<'_>,
        state: &mut dyn StateView,
    ) -> Result<Option<Rejection>, ReadError> {
        let _ = callers;
        self.check(call, state)
    }
}

/// The contracts between a transaction's sender and its change of an account, for
/// [`ComplianceHook::check_change`].
pub struct CallerChain<'a> {
    tree: &'a CallTree,
    journal: &'a [revm::context_interface::journaled_state::entry::JournalEntry],
    account: Address,
    origin: Address,
}

impl CallerChain<'_> {
    /// The contracts, in address order: for each change of the account, the frames above
    /// the innermost frame acting as the account that made it (or, for a change made from
    /// outside its frames, such as a `SELFDESTRUCT` paying it, that frame and every frame
    /// above), without the sender and the account itself; frames that reverted are not
    /// counted. See `docs/compliance.md`.
    pub fn contracts(&self) -> Vec<Address> {
        self.tree.callers_of(self.journal, self.account, self.origin).into_vec()
    }
}

impl fmt::Debug for CallerChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerChain").field("account", &self.account).finish_non_exhaustive()
    }
}

/// Why a credential did not satisfy a pool's requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionReason {
    /// The sender holds no credential for the claim.
    Missing,
    /// The credential's expiry is not after the block timestamp.
    Expired,
    /// The credential was revoked.
    Revoked,
    /// The credential's issuer is no longer active.
    IssuerInactive,
    /// The credential's issuer may not attest this claim.
    IssuerNotAllowed,
    /// The credential was issued by its own subject, and that issuer may not attest itself.
    SelfAttested,
    /// A contract between the sender and the pool holds no valid credential and is not an
    /// approved router (for a pool whose policy binds the caller chain).
    UnapprovedCaller,
}

impl RejectionReason {
    /// The reason as a short kebab-case word (`missing`, `issuer-inactive`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::IssuerInactive => "issuer-inactive",
            Self::IssuerNotAllowed => "issuer-not-allowed",
            Self::SelfAttested => "self-attested",
            Self::UnapprovedCaller => "unapproved-caller",
        }
    }
}

impl fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call a [`ComplianceHook`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rejection {
    /// The gated pool.
    pub pool: Address,
    /// The required claim the sender lacks (the first one checked that fails).
    pub claim: u8,
    /// What is wrong with the credential for it.
    pub reason: RejectionReason,
    /// `None`: the sender's credential; otherwise the contract between the sender and the
    /// pool whose credential it is ([`CallerChain`]).
    pub caller: Option<Address>,
}

impl Rejection {
    /// A rejection of the sender's own credential.
    pub fn of_sender(pool: Address, claim: u8, reason: RejectionReason) -> Self {
        Self { pool, claim, reason, caller: None }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool {} requires claim {}: {}", self.pool, self.claim, self.reason)?;
        if let Some(caller) = self.caller {
            write!(f, " (contract {caller} between the sender and the pool)")?;
        }
        Ok(())
    }
}

/// What a rejected transaction does to the block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ComplianceMode {
    /// Block building: the transaction is left out (no state change, no gas, no receipt) and
    /// listed in [`BlockOutput::excluded`](crate::BlockOutput::excluded), as are later
    /// transactions of its sender that the missing nonce invalidates.
    #[default]
    Exclude,
    /// Block building where a rejection costs the sender: the transaction is included as
    /// failed — every change its frames made undone, the gas it spent up to the rejection
    /// charged, its nonce used, counted in the block's gas — and listed in
    /// [`BlockOutput::rejected`](crate::BlockOutput::rejected). A rejected change made
    /// before the first frame (an EIP-7702 authorization), which no revert undoes, is
    /// excluded as in [`Self::Exclude`].
    Revert,
    /// Block validation: the block fails with
    /// [`ExecutionError::ComplianceRejected`](crate::ExecutionError::ComplianceRejected).
    FailBlock,
}

/// A compliance hook and what its rejections do.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Compliance {
    /// The hook.
    pub hook: Arc<dyn ComplianceHook>,
    /// What a rejection does.
    pub mode: ComplianceMode,
    /// [`ComplianceMode::Exclude`] only: the gas excluded transactions may spend in one
    /// block before rejections start to cost. Each excluded transaction's gas up to its
    /// rejection counts against it, in block order; a rejected transaction whose gas would
    /// pass the budget is included as failed instead, as in [`ComplianceMode::Revert`].
    /// So the work a block's excluded transactions make the executor do for nothing is at
    /// most the budget. `None`: no bound.
    pub exclusion_budget: Option<u64>,
}

impl Compliance {
    /// `hook` with rejections handled as `mode` says, without an exclusion budget.
    pub fn new(hook: Arc<dyn ComplianceHook>, mode: ComplianceMode) -> Self {
        Self { hook, mode, exclusion_budget: None }
    }

    /// The same, with [`Self::exclusion_budget`] set to `gas` (meaningful in
    /// [`ComplianceMode::Exclude`], ignored otherwise).
    pub fn with_exclusion_budget(mut self, gas: u64) -> Self {
        self.exclusion_budget = Some(gas);
        self
    }
}

/// A transaction the hook rejected that was included as failed, paying for the gas it
/// spent up to the rejection ([`ComplianceMode::Revert`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectedTx {
    /// Index of the transaction in the block.
    pub index: usize,
    /// The rejection.
    pub rejection: Rejection,
}

/// A transaction left out of the block ([`ComplianceMode::Exclude`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exclusion {
    /// Index of the transaction in the block.
    pub index: usize,
    /// The rejection: this transaction's own, or that of the transaction it follows.
    pub rejection: Rejection,
    /// For a transaction excluded because an earlier one of its sender was (its nonce no
    /// longer follows): the index of that rejected transaction.
    pub cascaded_from: Option<usize>,
}
