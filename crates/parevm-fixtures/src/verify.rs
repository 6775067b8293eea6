//! Checking an execution result against the block header: gas used, logs bloom, (from
//! Byzantium on) receipts root and (where the header has one, from Prague on) requests hash.

use alloy_consensus::proofs::calculate_receipt_root;
use alloy_consensus::{Header, ReceiptEnvelope, TxReceipt};
use alloy_eips::eip7685::Requests;
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
    /// EIP-7685 requests hash, where the header carries one (from Prague on).
    pub requests_hash: Option<FieldCheck<B256>>,
}

impl HeaderCheck {
    /// Compares `output` with `header`.
    pub fn new(header: &Header, spec: SpecId, output: &BlockOutput) -> Self {
        let receipts_root = || output.receipts_root();
        Self::of(
            header,
            spec,
            output.gas_used,
            output.logs_bloom(),
            receipts_root,
            &output.requests,
        )
    }

    /// Compares a block's `receipts`, requests and gas used (as alloy-evm's executors give
    /// them) with `header`.
    pub fn of_receipts(
        header: &Header,
        spec: SpecId,
        gas_used: u64,
        receipts: &[ReceiptEnvelope],
        requests: &Requests,
    ) -> Self {
        let bloom = receipts.iter().fold(Bloom::ZERO, |bloom, r| bloom | r.bloom());
        Self::of(header, spec, gas_used, bloom, || calculate_receipt_root(receipts), requests)
    }

    fn of(
        header: &Header,
        spec: SpecId,
        gas_used: u64,
        logs_bloom: Bloom,
        receipts_root: impl FnOnce() -> B256,
        requests: &Requests,
    ) -> Self {
        Self {
            gas_used: FieldCheck { expected: header.gas_used, actual: gas_used },
            logs_bloom: FieldCheck { expected: header.logs_bloom, actual: logs_bloom },
            receipts_root: spec
                .is_enabled_in(SpecId::BYZANTIUM)
                .then(|| FieldCheck { expected: header.receipts_root, actual: receipts_root() }),
            requests_hash: header
                .requests_hash
                .map(|expected| FieldCheck { expected, actual: requests.requests_hash() }),
        }
    }

    /// Whether every checked field matches.
    pub fn passed(&self) -> bool {
        self.gas_used.ok()
            && self.logs_bloom.ok()
            && self.receipts_root.as_ref().is_none_or(FieldCheck::ok)
            && self.requests_hash.as_ref().is_none_or(FieldCheck::ok)
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
        if let Some(hash) = self.requests_hash.as_ref().filter(|r| !r.ok()) {
            out.push(format!("requests hash: header {}, executed {}", hash.expected, hash.actual));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Bytes;

    #[test]
    fn the_requests_hash_is_checked_where_the_header_has_one() {
        let mut output = BlockOutput::default();
        output.requests.push_request_with_type(1, Bytes::from_static(&[7; 76]));
        let mut header = Header { receipts_root: output.receipts_root(), ..Default::default() };
        // Before Prague the header has none, and nothing is compared.
        let check = HeaderCheck::new(&header, SpecId::CANCUN, &output);
        assert!(check.requests_hash.is_none() && check.passed());
        // The hash of the requests executed.
        header.requests_hash = Some(output.requests.requests_hash());
        assert!(HeaderCheck::new(&header, SpecId::PRAGUE, &output).passed());
        // Other requests (here: none) fail the check and say so.
        let check = HeaderCheck::new(&header, SpecId::PRAGUE, &BlockOutput::default());
        assert!(!check.passed());
        assert!(
            check.mismatches()[0].starts_with("requests hash: header"),
            "{:?}",
            check.mismatches()
        );
    }
}
