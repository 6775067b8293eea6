//! The one entry point for embedders: [`execute_block`] with a [`Config`].

use std::num::NonZeroUsize;

use crate::output::{BlockOutput, ExecutionStats};
use crate::parallel::{execute_parallel_with, Workers};
use crate::{execute_sequential, BlockInput, ExecutionError, Storage};

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

/// How to execute blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Worker threads for the parallel executor.
    pub threads: NonZeroUsize,
    /// Which executor to use.
    pub mode: ExecutionMode,
}

impl Default for Config {
    /// All available cores, [`ExecutionMode::Auto`].
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            mode: ExecutionMode::Auto,
        }
    }
}

/// The result of [`execute_block`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockExecution {
    /// The block's outcome: identical whichever executor ran.
    pub output: BlockOutput,
    /// Counters of the parallel executor (all zero when the sequential one ran).
    pub stats: ExecutionStats,
    /// Whether the parallel executor ran.
    pub parallel: bool,
}

/// Below this much gas a block runs sequentially in [`ExecutionMode::Auto`]: spawning
/// workers and versioning state costs more than a couple of small transactions take.
pub const AUTO_MIN_GAS: u64 = 1_000_000;

/// Below this many transactions per thread a block runs sequentially in
/// [`ExecutionMode::Auto`].
pub const AUTO_MIN_TXS_PER_THREAD: usize = 2;

impl Config {
    /// Whether this configuration runs `block` in parallel.
    pub fn runs_parallel(&self, block: &BlockInput) -> bool {
        match self.mode {
            ExecutionMode::Sequential => false,
            ExecutionMode::Parallel => true,
            ExecutionMode::Auto => {
                self.threads.get() > 1
                    && block.transactions.len() >= AUTO_MIN_TXS_PER_THREAD * self.threads.get()
                    && block.total_gas_limit() >= AUTO_MIN_GAS
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
        f.debug_struct("Executor")
            .field("config", &self.config)
            .finish_non_exhaustive()
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
                .map_err(|e| ExecutionError::Panic(format!("cannot start worker threads: {e}")))?;
            Some(pool)
        } else {
            None
        };
        Ok(Self { config, pool })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Executes `block` on `storage`. The output is the same bit for bit whichever
    /// executor runs.
    pub fn execute<S: Storage>(
        &self,
        storage: &S,
        block: &BlockInput,
    ) -> Result<BlockExecution, ExecutionError> {
        if self.config.runs_parallel(block) {
            let workers = match &self.pool {
                Some(pool) => Workers::Pool(pool),
                None => Workers::Spawn(self.config.threads),
            };
            let (output, stats) = execute_parallel_with(storage, block, workers)?;
            Ok(BlockExecution {
                output,
                stats,
                parallel: true,
            })
        } else {
            let output = execute_sequential(storage, block)?;
            Ok(BlockExecution {
                output,
                stats: ExecutionStats::default(),
                parallel: false,
            })
        }
    }
}

/// Executes `block` on `storage` as `config` says. The output is the same bit for bit
/// whichever executor runs. For many blocks, reuse an [`Executor`] instead.
pub fn execute_block<S: Storage>(
    storage: &S,
    block: &BlockInput,
    config: &Config,
) -> Result<BlockExecution, ExecutionError> {
    if config.runs_parallel(block) {
        let (output, stats) =
            execute_parallel_with(storage, block, Workers::Spawn(config.threads))?;
        Ok(BlockExecution {
            output,
            stats,
            parallel: true,
        })
    } else {
        let output = execute_sequential(storage, block)?;
        Ok(BlockExecution {
            output,
            stats: ExecutionStats::default(),
            parallel: false,
        })
    }
}
