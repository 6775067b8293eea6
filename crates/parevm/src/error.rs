//! Errors of block execution, returned as values.

use std::fmt;
use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use revm::context::result::InvalidTransaction;
use revm::database_interface::DBErrorMarker;

/// A state location the engine read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// Balance, nonce and code hash of an account.
    Account(Address),
    /// Code with the given hash.
    Code(B256),
    /// One storage slot of an account.
    Storage(Address, U256),
    /// The hash of a block.
    BlockHash(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(a) => write!(f, "account {a}"),
            Self::Code(h) => write!(f, "code {h}"),
            Self::Storage(a, s) => write!(f, "storage slot {s:#x} of {a}"),
            Self::BlockHash(n) => write!(f, "hash of block {n}"),
        }
    }
}

/// A [`Storage`](crate::Storage) read that failed, with the location it was for.
#[derive(Clone, Debug)]
pub struct StorageError {
    /// What was being read.
    pub location: Location,
    /// The embedder's error.
    pub source: Arc<dyn std::error::Error + Send + Sync>,
}

impl StorageError {
    pub(crate) fn new(
        location: Location,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self { location, source: Arc::new(source) }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading {}: {}", self.location, self.source)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl DBErrorMarker for StorageError {}

/// Why a block could not be executed. (New variants may be added: match with a wildcard.)
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutionError {
    /// The storage backend failed.
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    /// A transaction is not valid on the state it executes on (nonce, balance, gas, ...).
    #[error("transaction {index} is invalid: {reason}")]
    InvalidTransaction {
        /// Index of the transaction in the block.
        index: usize,
        /// What revm rejected it for.
        reason: InvalidTransaction,
    },
    /// A transaction's gas limit exceeds the gas the block has left.
    #[error(
        "transaction {index} has gas limit {gas_limit} but the block has only {available} gas left"
    )]
    BlockGasLimitExceeded {
        /// Index of the transaction in the block.
        index: usize,
        /// The transaction's gas limit.
        gas_limit: u64,
        /// Block gas limit minus the gas used before the transaction.
        available: u64,
    },
    /// The block's header fields are not usable (for example an invalid blob gas price).
    #[error("invalid block header: {0}")]
    InvalidHeader(String),
    /// A system call required by the fork failed.
    #[error("system call to {address} failed: {message}")]
    SystemCall {
        /// The system contract.
        address: Address,
        /// What went wrong.
        message: String,
    },
    /// The block's EIP-7685 requests cannot be built (a deposit event that does not
    /// decode).
    #[error("invalid requests: {0}")]
    Requests(String),
    /// revm reported an error that is neither a storage error nor an invalid transaction.
    #[error("EVM error in transaction {index}: {message}")]
    Evm {
        /// Index of the transaction in the block.
        index: usize,
        /// revm's message.
        message: String,
    },
    /// A transaction was rejected by the compliance hook in
    /// [`ComplianceMode::FailBlock`](crate::ComplianceMode::FailBlock).
    #[error("transaction {index} rejected: {rejection}")]
    ComplianceRejected {
        /// Index of the transaction in the block.
        index: usize,
        /// Why.
        rejection: crate::Rejection,
    },
    /// Code running for the block panicked (the embedder's storage, or a bug in the
    /// engine or revm), on a worker thread or on the calling thread; the message is the
    /// panic's.
    #[error("panic during execution: {0}")]
    Panic(String),
    /// The parallel executor found one of its own invariants broken: a bug in parevm,
    /// reported instead of a wrong result.
    #[error("internal error of the parallel executor: {0}")]
    Internal(String),
    /// The worker threads could not be started.
    #[error("cannot start worker threads: {0}")]
    ThreadPool(String),
    /// The configuration asks for something this entry point does not do (for example a
    /// compliance hook through the alloy-evm executor on a state with an EIP-7928 block
    /// access list).
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
}
