//! The parallel executor: optimistic Block-STM over revm.
//!
//! Worker threads execute transactions speculatively against the multi-version store
//! ([`mv_memory`]), record what each incarnation read ([`read_set`]), validate those reads
//! once lower transactions have written, and re-execute on conflict, as the collaborative
//! [`scheduler`] directs. Workers commit final transactions in order (gas, compliance
//! ledger, receipts). When the scheduler is done, every transaction's last incarnation read
//! exactly what it would have read in block order, so the store's final entries, replayed
//! per account in block order, are the sequential result's state ([`final_state`]).

mod final_state;
mod mv_memory;
mod observe;
mod perturb;
pub(crate) mod phases;
mod read_set;
mod scheduler;
mod vm;

use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_primitives::map::{AddressMap, DefaultHashBuilder};
use alloy_primitives::{Address, B256};
use crossbeam::utils::CachePadded;
use dashmap::DashMap;
use parking_lot::Mutex;
use revm::bytecode::Bytecode;
use tracing::debug_span;

use self::mv_memory::{Location, MvMemory};
use self::phases::{Clock, Phase, PhaseTimes, WorkerPhases};
use self::read_set::{Base, ReadOrigin};
use self::scheduler::{Scheduler, Task, Version};
use self::vm::{ExecuteError, Incarnation, TxOutput, Vm};
use crate::compliance::Ledger;
use crate::output::{BlockOutput, ExecutionStats, TxOutcome};
use crate::sequential::check_gas_available;
use crate::system::{block_evm, post_block_balances, post_block_calls, pre_block};
use crate::{BlockInput, Compliance, ExecutionError, StateChanges, Storage};

/// Index of a transaction in the block.
pub(crate) type TxIdx = usize;

/// A value alone on a 64-byte cache line: for per-transaction state that the workers
/// running neighbouring transactions write at the same time. (crossbeam's `CachePadded`
/// takes 128 bytes on x86-64, too much for one per transaction.)
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct CacheLine<T>(pub(crate) T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Per-transaction record of the last finished incarnation.
#[derive(Default)]
struct TxRecord {
    /// The last incarnation's read set.
    reads: Vec<(Location, ReadOrigin)>,
    /// Locations the last incarnation wrote (to remove stale entries on re-execution).
    written: Vec<Location>,
    /// The last incarnation's output.
    output: Option<TxOutput>,
}

/// The block's outcome so far: transactions `0..next` are final and committed.
///
/// A transaction is final once every lower one is committed and its read set validates:
/// the entries below it can no longer change, so neither can its validation. Committing is
/// cheap and in order: the block gas check, the compliance ledger and the receipt. The
/// block's state changes are built once at the end, from the store's final entries
/// ([`final_state`]).
struct Committed {
    next: TxIdx,
    ledger: Ledger,
    transactions: Vec<TxOutcome>,
    gas_used: u64,
    /// Accounts the included transactions touched without writing them.
    touched: Vec<Address>,
    /// Code the included transactions created.
    created: Vec<(B256, Bytecode)>,
}

impl Committed {
    /// Commits transaction `index`'s output, with the same checks as the sequential path.
    fn commit(
        &mut self,
        block: &BlockInput,
        index: TxIdx,
        output: TxOutput,
    ) -> Result<(), ExecutionError> {
        let tx = &block.transactions[index];
        check_gas_available(block, index, tx.gas_limit, self.gas_used)?;
        self.next = index + 1;
        let Some(result) = self.ledger.decide(index, tx.caller, tx.nonce, output.result)? else {
            return Ok(());
        };
        if let Some(rejection) = output.reverted_by {
            self.ledger.note_reverted(index, rejection);
        }
        self.touched.extend(output.touched);
        self.created.extend(output.created);
        self.gas_used += result.tx_gas_used();
        self.transactions.push(TxOutcome {
            index,
            tx_type: tx.tx_type,
            result,
            cumulative_gas_used: self.gas_used,
        });
        Ok(())
    }
}

/// Everything the workers share while executing one block.
struct Shared<'a, S> {
    block: &'a BlockInput,
    /// The compliance hook and its mode, if configured.
    compliance: Option<&'a Compliance>,
    base: Base<'a, S>,
    mv: MvMemory,
    scheduler: Scheduler,
    records: Vec<Mutex<TxRecord>>,
    committed: Mutex<Committed>,
    /// Mirrors `committed.next`, readable without the lock.
    committed_upto: CachePadded<AtomicUsize>,
    /// For each transaction, the previous transaction of the same sender: it cannot be
    /// valid before that one has executed (its nonce depends on it), so it waits for it
    /// instead of executing speculatively.
    previous_of_sender: Vec<Option<TxIdx>>,
    new_code: DashMap<B256, Bytecode, DefaultHashBuilder>,
    fatal: Mutex<Option<ExecutionError>>,
    /// The workers' counters, each added once when the worker stops (a shared counter
    /// bumped per transaction would be one more cache line the workers fight over).
    stats: Mutex<ExecutionStats>,
    /// Whether workers time their phases ([`crate::Config::phase_timers`]).
    timed: bool,
    /// Each worker's phase times, the calling thread's first.
    phases: Mutex<Vec<WorkerPhases>>,
    /// How many workers run the block, and the number the next one to start takes.
    workers: usize,
    workers_started: AtomicUsize,
    /// The workers' shares of the block's state changes.
    shares: Mutex<Vec<final_state::Share>>,
    /// Seed of the scheduling perturbation of stress runs (feature `perturb`), 0 for none.
    #[cfg(feature = "perturb")]
    perturb_seed: u64,
}

impl<S: Storage> Shared<'_, S> {
    fn fail(&self, error: ExecutionError) {
        self.fatal.lock().get_or_insert(error);
        self.scheduler.abort();
    }

    /// Stores an incarnation's writes and read set; returns whether it wrote a location the
    /// previous incarnation did not. (An incarnation that started with every lower
    /// transaction committed read only final values and kept no read set: validating it is
    /// free.)
    fn record(&self, version: Version, incarnation: Incarnation) -> bool {
        let locations: Vec<Location> = incarnation.writes.iter().map(|(l, _)| *l).collect();
        for (location, value) in incarnation.writes {
            self.mv.write(location, version.tx, version.incarnation, value);
            perturb::point();
        }
        let mut record = self.records[version.tx].lock();
        let wrote_new = locations.iter().any(|l| !record.written.contains(l));
        for stale in record.written.iter().filter(|l| !locations.contains(l)) {
            self.mv.remove(stale, version.tx);
        }
        record.written = locations;
        record.reads = incarnation.reads;
        record.output = Some(incarnation.output);
        wrote_new
    }

    /// Whether transaction `tx`'s last read set still reads the same values. Only called
    /// for executed transactions, whose record holds their read set.
    fn validate(&self, tx: TxIdx) -> bool {
        let record = self.records[tx].lock();
        read_set::still_valid(&record.reads, &self.mv, &self.base, tx)
    }

    fn try_execute(
        &self,
        vm: &mut Vm<'_, S>,
        clock: &mut Clock,
        stats: &mut ExecutionStats,
        version: Version,
    ) -> Option<Task> {
        if let Some(previous) = self.previous_of_sender[version.tx] {
            if self.scheduler.add_dependency(version.tx, previous) {
                stats.dependency_waits += 1;
                clock.lap(Phase::Schedule);
                return None;
            }
        }
        loop {
            stats.executions += 1;
            // With every lower transaction committed, the entries below this one are final:
            // so is what it reads, and it cannot be invalidated.
            let final_on_start = self.committed_upto.load(Ordering::Acquire) == version.tx;
            clock.lap(Phase::Schedule);
            let executed = vm.execute(version.tx, final_on_start);
            clock.lap_execution(vm.take_read_time());
            match executed {
                Ok(incarnation) => {
                    let wrote_new = self.record(version, incarnation);
                    clock.lap(Phase::Record);
                    let next = self.scheduler.finish_execution(version, wrote_new);
                    clock.lap(Phase::Schedule);
                    if final_on_start {
                        // Final already: commit it (and whatever became final above it) now,
                        // without a validation.
                        self.commit_final(Some(version));
                        clock.lap(Phase::Commit);
                    }
                    return next;
                }
                Err(ExecuteError::Blocked(blocking)) => {
                    stats.dependency_waits += 1;
                    if self.scheduler.add_dependency(version.tx, blocking) {
                        clock.lap(Phase::Schedule);
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

    fn needs_reexecution(
        &self,
        clock: &mut Clock,
        stats: &mut ExecutionStats,
        version: Version,
    ) -> Option<Task> {
        // If every lower transaction is final, a successful validation makes this one final.
        let lower_final = self.committed_upto.load(Ordering::Acquire) == version.tx;
        perturb::point();
        clock.lap(Phase::Schedule);
        let valid = self.validate(version.tx);
        clock.lap(Phase::Validate);
        perturb::point();
        if valid && lower_final {
            self.commit_final(Some(version));
            clock.lap(Phase::Commit);
        }
        let aborted = !valid && self.scheduler.try_validation_abort(version);
        if aborted {
            stats.validation_aborts += 1;
            let record = self.records[version.tx].lock();
            for location in &record.written {
                self.mv.mark_estimate(location, version.tx);
            }
        }
        let next = self.scheduler.finish_validation(version.tx, aborted);
        clock.lap(Phase::Schedule);
        next
    }

    /// Whether the next transaction to commit has finished executing.
    fn next_commit_executed(&self) -> bool {
        let next = self.committed_upto.load(Ordering::Acquire);
        next < self.records.len() && self.scheduler.executed_incarnation(next).is_some()
    }

    /// Commits transactions in order while they are final. `validated` is an incarnation
    /// just validated with every lower transaction final, which needs no second validation.
    fn commit_final(&self, validated: Option<Version>) {
        let Some(mut committed) = self.committed.try_lock() else {
            return;
        };
        while committed.next < self.records.len() {
            let tx = committed.next;
            let final_version = match validated {
                Some(version) if version.tx == tx => {
                    self.scheduler.is_executed(version).then_some(version)
                }
                _ => self.scheduler.executed_incarnation(tx).filter(|_| self.validate(tx)),
            };
            let Some(version) = final_version else { return };
            let output = {
                let mut record = self.records[tx].lock();
                if !self.scheduler.is_executed(version) {
                    return;
                }
                record.output.take()
            };
            let Some(output) = output else {
                self.fail(ExecutionError::Panic(format!("transaction {tx} has no output")));
                return;
            };
            if let Err(error) = committed.commit(self.block, tx, output) {
                self.fail(error);
                return;
            }
            self.committed_upto.store(committed.next, Ordering::Release);
        }
    }

    /// A worker's loop: take tasks until the scheduler is done. `first` is the calling
    /// thread.
    fn work(&self, first: bool) {
        let worker = self.workers_started.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "perturb")]
        {
            let worker = worker as u64;
            let seed = self.perturb_seed;
            perturb::seed(if seed == 0 {
                0
            } else {
                seed ^ (worker + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            });
        }
        let mut clock = Clock::new(self.timed);
        let mut vm =
            Vm::new(self.block, &self.base, &self.mv, &self.new_code, self.compliance, self.timed);
        clock.lap(Phase::Schedule);
        let mut stats = ExecutionStats::default();
        let mut task = None;
        let mut idle = 0u32;
        while !self.scheduler.done() {
            perturb::point();
            task = match task {
                Some(Task::Execute(version)) => {
                    self.try_execute(&mut vm, &mut clock, &mut stats, version)
                }
                Some(Task::Validate(version)) => {
                    self.needs_reexecution(&mut clock, &mut stats, version)
                }
                None => {
                    // After a task, advance the commits: a transaction validated while a
                    // lower one was not yet committed becomes final only now. (Not while
                    // idle: that would take the lock from the worker that needs it.)
                    if idle == 0 && self.next_commit_executed() {
                        self.commit_final(None);
                        clock.lap(Phase::Commit);
                    }
                    let next = self.scheduler.next_task();
                    if next.is_some() {
                        idle = 0;
                        clock.lap(Phase::Schedule);
                    } else {
                        idle += 1;
                        if idle > 64 {
                            std::thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                        clock.lap(Phase::Idle);
                    }
                    next
                }
            };
        }
        {
            let mut total = self.stats.lock();
            total.executions += stats.executions;
            total.validation_aborts += stats.validation_aborts;
            total.dependency_waits += stats.dependency_waits;
        }
        if self.fatal.lock().is_none() {
            // Every transaction is executed and validated: the store's entries are final.
            match final_state::build_share(
                &self.base,
                &self.mv,
                worker % self.workers,
                self.workers,
                self.block.spec,
            ) {
                Ok(share) => self.shares.lock().push(share),
                Err(error) => self.fail(error),
            }
            clock.lap(Phase::State);
        }
        if self.timed {
            let mut phases = self.phases.lock();
            let at = if first { 0 } else { phases.len() };
            phases.insert(at, clock.phases);
        }
    }

    /// Runs [`Self::work`], turning a panic into a fatal error that stops the others.
    fn work_guarded(&self, first: bool) {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.work(first)));
        #[cfg(feature = "perturb")]
        perturb::seed(0);
        if let Err(panic) = outcome {
            self.fail(ExecutionError::Panic(panic_message(panic.as_ref())));
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// For each transaction, the index of the previous transaction with the same sender.
fn previous_of_sender(block: &BlockInput) -> Vec<Option<TxIdx>> {
    let mut last = AddressMap::<TxIdx>::default();
    block.transactions.iter().enumerate().map(|(idx, tx)| last.insert(tx.caller, idx)).collect()
}

/// How the workers of one block are run.
pub(crate) enum Workers<'p> {
    /// On the calling thread and `n - 1` scoped threads spawned for the block.
    Spawn(NonZeroUsize),
    /// On every thread of a pool.
    Pool(&'p rayon::ThreadPool),
}

/// Executes `block` on `storage` with Block-STM on `threads` worker threads (spawned for
/// this block; [`crate::Executor`] keeps a pool instead).
pub fn execute_parallel<S: Storage>(
    storage: &S,
    block: &BlockInput,
    threads: NonZeroUsize,
) -> Result<(BlockOutput, ExecutionStats), ExecutionError> {
    let (output, stats, _) =
        execute_parallel_with(storage, block, Workers::Spawn(threads), None, false)?;
    Ok((output, stats))
}

/// [`execute_parallel`] with random pauses at the workers' race windows, seeded by `seed`
/// (feature `perturb`, for stress tests only). The result must not depend on the seed.
#[cfg(feature = "perturb")]
pub fn execute_parallel_perturbed<S: Storage>(
    storage: &S,
    block: &BlockInput,
    threads: NonZeroUsize,
    compliance: Option<&Compliance>,
    seed: u64,
) -> Result<(BlockOutput, ExecutionStats), ExecutionError> {
    let workers = Workers::Spawn(threads);
    let (output, stats, _) =
        execute_parallel_inner(storage, block, workers, compliance, false, seed.max(1))?;
    Ok((output, stats))
}

pub(crate) fn execute_parallel_with<S: Storage>(
    storage: &S,
    block: &BlockInput,
    workers: Workers<'_>,
    compliance: Option<&Compliance>,
    timed: bool,
) -> Result<(BlockOutput, ExecutionStats, Option<PhaseTimes>), ExecutionError> {
    execute_parallel_inner(storage, block, workers, compliance, timed, 0)
}

fn execute_parallel_inner<S: Storage>(
    storage: &S,
    block: &BlockInput,
    workers: Workers<'_>,
    compliance: Option<&Compliance>,
    timed: bool,
    #[cfg_attr(not(feature = "perturb"), allow(unused_variables))] perturb_seed: u64,
) -> Result<(BlockOutput, ExecutionStats, Option<PhaseTimes>), ExecutionError> {
    let started = std::time::Instant::now();
    let n = block.transactions.len();
    let _span = debug_span!("execute_parallel", txs = n).entered();

    // System calls before the transactions run sequentially; their result is the base the
    // parallel phase reads.
    let mut evm = block_evm(storage, block, StateChanges::default());
    pre_block(&mut evm, block)?;
    let pre = std::mem::take(&mut evm.ctx.journaled_state.database.changes);
    drop(evm);

    let shared = Shared {
        block,
        compliance,
        base: Base { storage, changes: &pre },
        mv: MvMemory::new(block.spec, block.env.beneficiary, n),
        scheduler: Scheduler::new(n),
        records: (0..n).map(|_| Mutex::new(TxRecord::default())).collect(),
        committed: Mutex::new(Committed {
            next: 0,
            ledger: Ledger::new(compliance.map(|c| c.mode).unwrap_or_default()),
            transactions: Vec::with_capacity(n),
            gas_used: 0,
            touched: Vec::new(),
            created: Vec::new(),
        }),
        committed_upto: CachePadded::new(AtomicUsize::new(0)),
        previous_of_sender: previous_of_sender(block),
        new_code: DashMap::default(),
        fatal: Mutex::new(None),
        stats: Mutex::new(ExecutionStats::default()),
        timed,
        phases: Mutex::new(Vec::new()),
        workers: match &workers {
            Workers::Spawn(threads) => threads.get().min(n.max(1)),
            Workers::Pool(pool) => 1 + pool.current_num_threads().min(n.saturating_sub(1)),
        },
        workers_started: AtomicUsize::new(0),
        shares: Mutex::new(Vec::new()),
        #[cfg(feature = "perturb")]
        perturb_seed,
    };
    let setup = started.elapsed();
    {
        let _span = debug_span!("block_stm").entered();
        match workers {
            Workers::Spawn(threads) => std::thread::scope(|scope| {
                for _ in 1..threads.get().min(n.max(1)) {
                    scope.spawn(|| shared.work_guarded(false));
                }
                shared.work_guarded(true);
            }),
            Workers::Pool(pool) => pool.in_place_scope(|scope| {
                for _ in 0..pool.current_num_threads().min(n.saturating_sub(1)) {
                    scope.spawn(|_| shared.work_guarded(false));
                }
                shared.work_guarded(true);
            }),
        }
    }
    if let Some(error) = shared.fatal.lock().take() {
        return Err(error);
    }
    let mut stats = *shared.stats.lock();
    stats.re_executions = stats.executions.saturating_sub(n as u64);

    // Every transaction's last incarnation is executed and validated: commit the ones the
    // workers did not.
    let finishing = std::time::Instant::now();
    let _span = debug_span!("commit").entered();
    shared.commit_final(None);
    if let Some(error) = shared.fatal.lock().take() {
        return Err(error);
    }
    let workers = std::mem::take(&mut *shared.phases.lock());
    let Shared { base, committed, shares, workers: started, .. } = shared;
    let Committed { next, ledger, transactions, gas_used, touched, created } =
        committed.into_inner();
    if next != n {
        return Err(ExecutionError::Panic(format!("transaction {next} did not become final")));
    }
    let shares = shares.into_inner();
    if shares.len() != started {
        return Err(ExecutionError::Panic(format!(
            "{} of {started} workers built their share of the state changes",
            shares.len()
        )));
    }
    let merging = std::time::Instant::now();
    let changes = final_state::merge(&base, shares, &touched, created)?;
    let merge = merging.elapsed();

    let mut evm = block_evm(storage, block, changes);
    post_block_calls(&mut evm, block)?;
    let mut state = std::mem::take(&mut evm.ctx.journaled_state.database.changes);
    drop(evm);
    post_block_balances(&mut state, storage, block)?;
    let (excluded, rejected) = ledger.into_outcomes();
    let output = BlockOutput { transactions, excluded, rejected, state, gas_used };
    let finish = finishing.elapsed().saturating_sub(merge);
    let phases = timed.then_some(PhaseTimes { setup, workers, merge, finish });
    Ok((output, stats, phases))
}
