//! One worker's revm instance and the database it reads through: the multi-version store
//! over the pre-state, recording every read (the read set) for validation.

use std::cell::Cell;

use alloy_primitives::map::AddressMap;
use alloy_primitives::{Address, B256, U256};
use dashmap::DashMap;
use revm::bytecode::Bytecode;
use revm::context::result::{EVMError, ExecutionResult, HaltReason, InvalidTransaction};
use revm::context::{ContextSetters, TxEnv};
use revm::context_interface::{Block, Cfg, Transaction};
use revm::handler::{post_execution, EvmTr, FrameResult, FrameTr, Handler, MainnetEvm};
use revm::primitives::hardfork::SpecId;
use revm::primitives::{StorageKey, StorageValue, KECCAK_EMPTY};
use revm::state::{Account, AccountInfo, EvmState};
use revm::{Database, ExecuteEvm, MainBuilder};

use super::mv_memory::{Location, MvMemory, Read, Value};
use super::observe::{self, ObservesBalances};
use super::phases::Stopwatch;
use super::read_set::{
    account_with_origin, full_write_with_origin, resolve_account, Base, ReadOrigin, VmError,
};
use super::TxIdx;
use crate::block_db::{account_info, read_block_hash, read_code, read_storage};
use crate::compliance::gate::{self, Gate, GatedDb};
use crate::compliance::{ReadError, ReadErrorKind, Rejection, TxFailure};
use crate::state_changes::read_has_storage;
use crate::storage::AccountBasic;
use crate::storage_collision::HasStorage;
use crate::Compliance;
use crate::{BlockInput, Storage};

/// The database of one incarnation.
pub(crate) struct VmDb<'a, S> {
    base: &'a Base<'a, S>,
    mv: &'a MvMemory,
    new_code: &'a DashMap<B256, Bytecode, alloy_primitives::map::DefaultHashBuilder>,
    tx: TxIdx,
    /// The read set of the current incarnation.
    reads: Vec<(Location, ReadOrigin)>,
    /// Whether the incarnation keeps a read set: one that starts with every lower
    /// transaction committed reads only final values and is never validated.
    keep_reads: bool,
    /// Accounts as this incarnation read them, to write only what it changed.
    basics: AddressMap<Option<AccountBasic>>,
    /// For each account whose storage was read: the transaction that last wiped it.
    wipes: AddressMap<Option<TxIdx>>,
    /// The transaction's sender and the block's beneficiary: never read lazily.
    caller: Address,
    beneficiary: Address,
    /// The recipient of a plain transfer, read lazily if it has no code.
    lazy_recipient: Option<Address>,
    /// Whether the lazy recipient was read lazily.
    lazy_read: bool,
    /// Contracts read without the credits other transactions paid them, as read.
    lazy_accounts: AddressMap<AccountBasic>,
    /// Accounts whose balance the transaction observed (see [`super::observe`]).
    observed: alloy_primitives::map::AddressSet,
    /// Accounts this transaction must read fully (an earlier attempt observed them).
    force_full: alloy_primitives::map::AddressSet,
    /// The compliance gate, if configured.
    gate: Option<Gate<'a>>,
    /// The block's excluded gas after this transaction, if it is excluded within an
    /// exclusion budget: written to [`Location::ExcludedGas`].
    excluded_gas: Option<u64>,
    /// Times the reads, with [`crate::Config::phase_timers`].
    stopwatch: Stopwatch,
}

impl<'a, S: Storage> GatedDb<'a> for VmDb<'a, S> {
    fn gate(&mut self) -> Option<&mut Gate<'a>> {
        self.gate.as_mut()
    }

    fn to_read_error(error: VmError) -> ReadError {
        ReadError(match error {
            VmError::Blocked(tx) => ReadErrorKind::Blocked(tx),
            VmError::Storage(e) => ReadErrorKind::Storage(e),
            VmError::Sequential => ReadErrorKind::Sequential,
        })
    }

    fn from_read_error(error: ReadError) -> VmError {
        match error.0 {
            ReadErrorKind::Blocked(tx) => VmError::Blocked(tx),
            ReadErrorKind::Storage(e) => VmError::Storage(e),
            ReadErrorKind::Sequential => VmError::Sequential,
        }
    }

    fn excluded_gas(&mut self) -> Result<u64, VmError> {
        let location = Location::ExcludedGas;
        let (gas, origin) = match self.mv.read(&location, self.tx) {
            Read::PreState => (0, ReadOrigin::PreState),
            Read::Value(Value::Gas(gas), idx, inc) => (gas, ReadOrigin::Version(idx, inc)),
            Read::Value(..) => unreachable!("the excluded-gas location holds gas"),
            Read::Blocked(idx) => return Err(VmError::Blocked(idx)),
        };
        self.note_read(location, origin);
        Ok(gas)
    }

    fn set_excluded_gas(&mut self, total: u64) {
        self.excluded_gas = Some(total);
    }
}

impl<S> ObservesBalances for VmDb<'_, S> {
    fn observe(&mut self, address: Address) {
        self.observed.insert(address);
    }
}

impl<S> VmDb<'_, S> {
    /// Adds a read to the read set, if this incarnation keeps one.
    #[inline]
    fn note_read(&mut self, location: Location, origin: ReadOrigin) {
        if self.keep_reads {
            self.reads.push((location, origin));
        }
    }
}

impl<'a, S: Storage> VmDb<'a, S> {
    fn wiped_at(&mut self, address: Address) -> Result<Option<TxIdx>, VmError> {
        if let Some(wiped) = self.wipes.get(&address) {
            return Ok(*wiped);
        }
        let location = Location::Wipe(address);
        let (wiped, origin) = match self.mv.read(&location, self.tx) {
            Read::PreState => (None, ReadOrigin::PreState),
            Read::Value(_, idx, inc) => (Some(idx), ReadOrigin::Version(idx, inc)),
            Read::Blocked(idx) => return Err(VmError::Blocked(idx)),
        };
        self.note_read(location, origin);
        self.wipes.insert(address, wiped);
        Ok(wiped)
    }
}

/// Exact where the store knows: a wipe by a lower transaction is a versioned read, validated
/// like any other. What it does not know is whether a lower transaction removed an *empty*
/// account (EIP-161, touched while empty, which wipes its storage): a plain transfer's
/// recipient is read lazily and its removal decided only when the block's state is built.
/// Only an account with neither balance, code nor nonce can be removed so (one with a balance
/// and no code or nonce can never be emptied: nothing can spend from it), so that case alone,
/// below the block's first transaction, sends the block to the sequential executor. No such
/// account is reachable by a creation on Ethereum mainnet.
impl<S: Storage> HasStorage for VmDb<'_, S> {
    fn has_storage(&mut self, address: Address) -> Result<bool, VmError> {
        if self.wiped_at(address)?.is_some()
            || !read_has_storage(self.base.storage, self.base.changes, address)?
        {
            return Ok(false);
        }
        let funded = self.base.basic(address)?.is_some_and(|a| !a.balance.is_zero());
        if self.tx == 0 || funded {
            return Ok(true);
        }
        Err(VmError::Sequential)
    }
}

impl<S: Storage> Database for VmDb<'_, S> {
    type Error = VmError;

    #[inline]
    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, VmError> {
        let start = self.stopwatch.start();
        let out = self.read_basic(address);
        self.stopwatch.stop(start);
        out
    }

    #[inline]
    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, VmError> {
        let start = self.stopwatch.start();
        let out = self.read_code(code_hash);
        self.stopwatch.stop(start);
        out
    }

    #[inline]
    fn storage(&mut self, address: Address, index: StorageKey) -> Result<StorageValue, VmError> {
        let start = self.stopwatch.start();
        let out = self.read_storage(address, index);
        self.stopwatch.stop(start);
        out
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, VmError> {
        Ok(read_block_hash(self.base.storage, number)?)
    }
}

/// The reads of [`VmDb`]'s `Database` implementation, untimed.
impl<S: Storage> VmDb<'_, S> {
    fn read_basic(&mut self, address: Address) -> Result<Option<AccountInfo>, VmError> {
        let location = Location::Basic(address);
        if self.lazy_recipient == Some(address) {
            // A plain transfer's recipient: if it has no code, only that matters, and the
            // credits other transactions paid it need not be folded.
            let (value, from_base) = full_write_with_origin(self.mv, self.base, address, self.tx)?;
            if value.is_none_or(|a| a.code_hash == KECCAK_EMPTY) {
                self.lazy_read = true;
                let origin = if from_base {
                    ReadOrigin::PreStateBasic
                } else {
                    ReadOrigin::CodeHash(KECCAK_EMPTY)
                };
                self.note_read(location, origin);
                self.basics.insert(address, value);
                return Ok(value.map(account_info));
            }
        }
        if address != self.caller
            && address != self.beneficiary
            && !self.force_full.contains(&address)
        {
            // A contract: most transactions that touch it never look at its balance, which
            // the credits of other transactions (ETH sent to it) change. Read it without
            // them; `Vm::execute_with` checks afterwards that the balance was not observed.
            let (view, from_base) = full_write_with_origin(self.mv, self.base, address, self.tx)?;
            if let Some(account) = view.filter(|a| a.code_hash != KECCAK_EMPTY) {
                self.lazy_accounts.insert(address, account);
                let origin = if from_base {
                    ReadOrigin::PreStateBasic
                } else {
                    ReadOrigin::Lazy(account.code_hash, account.nonce)
                };
                self.note_read(location, origin);
                self.basics.insert(address, view);
                return Ok(Some(account_info(account)));
            }
        }
        let (value, from_base) = account_with_origin(self.mv, self.base, address, self.tx)?;
        let origin =
            if from_base { ReadOrigin::PreStateAccount } else { ReadOrigin::Account(value) };
        self.note_read(location, origin);
        self.basics.insert(address, value);
        Ok(value.map(account_info))
    }

    fn read_code(&mut self, code_hash: B256) -> Result<Bytecode, VmError> {
        // Code is addressed by its hash, so it needs no versioning.
        if let Some(code) = self.new_code.get(&code_hash) {
            return Ok(code.clone());
        }
        Ok(read_code(self.base.storage, self.base.changes, code_hash)?)
    }

    fn read_storage(
        &mut self,
        address: Address,
        index: StorageKey,
    ) -> Result<StorageValue, VmError> {
        let wiped = self.wiped_at(address)?;
        let location = Location::Storage(address, index);
        let (value, origin) = match self.mv.read(&location, self.tx) {
            Read::PreState => {
                let value = if wiped.is_some() {
                    U256::ZERO
                } else {
                    read_storage(self.base.storage, self.base.changes, address, index)?
                };
                (value, ReadOrigin::PreState)
            }
            Read::Value(Value::Storage(value), idx, inc) => {
                // A wipe after the write hides it.
                let value = if wiped.is_some_and(|w| w > idx) { U256::ZERO } else { value };
                (value, ReadOrigin::Version(idx, inc))
            }
            Read::Value(..) => unreachable!("Storage locations hold Storage values"),
            Read::Blocked(idx) => return Err(VmError::Blocked(idx)),
        };
        self.note_read(location, origin);
        Ok(value)
    }
}

/// The context workers run revm with.
type WorkerContext<'a, S> = crate::tx_context::TxContext<VmDb<'a, S>>;

type WorkerEvm<'a, S> = MainnetEvm<WorkerContext<'a, S>>;

/// revm's mainnet handler, except that the fee credit to the beneficiary is deferred (and
/// becomes a [`Value::Credit`]) when the transaction has not loaded the beneficiary itself. Loading it only to add the fee
/// would make every transaction read and write the same account.
struct DeferredFeeHandler<'a, S: Storage> {
    deferred_fee: Cell<Option<U256>>,
    _evm: std::marker::PhantomData<WorkerEvm<'a, S>>,
}

impl<'a, S: Storage> Handler for DeferredFeeHandler<'a, S> {
    type Evm = WorkerEvm<'a, S>;
    type Error = EVMError<VmError, InvalidTransaction>;
    type HaltReason = HaltReason;

    fn reward_beneficiary(
        &self,
        evm: &mut Self::Evm,
        exec_result: &mut FrameResult,
    ) -> Result<(), Self::Error> {
        let ctx = evm.ctx();
        let beneficiary = ctx.block.beneficiary();
        if ctx.journaled_state.inner.state.contains_key(&beneficiary)
            || ctx.cfg.is_fee_charge_disabled()
        {
            return post_execution::reward_beneficiary(ctx, exec_result.gas()).map_err(From::from);
        }
        // The same arithmetic as `post_execution::reward_beneficiary`.
        let basefee = ctx.block.basefee() as u128;
        let effective_gas_price = ctx.tx.effective_gas_price(basefee);
        let price = if ctx.cfg.spec().is_enabled_in(SpecId::LONDON) {
            effective_gas_price.saturating_sub(basefee)
        } else {
            effective_gas_price
        };
        let gas = exec_result.gas();
        let used = gas.used().saturating_sub(gas.reservoir());
        self.deferred_fee.set(Some(U256::from(price) * U256::from(used)));
        Ok(())
    }

    fn run_exec_loop(
        &mut self,
        evm: &mut Self::Evm,
        first_frame_input: <<Self::Evm as EvmTr>::Frame as FrameTr>::FrameInit,
    ) -> Result<FrameResult, Self::Error> {
        gate::run_checked(evm, first_frame_input)
    }
}

/// What an incarnation produced for the block's output, besides its writes to the store
/// (from which the block's state changes are built once every transaction is final).
pub(crate) struct TxOutput {
    /// The transaction's result, or why it is invalid on the state it read or was rejected.
    pub(crate) result: Result<ExecutionResult<HaltReason>, TxFailure>,
    /// The rejection of a transaction included as failed ([`crate::ComplianceMode::Revert`]).
    pub(crate) reverted_by: Option<Rejection>,
    /// Accounts the transaction touched without a full write of them: they appear in the
    /// block's state changes (as in a sequential commit of revm's state) even if unchanged.
    pub(crate) touched: Vec<Address>,
    /// Code of the contracts the transaction created.
    pub(crate) created: Vec<(B256, Bytecode)>,
    /// revm's state after the transaction, when the executor keeps it
    /// ([`super::execute_transactions`]); `None` for a transaction that is not included.
    pub(crate) state: Option<Box<TxState>>,
}

/// revm's state after one transaction, as the last incarnation left it, and what it read
/// without the credits of lower transactions: a consumer that commits the states in block
/// order corrects those balances from the state before each transaction
/// ([`crate::alloy::tx_state`]).
pub(crate) struct TxState {
    /// The finalized journal.
    pub(crate) state: EvmState,
    /// Accounts in `state` read without pending credits, as they were read: only their
    /// balance can differ from the state before the transaction.
    pub(crate) lazy: Vec<(Address, Option<AccountBasic>)>,
    /// The beneficiary's fee, when it was deferred: the beneficiary is then not in `state`.
    pub(crate) deferred_fee: Option<U256>,
}

/// What one incarnation produced.
pub(crate) struct Incarnation {
    /// Its output.
    pub(crate) output: TxOutput,
    /// The read set.
    pub(crate) reads: Vec<(Location, ReadOrigin)>,
    /// The write set.
    pub(crate) writes: Vec<(Location, Value)>,
}

/// How an incarnation ended, when it did not produce an [`Incarnation`].
pub(crate) enum ExecuteError {
    /// It read an estimate of this transaction.
    Blocked(TxIdx),
    /// A fatal error: storage failure or an EVM error that is not about the transaction.
    Fatal(crate::ExecutionError),
    /// The block must be executed sequentially ([`VmError::Sequential`]).
    Sequential,
}

impl From<VmError> for ExecuteError {
    fn from(error: VmError) -> Self {
        match error {
            VmError::Blocked(idx) => Self::Blocked(idx),
            VmError::Storage(e) => Self::Fatal(e.into()),
            VmError::Sequential => Self::Sequential,
        }
    }
}

/// How a worker's [`Vm`] runs.
#[derive(Clone, Copy)]
pub(crate) struct VmSettings<'a> {
    /// The compliance hook, if configured.
    pub(crate) compliance: Option<&'a Compliance>,
    /// revm's configuration.
    pub(crate) cfg: &'a revm::context::CfgEnv,
    /// Time the reads ([`crate::Config::phase_timers`]).
    pub(crate) timed: bool,
    /// Keep each incarnation's revm state ([`TxOutput::state`]).
    pub(crate) keep_states: bool,
}

/// A worker's revm instance, reused across transactions.
pub(crate) struct Vm<'a, S: Storage> {
    evm: WorkerEvm<'a, S>,
    txs: &'a [TxEnv],
    beneficiary: Address,
    /// Whether each incarnation keeps revm's state ([`TxOutput::state`]).
    keep_states: bool,
}

impl<'a, S: Storage> Vm<'a, S> {
    pub(crate) fn new(
        block: &'a BlockInput,
        base: &'a Base<'a, S>,
        mv: &'a MvMemory,
        new_code: &'a DashMap<B256, Bytecode, alloy_primitives::map::DefaultHashBuilder>,
        settings: VmSettings<'a>,
    ) -> Self {
        let VmSettings { compliance, cfg, timed, keep_states } = settings;
        let db = VmDb {
            gate: compliance.map(Gate::new),
            excluded_gas: None,
            base,
            mv,
            new_code,
            tx: 0,
            reads: Vec::new(),
            keep_reads: true,
            basics: AddressMap::default(),
            wipes: AddressMap::default(),
            caller: Address::ZERO,
            beneficiary: block.env.beneficiary,
            lazy_recipient: None,
            lazy_read: false,
            lazy_accounts: AddressMap::default(),
            observed: Default::default(),
            force_full: Default::default(),
            stopwatch: Stopwatch::new(timed),
        };
        let mut evm = WorkerContext::<'a, S>::new(db, block.spec)
            .with_cfg(cfg.clone())
            .with_block(block.env.clone())
            .build_mainnet();
        observe::install(&mut evm.instruction);
        Self { evm, txs: &block.transactions, beneficiary: block.env.beneficiary, keep_states }
    }

    /// The time spent reading state since the last call (with phase timers on).
    pub(crate) fn take_read_time(&mut self) -> std::time::Duration {
        self.evm.ctx.journaled_state.database.stopwatch.take()
    }

    /// Executes transaction `tx` on the current contents of the multi-version store, with a
    /// read set unless it reads only final values (`final_on_start`).
    pub(crate) fn execute(
        &mut self,
        tx: TxIdx,
        final_on_start: bool,
    ) -> Result<Incarnation, ExecuteError> {
        self.evm.ctx.journaled_state.database.keep_reads = !final_on_start;
        let env = &self.txs[tx];
        let mut lazy_recipient = env
            .kind
            .to()
            .copied()
            .filter(|to| env.data.is_empty() && *to != env.caller && *to != self.beneficiary);
        self.evm.ctx.journaled_state.database.force_full.clear();
        loop {
            match self.execute_with(tx, lazy_recipient)? {
                Attempt::Done(incarnation) => return Ok(*incarnation),
                Attempt::RecipientNotPlain => lazy_recipient = None,
                Attempt::BalanceObserved(address) => {
                    self.evm.ctx.journaled_state.database.force_full.insert(address);
                }
            }
        }
    }

    /// Executes `tx` once, reading `lazy_recipient` and contracts lazily.
    fn execute_with(
        &mut self,
        tx: TxIdx,
        lazy_recipient: Option<Address>,
    ) -> Result<Attempt, ExecuteError> {
        {
            let db = &mut self.evm.ctx.journaled_state.database;
            db.tx = tx;
            db.caller = self.txs[tx].caller;
            // The read set moved out with the previous incarnation: a new one, sized for a
            // typical transaction's reads.
            db.reads = if db.keep_reads { Vec::with_capacity(16) } else { Vec::new() };
            db.basics.clear();
            db.wipes.clear();
            db.lazy_recipient = lazy_recipient;
            db.lazy_read = false;
            db.lazy_accounts.clear();
            db.observed.clear();
            db.excluded_gas = None;
        }
        self.evm.ctx.set_tx(self.txs[tx].clone());
        let mut handler = DeferredFeeHandler::<S> {
            deferred_fee: Cell::new(None),
            _evm: std::marker::PhantomData,
        };
        let result = handler.run(&mut self.evm);
        let mut state = self.evm.finalize();
        let db = &mut self.evm.ctx.journaled_state.database;
        let mut reads = std::mem::take(&mut db.reads);
        let rejection = db.gate.as_mut().and_then(Gate::take_rejection);
        // A read that must wait, or a failed storage, comes before a rejection: the check
        // that rejected may have read it.
        let (result, reverted_by) = match gate::classify(result, rejection) {
            Ok(classified) => classified,
            Err(EVMError::Database(e)) => return Err(e.into()),
            Err(EVMError::Header(e)) => {
                return Err(ExecuteError::Fatal(crate::ExecutionError::InvalidHeader(
                    e.to_string(),
                )))
            }
            Err(other) => {
                return Err(ExecuteError::Fatal(crate::ExecutionError::Evm {
                    index: tx,
                    message: other.to_string(),
                }))
            }
        };

        // Contracts read without credits: if the transaction looked at the balance (or
        // changed more than the balance), the read must have been a full one.
        let mut balance_deltas = Vec::new();
        let mut lazy = Vec::new();
        // Drained, not taken: the map keeps its allocation for the next transaction.
        for (address, view) in db.lazy_accounts.drain() {
            if self.keep_states {
                lazy.push((address, Some(view)));
            }
            let account = state.get(&address);
            let changed = account.is_some_and(|a| {
                a.is_created()
                    || a.is_selfdestructed()
                    || a.info.nonce != view.nonce
                    || a.info.code_hash != view.code_hash
                    || a.info.balance < view.balance
            });
            if changed || db.observed.contains(&address) {
                let full = resolve_account(db.mv, db.base, address, tx)?;
                if full != Some(view) {
                    return Ok(Attempt::BalanceObserved(address));
                }
                // Nothing was credited in between: the lazy read was a full one after all.
                for (location, origin) in &mut reads {
                    if *location == Location::Basic(address) {
                        *origin = ReadOrigin::Account(full);
                    }
                }
            } else if let Some(account) = account.filter(|a| a.is_touched()) {
                balance_deltas.push((address, account.info.balance - view.balance));
            }
        }

        let mut writes = Vec::new();
        let mut effects = Effects::default();
        let mut lazy_recipient_account = None;
        if db.lazy_read {
            let recipient = lazy_recipient.expect("lazy reads only of the candidate");
            if result.is_err() || !is_plain_credit(&state, &db.basics, recipient) {
                return Ok(Attempt::RecipientNotPlain);
            }
            // The transfer's outcome did not depend on the recipient's balance: the payment
            // becomes a credit, applied to the account as it is when the block's state is
            // built.
            let account = state.remove(&recipient).expect("checked by is_plain_credit");
            let before = db.basics[&recipient];
            let paid = account.info.balance - before.map(|a| a.balance).unwrap_or_default();
            writes.push((Location::Credit(recipient), Value::Credit(paid)));
            if self.keep_states {
                lazy.push((recipient, before));
                lazy_recipient_account = Some(account);
            }
        }
        if result.is_ok() {
            if let Some(fee) = handler.deferred_fee.get() {
                writes.push((Location::Credit(self.beneficiary), Value::Credit(fee)));
            }
            write_set(&state, &db.basics, &balance_deltas, db.new_code, &mut writes, &mut effects);
        }
        if let Some(total) = db.excluded_gas {
            writes.push((Location::ExcludedGas, Value::Gas(total)));
        }
        let kept = if self.keep_states && result.is_ok() {
            if let (Some(recipient), Some(account)) = (lazy_recipient, lazy_recipient_account) {
                state.insert(recipient, account);
            }
            let deferred_fee = handler.deferred_fee.get();
            // The journal gets a map of the same size: the next transaction fills it
            // without growing it.
            let fresh = EvmState::with_capacity_and_hasher(state.capacity(), Default::default());
            let state = std::mem::replace(&mut state, fresh);
            Some(Box::new(TxState { state, lazy, deferred_fee }))
        } else {
            None
        };
        // Hand revm's state map back to the journal: the next transaction reuses its
        // allocation.
        state.clear();
        self.evm.ctx.journaled_state.inner.state = state;
        let Effects { touched, created } = effects;
        Ok(Attempt::Done(Box::new(Incarnation {
            output: TxOutput { result, reverted_by, touched, created, state: kept },
            reads,
            writes,
        })))
    }
}

/// How one attempt at executing a transaction ended.
enum Attempt {
    /// An incarnation to record.
    Done(Box<Incarnation>),
    /// The recipient was read lazily but the transfer turned out not to be plain.
    RecipientNotPlain,
    /// A contract read without credits had its balance observed, and credits were pending.
    BalanceObserved(Address),
}

/// Whether the only effect of the transaction on `recipient` was a balance increase (it
/// has no code before or after, its nonce is unchanged, it was not created or destroyed).
fn is_plain_credit(
    state: &EvmState,
    read: &AddressMap<Option<AccountBasic>>,
    recipient: Address,
) -> bool {
    let (Some(account), Some(before)) = (state.get(&recipient), read.get(&recipient)) else {
        return false;
    };
    let before = before.unwrap_or_default();
    let after = &account.info;
    account.is_touched()
        && !account.is_created()
        && !account.is_selfdestructed()
        && account.storage.is_empty()
        && before.code_hash == KECCAK_EMPTY
        && after.code_hash == KECCAK_EMPTY
        && after.nonce == before.nonce
        && after.balance >= before.balance
}

/// What an incarnation did besides its writes, for the block's state changes.
#[derive(Default)]
struct Effects {
    touched: Vec<Address>,
    created: Vec<(B256, Bytecode)>,
}

/// Appends the locations an incarnation wrote to `writes`, derived from revm's finalized
/// state with the same rules [`StateChanges::commit_tx`] applies. An account is written only
/// if it differs from what the incarnation read (revm touches accounts it does not change,
/// for example the target of every call), so that unchanged accounts do not create
/// conflicts; those are listed in `effects.touched` instead.
fn write_set(
    state: &EvmState,
    read: &AddressMap<Option<AccountBasic>>,
    balance_deltas: &[(Address, U256)],
    new_code: &DashMap<B256, Bytecode, alloy_primitives::map::DefaultHashBuilder>,
    writes: &mut Vec<(Location, Value)>,
    effects: &mut Effects,
) {
    for (address, account) in state {
        if !account.is_touched() {
            continue;
        }
        if let Some((_, delta)) = balance_deltas.iter().find(|(a, _)| a == address) {
            // Read without credits: its balance change is a credit, and only its storage
            // is written here.
            if delta.is_zero() {
                effects.touched.push(*address);
            } else {
                writes.push((Location::Credit(*address), Value::Credit(*delta)));
            }
            push_storage(address, account, writes);
            continue;
        }
        let wiped = account.is_selfdestructed() || account.is_created() || account.is_empty();
        let value = if account.is_selfdestructed() || (!account.is_created() && account.is_empty())
        {
            None
        } else {
            Some(AccountBasic::from(&account.info))
        };
        if wiped {
            writes.push((Location::Wipe(*address), Value::Wipe));
        }
        if wiped || read.get(address) != Some(&value) {
            writes.push((Location::Basic(*address), Value::Basic(value)));
        } else {
            effects.touched.push(*address);
        }
        if let Some((hash, code)) = crate::state_changes::code_set(account) {
            // Later transactions read it by hash (a delegation's too, when they call the
            // delegated account).
            new_code.entry(hash).or_insert_with(|| code.clone());
            if value.is_some() {
                // As in a sequential commit: a contract destroyed by the transaction that
                // created it leaves no code.
                effects.created.push((hash, code.clone()));
            }
        }
        if value.is_some() {
            push_storage(address, account, writes);
        }
    }
}

/// Appends the storage slots `account` changed.
fn push_storage(address: &Address, account: &Account, writes: &mut Vec<(Location, Value)>) {
    for (slot, value) in &account.storage {
        if value.is_changed() {
            writes.push((Location::Storage(*address, *slot), Value::Storage(value.present_value)));
        }
    }
}
