//! The parallel executor: optimistic Block-STM over revm.
//!
//! Worker threads execute transactions speculatively against the multi-version store
//! ([`mv_memory`]), record what each incarnation read, validate those reads once lower
//! transactions have written, and re-execute on conflict, as the collaborative
//! [`scheduler`] directs. When the scheduler is done, every transaction's last incarnation
//! read exactly what it would have read in block order, so committing their states in order
//! gives the sequential result.

mod mv_memory;
mod scheduler;
mod vm;

use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::{Address, U256};
use dashmap::DashMap;
use parking_lot::Mutex;
use revm::primitives::hardfork::SpecId;
use revm::primitives::KECCAK_EMPTY;
use revm::state::{Account, EvmState};
use tracing::debug_span;

use self::mv_memory::{Location, MvMemory, Read, ReadOrigin};
use self::scheduler::{Scheduler, Task, Version};
use self::vm::{resolve_account, resolve_full_write, Base, ExecuteError, Incarnation, Vm};
use crate::block_db::account_info;
use crate::output::{BlockOutput, ExecutionStats, TxOutcome};
use crate::sequential::check_gas_available;
use crate::system::{block_evm, post_block_balances, post_block_calls, pre_block};
use crate::{BlockInput, ExecutionError, StateChanges, Storage};

/// Index of a transaction in the block.
pub(crate) type TxIdx = usize;

/// Per-transaction record of the last finished incarnation.
#[derive(Default)]
struct TxRecord {
    incarnation: Option<Incarnation>,
    /// Locations the last incarnation wrote (to remove stale entries on re-execution).
    written: Vec<Location>,
}

struct Shared<'a, S> {
    block: &'a BlockInput,
    base: Base<'a, S>,
    mv: MvMemory,
    scheduler: Scheduler,
    records: Vec<Mutex<TxRecord>>,
    /// For each transaction, the previous transaction of the same sender: it cannot be
    /// valid before that one has executed (its nonce depends on it), so it waits for it
    /// instead of executing speculatively.
    previous_of_sender: Vec<Option<TxIdx>>,
    new_code: DashMap<
        alloy_primitives::B256,
        revm::bytecode::Bytecode,
        alloy_primitives::map::DefaultHashBuilder,
    >,
    fatal: Mutex<Option<ExecutionError>>,
    executions: AtomicU64,
    validation_aborts: AtomicU64,
    dependency_waits: AtomicU64,
}

impl<S: Storage> Shared<'_, S> {
    fn fail(&self, error: ExecutionError) {
        self.fatal.lock().get_or_insert(error);
        self.scheduler.abort();
    }

    /// Stores an incarnation's writes and read set; returns whether it wrote a location the
    /// previous incarnation did not.
    fn record(&self, version: Version, incarnation: Incarnation) -> bool {
        let mut locations: Vec<Location> = Vec::with_capacity(incarnation.writes.len());
        for (location, value) in &incarnation.writes {
            self.mv
                .write(*location, version.tx, version.incarnation, *value);
            locations.push(*location);
        }
        let mut record = self.records[version.tx].lock();
        let mut wrote_new = false;
        for location in &locations {
            wrote_new |= !record.written.contains(location);
        }
        for stale in record.written.iter().filter(|l| !locations.contains(l)) {
            self.mv.remove(stale, version.tx);
        }
        record.written = locations;
        record.incarnation = Some(incarnation);
        wrote_new
    }

    /// Whether transaction `tx`'s last read set still reads the same values.
    fn validate(&self, tx: TxIdx) -> bool {
        let record = self.records[tx].lock();
        let Some(incarnation) = &record.incarnation else {
            return false;
        };
        incarnation
            .reads
            .iter()
            .all(|(location, origin)| match origin {
                ReadOrigin::PreState => matches!(self.mv.read(location, tx), Read::PreState),
                ReadOrigin::Version(i, n) => matches!(
                    self.mv.read(location, tx),
                    Read::Value(_, idx, inc) if idx == *i && inc == *n
                ),
                ReadOrigin::Account(seen) => self
                    .resolved(location, tx, resolve_account)
                    .is_some_and(|a| a == *seen),
                ReadOrigin::CodeHash(hash) => self
                    .resolved(location, tx, resolve_full_write)
                    .is_some_and(|a| a.map_or(KECCAK_EMPTY, |a| a.code_hash) == *hash),
            })
    }

    /// The account a read of `location` by `tx` resolves to with `resolve`, or `None` if
    /// it cannot be resolved now (an estimate, or a storage error that re-execution will
    /// report).
    fn resolved(
        &self,
        location: &Location,
        tx: TxIdx,
        resolve: fn(
            &MvMemory,
            &Base<'_, S>,
            Address,
            TxIdx,
        ) -> Result<Option<crate::AccountBasic>, vm::VmError>,
    ) -> Option<Option<crate::AccountBasic>> {
        let Location::Basic(address) = location else {
            return None;
        };
        resolve(&self.mv, &self.base, *address, tx).ok()
    }

    fn try_execute(&self, vm: &mut Vm<'_, S>, version: Version) -> Option<Task> {
        if let Some(previous) = self.previous_of_sender[version.tx] {
            if self.scheduler.add_dependency(version.tx, previous) {
                self.dependency_waits.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        loop {
            self.executions.fetch_add(1, Ordering::Relaxed);
            match vm.execute(version.tx) {
                Ok(incarnation) => {
                    let wrote_new = self.record(version, incarnation);
                    return self.scheduler.finish_execution(version, wrote_new);
                }
                Err(ExecuteError::Blocked(blocking)) => {
                    self.dependency_waits.fetch_add(1, Ordering::Relaxed);
                    if self.scheduler.add_dependency(version.tx, blocking) {
                        return None;
                    }
                    // The blocking transaction finished meanwhile: execute again.
                }
                Err(ExecuteError::Fatal(error)) => {
                    self.fail(error);
                    return None;
                }
            }
        }
    }

    fn needs_reexecution(&self, version: Version) -> Option<Task> {
        let valid = self.validate(version.tx);
        let aborted = !valid && self.scheduler.try_validation_abort(version);
        if aborted {
            self.validation_aborts.fetch_add(1, Ordering::Relaxed);
            let record = self.records[version.tx].lock();
            for location in &record.written {
                self.mv.mark_estimate(location, version.tx);
            }
        }
        self.scheduler.finish_validation(version.tx, aborted)
    }

    fn work(&self) {
        let mut vm = Vm::new(self.block, &self.base, &self.mv, &self.new_code);
        let mut task = None;
        let mut idle = 0u32;
        while !self.scheduler.done() {
            task = match task {
                Some(Task::Execute(version)) => self.try_execute(&mut vm, version),
                Some(Task::Validate(version)) => self.needs_reexecution(version),
                None => {
                    let next = self.scheduler.next_task();
                    if next.is_none() {
                        idle += 1;
                        if idle > 64 {
                            std::thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    } else {
                        idle = 0;
                    }
                    next
                }
            };
        }
    }
}

/// Puts a credit into a transaction's state exactly as revm would have applied it: the
/// account is loaded as it is before the credit, touched, and normalised the way revm's
/// journal does before Spurious Dragon.
fn apply_credit(
    state: &mut EvmState,
    address: Address,
    current: Option<crate::AccountBasic>,
    amount: U256,
    spec: SpecId,
) {
    let mut account = match current {
        Some(basic) => Account::from(account_info(basic)),
        None => Account::new_not_existing(Default::default()),
    };
    account.info.balance = account.info.balance.saturating_add(amount);
    account.mark_touch();
    if !spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) && account.is_empty() {
        if account.is_loaded_as_not_existing() {
            account.mark_created();
        } else {
            account.unmark_touch();
        }
    }
    state.insert(address, account);
}

/// For each transaction, the index of the previous transaction with the same sender.
fn previous_of_sender(block: &BlockInput) -> Vec<Option<TxIdx>> {
    let mut last = alloy_primitives::map::AddressMap::<TxIdx>::default();
    block
        .transactions
        .iter()
        .enumerate()
        .map(|(idx, tx)| last.insert(tx.caller, idx))
        .collect()
}

/// Executes `block` on `storage` with Block-STM on `threads` worker threads.
pub fn execute_parallel<S: Storage>(
    storage: &S,
    block: &BlockInput,
    threads: NonZeroUsize,
) -> Result<(BlockOutput, ExecutionStats), ExecutionError> {
    let _span = debug_span!("execute_parallel", txs = block.transactions.len(), threads).entered();
    let n = block.transactions.len();

    // System calls before the transactions run sequentially; their result is the base the
    // parallel phase reads.
    let mut evm = block_evm(storage, block, StateChanges::default());
    pre_block(&mut evm, block)?;
    let pre = std::mem::take(&mut evm.ctx.journaled_state.database.changes);
    drop(evm);

    let shared = Shared {
        block,
        base: Base {
            storage,
            changes: &pre,
        },
        mv: MvMemory::new(block.spec),
        scheduler: Scheduler::new(n),
        records: (0..n).map(|_| Mutex::new(TxRecord::default())).collect(),
        previous_of_sender: previous_of_sender(block),
        new_code: DashMap::default(),
        fatal: Mutex::new(None),
        executions: AtomicU64::new(0),
        validation_aborts: AtomicU64::new(0),
        dependency_waits: AtomicU64::new(0),
    };
    {
        let _span = debug_span!("block_stm").entered();
        let worker = || {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| shared.work())) {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                shared.fail(ExecutionError::Panic(message));
            }
        };
        let helpers = threads.get().min(n.max(1)) - 1;
        std::thread::scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(worker);
            }
            worker();
        });
    }
    if let Some(error) = shared.fatal.into_inner() {
        return Err(error);
    }

    let _span = debug_span!("commit").entered();
    let stats = ExecutionStats {
        executions: shared.executions.load(Ordering::Relaxed),
        re_executions: shared
            .executions
            .load(Ordering::Relaxed)
            .saturating_sub(n as u64),
        validation_aborts: shared.validation_aborts.load(Ordering::Relaxed),
        dependency_waits: shared.dependency_waits.load(Ordering::Relaxed),
    };
    // `pre` is tiny (the system contracts' slots): copying it keeps `shared` borrowable.
    let mut changes = pre.clone();
    let mut transactions = Vec::with_capacity(n);
    let mut cumulative_gas_used = 0u64;
    for (index, record) in shared.records.into_iter().enumerate() {
        let tx = &block.transactions[index];
        check_gas_available(block, index, tx.gas_limit, cumulative_gas_used)?;
        let incarnation = record.into_inner().incarnation.ok_or_else(|| {
            ExecutionError::Panic(format!("transaction {index} was never executed"))
        })?;
        let result = incarnation
            .result
            .map_err(|reason| ExecutionError::InvalidTransaction { index, reason })?;
        let mut state = incarnation.state;
        for (address, amount) in incarnation.credits {
            let current = crate::block_db::read_basic(storage, &changes, address)?;
            apply_credit(&mut state, address, current, amount, block.spec);
        }
        changes.commit_tx(state);
        cumulative_gas_used += result.tx_gas_used();
        transactions.push(TxOutcome {
            tx_type: tx.tx_type,
            result,
            cumulative_gas_used,
        });
    }

    let mut evm = block_evm(storage, block, changes);
    post_block_calls(&mut evm, block)?;
    let mut state = std::mem::take(&mut evm.ctx.journaled_state.database.changes);
    drop(evm);
    post_block_balances(&mut state, storage, block)?;
    Ok((
        BlockOutput {
            transactions,
            state,
            gas_used: cumulative_gas_used,
        },
        stats,
    ))
}
