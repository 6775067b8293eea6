//! geth's `prestateTracer` over a block, per transaction, and back: what
//! `debug_traceBlockByNumber(n, {"tracer": "prestateTracer"})` returns — one pre-state per
//! transaction, each with the accounts and slots that transaction touched *as it saw them*
//! (after the transactions before it) — and the block's pre-state rebuilt from it, which
//! is the **first** occurrence of each account and of each slot.
//!
//! [`per_transaction`] is what a node computes (the tests' mock node serves it);
//! [`first_occurrences`] is what `parevm fetch` makes of it.

use std::collections::BTreeMap;

use alloy_primitives::{Address, Bytes, U256};
use parevm::revm::Database;
use parevm::{BlockInput, ExecutionError, Storage};
use serde::{Deserialize, Serialize};

use crate::analysis::{each_transaction, read_error, Executed};

/// One account of a `prestateTracer` result (and of `prestate.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceAccount {
    /// Balance.
    #[serde(default)]
    pub balance: U256,
    /// Nonce.
    #[serde(default)]
    pub nonce: u64,
    /// Code, absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Bytes>,
    /// The slots touched, with their values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage: BTreeMap<U256, U256>,
}

/// One transaction's pre-state: account → what it held before the transaction.
pub type TracePrestate = BTreeMap<Address, TraceAccount>;

/// The pre-state each transaction of `block` saw, as geth's `prestateTracer` reports it:
/// every account it loaded that existed before it (with its code) and every slot it read or
/// wrote, with the values left by the transactions before it.
pub fn per_transaction<S: Storage>(
    storage: &S,
    block: &BlockInput,
) -> Result<Vec<TracePrestate>, ExecutionError> {
    let (traces, error) = per_transaction_until_error(storage, block);
    error.map_or(Ok(traces), Err)
}

/// [`per_transaction`] up to the first transaction that fails, with its error: what a
/// pre-state under construction shows before it goes wrong.
pub fn per_transaction_until_error<S: Storage>(
    storage: &S,
    block: &BlockInput,
) -> (Vec<TracePrestate>, Option<ExecutionError>) {
    let mut traces = Vec::with_capacity(block.transactions.len());
    let result = each_transaction(storage, block, |Executed { state, db, .. }| {
        let mut trace = TracePrestate::new();
        for (address, account) in state {
            let Some(before) = db.basic(*address).map_err(read_error)? else { continue };
            let code = match before.code {
                Some(code) => code.original_bytes(),
                None => db.code_by_hash(before.code_hash).map_err(read_error)?.original_bytes(),
            };
            let storage =
                account.storage.iter().map(|(slot, value)| (*slot, value.original_value)).collect();
            trace.insert(
                *address,
                TraceAccount {
                    balance: before.balance,
                    nonce: before.nonce,
                    code: (!code.is_empty()).then_some(code),
                    storage,
                },
            );
        }
        traces.push(trace);
        Ok(())
    });
    (traces, result.err())
}

/// The block's pre-state from its transactions' pre-states: each account as the first
/// transaction that touched it saw it, each slot as the first transaction that touched that
/// slot saw it (a later one may show a value an earlier transaction wrote).
pub fn first_occurrences(traces: impl IntoIterator<Item = TracePrestate>) -> TracePrestate {
    let mut prestate = TracePrestate::new();
    for trace in traces {
        for (address, account) in trace {
            let entry = prestate
                .entry(address)
                .or_insert_with(|| TraceAccount { storage: BTreeMap::new(), ..account.clone() });
            for (slot, value) in account.storage {
                entry.storage.entry(slot).or_insert(value);
            }
        }
    }
    prestate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(balance: u64, slots: &[(u64, u64)]) -> TraceAccount {
        TraceAccount {
            balance: U256::from(balance),
            nonce: 0,
            code: None,
            storage: slots.iter().map(|&(k, v)| (U256::from(k), U256::from(v))).collect(),
        }
    }

    #[test]
    fn the_first_occurrence_of_each_account_and_slot_wins() {
        let a = Address::repeat_byte(1);
        let b = Address::repeat_byte(2);
        let traces = vec![
            TracePrestate::from([(a, account(10, &[(1, 100)]))]),
            // Later transactions see what earlier ones changed; slot 2 is new here.
            TracePrestate::from([(a, account(7, &[(1, 55), (2, 200)])), (b, account(3, &[]))]),
            TracePrestate::from([(b, account(99, &[(1, 1)]))]),
        ];
        let merged = first_occurrences(traces);
        assert_eq!(merged[&a], account(10, &[(1, 100), (2, 200)]));
        assert_eq!(merged[&b], account(3, &[(1, 1)]));
    }
}
