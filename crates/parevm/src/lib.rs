//! parevm: parallel (Block-STM) execution of Ethereum blocks on revm.
//!
//! An embedder implements [`Storage`] over its state, builds a [`BlockInput`], makes an
//! [`Executor`] from a [`Config`] (thread count; sequential, parallel or auto; compliance
//! hook) once, and calls [`Executor::execute`] for each block: the one way to execute. The
//! result's [`BlockOutput`] has one [`TxOutcome`] per transaction (what receipts are built
//! from) and the block's [`StateChanges`].
//!
//! A node that executes blocks through alloy-evm uses [`alloy::ParallelBlockExecutor`]
//! where it uses alloy-evm's `EthBlockExecutor`: same inputs, same receipts and the same
//! `BundleState` in revm's `State`, with the transactions run by Block-STM.
//!
//! Errors are values ([`ExecutionError`]); the engine keeps no global state and never
//! panics on bad input.

#![warn(missing_docs)]

pub mod alloy;
mod block;
mod block_db;
mod compliance;
mod config;
mod convert;
mod error;
mod frame_loop;
mod output;
pub(crate) mod parallel;
mod sequential;
mod state_changes;
mod storage;
mod storage_collision;
mod system;
mod tx_context;

pub use block::{base_block_reward, mainnet_spec, BlockInput, ForksUpTo, Ommer};
pub use compliance::{
    CallerChain, Compliance, ComplianceHook, ComplianceMode, Exclusion, GatedCall, ReadError,
    RejectedTx, Rejection, RejectionReason, StateView,
};
pub use config::{
    BlockExecution, BlockShape, Config, ExecutionMode, Executor, AUTO_MAX_PLAIN_TRANSFER_SHARE,
    AUTO_MIN_AVERAGE_GAS, AUTO_MIN_GAS, AUTO_MIN_TXS_PER_THREAD,
};
pub use convert::{blob_excess_gas_and_price, block_env, tx_env};
pub use error::{ExecutionError, Location, StorageError};
pub use output::{BlockOutput, ExecutionStats, TxOutcome};
pub use parallel::phases::{PhaseTimes, WorkerPhases};
pub use state_changes::{AccountChange, StateChanges};
pub use storage::{
    AccountBasic, DatabaseRefError, DatabaseRefStorage, InMemoryAccount, InMemoryStorage, Storage,
    StorageDatabase,
};

/// revm, re-exported so embedders build transactions and environments with the same version.
pub use revm;
