//! parevm: parallel (Block-STM) execution of Ethereum blocks on revm.
//!
//! An embedder implements [`Storage`] over its state, builds a [`BlockInput`] and calls
//! [`execute_sequential`]. The result, [`BlockOutput`], has one [`TxOutcome`] per
//! transaction (what receipts are built from) and the block's [`StateChanges`].
//!
//! Errors are values ([`ExecutionError`]); the engine keeps no global state and never
//! panics on bad input.

#![warn(missing_docs)]

mod block;
mod block_db;
mod convert;
mod error;
mod output;
mod sequential;
mod state_changes;
mod storage;
mod system;

pub use block::{base_block_reward, mainnet_spec, BlockInput, Ommer};
pub use block_db::BlockDb;
pub use convert::{block_env, tx_env};
pub use error::{ExecutionError, Location, StorageError};
pub use output::{BlockOutput, ExecutionStats, TxOutcome};
pub use sequential::execute_sequential;
pub use state_changes::{AccountChange, StateChanges};
pub use storage::{
    AccountBasic, DatabaseRefError, DatabaseRefStorage, InMemoryAccount, InMemoryStorage, Storage,
};

/// revm, re-exported so embedders build transactions and environments with the same version.
pub use revm;
