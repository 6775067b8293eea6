//! The one entry point for embedders: an [`Executor`] made from a [`Config`].

use std::num::NonZeroUsize;

use revm::context::TxEnv;

use crate::output::{BlockOutput, ExecutionStats};
use crate::parallel::phases::PhaseTimes;
use crate::parallel::{execute_parallel_with, ParallelRun, Workers};
use crate::sequential::execute_sequential_with;
use crate::{BlockInput, Compliance, ExecutionError, Storage};

/// Which executor runs a block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecutionMode {
    /// Always the sequential reference executor.
    Sequential,
    /// Always Block-STM, even where it cannot pay off.
    Parallel,
    /// Block-STM where the block is large enough for parallelism to pay for its overhead,
    /// sequential otherwise.
    #[default]
    Auto,
}

/// How to execute blocks: [`Config::default`], then the `with_` methods (new settings may
/// be added, so the struct cannot be built field by field outside this crate).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Worker threads for the parallel executor.
    pub threads: NonZeroUsize,
    /// Which executor to use.
    pub mode: ExecutionMode,
    /// The compliance hook for gated pools, if any. Without one, execution is plain revm
    /// and costs nothing extra.
    pub compliance: Option<Compliance>,
    /// Time the parallel executor's phases per worker ([`BlockExecution::phases`]). Off by
    /// default: timing costs two clock reads per phase and per state read.
    pub phase_timers: bool,
    /// Run a block on one worker where one sender's chain of transactions carries nearly
    /// all its gas (a chain cannot run in parallel; more workers would only contend). On
    /// by default; tests that want every thread racing turn it off.
    pub fit_workers: bool,
    /// Random pauses at the workers' race windows, seeded by this (feature `perturb`, for
    /// stress tests only; never in production). The result must not depend on it.
    #[cfg(feature = "perturb")]
    pub perturbation: Option<std::num::NonZeroU64>,
}

impl Default for Config {
    /// All available cores, [`ExecutionMode::Auto`].
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            mode: ExecutionMode::Auto,
            compliance: None,
            phase_timers: false,
            fit_workers: true,
            #[cfg(feature = "perturb")]
            perturbation: None,
        }
    }
}

impl Config {
    /// The same, with `threads` worker threads.
    pub fn with_threads(mut self, threads: NonZeroUsize) -> Self {
        self.threads = threads;
        self
    }

    /// The same, choosing executors as `mode` says.
    pub fn with_mode(mut self, mode: ExecutionMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same, with `compliance` as the compliance hook (`None`: no hook).
    pub fn with_compliance(mut self, compliance: Option<Compliance>) -> Self {
        self.compliance = compliance;
        self
    }

    /// The same, with the phase timers on or off ([`Config::phase_timers`]).
    pub fn with_phase_timers(mut self, on: bool) -> Self {
        self.phase_timers = on;
        self
    }

    /// The same, fitting the workers to the block or not ([`Config::fit_workers`]).
    pub fn with_fit_workers(mut self, on: bool) -> Self {
        self.fit_workers = on;
        self
    }

    /// The same, with scheduling perturbed by `seed` ([`Config::perturbation`]; `None`:
    /// not perturbed).
    #[cfg(feature = "perturb")]
    pub fn with_perturbation(mut self, seed: Option<std::num::NonZeroU64>) -> Self {
        self.perturbation = seed;
        self
    }
}

/// The result of [`Executor::execute`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockExecution {
    /// The block's outcome: identical whichever executor ran.
    pub output: BlockOutput,
    /// Counters of the parallel executor (all zero when the sequential one ran).
    pub stats: ExecutionStats,
    /// Whether the parallel executor ran.
    pub parallel: bool,
    /// Where the parallel executor's time went, with [`Config::phase_timers`].
    pub phases: Option<PhaseTimes>,
}

/// [`ExecutionMode::Auto`] runs a block sequentially if its transactions' total gas limit
/// is below this: spawning work and versioning state cost more than such a block takes.
pub const AUTO_MIN_GAS: u64 = 5_000_000;

/// [`ExecutionMode::Auto`] runs a block sequentially if its transactions' average gas limit
/// is below this: such small transactions take about as long as their bookkeeping.
pub const AUTO_MIN_AVERAGE_GAS: u64 = 60_000;

/// [`ExecutionMode::Auto`] runs a block sequentially if it has fewer than this many
/// transactions per thread.
pub const AUTO_MIN_TXS_PER_THREAD: usize = 4;

/// [`ExecutionMode::Auto`] runs a block sequentially if at least this share of its
/// transactions are plain transfers (no input): each is so cheap that the bookkeeping of
/// parallel execution outweighs it.
pub const AUTO_MAX_PLAIN_TRANSFER_SHARE: f64 = 0.7;

/// What [`ExecutionMode::Auto`] looks at, computed in one pass over the transactions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockShape {
    /// Number of transactions.
    pub transactions: usize,
    /// Sum of the transactions' gas limits.
    pub total_gas_limit: u64,
    /// Transactions of the sender with the most transactions: they run one after another
    /// whatever the thread count (each needs the previous one's nonce).
    pub longest_sender_chain: usize,
    /// Transactions without input (plain transfers).
    pub plain_transfers: usize,
}

impl BlockShape {
    /// Measures `block`.
    pub fn of(block: &BlockInput) -> Self {
        Self::of_transactions(block.transactions.iter())
    }

    /// Measures a block of `transactions`.
    pub(crate) fn of_transactions<'t>(transactions: impl Iterator<Item = &'t TxEnv>) -> Self {
        let mut per_sender = alloy_primitives::map::AddressMap::<usize>::default();
        let (mut count, mut total_gas_limit) = (0, 0u64);
        let mut longest_sender_chain = 0;
        let mut plain_transfers = 0;
        for tx in transactions {
            let sent = per_sender.entry(tx.caller).or_default();
            *sent += 1;
            longest_sender_chain = longest_sender_chain.max(*sent);
            plain_transfers += usize::from(tx.data.is_empty());
            count += 1;
            total_gas_limit += tx.gas_limit;
        }
        Self { transactions: count, total_gas_limit, longest_sender_chain, plain_transfers }
    }

    /// Whether Block-STM on `threads` threads can be expected to beat sequential execution:
    /// enough work, transactions large enough on average, no sender chain longer than half a
    /// thread's share, not dominated by plain transfers. The thresholds were measured on
    /// mainnet blocks with two threads (see `docs/performance.md`).
    pub fn favours_parallel(&self, threads: usize) -> bool {
        enough_work(self.transactions, self.total_gas_limit, threads)
            && self.longest_sender_chain * 2 * threads <= self.transactions
            && (self.plain_transfers as f64)
                < AUTO_MAX_PLAIN_TRANSFER_SHARE * self.transactions as f64
    }
}

/// The conditions of [`BlockShape::favours_parallel`] that need only the transaction count
/// and the total gas limit.
fn enough_work(transactions: usize, total_gas_limit: u64, threads: usize) -> bool {
    threads > 1
        && transactions >= AUTO_MIN_TXS_PER_THREAD * threads
        && total_gas_limit >= AUTO_MIN_GAS
        && total_gas_limit >= AUTO_MIN_AVERAGE_GAS * transactions as u64
}

impl Config {
    /// Whether this configuration runs `block` in parallel.
    pub fn runs_parallel(&self, block: &BlockInput) -> bool {
        self.runs_parallel_on(block.transactions.len(), || block.transactions.iter())
    }

    /// [`Config::runs_parallel`] for a block of `count` transactions, which `transactions`
    /// lists when the decision needs them.
    pub(crate) fn runs_parallel_on<'t, I: Iterator<Item = &'t TxEnv>>(
        &self,
        count: usize,
        transactions: impl Fn() -> I,
    ) -> bool {
        match self.mode {
            ExecutionMode::Sequential => false,
            ExecutionMode::Parallel => true,
            ExecutionMode::Auto => {
                let threads = self.threads.get();
                // The cheap conditions first, so small blocks pay (almost) nothing for the
                // decision.
                let total_gas_limit = transactions().map(|tx| tx.gas_limit).sum();
                enough_work(count, total_gas_limit, threads)
                    && BlockShape::of_transactions(transactions()).favours_parallel(threads)
            }
        }
    }
}

/// Executes blocks as a [`Config`] says, keeping its worker threads between blocks.
///
/// Create one and reuse it: spawning threads for every block costs tens of microseconds,
/// which matters for small blocks.
pub struct Executor {
    config: Config,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor for `config`; starts its worker threads if it may run in parallel (one
    /// fewer than `config.threads`: the calling thread works too).
    pub fn new(config: Config) -> Result<Self, ExecutionError> {
        let pool = if config.mode != ExecutionMode::Sequential && config.threads.get() > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(config.threads.get() - 1)
                .thread_name(|i| format!("parevm-worker-{i}"))
                .build()
                .map_err(|e| ExecutionError::ThreadPool(e.to_string()))?;
            Some(pool)
        } else {
            None
        };
        Ok(Self { config, pool })
    }

    /// The threads a parallel run uses: the pool's and the caller's, or threads spawned for
    /// the block.
    pub(crate) fn workers(&self) -> Workers<'_> {
        match &self.pool {
            Some(pool) => Workers::Pool(pool),
            None => Workers::Spawn(self.config.threads),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the compliance hook (the worker threads are kept).
    pub fn set_compliance(&mut self, compliance: Option<Compliance>) {
        self.config.compliance = compliance;
    }

    /// Turns the phase timers on or off ([`Config::phase_timers`]; the worker threads are
    /// kept).
    pub fn set_phase_timers(&mut self, on: bool) {
        self.config.phase_timers = on;
    }

    /// Executes `block` on `storage`. The output is the same bit for bit whichever
    /// executor runs.
    pub fn execute<S: Storage>(
        &self,
        storage: &S,
        block: &BlockInput,
    ) -> Result<BlockExecution, ExecutionError> {
        let config = &self.config;
        if config.runs_parallel(block) {
            let run = ParallelRun {
                compliance: config.compliance.as_ref(),
                timed: config.phase_timers,
                fit_workers: config.fit_workers,
                #[cfg(feature = "perturb")]
                perturb_seed: config.perturbation.map_or(0, std::num::NonZeroU64::get),
                ..ParallelRun::default()
            };
            let (output, stats, phases) =
                execute_parallel_with(storage, block, self.workers(), run)?;
            Ok(BlockExecution { output, stats, parallel: true, phases })
        } else {
            let output = execute_sequential_guarded(storage, block, config.compliance.as_ref())?;
            let stats = ExecutionStats::default();
            Ok(BlockExecution { output, stats, parallel: false, phases: None })
        }
    }
}

/// The sequential executor (with `compliance`), with a panic (in the embedder's storage,
/// say) returned as [`ExecutionError::Panic`] like the parallel path does.
fn execute_sequential_guarded<S: Storage>(
    storage: &S,
    block: &BlockInput,
    compliance: Option<&Compliance>,
) -> Result<crate::BlockOutput, ExecutionError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        execute_sequential_with(storage, block, compliance)
    }))
    .unwrap_or_else(|panic| {
        Err(ExecutionError::Panic(crate::parallel::panic_message(panic.as_ref())))
    })
}
