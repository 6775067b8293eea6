//! [`TxContext`]: the revm context every executor runs a transaction in (the sequential
//! ones, the workers of Block-STM, the alloy-evm executor's gated path), over the
//! executor's own database.

use revm::context::{BlockEnv, CfgEnv, Context, Journal, TxEnv};

/// The revm context the executors run transactions in, over database `DB`.
pub(crate) type TxContext<DB> = Context<BlockEnv, TxEnv, CfgEnv, DB, Journal<DB>, ()>;
