//! [`Ledger`]: what happens to each transaction's result, in block order. Both executors
//! commit through it, so they include, exclude and fail identically.

use std::collections::BTreeMap;

use alloy_primitives::map::AddressMap;
use alloy_primitives::Address;
use revm::context::result::{ExecutionResult, HaltReason, InvalidTransaction};

use super::{Compliance, ComplianceMode, Exclusion, RejectedTx, Rejection};
use crate::ExecutionError;

/// Why a transaction produced no execution result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TxFailure {
    /// Not valid on the state it executed on.
    Invalid(InvalidTransaction),
    /// Refused by the compliance hook.
    Rejected(Rejection),
}

/// An excluded transaction's nonce: the rejected transaction it traces back to (itself, or
/// the one whose exclusion left its nonce unused) and that transaction's rejection.
#[derive(Clone, Copy, Debug)]
struct UnusedNonce {
    root: usize,
    rejection: Rejection,
}

/// Decides, in block order, whether each transaction is included, excluded or fails the
/// block.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    mode: ComplianceMode,
    excluded: Vec<Exclusion>,
    /// Rejected transactions included as failed ([`ComplianceMode::Revert`]).
    rejected: Vec<RejectedTx>,
    /// Per sender, the nonces its excluded transactions carried (each left unused), first
    /// exclusion of each nonce kept.
    unused: AddressMap<BTreeMap<u64, UnusedNonce>>,
}

impl Ledger {
    pub(crate) fn new(mode: ComplianceMode) -> Self {
        Self { mode, ..Self::default() }
    }

    /// The ledger of a block executed with `compliance` (without one, nothing is rejected
    /// and the mode never applies).
    pub(crate) fn of(compliance: Option<&Compliance>) -> Self {
        Self::new(compliance.map(|c| c.mode).unwrap_or_default())
    }

    /// The result to include for transaction `index` of `sender` with nonce `nonce`, `None`
    /// if it is excluded, or the error that fails the block.
    ///
    /// A transaction whose nonce is too high is excluded as a cascade exactly when every
    /// nonce of the gap (from the sender's nonce in state up to its own) was carried by an
    /// excluded transaction of the sender: its nonce would have been valid had those been
    /// included. It names the root of the gap's first nonce, the rejection that makes it
    /// invalid. Any other gap is the transaction's own and fails the block as usual.
    pub(crate) fn decide(
        &mut self,
        index: usize,
        sender: Address,
        nonce: u64,
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
                // In `Revert` mode only a rejection no revert undoes arrives here.
                ComplianceMode::Exclude | ComplianceMode::Revert => {
                    // A rejected transaction passed validation: its nonce is the sender's.
                    self.unused
                        .entry(sender)
                        .or_default()
                        .entry(nonce)
                        .or_insert(UnusedNonce { root: index, rejection });
                    self.excluded.push(Exclusion { index, rejection, cascaded_from: None });
                    Ok(None)
                }
            },
            TxFailure::Invalid(reason) => {
                if let InvalidTransaction::NonceTooHigh { tx, state } = reason {
                    if let Some(root) = self.cascade_root(sender, state, tx) {
                        self.unused.entry(sender).or_default().entry(tx).or_insert(root);
                        self.excluded.push(Exclusion {
                            index,
                            rejection: root.rejection,
                            cascaded_from: Some(root.root),
                        });
                        return Ok(None);
                    }
                }
                Err(ExecutionError::InvalidTransaction { index, reason })
            }
        }
    }

    /// The exclusion that left nonce `state` unused, if excluded transactions of `sender`
    /// carried every nonce from `state` up to (not including) `tx`.
    fn cascade_root(&self, sender: Address, state: u64, tx: u64) -> Option<UnusedNonce> {
        let unused = self.unused.get(&sender)?;
        let gap = tx.checked_sub(state)?;
        let covered = unused.range(state..tx).count() as u64;
        (gap > 0 && covered == gap).then(|| unused[&state])
    }

    /// Takes `exclusion` of a transaction of `sender` with nonce `nonce`, decided elsewhere
    /// (by Block-STM, below the transaction where a sequential run takes over): the ledger
    /// is then as if [`Self::decide`] had excluded it.
    pub(crate) fn record_exclusion(&mut self, exclusion: Exclusion, sender: Address, nonce: u64) {
        // `decide` keeps, for a rejection, the transaction itself as the root of its nonce,
        // and for a cascade the root of the gap, which the exclusion names.
        let root = UnusedNonce {
            root: exclusion.cascaded_from.unwrap_or(exclusion.index),
            rejection: exclusion.rejection,
        };
        self.unused.entry(sender).or_default().entry(nonce).or_insert(root);
        self.excluded.push(exclusion);
    }

    /// Notes that transaction `index`, just included, was rejected and reverted
    /// ([`ComplianceMode::Revert`]).
    pub(crate) fn note_reverted(&mut self, index: usize, rejection: Rejection) {
        self.rejected.push(RejectedTx { index, rejection });
    }

    /// The excluded transactions and the rejected ones included as failed, in block order.
    pub(crate) fn into_outcomes(self) -> (Vec<Exclusion>, Vec<RejectedTx>) {
        (self.excluded, self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::RejectionReason;

    fn rejection(claim: u8) -> Rejection {
        Rejection { pool: Address::ZERO, claim, reason: RejectionReason::Missing, caller: None }
    }

    fn too_high(tx: u64, state: u64) -> Result<ExecutionResult<HaltReason>, TxFailure> {
        Err(TxFailure::Invalid(InvalidTransaction::NonceTooHigh { tx, state }))
    }

    /// Feeds `(nonce, failure)` of one sender in order; returns each transaction's
    /// `cascaded_from` (`Some(None)`: rejected itself), or `None` where the block fails.
    fn cascades(
        txs: &[(u64, Result<ExecutionResult<HaltReason>, TxFailure>)],
    ) -> Vec<Option<Option<usize>>> {
        let mut ledger = Ledger::new(ComplianceMode::Exclude);
        let sender = Address::repeat_byte(1);
        txs.iter()
            .enumerate()
            .map(|(index, (nonce, result))| {
                ledger.decide(index, sender, *nonce, result.clone()).ok().map(|_| {
                    ledger.excluded.iter().find(|e| e.index == index).and_then(|e| e.cascaded_from)
                })
            })
            .collect()
    }

    #[test]
    fn a_cascade_needs_every_nonce_of_its_gap_unused() {
        let rejected = |claim| Err(TxFailure::Rejected(rejection(claim)));
        // Nonces 3 and 4 rejected: 5 (state 3) cascades from the first, 7 (state 3) does
        // not (6 was never sent).
        let got = cascades(&[(3, rejected(0)), (4, rejected(1)), (5, too_high(5, 3))]);
        assert_eq!(got, [Some(None), Some(None), Some(Some(0))]);
        let got = cascades(&[(3, rejected(0)), (4, rejected(1)), (7, too_high(7, 3))]);
        assert_eq!(got[2], None);
        // No exclusion of this sender: a gap fails.
        assert_eq!(cascades(&[(1, too_high(1, 0))]), [None]);
    }

    #[test]
    fn the_cascade_carries_the_rejection_of_the_gaps_first_nonce() {
        let mut ledger = Ledger::new(ComplianceMode::Exclude);
        let sender = Address::repeat_byte(1);
        for (index, claim) in [(0, 7), (1, 8)] {
            let result = Err(TxFailure::Rejected(rejection(claim)));
            ledger.decide(index, sender, 10 + index as u64, result).unwrap();
        }
        assert_eq!(ledger.decide(2, sender, 12, too_high(12, 11)).unwrap(), None);
        let cascade = ledger.excluded[2];
        assert_eq!((cascade.rejection.claim, cascade.cascaded_from), (8, Some(1)));
    }

    #[test]
    fn a_recorded_exclusion_leaves_the_ledger_as_deciding_it_did() {
        // Nonce 3 rejected, nonce 4 cascading from it: decided in one ledger, recorded in
        // the other. Nonce 5 (state 3) then cascades alike in both, from the first.
        let sender = Address::repeat_byte(1);
        let mut decided = Ledger::new(ComplianceMode::Exclude);
        decided.decide(0, sender, 3, Err(TxFailure::Rejected(rejection(7)))).unwrap();
        assert_eq!(decided.decide(1, sender, 4, too_high(4, 3)).unwrap(), None);
        let mut recorded = Ledger::new(ComplianceMode::Exclude);
        for (exclusion, nonce) in decided.excluded.clone().into_iter().zip([3, 4]) {
            recorded.record_exclusion(exclusion, sender, nonce);
        }
        for ledger in [&mut decided, &mut recorded] {
            assert_eq!(ledger.decide(2, sender, 5, too_high(5, 3)).unwrap(), None);
        }
        assert_eq!(decided.excluded, recorded.excluded);
        assert_eq!(decided.excluded[2].cascaded_from, Some(0));
        assert_eq!(decided.excluded[2].rejection.claim, 7);
    }
}
