//! [`Ledger`]: what happens to each transaction's result, in block order. Both executors
//! commit through it, so they include, exclude and fail identically.

use alloy_primitives::map::AddressMap;
use alloy_primitives::Address;
use revm::context::result::{ExecutionResult, HaltReason, InvalidTransaction};

use super::{ComplianceMode, Exclusion, Rejection};
use crate::ExecutionError;

/// Why a transaction produced no execution result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TxFailure {
    /// Not valid on the state it executed on.
    Invalid(InvalidTransaction),
    /// Refused by the compliance hook.
    Rejected(Rejection),
}

/// The exclusions of one sender so far.
#[derive(Clone, Copy, Debug)]
struct SenderExclusions {
    /// The sender's first rejected transaction.
    first: usize,
    /// Its rejection.
    rejection: Rejection,
    /// How many of its transactions were excluded (rejected or cascaded).
    count: u64,
}

/// Decides, in block order, whether each transaction is included, excluded or fails the
/// block.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    mode: ComplianceMode,
    excluded: Vec<Exclusion>,
    by_sender: AddressMap<SenderExclusions>,
}

impl Ledger {
    pub(crate) fn new(mode: ComplianceMode) -> Self {
        Self { mode, ..Self::default() }
    }

    /// The result to include for transaction `index` of `sender`, `None` if it is excluded,
    /// or the error that fails the block.
    pub(crate) fn decide(
        &mut self,
        index: usize,
        sender: Address,
        result: Result<ExecutionResult<HaltReason>, TxFailure>,
    ) -> Result<Option<ExecutionResult<HaltReason>>, ExecutionError> {
        let failure = match result {
            Ok(result) => return Ok(Some(result)),
            Err(failure) => failure,
        };
        match failure {
            TxFailure::Rejected(rejection) => match self.mode {
                ComplianceMode::FailBlock => {
                    Err(ExecutionError::ComplianceRejected { index, rejection })
                }
                ComplianceMode::Exclude => {
                    let entry = self.by_sender.entry(sender).or_insert(SenderExclusions {
                        first: index,
                        rejection,
                        count: 0,
                    });
                    entry.count += 1;
                    self.excluded.push(Exclusion { index, rejection, cascaded_from: None });
                    Ok(None)
                }
            },
            TxFailure::Invalid(reason) => {
                // A nonce gap no larger than the sender's excluded transactions is theirs.
                if let InvalidTransaction::NonceTooHigh { tx, state } = reason {
                    if let Some(entry) = self.by_sender.get_mut(&sender) {
                        if tx - state <= entry.count {
                            entry.count += 1;
                            self.excluded.push(Exclusion {
                                index,
                                rejection: entry.rejection,
                                cascaded_from: Some(entry.first),
                            });
                            return Ok(None);
                        }
                    }
                }
                Err(ExecutionError::InvalidTransaction { index, reason })
            }
        }
    }

    /// The excluded transactions, in block order.
    pub(crate) fn into_excluded(self) -> Vec<Exclusion> {
        self.excluded
    }
}
