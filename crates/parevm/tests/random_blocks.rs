//! Property test: random small blocks over a handful of accounts and storage-heavy
//! contracts execute identically sequentially and in parallel, at random thread counts.

use std::num::NonZeroUsize;

use alloy_primitives::{Address, Bytes, TxKind, U256};
use parevm::revm::primitives::hardfork::SpecId;
use parevm_fixtures::synthetic::{account, contracts, ether, op, Asm, BlockBuilder};
use parevm_fixtures::{parallel, sequential};
use proptest::prelude::*;

const COINBASE: Address = Address::repeat_byte(0xcb);
const EOAS: u64 = 6;

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: u64,
        to: u64,
        value: u64,
    },
    AddToSlot {
        from: u64,
        slot: u8,
        amount: u64,
    },
    Count {
        from: u64,
    },
    /// Stores the storage-heavy contract's balance (which transfers to it change).
    WatchAdder {
        from: u64,
    },
    ReadCoinbase {
        from: u64,
    },
    Deploy {
        from: u64,
    },
    /// A transaction whose nonce is off by `offset` (invalid unless 0).
    BadNonce {
        from: u64,
        offset: i8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let from = 0..EOAS;
    prop_oneof![
        4 => (from.clone(), 0..EOAS + 4, 0..300_000_000_000_000_000u64)
            .prop_map(|(from, to, value)| Op::Transfer { from, to, value }),
        4 => (from.clone(), 0..4u8, 1..1000u64)
            .prop_map(|(from, slot, amount)| Op::AddToSlot { from, slot, amount }),
        2 => from.clone().prop_map(|from| Op::Count { from }),
        1 => from.clone().prop_map(|from| Op::ReadCoinbase { from }),
        1 => from.clone().prop_map(|from| Op::WatchAdder { from }),
        1 => from.prop_map(|from| Op::Deploy { from }),
    ]
}

fn spec() -> impl Strategy<Value = SpecId> {
    prop_oneof![
        Just(SpecId::HOMESTEAD),
        Just(SpecId::BYZANTIUM),
        Just(SpecId::LONDON),
        Just(SpecId::SHANGHAI),
        Just(SpecId::CANCUN),
    ]
}

/// Addresses a transfer may go to: the EOAs, the contracts, the beneficiary, an empty one.
fn target(i: u64, adder: Address, counter: Address, reader: Address) -> Address {
    match i - EOAS.min(i) {
        _ if i < EOAS => account(i),
        0 => adder,
        1 => counter,
        2 => COINBASE,
        _ => reader,
    }
}

proptest! {
    // 160 cases by default; set PAREVM_PROPTEST_CASES for a deeper run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PAREVM_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(160),
        ..ProptestConfig::default()
    })]

    #[test]
    fn parallel_equals_sequential(
        spec in spec(),
        ops in prop::collection::vec(op(), 0..48),
        // At most one transaction with a wrong nonce, somewhere, in a third of the blocks.
        bad_nonce in prop::option::weighted(0.3, (0..48usize, 0..EOAS, prop_oneof![Just(-1i8), Just(1i8)])),
        // Mostly funded accounts; now and then a poor one whose transactions fail validation.
        balances in prop::collection::vec(prop_oneof![1 => Just(0u64), 12 => 1..6u64], EOAS as usize),
        threads in 1..=8usize,
    ) {
        let mut b = BlockBuilder::new(spec, COINBASE);
        let (adder, counter, reader) = (account(100), account(101), account(102));
        b.contract(adder, contracts::slot_adder(), [(U256::from(1), U256::from(5))]);
        b.contract(counter, contracts::counter(), []);
        b.contract(reader, contracts::coinbase_reader(), []);
        let watcher = account(103);
        let watch = Asm::new().push_address(adder).op(&[op::BALANCE]).push(0).op(&[op::SSTORE]).build();
        b.contract(watcher, watch, []);
        for (i, units) in balances.iter().enumerate() {
            // Some accounts are poor, so transfers and fees can fail validation.
            b.fund(account(i as u64), ether(*units) / U256::from(2));
        }
        let bad_nonce = bad_nonce.map(|(at, from, offset)| (at.min(ops.len()), Op::BadNonce { from, offset }));
        for (i, op) in ops.into_iter().enumerate() {
            let ops = match &bad_nonce {
                Some((at, bad)) if *at == i => vec![bad.clone(), op],
                _ => vec![op],
            };
            for op in ops {
            match op {
                Op::Transfer { from, to, value } => {
                    b.transfer(account(from), target(to, adder, counter, reader), U256::from(value));
                }
                Op::AddToSlot { from, slot, amount } => {
                    let mut data = [0u8; 64];
                    data[31] = slot;
                    data[56..].copy_from_slice(&amount.to_be_bytes());
                    b.call(account(from), adder, Bytes::copy_from_slice(&data));
                }
                Op::Count { from } => { b.call(account(from), counter, Bytes::new()); }
                Op::WatchAdder { from } => {
                    b.call(account(from), watcher, Bytes::new());
                }
                Op::ReadCoinbase { from } => { b.call(account(from), reader, Bytes::new()); }
                Op::Deploy { from } => { b.create(account(from), Asm::deployer(&contracts::counter())); }
                Op::BadNonce { from, offset } => {
                    let nonce = (b.next_nonce(account(from)) as i64 + offset as i64).max(0) as u64;
                    b.tx_with_nonce(account(from), TxKind::Call(counter), U256::ZERO, Bytes::new(), 100_000, nonce);
                }
            }
            }
        }
        let (storage, block) = b.build();
        let sequential = sequential(&storage, &block, None);
        let parallel = parallel(&storage, &block, NonZeroUsize::new(threads).unwrap(), None)
            .map(|(output, _)| output);
        match (&sequential, &parallel) {
            (Ok(s), Ok(p)) => prop_assert_eq!(s, p),
            (Err(s), Err(p)) => prop_assert_eq!(format!("{s:?}"), format!("{p:?}")),
            _ => prop_assert!(false, "sequential {:?}\nparallel {:?}", sequential, parallel),
        }
    }
}
