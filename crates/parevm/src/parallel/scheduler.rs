//! The collaborative scheduler of Block-STM (Gelashvili et al., PPoPP 2023, Algorithm 4).
//!
//! Worker threads take execution and validation tasks from two shared counters,
//! `execution_idx` and `validation_idx`, always preferring the lower index. Invariants:
//! - A transaction's status moves `ReadyToExecute(i) → Executing(i) → Executed(i)`, and on
//!   an abort (failed validation or a dependency) to `Aborting(i)` and then
//!   `ReadyToExecute(i + 1)`. Only the thread that moves it to `Executing` runs it.
//! - A transaction waiting on another is in that other's dependency list and is resumed
//!   (made ready, with `execution_idx` lowered to it) when the other finishes executing.
//! - `done` is set only when both counters are past the block, no worker is active, and no
//!   counter was lowered while that was being checked (`decrease_cnt`).
//! - A worker counts as active (`active_workers`, the paper's `num_active_tasks`) from
//!   before it first moves a counter until it next finds the counter it looks at past the
//!   block ([`Active`]). The paper counts each task; counting workers is a superset of that
//!   (a worker is active whenever one of its tasks is), so `done` is never set earlier, and
//!   a busy worker does not move the shared count twice per task.
//!
//! A transaction's status, packed with its incarnation number in one atomic word:
//!
//! ```text
//!                     try_incarnate (CAS, one winner)
//!   ReadyToExecute(i) ───────────────────────────────► Executing(i)
//!          ▲                                               │        │ add_dependency
//!          │ set_ready_status                 finish_      │        ▼ (it read an estimate)
//!          │ (i + 1)                          execution    │     Aborting(i)
//!          │                                               ▼        │
//!     Aborting(i) ◄──────────────────────────────────── Executed(i) │
//!          ▲        try_validation_abort (CAS, one winner)          │
//!          └────────────────────────────────────────────────────────┘
//!                  resumed when the blocking transaction finishes executing
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam::utils::CachePadded;
use parking_lot::Mutex;

use super::{CacheLine, TxIdx};

/// A transaction incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) tx: TxIdx,
    pub(crate) incarnation: u32,
}

/// Work for a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    Execute(Version),
    Validate(Version),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    ReadyToExecute = 0,
    Executing = 1,
    Executed = 2,
    Aborting = 3,
}

/// A status and incarnation packed into one word: `incarnation << 2 | status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn new(incarnation: u32, status: Status) -> Self {
        Self((incarnation as u64) << 2 | status as u64)
    }

    fn incarnation(self) -> u32 {
        (self.0 >> 2) as u32
    }

    fn status(self) -> Status {
        match self.0 & 3 {
            0 => Status::ReadyToExecute,
            1 => Status::Executing,
            2 => Status::Executed,
            _ => Status::Aborting,
        }
    }
}

/// One transaction's status word.
struct TxStatus(AtomicU64);

/// Whether a worker is counted in the scheduler's `active_workers`. Each worker keeps one
/// across its tasks and passes it to [`Scheduler::next_task`]; it is released only when the
/// worker finds the counter it looks at past the block, so that `done` can be decided.
#[derive(Debug, Default)]
pub(crate) struct Active(bool);

/// One transaction's scheduling state.
struct TxSlot {
    status: TxStatus,
    /// Transactions waiting for this one to finish executing.
    dependents: Mutex<Vec<TxIdx>>,
}

impl TxStatus {
    fn load(&self) -> Word {
        Word(self.0.load(Ordering::SeqCst))
    }

    fn store(&self, word: Word) {
        self.0.store(word.0, Ordering::SeqCst);
    }

    /// Moves `from` to `to`; `false` if the status was not `from`.
    fn transition(&self, from: Word, to: Word) -> bool {
        self.0.compare_exchange(from.0, to.0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }
}

/// The shared counters each sit on a cache line of their own: every task changes some of
/// them, and a change should not evict the others from the other workers' caches.
pub(crate) struct Scheduler {
    block_size: usize,
    execution_idx: CachePadded<AtomicUsize>,
    validation_idx: CachePadded<AtomicUsize>,
    decrease_cnt: CachePadded<AtomicUsize>,
    active_workers: CachePadded<AtomicUsize>,
    done_marker: CachePadded<AtomicBool>,
    /// Per transaction, on a cache line of its own: the workers run neighbouring
    /// transactions at the same time.
    txs: Vec<CacheLine<TxSlot>>,
}

impl Scheduler {
    pub(crate) fn new(block_size: usize) -> Self {
        Self {
            block_size,
            execution_idx: CachePadded::new(AtomicUsize::new(0)),
            validation_idx: CachePadded::new(AtomicUsize::new(0)),
            decrease_cnt: CachePadded::new(AtomicUsize::new(0)),
            active_workers: CachePadded::new(AtomicUsize::new(0)),
            done_marker: CachePadded::new(AtomicBool::new(block_size == 0)),
            txs: (0..block_size)
                .map(|_| {
                    CacheLine(TxSlot {
                        status: TxStatus(AtomicU64::new(Word::new(0, Status::ReadyToExecute).0)),
                        dependents: Mutex::new(Vec::new()),
                    })
                })
                .collect(),
        }
    }

    /// Whether all work is done (or the run was aborted).
    pub(crate) fn done(&self) -> bool {
        self.done_marker.load(Ordering::Acquire)
    }

    /// Stops all workers (on a fatal error).
    pub(crate) fn abort(&self) {
        self.done_marker.store(true, Ordering::Release);
    }

    fn decrease_execution_idx(&self, target: TxIdx) {
        self.execution_idx.fetch_min(target, Ordering::SeqCst);
        self.decrease_cnt.fetch_add(1, Ordering::SeqCst);
    }

    fn decrease_validation_idx(&self, target: TxIdx) {
        self.validation_idx.fetch_min(target, Ordering::SeqCst);
        self.decrease_cnt.fetch_add(1, Ordering::SeqCst);
    }

    fn check_done(&self) {
        let observed = self.decrease_cnt.load(Ordering::SeqCst);
        if self.execution_idx.load(Ordering::SeqCst).min(self.validation_idx.load(Ordering::SeqCst))
            >= self.block_size
            && self.active_workers.load(Ordering::SeqCst) == 0
            && observed == self.decrease_cnt.load(Ordering::SeqCst)
        {
            self.done_marker.store(true, Ordering::Release);
        }
    }

    fn try_incarnate(&self, tx: TxIdx) -> Option<Version> {
        if tx < self.block_size {
            let word = self.txs[tx].status.load();
            if word.status() == Status::ReadyToExecute {
                let incarnation = word.incarnation();
                let executing = Word::new(incarnation, Status::Executing);
                if self.txs[tx].status.transition(word, executing) {
                    return Some(Version { tx, incarnation });
                }
            }
        }
        None
    }

    /// Counts the worker as active, before it moves a counter.
    fn activate(&self, active: &mut Active) {
        if !active.0 {
            self.active_workers.fetch_add(1, Ordering::SeqCst);
            active.0 = true;
        }
    }

    /// The counter the worker looked at is past the block: it stops counting as active,
    /// and `done` is checked.
    fn past_the_block(&self, active: &mut Active) {
        if active.0 {
            self.active_workers.fetch_sub(1, Ordering::SeqCst);
            active.0 = false;
        }
        self.check_done();
    }

    fn next_version_to_execute(&self, active: &mut Active) -> Option<Version> {
        if self.execution_idx.load(Ordering::SeqCst) >= self.block_size {
            self.past_the_block(active);
            return None;
        }
        self.activate(active);
        let idx = self.execution_idx.fetch_add(1, Ordering::SeqCst);
        self.try_incarnate(idx)
    }

    fn next_version_to_validate(&self, active: &mut Active) -> Option<Version> {
        if self.validation_idx.load(Ordering::SeqCst) >= self.block_size {
            self.past_the_block(active);
            return None;
        }
        self.activate(active);
        let idx = self.validation_idx.fetch_add(1, Ordering::SeqCst);
        self.executed_incarnation(idx)
    }

    /// The next task, or `None` if there is nothing to do right now. `active` is the
    /// calling worker's: a task it is given, and whatever follows from it
    /// ([`Scheduler::finish_execution`], [`Scheduler::finish_validation`]), runs under it.
    pub(crate) fn next_task(&self, active: &mut Active) -> Option<Task> {
        if self.validation_idx.load(Ordering::SeqCst) < self.execution_idx.load(Ordering::SeqCst) {
            self.next_version_to_validate(active).map(Task::Validate)
        } else {
            self.next_version_to_execute(active).map(Task::Execute)
        }
    }

    /// Records that `tx` must wait for `blocking`. Returns `false` if `blocking` has
    /// already finished executing (the caller should simply retry).
    pub(crate) fn add_dependency(&self, tx: TxIdx, blocking: TxIdx) -> bool {
        // `finish_execution` marks `blocking` executed before it takes its dependants under
        // this lock: either it is seen executed here, or it will resume `tx`.
        let mut dependents = self.txs[blocking].dependents.lock();
        if self.txs[blocking].status.load().status() == Status::Executed {
            return false;
        }
        let word = self.txs[tx].status.load();
        debug_assert_eq!(word.status(), Status::Executing);
        self.txs[tx].status.store(Word::new(word.incarnation(), Status::Aborting));
        dependents.push(tx);
        true
    }

    /// Makes an aborting transaction ready for its next incarnation (only the thread that
    /// aborted it calls this).
    fn set_ready_status(&self, tx: TxIdx) {
        let word = self.txs[tx].status.load();
        debug_assert_eq!(word.status(), Status::Aborting);
        self.txs[tx].status.store(Word::new(word.incarnation() + 1, Status::ReadyToExecute));
    }

    /// Marks `version` executed and resumes the transactions waiting for it. Returns a
    /// validation task for it if that can be done now, or else the execution of the lowest
    /// resumed transaction: this worker has just written what that one waits for (in a chain
    /// of one sender's transactions, the chain stays on one core instead of moving between
    /// the workers at every link).
    ///
    /// `needs_validation` is `false` for an incarnation that started with every lower
    /// transaction committed: it read only final values, so its validation cannot fail and
    /// is skipped (the validation index moves past it if it points at it, and a new write
    /// sends only the transactions above it back to validation).
    pub(crate) fn finish_execution(
        &self,
        version: Version,
        wrote_new_location: bool,
        needs_validation: bool,
    ) -> Option<Task> {
        self.txs[version.tx].status.store(Word::new(version.incarnation, Status::Executed));
        let dependents = std::mem::take(&mut *self.txs[version.tx].dependents.lock());
        let resumed = dependents.iter().min().copied();
        if let Some(min) = resumed {
            for &dependent in &dependents {
                self.set_ready_status(dependent);
            }
            self.decrease_execution_idx(min);
        }
        if self.validation_idx.load(Ordering::SeqCst) > version.tx {
            if wrote_new_location {
                self.decrease_validation_idx(version.tx + usize::from(!needs_validation));
            } else if needs_validation {
                return Some(Task::Validate(version));
            }
        } else if !needs_validation {
            // As if its validation were taken and passed at once. (This worker's execution
            // task is still active, so `done` cannot be decided meanwhile.)
            let _ = self.validation_idx.compare_exchange(
                version.tx,
                version.tx + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        if let Some(min) = resumed {
            // This worker goes on with the resumed execution (unless another worker took it
            // first through `execution_idx`).
            return self.try_incarnate(min).map(Task::Execute);
        }
        None
    }

    /// Whether `version` is the executed, not aborted, incarnation of its transaction.
    pub(crate) fn is_executed(&self, version: Version) -> bool {
        self.txs[version.tx].status.load() == Word::new(version.incarnation, Status::Executed)
    }

    /// The incarnation of `tx` if it has finished executing and is not being aborted.
    pub(crate) fn executed_incarnation(&self, tx: TxIdx) -> Option<Version> {
        let word = self.txs.get(tx)?.status.load();
        (word.status() == Status::Executed)
            .then_some(Version { tx, incarnation: word.incarnation() })
    }

    /// Claims the abort of `version` after a failed validation; only one thread succeeds.
    pub(crate) fn try_validation_abort(&self, version: Version) -> bool {
        self.txs[version.tx].status.transition(
            Word::new(version.incarnation, Status::Executed),
            Word::new(version.incarnation, Status::Aborting),
        )
    }

    /// Ends a validation task; after an abort, returns the re-execution if it can start now.
    pub(crate) fn finish_validation(&self, tx: TxIdx, aborted: bool) -> Option<Task> {
        if aborted {
            self.set_ready_status(tx);
            self.decrease_validation_idx(tx + 1);
            if self.execution_idx.load(Ordering::SeqCst) > tx {
                return self.try_incarnate(tx).map(Task::Execute);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    //! The scheduler against a mock executor (no EVM): transaction `k` "reads" what
    //! transaction `k - stride` wrote, waits for it if that one is not executed, and fails
    //! its first validation when `k % 5 == 0`.

    use std::sync::atomic::AtomicU32;

    use super::*;

    /// Runs `threads` workers on `scheduler` until it is done, `execute` and `validate`
    /// doing the tasks it hands out (each returns the follow-up task, if any).
    fn drive(
        scheduler: &Scheduler,
        threads: usize,
        execute: impl Fn(Version) -> Option<Task> + Sync,
        validate: impl Fn(Version) -> Option<Task> + Sync,
    ) {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut task = None;
                    let mut active = Active::default();
                    while !scheduler.done() {
                        task = match task {
                            Some(Task::Execute(version)) => execute(version),
                            Some(Task::Validate(version)) => validate(version),
                            None => scheduler.next_task(&mut active),
                        };
                    }
                });
            }
        });
    }

    /// Runs a block of `n` mock transactions on `threads` threads; returns each
    /// transaction's executions, its final incarnation, and the incarnation of its
    /// dependency that its final incarnation saw executed.
    fn run(n: usize, threads: usize, stride: usize) -> (Vec<u32>, Vec<u32>, Vec<Option<u32>>) {
        let scheduler = Scheduler::new(n);
        let executions: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
        let validations_failed: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
        let seen: Vec<Mutex<Option<u32>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let execute = |version: Version| {
            // `Err`: suspended until the dependency finishes executing.
            let read = match version.tx.checked_sub(stride) {
                None => Ok(None),
                Some(d) => loop {
                    if let Some(v) = scheduler.executed_incarnation(d) {
                        break Ok(Some(v.incarnation));
                    }
                    if scheduler.add_dependency(version.tx, d) {
                        break Err(());
                    }
                },
            };
            let read = read.ok()?;
            executions[version.tx].fetch_add(1, Ordering::SeqCst);
            *seen[version.tx].lock() = read;
            scheduler.finish_execution(version, false, true)
        };
        let validate = |version: Version| {
            let tx = version.tx;
            let stale = tx.checked_sub(stride).is_some_and(|d| {
                scheduler.executed_incarnation(d).map(|v| v.incarnation) != *seen[tx].lock()
            });
            let fail = stale
                || (tx.is_multiple_of(5) && !validations_failed[tx].swap(true, Ordering::SeqCst));
            let aborted = fail && scheduler.try_validation_abort(version);
            scheduler.finish_validation(tx, aborted)
        };
        drive(&scheduler, threads, execute, validate);
        let executions = executions.iter().map(|e| e.load(Ordering::SeqCst)).collect();
        let finals = (0..n)
            .map(|tx| {
                let version = scheduler.executed_incarnation(tx);
                version.unwrap_or_else(|| panic!("tx {tx} is not executed at the end")).incarnation
            })
            .collect();
        let seen = seen.iter().map(|s| *s.lock()).collect();
        (executions, finals, seen)
    }

    #[test]
    fn every_transaction_ends_executed_on_its_dependencys_final_incarnation() {
        for threads in [1, 2, 4] {
            for stride in [1, 3] {
                for _ in 0..200 {
                    let n = 60;
                    let (executions, finals, seen) = run(n, threads, stride);
                    for tx in 0..n {
                        assert!(executions[tx] >= 1, "tx {tx} never executed");
                        if tx % 5 == 0 {
                            assert!(
                                executions[tx] >= 2,
                                "tx {tx}: the failed validation re-ran it"
                            );
                        }
                        if tx >= stride {
                            // Its final execution saw its dependency's final incarnation.
                            let final_dependency = finals[tx - stride];
                            assert_eq!(
                                seen[tx],
                                Some(final_dependency),
                                "tx {tx}, {threads} threads"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_incarnation_that_read_only_final_values_gets_no_validation_task() {
        let scheduler = Scheduler::new(3);
        let mut active = Active::default();
        let first = Version { tx: 0, incarnation: 0 };
        assert_eq!(scheduler.next_task(&mut active), Some(Task::Execute(first)));
        assert_eq!(scheduler.finish_execution(first, true, false), None);
        // Not `Validate(0)`: the validation index moved past it.
        let second = Version { tx: 1, incarnation: 0 };
        assert_eq!(scheduler.next_task(&mut active), Some(Task::Execute(second)));
        // One that needs validation gets it as usual.
        assert_eq!(scheduler.finish_execution(second, false, true), None);
        assert_eq!(scheduler.next_task(&mut active), Some(Task::Validate(second)));
        assert_eq!(scheduler.finish_validation(1, false), None);
        let third = Version { tx: 2, incarnation: 0 };
        assert_eq!(scheduler.next_task(&mut active), Some(Task::Execute(third)));
        // Validated past it meanwhile (another worker) and wrote a new location: the
        // transactions above it are validated again, not itself.
        scheduler.validation_idx.store(3, Ordering::SeqCst);
        assert_eq!(scheduler.finish_execution(third, true, false), None);
        assert_eq!(scheduler.validation_idx.load(Ordering::SeqCst), 3);
        assert_eq!(scheduler.next_task(&mut active), None);
        assert!(scheduler.done());
    }

    /// The scheduler's own cost per transaction at two threads, with an executor that does
    /// nothing (so the workers contend for the shared counters as hard as they can). A
    /// benchmark, not a check: `cargo test --release -p parevm --lib scheduler_cost --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn scheduler_cost_per_transaction() {
        let n = 400_000;
        let mut times: Vec<f64> = (0..15)
            .map(|_| {
                let scheduler = Scheduler::new(n);
                let started = std::time::Instant::now();
                drive(
                    &scheduler,
                    2,
                    |version| scheduler.finish_execution(version, false, true),
                    |version| scheduler.finish_validation(version.tx, false),
                );
                started.elapsed().as_nanos() as f64 / n as f64
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "scheduler, 2 threads, no-op executor: {:.1} ns per transaction (median of 15; \
             {:.1}–{:.1})",
            times[7], times[0], times[14]
        );
    }

    #[test]
    fn status_words_round_trip() {
        for status in
            [Status::ReadyToExecute, Status::Executing, Status::Executed, Status::Aborting]
        {
            let word = Word::new(7, status);
            assert_eq!((word.incarnation(), word.status()), (7, status));
        }
        let empty = Scheduler::new(0);
        assert!(empty.done());
        assert_eq!(empty.next_task(&mut Active::default()), None);
    }
}
