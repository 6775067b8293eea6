//! The engine's block-level rules from Prague on against alloy-evm's `EthBlockExecutor`: the
//! four system contracts with their mainnet code, a deposit event, a withdrawal request and
//! a consolidation request in one block. The engine (sequential and Block-STM) must return
//! the same EIP-7685 requests, receipts and state; so must the alloy-evm executor.

use std::num::NonZeroUsize;

use alloy_eips::eip2935::{HISTORY_STORAGE_ADDRESS, HISTORY_STORAGE_CODE};
use alloy_eips::eip4788::{BEACON_ROOTS_ADDRESS, BEACON_ROOTS_CODE};
use alloy_eips::eip6110::{DEPOSIT_REQUEST_TYPE, MAINNET_DEPOSIT_CONTRACT_ADDRESS};
use alloy_eips::eip7002::{
    WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, WITHDRAWAL_REQUEST_PREDEPLOY_CODE,
    WITHDRAWAL_REQUEST_TYPE,
};
use alloy_eips::eip7251::{
    CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS, CONSOLIDATION_REQUEST_PREDEPLOY_CODE,
    CONSOLIDATION_REQUEST_TYPE,
};
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use parevm::revm::primitives::hardfork::SpecId;
use parevm::revm::primitives::TxKind;
use parevm::{BlockInput, ExecutionError, InMemoryStorage};
use parevm_fixtures::alloy_oracle::{
    alloy_transactions, difference, engine_difference, run_parallel, run_sequential, AlloyBlock,
    ChainRules,
};
use parevm_fixtures::synthetic::{account, ether, BlockBuilder};

/// ABI encoding of `DepositEvent(bytes pubkey, bytes withdrawal_credentials, bytes amount,
/// bytes signature, bytes index)`'s data: five offsets, then each field's length and
/// padded bytes.
fn deposit_event_data() -> Vec<u8> {
    let fields: [Vec<u8>; 5] =
        [vec![0xa1; 48], vec![0xa2; 32], vec![0xa3; 8], vec![0xa4; 96], vec![0xa5; 8]];
    let mut head = Vec::new();
    let mut tail = Vec::new();
    for field in &fields {
        head.extend_from_slice(&U256::from(32 * fields.len() + tail.len()).to_be_bytes::<32>());
        tail.extend_from_slice(&U256::from(field.len()).to_be_bytes::<32>());
        tail.extend_from_slice(field);
        tail.resize(tail.len().div_ceil(32) * 32, 0);
    }
    head.extend(tail);
    head
}

/// A contract that emits one deposit event with `deposit_event_data` when called.
fn deposit_contract() -> Bytes {
    let data = deposit_event_data();
    let topic = keccak256("DepositEvent(bytes,bytes,bytes,bytes,bytes)");
    let len = u16::try_from(data.len()).unwrap().to_be_bytes();
    const PREFIX: u16 = 49;
    let mut code = vec![0x61, len[0], len[1], 0x61];
    code.extend_from_slice(&PREFIX.to_be_bytes());
    code.extend_from_slice(&[0x60, 0x00, 0x39, 0x7f]); // CODECOPY to memory 0; PUSH32
    code.extend_from_slice(topic.as_slice());
    code.extend_from_slice(&[0x61, len[0], len[1], 0x60, 0x00, 0xa1, 0x00]); // LOG1; STOP
    assert_eq!(code.len(), usize::from(PREFIX));
    code.extend(data);
    code.into()
}

fn prague_block() -> (InMemoryStorage, BlockInput) {
    let mut b = BlockBuilder::new(SpecId::PRAGUE, Address::repeat_byte(0xcb));
    b.contract(BEACON_ROOTS_ADDRESS, BEACON_ROOTS_CODE.clone(), []);
    b.contract(HISTORY_STORAGE_ADDRESS, HISTORY_STORAGE_CODE.clone(), []);
    b.contract(WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS, WITHDRAWAL_REQUEST_PREDEPLOY_CODE.clone(), []);
    b.contract(
        CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS,
        CONSOLIDATION_REQUEST_PREDEPLOY_CODE.clone(),
        [],
    );
    b.contract(MAINNET_DEPOSIT_CONTRACT_ADDRESS, deposit_contract(), []);
    for i in 0..4 {
        b.fund(account(i), ether(10));
    }
    let call = |to| TxKind::Call(to);
    // A validator's withdrawal request (pubkey, amount) and consolidation request (source
    // and target pubkeys), each paying the queue's fee (1 wei while the queue is empty).
    let withdrawal = [vec![0x11; 48], 7u64.to_be_bytes().to_vec()].concat();
    let consolidation = [vec![0x22; 48], vec![0x33; 48]].concat();
    b.tx(
        account(0),
        call(WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS),
        U256::from(1),
        withdrawal.into(),
        200_000,
    );
    b.tx(
        account(1),
        call(CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS),
        U256::from(1),
        consolidation.into(),
        200_000,
    );
    b.call(account(2), MAINNET_DEPOSIT_CONTRACT_ADDRESS, Bytes::new());
    b.transfer(account(3), account(0), ether(1));
    b.call(account(2), MAINNET_DEPOSIT_CONTRACT_ADDRESS, Bytes::new());
    let (storage, mut block) = b.build();
    block.parent_hash = B256::repeat_byte(0x99);
    block.parent_beacon_block_root = Some(B256::repeat_byte(0x42));
    (storage, block)
}

#[test]
fn prague_requests_and_system_calls_are_alloy_evms() {
    let (storage, block) = prague_block();
    let alloy = AlloyBlock::of(&block, ChainRules::UpTo(block.spec));
    let txs = alloy_transactions(&block).unwrap();
    let oracle = run_sequential(&storage, &alloy, txs.clone());
    let result = oracle.result.as_ref().expect("the block is valid");
    // The block makes all three kinds of request.
    let kinds: Vec<u8> = result.requests.iter().map(|r| r[0]).collect();
    assert_eq!(kinds, [DEPOSIT_REQUEST_TYPE, WITHDRAWAL_REQUEST_TYPE, CONSOLIDATION_REQUEST_TYPE]);

    let sequential = parevm_fixtures::sequential(&storage, &block, None).unwrap();
    assert_eq!(engine_difference(&storage, &oracle, &sequential, &[]), None);
    assert_eq!(sequential.requests, result.requests);
    for threads in [1, 2, 4] {
        let threads = NonZeroUsize::new(threads).unwrap();
        let (parallel, _) = parevm_fixtures::parallel(&storage, &block, threads, None).unwrap();
        assert_eq!(parallel, sequential, "Block-STM at {threads} threads");
        let (alloy_parallel, _) = run_parallel(
            &storage,
            &alloy,
            txs.clone(),
            parevm_fixtures::alloy_oracle::engine(threads),
        );
        assert_eq!(difference(&oracle, &alloy_parallel), None, "alloy-evm executor at {threads}");
    }
}

#[test]
fn a_deposit_event_that_does_not_decode_fails_the_block() {
    let (mut storage, block) = prague_block();
    // The deposit contract now emits the event's topic over one byte of data.
    let code: Bytes = [
        &[0x7f][..],
        keccak256("DepositEvent(bytes,bytes,bytes,bytes,bytes)").as_slice(),
        &[0x60, 0x01, 0x60, 0x00, 0xa1, 0x00],
    ]
    .concat()
    .into();
    storage.insert_account(MAINNET_DEPOSIT_CONTRACT_ADDRESS, U256::ZERO, 1, code, []);
    for threads in [None, Some(2)] {
        let result = match threads {
            None => parevm_fixtures::sequential(&storage, &block, None),
            Some(t) => {
                parevm_fixtures::parallel(&storage, &block, NonZeroUsize::new(t).unwrap(), None)
                    .map(|(output, _)| output)
            }
        };
        assert!(matches!(result, Err(ExecutionError::Requests(_))), "{threads:?}: {result:?}");
    }
    let alloy = AlloyBlock::of(&block, ChainRules::UpTo(block.spec));
    let txs = alloy_transactions(&block).unwrap();
    assert!(run_sequential(&storage, &alloy, txs).result.is_err(), "alloy-evm fails it too");
}
