//! The collaborative scheduler of Block-STM (Gelashvili et al., PPoPP 2023, Algorithm 4).
//!
//! Worker threads take execution and validation tasks from two shared counters,
//! `execution_idx` and `validation_idx`, always preferring the lower index. Invariants:
//! - A transaction's status moves `ReadyToExecute(i) → Executing(i) → Executed(i)`, and on
//!   an abort (failed validation or a dependency) to `Aborting(i)` and then
//!   `ReadyToExecute(i + 1)`. Only the thread that moves it to `Executing` runs it.
//! - A transaction waiting on another is in that other's dependency list and is resumed
//!   (made ready, with `execution_idx` lowered to it) when the other finishes executing.
//! - `done` is set only when both counters are past the block, no task is active, and no
//!   counter was lowered while that was being checked (`decrease_cnt`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::TxIdx;

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
    ReadyToExecute,
    Executing,
    Executed,
    Aborting,
}

pub(crate) struct Scheduler {
    block_size: usize,
    execution_idx: AtomicUsize,
    validation_idx: AtomicUsize,
    decrease_cnt: AtomicUsize,
    num_active_tasks: AtomicUsize,
    done_marker: AtomicBool,
    dependencies: Vec<Mutex<Vec<TxIdx>>>,
    status: Vec<Mutex<(u32, Status)>>,
}

impl Scheduler {
    pub(crate) fn new(block_size: usize) -> Self {
        Self {
            block_size,
            execution_idx: AtomicUsize::new(0),
            validation_idx: AtomicUsize::new(0),
            decrease_cnt: AtomicUsize::new(0),
            num_active_tasks: AtomicUsize::new(0),
            done_marker: AtomicBool::new(block_size == 0),
            dependencies: (0..block_size).map(|_| Mutex::new(Vec::new())).collect(),
            status: (0..block_size).map(|_| Mutex::new((0, Status::ReadyToExecute))).collect(),
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
            && self.num_active_tasks.load(Ordering::SeqCst) == 0
            && observed == self.decrease_cnt.load(Ordering::SeqCst)
        {
            self.done_marker.store(true, Ordering::Release);
        }
    }

    fn try_incarnate(&self, tx: TxIdx) -> Option<Version> {
        if tx < self.block_size {
            let mut status = self.status[tx].lock();
            if status.1 == Status::ReadyToExecute {
                status.1 = Status::Executing;
                return Some(Version { tx, incarnation: status.0 });
            }
        }
        self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        None
    }

    fn next_version_to_execute(&self) -> Option<Version> {
        if self.execution_idx.load(Ordering::SeqCst) >= self.block_size {
            self.check_done();
            return None;
        }
        self.num_active_tasks.fetch_add(1, Ordering::SeqCst);
        let idx = self.execution_idx.fetch_add(1, Ordering::SeqCst);
        self.try_incarnate(idx)
    }

    fn next_version_to_validate(&self) -> Option<Version> {
        if self.validation_idx.load(Ordering::SeqCst) >= self.block_size {
            self.check_done();
            return None;
        }
        self.num_active_tasks.fetch_add(1, Ordering::SeqCst);
        let idx = self.validation_idx.fetch_add(1, Ordering::SeqCst);
        if idx < self.block_size {
            let status = self.status[idx].lock();
            if status.1 == Status::Executed {
                return Some(Version { tx: idx, incarnation: status.0 });
            }
        }
        self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// The next task, or `None` if there is nothing to do right now.
    pub(crate) fn next_task(&self) -> Option<Task> {
        if self.validation_idx.load(Ordering::SeqCst) < self.execution_idx.load(Ordering::SeqCst) {
            self.next_version_to_validate().map(Task::Validate)
        } else {
            self.next_version_to_execute().map(Task::Execute)
        }
    }

    /// Records that `tx` must wait for `blocking`. Returns `false` if `blocking` has
    /// already finished executing (the caller should simply retry).
    pub(crate) fn add_dependency(&self, tx: TxIdx, blocking: TxIdx) -> bool {
        let mut dependents = self.dependencies[blocking].lock();
        if self.status[blocking].lock().1 == Status::Executed {
            return false;
        }
        self.status[tx].lock().1 = Status::Aborting;
        dependents.push(tx);
        drop(dependents);
        self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        true
    }

    fn set_ready_status(&self, tx: TxIdx) {
        let mut status = self.status[tx].lock();
        *status = (status.0 + 1, Status::ReadyToExecute);
    }

    /// Marks `version` executed; returns a validation task for it if that can be done now.
    pub(crate) fn finish_execution(
        &self,
        version: Version,
        wrote_new_location: bool,
    ) -> Option<Task> {
        self.status[version.tx].lock().1 = Status::Executed;
        let dependents = std::mem::take(&mut *self.dependencies[version.tx].lock());
        if let Some(&min) = dependents.iter().min() {
            for &dependent in &dependents {
                self.set_ready_status(dependent);
            }
            self.decrease_execution_idx(min);
        }
        if self.validation_idx.load(Ordering::SeqCst) > version.tx {
            if wrote_new_location {
                self.decrease_validation_idx(version.tx);
            } else {
                return Some(Task::Validate(version));
            }
        }
        self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// Whether `version` is the executed, not aborted, incarnation of its transaction.
    pub(crate) fn is_executed(&self, version: Version) -> bool {
        *self.status[version.tx].lock() == (version.incarnation, Status::Executed)
    }

    /// The incarnation of `tx` if it has finished executing and is not being aborted.
    pub(crate) fn executed_incarnation(&self, tx: TxIdx) -> Option<Version> {
        let status = self.status[tx].lock();
        (status.1 == Status::Executed).then_some(Version { tx, incarnation: status.0 })
    }

    /// Claims the abort of `version` after a failed validation; only one thread succeeds.
    pub(crate) fn try_validation_abort(&self, version: Version) -> bool {
        let mut status = self.status[version.tx].lock();
        if *status == (version.incarnation, Status::Executed) {
            status.1 = Status::Aborting;
            true
        } else {
            false
        }
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
        self.num_active_tasks.fetch_sub(1, Ordering::SeqCst);
        None
    }
}
