//! The one entry point for embedders: [`execute_block`] with a [`Config`].

use std::num::NonZeroUsize;

use crate::output::{BlockOutput, ExecutionStats};
use crate::{execute_parallel, execute_sequential, BlockInput, ExecutionError, Storage};

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

/// Executes `block` on `storage` as `config` says. The output is the same bit for bit
/// whichever executor runs.
pub fn execute_block<S: Storage>(
    storage: &S,
    block: &BlockInput,
    config: &Config,
) -> Result<BlockExecution, ExecutionError> {
    if config.runs_parallel(block) {
        let (output, stats) = execute_parallel(storage, block, config.threads)?;
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
