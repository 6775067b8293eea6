//! Checking an execution result against the block header: gas used, logs bloom and (from
//! Byzantium on) receipts root.

use alloy_consensus::proofs::calculate_receipt_root;
use alloy_consensus::{Header, ReceiptEnvelope, TxReceipt};
use alloy_primitives::{Bloom, B256};
use parevm::revm::primitives::hardfork::SpecId;
use parevm::BlockOutput;

/// One compared field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldCheck<T> {
    /// The header's value.
    pub expected: T,
    /// What execution produced.
    pub actual: T,
}

impl<T: PartialEq> FieldCheck<T> {
    /// Whether the two agree.
    pub fn ok(&self) -> bool {
        self.expected == self.actual
    }
}

/// The result of checking a block's execution against its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderCheck {
    /// Total gas used.
    pub gas_used: FieldCheck<u64>,
    /// Logs bloom.
    pub logs_bloom: FieldCheck<Bloom>,
    /// Receipts root; `None` before Byzantium, whose receipts hold intermediate state roots
    /// that a prestate cannot rebuild.
    pub receipts_root: Option<FieldCheck<B256>>,
}

impl HeaderCheck {
    /// Compares `output` with `header`.
    pub fn new(header: &Header, spec: SpecId, output: &BlockOutput) -> Self {
        Self::of(header, spec, output.gas_used, output.logs_bloom(), || output.receipts_root())
    }

    /// Compares a block's `receipts` (as alloy-evm's executors give them) and gas used with
    /// `header`.
    pub fn of_receipts(
        header: &Header,
        spec: SpecId,
        gas_used: u64,
        receipts: &[ReceiptEnvelope],
    ) -> Self {
        let bloom = receipts.iter().fold(Bloom::ZERO, |bloom, r| bloom | r.bloom());
        Self::of(header, spec, gas_used, bloom, || calculate_receipt_root(receipts))
    }

    fn of(
        header: &Header,
        spec: SpecId,
        gas_used: u64,
        logs_bloom: Bloom,
        receipts_root: impl FnOnce() -> B256,
    ) -> Self {
        Self {
            gas_used: FieldCheck { expected: header.gas_used, actual: gas_used },
            logs_bloom: FieldCheck { expected: header.logs_bloom, actual: logs_bloom },
            receipts_root: spec
                .is_enabled_in(SpecId::BYZANTIUM)
                .then(|| FieldCheck { expected: header.receipts_root, actual: receipts_root() }),
        }
    }

    /// Whether every checked field matches.
    pub fn passed(&self) -> bool {
        self.gas_used.ok()
            && self.logs_bloom.ok()
            && self.receipts_root.as_ref().is_none_or(FieldCheck::ok)
    }

    /// One line per mismatching field.
    pub fn mismatches(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.gas_used.ok() {
            out.push(format!(
                "gas used: header {}, executed {}",
                self.gas_used.expected, self.gas_used.actual
            ));
        }
        if !self.logs_bloom.ok() {
            out.push("logs bloom differs from the header".to_string());
        }
        if let Some(root) = self.receipts_root.as_ref().filter(|r| !r.ok()) {
            out.push(format!("receipts root: header {}, executed {}", root.expected, root.actual));
        }
        out
    }
}
