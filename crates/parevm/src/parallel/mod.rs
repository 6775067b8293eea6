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
mod helpers;
mod mv_memory;
mod observe;
mod perturb;
pub(crate) mod phases;
mod read_set;
mod scheduler;
mod sharded_map;
mod vm;

use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use alloy_primitives::map::{AddressMap, DefaultHashBuilder, HashSet};
use alloy_primitives::{Address, B256};
use crossbeam::utils::{Backoff, CachePadded};
use dashmap::DashMap;
use parking_lot::Mutex;
use revm::bytecode::Bytecode;
use tracing::debug_span;

use self::mv_memory::{Location, MvMemory};
use self::phases::{Clock, Phase, PhaseTimes, WorkerPhases};
use self::read_set::{Base, ReadOrigin};
use self::scheduler::{Active, Scheduler, Task, Version};
pub(crate) use self::vm::TxState;
use self::vm::{ExecuteError, Incarnation, TxOutput, Vm, VmSettings};
use crate::compliance::Ledger;
use crate::output::{BlockOutput, ExecutionStats, TxOutcome};
use crate::sequential::check_gas_available;
use crate::system::{
    block_evm, has_post_block_calls, has_pre_block_calls, post_block_balances, post_block_calls,
    pre_block,
};
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

/// Per-transaction record of the last finished incarnation. The read set and the written
/// locations are dropped when the transaction is committed (nothing can invalidate or abort
/// it then).
#[derive(Default)]
struct TxRecord {
    /// The last incarnation's read set.
    reads: Vec<(Location, ReadOrigin)>,
    /// Locations the last incarnation wrote (to remove stale entries on re-execution, and
    /// to mark them as estimates on an abort).
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
    /// The included transactions' revm states, when kept ([`execute_transactions`]).
    states: Vec<TxState>,
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
        if let Some(state) = output.state {
            self.states.push(*state);
        }
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
    /// revm's configuration for the transactions.
    cfg: revm::context::CfgEnv,
    /// Whether the block's transactions alone are executed, keeping each one's revm state
    /// ([`execute_transactions`]); the block's state changes are then not built.
    transactions_only: bool,
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
    /// Set when an incarnation asked what the store cannot answer (`VmError::Sequential`):
    /// the block is then executed sequentially.
    sequential: AtomicBool,
    /// The workers' counters, each added once when the worker stops (a shared counter
    /// bumped per transaction would be one more cache line the workers fight over).
    stats: Mutex<ExecutionStats>,
    /// Whether workers time their phases ([`crate::Config::phase_timers`]).
    timed: bool,
    /// Each worker's phase times, the calling thread's first.
    phases: Mutex<Vec<WorkerPhases>>,
    /// How many workers may run the block (helpers that start late do not: see
    /// [`helpers`]).
    workers: usize,
    /// The number the next worker to start takes (for its perturbation seed).
    #[cfg(feature = "perturb")]
    workers_started: AtomicUsize,
    /// The block's state changes are built in `workers` shares; the next share to build.
    /// Each worker that runs takes shares until none is left, so the calling thread builds
    /// the shares of helpers that did not come.
    next_share: AtomicUsize,
    /// The shares built.
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
        if !locations.iter().any(|l| self.mv.is_fee(l)) {
            // Its fee slot held an estimate (or an earlier incarnation's fee): none now.
            self.mv.no_fee(version.tx);
        }
        for (location, value) in incarnation.writes {
            self.mv.write(location, version.tx, version.incarnation, value);
            perturb::point();
        }
        let mut record = self.records[version.tx].lock();
        let (wrote_new, stale) = compare_writes(&record.written, &locations);
        for stale in stale {
            self.mv.remove(&stale, version.tx);
        }
        record.written = locations;
        record.reads = incarnation.reads;
        record.output = Some(incarnation.output);
        wrote_new
    }

    /// Whether transaction `tx`'s last read set still reads the same values. Only called
    /// for executed transactions, whose record holds their read set (a committed one's is
    /// empty, and it is valid: it is final).
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
                    let next = self.scheduler.finish_execution(version, wrote_new, !final_on_start);
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
                Err(ExecuteError::Sequential) => {
                    self.sequential.store(true, Ordering::Relaxed);
                    self.scheduler.abort();
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
            let (output, reads, written) = {
                let mut record = self.records[tx].lock();
                if !self.scheduler.is_executed(version) {
                    return;
                }
                // Final: it will not be aborted or executed again, so its read set and the
                // list of its writes can go now (the store keeps the writes). A read set
                // then lives only while its transaction is in flight, not to the block's end.
                let reads = std::mem::take(&mut record.reads);
                (record.output.take(), reads, std::mem::take(&mut record.written))
            };
            drop((reads, written));
            let Some(output) = output else {
                self.fail(ExecutionError::Internal(format!("transaction {tx} has no output")));
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
        #[cfg(feature = "perturb")]
        {
            let worker = self.workers_started.fetch_add(1, Ordering::Relaxed) as u64;
            let seed = self.perturb_seed;
            perturb::seed(if seed == 0 {
                0
            } else {
                seed ^ (worker + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            });
        }
        let mut clock = Clock::new(self.timed);
        let settings = VmSettings {
            compliance: self.compliance,
            cfg: &self.cfg,
            timed: self.timed,
            keep_states: self.transactions_only,
        };
        // Built at the first execution: a worker that finds nothing to execute (an empty
        // block, a helper arriving at the end) does not pay for a revm instance.
        let mut vm = None;
        clock.lap(Phase::Schedule);
        let mut stats = ExecutionStats::default();
        let mut task = None;
        let mut active = Active::default();
        // Waiting for a task: spinning first, then yielding the core.
        let backoff = Backoff::new();
        let mut idle = false;
        while !self.scheduler.done() {
            perturb::point();
            task = match task {
                Some(Task::Execute(version)) => {
                    let vm = vm.get_or_insert_with(|| {
                        Vm::new(self.block, &self.base, &self.mv, &self.new_code, settings)
                    });
                    self.try_execute(vm, &mut clock, &mut stats, version)
                }
                Some(Task::Validate(version)) => {
                    self.needs_reexecution(&mut clock, &mut stats, version)
                }
                None => {
                    // After a task, advance the commits: a transaction validated while a
                    // lower one was not yet committed becomes final only now. (Not while
                    // idle: that would take the lock from the worker that needs it.)
                    if !idle && self.next_commit_executed() {
                        self.commit_final(None);
                        clock.lap(Phase::Commit);
                    }
                    let next = self.scheduler.next_task(&mut active);
                    idle = next.is_none();
                    if idle {
                        backoff.snooze();
                        clock.lap(Phase::Idle);
                    } else {
                        backoff.reset();
                        clock.lap(Phase::Schedule);
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
        // Every transaction is executed and validated: the store's entries are final.
        while !self.transactions_only && self.fatal.lock().is_none() {
            let share = self.next_share.fetch_add(1, Ordering::Relaxed);
            if share >= self.workers {
                break;
            }
            let built = final_state::build_share(
                &self.base,
                &self.mv,
                share,
                self.workers,
                self.block.spec,
            );
            match built {
                Ok(share) => self.shares.lock().push(share),
                Err(error) => self.fail(error),
            }
        }
        clock.lap(Phase::State);
        if self.timed {
            let mut phases = self.phases.lock();
            let at = if first { 0 } else { phases.len() };
            phases.insert(at, clock.phases);
        }
    }
}

impl<S: Storage> helpers::Work for Shared<'_, S> {
    /// Runs [`Shared::work`], turning a panic into a fatal error that stops the others.
    fn work(&self, first: bool) {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.work(first)));
        #[cfg(feature = "perturb")]
        perturb::seed(0);
        if let Err(panic) = outcome {
            self.fail(ExecutionError::Panic(panic_message(panic.as_ref())));
        }
    }
}

/// Compares an incarnation's written locations with the previous incarnation's: whether it
/// wrote one the previous did not, and the previous one's locations it no longer writes.
/// Linear in both for the common sizes; through a set when both are large (a re-executed
/// transaction that writes thousands of slots would otherwise cost millions of compares).
fn compare_writes(previous: &[Location], current: &[Location]) -> (bool, Vec<Location>) {
    if previous.is_empty() {
        return (!current.is_empty(), Vec::new());
    }
    if previous.len().saturating_mul(current.len()) <= 1024 {
        let wrote_new = current.iter().any(|l| !previous.contains(l));
        let stale = previous.iter().filter(|l| !current.contains(l)).copied().collect();
        return (wrote_new, stale);
    }
    let before: HashSet<&Location> = previous.iter().collect();
    let now: HashSet<&Location> = current.iter().collect();
    let wrote_new = current.iter().any(|l| !before.contains(l));
    let stale = previous.iter().filter(|l| !now.contains(l)).copied().collect();
    (wrote_new, stale)
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A block whose busiest sender's transactions carry at least this share of its gas limit
/// runs on one worker: they execute one after another (each needs the previous one's
/// nonce), so other workers could take at most a tenth of the work, and they cost more than
/// that in shared-state traffic (measured on the mainnet blocks: `docs/performance.md`).
pub(crate) const ONE_WORKER_CHAIN_SHARE: f64 = 0.9;

/// The block's sender chains: for each transaction, the previous transaction of the same
/// sender; and the largest gas limit one sender's transactions add up to.
fn sender_chains(block: &BlockInput) -> (Vec<Option<TxIdx>>, u64) {
    let mut last = AddressMap::<(TxIdx, u64)>::default();
    let mut longest = 0;
    let previous = block
        .transactions
        .iter()
        .enumerate()
        .map(|(idx, tx)| {
            let (previous, gas) = match last.get_mut(&tx.caller) {
                Some((last, gas)) => (Some(std::mem::replace(last, idx)), gas),
                None => (None, &mut last.entry(tx.caller).or_insert((idx, 0)).1),
            };
            *gas += tx.gas_limit;
            longest = longest.max(*gas);
            previous
        })
        .collect();
    (previous, longest)
}

/// About how many accounts `block`'s transactions write: each its sender's, and a plain
/// transfer its recipient's too (contracts and storage are mostly shared by many).
fn expected_accounts(block: &BlockInput) -> usize {
    let plain = block.transactions.iter().filter(|tx| tx.data.is_empty() && tx.kind.is_call());
    block.transactions.len() + plain.count()
}

/// How many workers run `block` when `threads` are available: one per thread, no more than
/// there are transactions, and under [`crate::Executor`] (`longest_chain_gas` given) one if
/// a single sender's chain carries nearly all of its gas ([`ONE_WORKER_CHAIN_SHARE`]).
/// ([`crate::Config::fit_workers`] off, as tests and the stress runs set it, uses every
/// thread given, to exercise the races.)
fn worker_count(block: &BlockInput, threads: usize, longest_chain_gas: Option<u64>) -> usize {
    let total = block.total_gas_limit();
    if longest_chain_gas.is_some_and(|gas| gas as f64 >= ONE_WORKER_CHAIN_SHARE * total as f64) {
        return 1;
    }
    threads.min(block.transactions.len()).max(1)
}

/// How the workers of one block are run.
pub(crate) enum Workers<'p> {
    /// On the calling thread and `n - 1` scoped threads spawned for the block.
    Spawn(NonZeroUsize),
    /// On every thread of a pool.
    Pool(&'p rayon::ThreadPool),
}

/// Executes `block` on `storage` with Block-STM on `workers`, as `run` says (not
/// [`ParallelRun::transactions_only`]: [`execute_transactions`] is for that).
pub(crate) fn execute_parallel_with<S: Storage>(
    storage: &S,
    block: &BlockInput,
    workers: Workers<'_>,
    run: ParallelRun<'_>,
) -> Result<(BlockOutput, ExecutionStats, Option<PhaseTimes>), ExecutionError> {
    let done = execute_parallel_inner(storage, block, workers, run)?;
    Ok((done.output, done.stats, done.phases))
}

/// The transactions of `block` alone, executed with Block-STM under revm configuration
/// `cfg` and the compliance hook `compliance` if given: no system calls, rewards or
/// withdrawals (the caller applies those), and each included transaction's revm state kept
/// for the caller to commit in block order. `None` when the block needs the sequential
/// executor ([`ExecutionStats::sequential_fallback`]).
pub(crate) fn execute_transactions<S: Storage>(
    storage: &S,
    block: &BlockInput,
    cfg: revm::context::CfgEnv,
    workers: Workers<'_>,
    compliance: Option<&Compliance>,
) -> Result<Option<KeptTransactions>, ExecutionError> {
    let run = ParallelRun {
        compliance,
        fit_workers: true,
        transactions_only: Some(cfg),
        ..ParallelRun::default()
    };
    let done = execute_parallel_inner(storage, block, workers, run)?;
    if done.stats.sequential_fallback {
        return Ok(None);
    }
    let BlockOutput { transactions, excluded, rejected, .. } = done.output;
    Ok(Some(KeptTransactions {
        outcomes: transactions,
        states: done.states,
        excluded,
        rejected,
        excluded_gas: done.excluded_gas,
    }))
}

/// What [`execute_transactions`] kept of a block's transactions, in block order.
pub(crate) struct KeptTransactions {
    /// The included transactions' outcomes.
    pub(crate) outcomes: Vec<TxOutcome>,
    /// Their revm states.
    pub(crate) states: Vec<TxState>,
    /// The transactions the compliance hook excluded.
    pub(crate) excluded: Vec<crate::Exclusion>,
    /// The rejected transactions included as failed.
    pub(crate) rejected: Vec<crate::RejectedTx>,
    /// With an exclusion budget: the gas excluded transactions spent, as a running total
    /// after each transaction that added to it (index, total).
    pub(crate) excluded_gas: Vec<(usize, u64)>,
}

/// How [`execute_parallel_inner`] runs a block.
#[derive(Default)]
pub(crate) struct ParallelRun<'c> {
    pub(crate) compliance: Option<&'c Compliance>,
    /// Phase timers on.
    pub(crate) timed: bool,
    /// Fewer workers where a sender chain dominates ([`worker_count`]).
    pub(crate) fit_workers: bool,
    /// Seed of the stress runs' perturbation (0: none).
    pub(crate) perturb_seed: u64,
    /// The transactions only, under this configuration ([`execute_transactions`]).
    pub(crate) transactions_only: Option<revm::context::CfgEnv>,
}

/// What [`execute_parallel_inner`] produced.
struct Done {
    output: BlockOutput,
    stats: ExecutionStats,
    phases: Option<PhaseTimes>,
    /// The included transactions' revm states (transactions only).
    states: Vec<TxState>,
    /// The exclusion budget's running totals (transactions only, [`KeptTransactions`]).
    excluded_gas: Vec<(usize, u64)>,
}

fn execute_parallel_inner<S: Storage>(
    storage: &S,
    block: &BlockInput,
    workers: Workers<'_>,
    run: ParallelRun<'_>,
) -> Result<Done, ExecutionError> {
    let started = std::time::Instant::now();
    let n = block.transactions.len();
    let _span = debug_span!("execute_parallel", txs = n).entered();
    let ParallelRun { compliance, timed, fit_workers, perturb_seed, transactions_only } = run;
    #[cfg(not(feature = "perturb"))]
    let _ = perturb_seed;
    let transactions_only_run = transactions_only.is_some();
    let cfg = transactions_only.unwrap_or_else(|| block.cfg());

    // System calls before the transactions run sequentially; their result is the base the
    // parallel phase reads.
    let pre = if transactions_only_run || !has_pre_block_calls(block) {
        StateChanges::default()
    } else {
        let evm = pre_block(block_evm(storage, block, StateChanges::default()), block)?;
        evm.ctx.journaled_state.database.changes
    };

    let (previous_of_sender, longest_chain_gas) = sender_chains(block);
    let threads = match &workers {
        Workers::Spawn(threads) => threads.get(),
        Workers::Pool(pool) => 1 + pool.current_num_threads(),
    };
    let shared = Shared {
        block,
        cfg,
        transactions_only: transactions_only_run,
        compliance,
        base: Base { storage, changes: &pre },
        mv: MvMemory::new(block.spec, block.env.beneficiary, n, expected_accounts(block)),
        scheduler: Scheduler::new(n),
        records: (0..n).map(|_| Mutex::new(TxRecord::default())).collect(),
        committed: Mutex::new(Committed {
            next: 0,
            ledger: Ledger::of(compliance),
            transactions: Vec::with_capacity(n),
            gas_used: 0,
            touched: Vec::new(),
            created: Vec::new(),
            states: Vec::with_capacity(if transactions_only_run { n } else { 0 }),
        }),
        committed_upto: CachePadded::new(AtomicUsize::new(0)),
        previous_of_sender,
        new_code: DashMap::default(),
        fatal: Mutex::new(None),
        sequential: AtomicBool::new(false),
        stats: Mutex::new(ExecutionStats::default()),
        timed,
        phases: Mutex::new(Vec::new()),
        workers: worker_count(block, threads, fit_workers.then_some(longest_chain_gas)),
        #[cfg(feature = "perturb")]
        workers_started: AtomicUsize::new(0),
        next_share: AtomicUsize::new(0),
        shares: Mutex::new(Vec::new()),
        #[cfg(feature = "perturb")]
        perturb_seed,
    };
    let setup = started.elapsed();
    {
        let _span = debug_span!("block_stm").entered();
        match workers {
            _ if shared.workers == 1 => helpers::Work::work(&shared, true),
            Workers::Spawn(_) => std::thread::scope(|scope| {
                for _ in 1..shared.workers {
                    scope.spawn(|| helpers::Work::work(&shared, false));
                }
                helpers::Work::work(&shared, true);
            }),
            Workers::Pool(pool) => helpers::run(pool, shared.workers - 1, &shared),
        }
    }
    if shared.sequential.load(Ordering::Relaxed) {
        let stats = ExecutionStats {
            executions: n as u64,
            sequential_fallback: true,
            ..ExecutionStats::default()
        };
        // Speculative or not, the sequential result is the block's (the caller of
        // `execute_transactions` runs its own sequential executor).
        let output = if transactions_only_run {
            BlockOutput::default()
        } else {
            crate::sequential::execute_sequential_with(storage, block, compliance)?
        };
        return Ok(Done { output, stats, phases: None, states: Vec::new(), excluded_gas: vec![] });
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
    let excluded_gas = if transactions_only_run { shared.mv.excluded_gas_totals() } else { vec![] };
    let Shared { base, committed, shares, workers: started, .. } = shared;
    let Committed { next, ledger, transactions, gas_used, touched, created, states } =
        committed.into_inner();
    if next != n {
        return Err(ExecutionError::Internal(format!("transaction {next} did not become final")));
    }
    let (excluded, rejected) = ledger.into_outcomes();
    if transactions_only_run {
        let output = BlockOutput {
            transactions,
            excluded,
            rejected,
            state: StateChanges::default(),
            requests: Default::default(),
            gas_used,
        };
        return Ok(Done { output, stats, phases: None, states, excluded_gas });
    }
    let shares = shares.into_inner();
    if shares.len() != started {
        return Err(ExecutionError::Internal(format!(
            "{} of {started} shares of the state changes were built",
            shares.len()
        )));
    }
    let merging = std::time::Instant::now();
    let changes = final_state::merge(&base, shares, &touched, created)?;
    let merge = merging.elapsed();

    // (A revm instance only for a block that has system calls after its transactions.)
    let (mut state, requests) = if has_post_block_calls(block) {
        let evm = block_evm(storage, block, changes);
        let (evm, requests) = post_block_calls(evm, block, &transactions)?;
        (evm.ctx.journaled_state.database.changes, requests)
    } else {
        (changes, Default::default())
    };
    post_block_balances(&mut state, storage, block)?;
    let output = BlockOutput { transactions, excluded, rejected, state, requests, gas_used };
    let finish = finishing.elapsed().saturating_sub(merge);
    let phases = timed.then_some(PhaseTimes { setup, workers, merge, finish });
    Ok(Done { output, stats, phases, states, excluded_gas })
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::context::{BlockEnv, TxEnv};
    use revm::primitives::hardfork::SpecId;

    /// A block of transactions `(sender, gas limit)`.
    fn block(txs: &[(u8, u64)]) -> BlockInput {
        let transactions = txs
            .iter()
            .map(|&(sender, gas_limit)| TxEnv {
                caller: Address::repeat_byte(sender),
                gas_limit,
                ..Default::default()
            })
            .collect();
        BlockInput::new(SpecId::CANCUN, 1, BlockEnv::default(), transactions)
    }

    #[test]
    fn compare_writes_finds_new_and_stale_locations_at_every_size() {
        let slot =
            |i: u64| Location::Storage(Address::repeat_byte(1), alloy_primitives::U256::from(i));
        assert_eq!(compare_writes(&[], &[]), (false, vec![]));
        assert_eq!(compare_writes(&[], &[slot(1)]), (true, vec![]));
        assert_eq!(compare_writes(&[slot(1), slot(2)], &[slot(2)]), (false, vec![slot(1)]));
        assert_eq!(compare_writes(&[slot(1)], &[slot(1), slot(3)]), (true, vec![]));
        // Large enough for the set path: both paths agree with the definition.
        for (from, to) in [(0..3000, 1000..4000), (0..3000, 0..3000), (0..3000, 500..1000)] {
            let previous: Vec<_> = from.clone().map(slot).collect();
            let current: Vec<_> = to.clone().map(slot).collect();
            let stale: Vec<_> = from.clone().filter(|i| !to.contains(i)).map(slot).collect();
            let wrote_new = to.clone().any(|i| !from.contains(&i));
            assert_eq!(compare_writes(&previous, &current), (wrote_new, stale));
        }
    }

    #[test]
    fn sender_chains_link_each_transaction_to_its_senders_previous_one() {
        let b = block(&[(1, 10), (2, 5), (1, 20), (3, 1), (2, 50), (1, 1)]);
        let (previous, longest) = sender_chains(&b);
        assert_eq!(previous, vec![None, None, Some(0), None, Some(1), Some(2)]);
        // Sender 2's 55 beats sender 1's 31.
        assert_eq!(longest, 55);
        assert_eq!(sender_chains(&block(&[])), (Vec::new(), 0));
    }

    #[test]
    fn one_worker_for_a_block_of_one_senders_chain() {
        let count = |txs: &[(u8, u64)], threads| {
            let b = block(txs);
            worker_count(&b, threads, Some(sender_chains(&b).1))
        };
        // One sender with 90 % of the gas limit or more: one worker.
        assert_eq!(count(&[(1, 90), (1, 0), (2, 10)], 4), 1);
        assert_eq!(count(&[(1, 100); 8], 4), 1);
        // Just below: every thread, up to the number of transactions.
        assert_eq!(count(&[(1, 89), (2, 11)], 4), 2);
        assert_eq!(count(&[(1, 10), (2, 10), (3, 10), (4, 10), (5, 10)], 4), 4);
        assert_eq!(count(&[(1, 10), (2, 10), (3, 10)], 1), 1);
        // No transaction (and no gas): one worker for the system calls' bookkeeping.
        assert_eq!(count(&[], 4), 1);
    }
}
