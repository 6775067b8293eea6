//! Per-phase timers of the parallel executor ([`crate::Config::phase_timers`]).
//!
//! Each worker keeps a [`Clock`] that attributes the time since its previous lap to the
//! phase it just finished, so the phases of one worker add up to its wall time. Reads
//! through the multi-version store happen inside EVM execution; the worker's database
//! times them separately and [`Clock::lap_execution`] moves that share from `evm` to
//! `reads`. Off (the default), a clock is a branch on a `bool`.

use std::time::{Duration, Instant};

/// A phase of a worker's time (execution and reads are timed by
/// [`Clock::lap_execution`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    State,
    Record,
    Validate,
    Commit,
    Schedule,
    Idle,
}

/// Where one worker's time went during one block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerPhases {
    /// Executing transactions in revm, reads excluded.
    pub evm: Duration,
    /// Reading state during execution: the multi-version store, then the pre-state
    /// (the embedder's storage), including resolving balance credits.
    pub reads: Duration,
    /// Recording an incarnation: its writes into the multi-version store, its read set
    /// and output into its record.
    pub record: Duration,
    /// Validating read sets.
    pub validate: Duration,
    /// Committing final transactions into the block's output, in order.
    pub commit: Duration,
    /// Taking tasks from the scheduler and reporting them done, waiting on dependencies.
    pub schedule: Duration,
    /// Looking for work and finding none.
    pub idle: Duration,
    /// After the scheduler is done: building this worker's share of the block's state
    /// changes from the store's final entries.
    pub state: Duration,
}

impl WorkerPhases {
    /// The sum of all phases: the worker's time in the block's parallel phase.
    pub fn total(&self) -> Duration {
        self.evm
            + self.reads
            + self.record
            + self.validate
            + self.commit
            + self.schedule
            + self.idle
            + self.state
    }

    fn slot(&mut self, phase: Phase) -> &mut Duration {
        match phase {
            Phase::Record => &mut self.record,
            Phase::Validate => &mut self.validate,
            Phase::Commit => &mut self.commit,
            Phase::Schedule => &mut self.schedule,
            Phase::Idle => &mut self.idle,
            Phase::State => &mut self.state,
        }
    }
}

impl std::ops::AddAssign<&WorkerPhases> for WorkerPhases {
    fn add_assign(&mut self, other: &WorkerPhases) {
        self.evm += other.evm;
        self.reads += other.reads;
        self.record += other.record;
        self.validate += other.validate;
        self.commit += other.commit;
        self.schedule += other.schedule;
        self.idle += other.idle;
        self.state += other.state;
    }
}

/// Where a block's time went in the parallel executor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Before the workers start: pre-block system calls, the store and the records.
    pub setup: Duration,
    /// One entry per worker, the calling thread first.
    pub workers: Vec<WorkerPhases>,
    /// After the workers stop: merging their shares of the block's state changes.
    pub merge: Duration,
    /// After that: the commits the workers left, post-block system calls, rewards and
    /// withdrawals, freeing the store.
    pub finish: Duration,
}

/// A worker's lap timer; does nothing unless enabled.
pub(crate) struct Clock {
    last: Option<Instant>,
    pub(crate) phases: WorkerPhases,
}

impl Clock {
    pub(crate) fn new(enabled: bool) -> Self {
        Self { last: enabled.then(Instant::now), phases: WorkerPhases::default() }
    }

    /// Attributes the time since the previous lap to `phase`.
    #[inline]
    pub(crate) fn lap(&mut self, phase: Phase) {
        if let Some(last) = &mut self.last {
            let now = Instant::now();
            *self.phases.slot(phase) += now - *last;
            *last = now;
        }
    }

    /// Attributes the time since the previous lap to execution, of which `reads` was spent
    /// reading state.
    #[inline]
    pub(crate) fn lap_execution(&mut self, reads: Duration) {
        if let Some(last) = &mut self.last {
            let now = Instant::now();
            let elapsed = now - *last;
            let reads = reads.min(elapsed);
            self.phases.reads += reads;
            self.phases.evm += elapsed - reads;
            *last = now;
        }
    }
}

/// Accumulates the time of many short sections (state reads), if enabled.
#[derive(Default)]
pub(crate) struct Stopwatch {
    enabled: bool,
    total: Duration,
}

impl Stopwatch {
    pub(crate) fn new(enabled: bool) -> Self {
        Self { enabled, total: Duration::ZERO }
    }

    /// The start of a section (`None` when disabled).
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        self.enabled.then(Instant::now)
    }

    /// The end of the section started at `start`.
    #[inline]
    pub(crate) fn stop(&mut self, start: Option<Instant>) {
        if let Some(start) = start {
            self.total += start.elapsed();
        }
    }

    /// The time accumulated so far, resetting it.
    pub(crate) fn take(&mut self) -> Duration {
        std::mem::take(&mut self.total)
    }
}
