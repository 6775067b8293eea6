//! What executing a block produces: per-transaction outcomes, receipts and state changes.

use alloy_consensus::{
    proofs::calculate_receipt_root, Eip658Value, Receipt, ReceiptEnvelope, TxType,
};
use alloy_eips::eip7685::Requests;
use alloy_primitives::{Bloom, Log, B256};
use revm::context::result::{ExecutionResult, HaltReason};

use crate::{Exclusion, RejectedTx, StateChanges};

/// The outcome of one transaction: what a receipt is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxOutcome {
    /// Index of the transaction in the block.
    pub index: usize,
    /// EIP-2718 type of the transaction (0 for legacy).
    pub tx_type: u8,
    /// revm's result: success, revert or halt, gas, logs and output.
    pub result: ExecutionResult<HaltReason>,
    /// Gas used by this and all earlier transactions of the block.
    pub cumulative_gas_used: u64,
}

impl TxOutcome {
    /// Gas charged to the sender (after refunds), as in the receipt.
    pub fn gas_used(&self) -> u64 {
        self.result.tx_gas_used()
    }

    /// Whether the transaction succeeded (receipt status 1).
    pub fn is_success(&self) -> bool {
        self.result.is_success()
    }

    /// The logs the transaction emitted (none if it reverted or halted).
    pub fn logs(&self) -> &[Log] {
        if self.result.is_success() {
            self.result.logs()
        } else {
            &[]
        }
    }

    /// The transaction's receipt, as alloy-evm's `AlloyReceiptBuilder` builds it.
    pub fn receipt(&self) -> ReceiptEnvelope {
        let receipt = Receipt {
            status: Eip658Value::Eip658(self.is_success()),
            cumulative_gas_used: self.cumulative_gas_used,
            logs: self.logs().to_vec(),
        };
        // revm executes only the types alloy knows.
        let tx_type = TxType::try_from(self.tx_type).unwrap_or(TxType::Legacy);
        ReceiptEnvelope::from_typed(tx_type, receipt.with_bloom())
    }
}

/// Counters describing how a block was executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionStats {
    /// Transaction executions, including re-executions.
    pub executions: u64,
    /// Executions beyond the first of each transaction.
    pub re_executions: u64,
    /// Validations that failed and aborted an incarnation.
    pub validation_aborts: u64,
    /// Times a transaction waited on another's pending write.
    pub dependency_waits: u64,
    /// Whether Block-STM gave the block to the sequential executor: a creation asked
    /// whether an empty account that a lower transaction may have removed still has
    /// storage (EIP-7610), which the multi-version store cannot tell.
    pub sequential_fallback: bool,
}

/// The result of executing a block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockOutput {
    /// One outcome per included transaction, in block order: every transaction unless a
    /// compliance hook in [`ComplianceMode::Exclude`](crate::ComplianceMode::Exclude) left
    /// some out.
    pub transactions: Vec<TxOutcome>,
    /// The transactions left out by the compliance hook, in block order.
    pub excluded: Vec<Exclusion>,
    /// The transactions the compliance hook rejected that are included as failed
    /// ([`ComplianceMode::Revert`](crate::ComplianceMode::Revert)), in block order; each
    /// is also in `transactions`.
    pub rejected: Vec<RejectedTx>,
    /// The block's state changes, including system calls, rewards and withdrawals.
    pub state: StateChanges,
    /// The block's EIP-7685 requests (from Prague on; empty before): deposits, then
    /// withdrawal and consolidation requests, as the header's `requests_hash` commits to.
    pub requests: Requests,
    /// Total gas used by the transactions.
    pub gas_used: u64,
}

impl BlockOutput {
    /// The receipts, in block order.
    pub fn receipts(&self) -> Vec<ReceiptEnvelope> {
        self.transactions.iter().map(TxOutcome::receipt).collect()
    }

    /// The block's logs bloom: the union of all receipts' blooms.
    pub fn logs_bloom(&self) -> Bloom {
        let mut bloom = Bloom::ZERO;
        for tx in &self.transactions {
            bloom.accrue_logs(tx.logs());
        }
        bloom
    }

    /// Where `other` first differs from this output (`None` if they are equal): the first
    /// differing transaction, else the first differing account, else the gas. For reports
    /// of a divergence between two executions of the same block.
    pub fn first_difference(&self, other: &BlockOutput) -> Option<String> {
        if self == other {
            return None;
        }
        if self.excluded != other.excluded {
            return Some(format!("excluded {:?}, expected {:?}", other.excluded, self.excluded));
        }
        if self.rejected != other.rejected {
            return Some(format!("rejected {:?}, expected {:?}", other.rejected, self.rejected));
        }
        if self.transactions.len() != other.transactions.len() {
            return Some(format!(
                "{} transactions, expected {}",
                other.transactions.len(),
                self.transactions.len()
            ));
        }
        for (i, (expected, actual)) in self.transactions.iter().zip(&other.transactions).enumerate()
        {
            if expected != actual {
                return Some(format!("transaction {i}: {actual:?}, expected {expected:?}"));
            }
        }
        let mut addresses: Vec<_> =
            self.state.accounts.keys().chain(other.state.accounts.keys()).collect();
        addresses.sort_unstable();
        addresses.dedup();
        for address in addresses {
            let (expected, actual) =
                (self.state.accounts.get(address), other.state.accounts.get(address));
            if expected != actual {
                return Some(format!("account {address}: {actual:?}, expected {expected:?}"));
            }
        }
        if self.state.contracts != other.state.contracts {
            return Some("deployed code differs".into());
        }
        if self.requests != other.requests {
            return Some(format!("requests {:?}, expected {:?}", other.requests, self.requests));
        }
        Some(format!("gas used {}, expected {}", other.gas_used, self.gas_used))
    }

    /// The receipts root (as in headers from Byzantium on; earlier receipts carried
    /// intermediate state roots instead of a status).
    pub fn receipts_root(&self) -> B256 {
        calculate_receipt_root(&self.receipts())
    }
}
