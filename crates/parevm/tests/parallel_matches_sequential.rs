//! Synthetic blocks built to stress one Block-STM hazard each; the parallel executor must
//! produce exactly the sequential result at every thread count.

use std::num::NonZeroUsize;

use alloy_primitives::{Address, Bytes, TxKind, U256};
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{
    BlockInput, BlockOutput, Config, ExecutionError, ExecutionMode, Executor, InMemoryStorage,
    Storage,
};
use parevm_fixtures::synthetic::{account, contracts, ether, Asm, BlockBuilder};
use parevm_fixtures::{parallel, sequential};

const COINBASE: Address = Address::repeat_byte(0xcb);
const THREADS: [usize; 6] = [1, 2, 3, 4, 8, 16];

/// Runs `block` sequentially and in parallel at every thread count in [`THREADS`] (on
/// threads spawned for the block, and through an [`Executor`]'s pool, whose helpers may
/// join late and which runs a block of one sender's chain on one worker), asserts that all
/// agree, and returns the sequential result.
fn same_everywhere(storage: &InMemoryStorage, block: &BlockInput) -> Result<BlockOutput, String> {
    let sequential = sequential(storage, block, None);
    let agree =
        |parallel: Result<BlockOutput, ExecutionError>, how: &str| match (&sequential, &parallel) {
            (Ok(s), Ok(p)) => assert_eq!(s, p, "parallel differs {how}"),
            (Err(s), Err(p)) => {
                assert_eq!(format!("{s:?}"), format!("{p:?}"), "errors differ {how}")
            }
            _ => panic!("{how}: sequential {sequential:?}, parallel {parallel:?}"),
        };
    for threads in THREADS {
        let threads = NonZeroUsize::new(threads).unwrap();
        let parallel = parallel(storage, block, threads, None).map(|(output, _)| output);
        agree(parallel, &format!("at {threads} threads"));
        let config = Config::default().with_threads(threads).with_mode(ExecutionMode::Parallel);
        let executor = Executor::new(config).unwrap();
        // Twice: the second block finds the pool's threads awake, or still busy with the
        // first block's late helpers.
        for round in 0..2 {
            let parallel = executor.execute(storage, block).map(|execution| execution.output);
            agree(parallel, &format!("through an executor at {threads} threads, round {round}"));
        }
    }
    sequential.map_err(|e: ExecutionError| e.to_string())
}

fn balance(storage: &InMemoryStorage, output: &BlockOutput, address: Address) -> U256 {
    match output.state.accounts.get(&address) {
        Some(change) => change.info.map_or(U256::ZERO, |a| a.balance),
        None => storage.basic(&address).unwrap().map_or(U256::ZERO, |a| a.balance),
    }
}

fn slot(output: &BlockOutput, address: Address, index: u64) -> U256 {
    output.state.accounts[&address].storage.get(&U256::from(index)).copied().unwrap_or_default()
}

#[test]
fn independent_transfers() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    for i in 0..64 {
        b.fund(account(i), ether(1));
    }
    for i in 0..64 {
        b.transfer(account(i), account(1000 + i), U256::from(i + 1));
    }
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert_eq!(out.transactions.len(), 64);
    assert!(out.transactions.iter().all(|t| t.is_success()));
    assert_eq!(balance(&storage, &out, account(1063)), U256::from(64));
}

#[test]
fn chain_of_transfers() {
    // Each account forwards what it received: every transaction depends on the previous.
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    b.fund(account(0), ether(10));
    for i in 1..40 {
        b.fund(account(i), ether(1) / U256::from(100));
    }
    for i in 0..39 {
        b.transfer(account(i), account(i + 1), ether(1) + U256::from(i));
    }
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(out.transactions.iter().all(|t| t.is_success()));
}

#[test]
fn many_senders_pay_one_recipient() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    let hot = account(9999);
    for i in 0..100 {
        b.fund(account(i), ether(1));
        b.transfer(account(i), hot, U256::from(1000));
    }
    // Then the recipient spends, which needs every credit before it.
    b.fund(hot, ether(1));
    b.transfer(hot, account(5000), ether(1) / U256::from(2));
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(out.transactions.iter().all(|t| t.is_success()));
    assert_eq!(balance(&storage, &out, account(5000)), ether(1) / U256::from(2));
    // Every credit arrived before the spend: 1 ether + 100 × 1000 wei − 0.5 ether − the fee
    // (21,000 gas at base fee + tip = 11 gwei).
    let fee = U256::from(21_000u64 * 11_000_000_000);
    assert_eq!(
        balance(&storage, &out, hot),
        ether(1) + U256::from(100_000) - ether(1) / U256::from(2) - fee
    );
}

#[test]
fn one_sender_consecutive_nonces() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    b.fund(account(0), ether(100));
    for i in 0..50 {
        b.transfer(account(0), account(100 + i % 5), ether(1));
    }
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert_eq!(out.state.accounts[&account(0)].info.unwrap().nonce, 50);
}

#[test]
fn coinbase_receives_and_is_read() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    let reader = account(777);
    b.contract(reader, contracts::coinbase_reader(), []);
    for i in 0..20 {
        b.fund(account(i), ether(1));
    }
    for i in 0..10 {
        b.transfer(account(i), COINBASE, U256::from(5));
    }
    b.call(account(10), reader, Bytes::new());
    for i in 11..20 {
        b.transfer(account(i), account(i + 100), U256::from(1));
    }
    b.call(account(0), reader, Bytes::new());
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    // The reader stored the beneficiary's balance including every earlier fee and payment.
    let seen = slot(&out, reader, 0);
    assert!(seen > U256::from(50), "reader saw {seen}");
}

#[test]
fn deploy_then_call_in_one_block() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    b.fund(account(1), ether(1));
    b.fund(account(2), ether(1));
    let counter = b.create(account(1), Asm::deployer(&contracts::counter()));
    for _ in 0..5 {
        b.call(account(2), counter, Bytes::new());
    }
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert_eq!(slot(&out, counter, 0), U256::from(5));
    assert_eq!(out.transactions[1].logs().len(), 1);
}

#[test]
fn eip7702_delegation_then_calls_to_the_delegated_account_in_one_block() {
    // Transaction 0 carries account 3's authorization to delegate to the counter; later
    // transactions call account 3, whose code (the delegation designator) exists only in
    // the block's own writes. Found by the compliance fuzz target: the designator was not
    // stored, and a later read of it by hash failed.
    let mut b = BlockBuilder::new(SpecId::PRAGUE, COINBASE);
    let counter = Address::repeat_byte(0xc0);
    b.contract(counter, contracts::counter(), []);
    for i in 1..=3 {
        b.fund(account(i), ether(1));
    }
    b.transfer(account(1), account(2), U256::ZERO);
    b.authorize_last(account(3), counter, 0);
    b.block_mut().transactions.last_mut().unwrap().gas_limit = 100_000;
    for _ in 0..3 {
        b.tx(account(2), TxKind::Call(account(3)), U256::ZERO, Bytes::new(), 100_000);
    }
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(out.transactions.iter().all(|t| t.is_success()));
    assert_eq!(slot(&out, account(3), 0), U256::from(3), "the counter ran in account 3");
    let code_hash = out.state.accounts[&account(3)].info.unwrap().code_hash;
    assert!(out.state.code(&code_hash).is_some_and(|c| c.is_eip7702()));
}

#[test]
fn selfdestruct_then_redeploy_at_the_same_address() {
    // Before Cancun, SELFDESTRUCT deletes any contract; CREATE2 can then redeploy it.
    let (mut b, factory, init, child) = with_factory(SpecId::SHANGHAI, &contracts::suicidal());
    b.fund(account(1), ether(1));
    b.call(account(1), factory, init.clone());
    b.tx(account(1), TxKind::Call(child), U256::from(7), Bytes::new(), 100_000);
    b.call(account(1), factory, init.clone());
    b.call(account(1), factory, init);
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(out.transactions.iter().take(3).all(|t| t.is_success()));
    // The last deployment collides with the live redeployed child: CREATE2 burns the gas it
    // was given and the factory runs out before storing.
    assert!(out.transactions[3].result.is_halt());
    assert_eq!(slot(&out, factory, 0), U256::from_be_slice(child.as_slice()));
    assert!(out.state.accounts[&child].info.is_some());
}

/// Calls a [`contracts::create2_factory`] with `init`, with gas to spare after a creation
/// that fails and burns what it was given.
fn deploy_through(b: &mut BlockBuilder, from: Address, factory: Address, init: &Bytes) {
    b.tx(from, TxKind::Call(factory), U256::ZERO, init.clone(), 1_000_000);
}

/// A block under `spec` with a [`contracts::create2_factory`] at `account(4242)`: the
/// builder, the factory, the init code deploying `runtime`, and where its CREATE2 lands.
fn with_factory(spec: SpecId, runtime: &Bytes) -> (BlockBuilder, Address, Bytes, Address) {
    let mut b = BlockBuilder::new(spec, COINBASE);
    let factory = account(4242);
    b.contract(factory, contracts::create2_factory(), []);
    let init = Asm::deployer(runtime);
    let child = factory.create2_from_code([0u8; 32], &init);
    (b, factory, init, child)
}

/// An account at `address` with a balance of `wei` and one storage slot, but no code and no
/// nonce: what EIP-7610 is about.
fn storage_without_code(b: &mut BlockBuilder, address: Address, wei: u64) {
    b.storage_mut().insert_account(
        address,
        U256::from(wei),
        0,
        Bytes::new(),
        [(U256::from(1), U256::from(1))],
    );
}

#[test]
fn a_creation_onto_storage_without_code_or_nonce_collides() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    let (factory, control) = (account(4242), account(4243));
    b.contract(factory, contracts::create2_factory(), []);
    b.contract(control, contracts::create2_factory(), []);
    b.fund(account(1), ether(1));
    let init = Asm::deployer(&contracts::counter());
    let child = factory.create2_from_code([0u8; 32], &init);
    storage_without_code(&mut b, child, 5);
    // A funded address without storage is an ordinary counterfactual deployment.
    let control_child = control.create2_from_code([0u8; 32], &init);
    b.fund(control_child, U256::from(5));
    b.fund(account(2), ether(1));
    b.transfer(account(2), account(3), U256::from(1));
    deploy_through(&mut b, account(1), factory, &init);
    deploy_through(&mut b, account(1), control, &init);
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(out.transactions.iter().all(|t| t.is_success()));
    // The collision: CREATE2 returned zero, burnt the gas it was given, bumped the
    // factory's nonce and left the account as it was.
    assert_eq!(slot(&out, factory, 0), U256::ZERO);
    assert!(out.transactions[1].gas_used() > 900_000, "{}", out.transactions[1].gas_used());
    assert_eq!(out.state.accounts[&factory].info.unwrap().nonce, 2);
    assert!(!out.state.accounts.contains_key(&child));
    assert_eq!(slot(&out, control, 0), U256::from_be_slice(control_child.as_slice()));
    assert!(out.transactions[2].gas_used() < 200_000);
}

#[test]
fn a_creation_onto_an_empty_account_with_storage_collides_in_the_first_transaction() {
    let (mut b, factory, init, child) = with_factory(SpecId::CANCUN, &contracts::counter());
    b.fund(account(1), ether(1));
    storage_without_code(&mut b, child, 0);
    deploy_through(&mut b, account(1), factory, &init);
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert_eq!(slot(&out, factory, 0), U256::ZERO);
    let (_, stats) = parallel(&storage, &block, NonZeroUsize::new(2).unwrap(), None).unwrap();
    assert!(!stats.sequential_fallback, "nothing below the first transaction can remove it");
}

#[test]
fn a_creation_after_the_block_destroyed_the_storage_succeeds() {
    // Before Cancun, SELFDESTRUCT deletes the contract and its storage; a payment then
    // creates an account without code, nonce or storage, where CREATE2 can redeploy the
    // contract without colliding.
    let (mut b, factory, init, child) = with_factory(SpecId::SHANGHAI, &contracts::suicidal());
    b.fund(account(1), ether(1));
    b.fund(account(2), ether(1));
    b.storage_mut().insert_account(
        child,
        U256::from(7),
        1,
        contracts::suicidal(),
        [(U256::from(1), U256::from(1))],
    );
    b.tx(account(1), TxKind::Call(child), U256::ZERO, Bytes::new(), 100_000);
    b.transfer(account(2), child, U256::from(5));
    deploy_through(&mut b, account(1), factory, &init);
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(out.transactions.iter().all(|t| t.is_success()));
    assert_eq!(slot(&out, factory, 0), U256::from_be_slice(child.as_slice()));
    let redeployed = &out.state.accounts[&child];
    assert!(redeployed.storage_cleared && redeployed.info.is_some());
}

#[test]
fn a_creation_after_a_touch_removed_the_empty_account_succeeds() {
    // EIP-161: touching an empty account removes it, storage and all; a later creation at
    // its address does not collide, even where a payment has created the account again.
    for pay_after_the_touch in [false, true] {
        let (mut b, factory, init, child) = with_factory(SpecId::CANCUN, &contracts::counter());
        storage_without_code(&mut b, child, 0);
        for i in 1..=3 {
            b.fund(account(i), ether(1));
        }
        b.transfer(account(1), child, U256::ZERO);
        if pay_after_the_touch {
            b.transfer(account(2), child, U256::from(5));
        }
        deploy_through(&mut b, account(3), factory, &init);
        let (storage, block) = b.build();
        let out = same_everywhere(&storage, &block).unwrap();
        assert!(out.transactions.iter().all(|t| t.is_success()));
        assert_eq!(slot(&out, factory, 0), U256::from_be_slice(child.as_slice()));
        assert!(out.state.accounts[&child].storage_cleared);
        // The store sees the account paid again, not that it was removed in between (the
        // touch and the payment are credits, folded when read): Block-STM hands the block
        // to the sequential executor.
        let (_, stats) = parallel(&storage, &block, NonZeroUsize::new(2).unwrap(), None).unwrap();
        assert_eq!(stats.sequential_fallback, pay_after_the_touch);
    }
}

#[test]
fn a_payment_keeps_an_empty_account_with_storage_from_removal() {
    // Paid before any touch, the account is never empty again: its storage stays and the
    // creation collides.
    let (mut b, factory, init, child) = with_factory(SpecId::CANCUN, &contracts::counter());
    storage_without_code(&mut b, child, 0);
    b.fund(account(1), ether(1));
    b.fund(account(2), ether(1));
    b.transfer(account(1), child, U256::from(5));
    b.transfer(account(2), child, U256::ZERO);
    deploy_through(&mut b, account(1), factory, &init);
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(out.transactions.iter().all(|t| t.is_success()));
    assert_eq!(slot(&out, factory, 0), U256::ZERO);
    assert!(!out.state.accounts[&child].storage_cleared);
}

#[test]
fn hot_storage_slot_forces_many_re_executions() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    let counter = account(31337);
    b.contract(counter, contracts::counter(), [(U256::ZERO, U256::from(100))]);
    for i in 0..60 {
        b.fund(account(i), ether(1));
        b.call(account(i), counter, Bytes::new());
    }
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert_eq!(slot(&out, counter, 0), U256::from(160));
}

#[test]
fn reverting_and_failing_transactions() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    let reverter = account(66);
    b.contract(reverter, contracts::reverter(), []);
    b.fund(account(1), ether(1));
    b.call(account(1), reverter, Bytes::new());
    b.transfer(account(1), account(2), U256::from(1));
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(!out.transactions[0].is_success());
    assert!(out.transactions[1].is_success());
}

#[test]
fn invalid_nonce_is_the_same_error() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    for i in 0..10 {
        b.fund(account(i), ether(1));
        b.transfer(account(i), account(i + 50), U256::from(1));
    }
    b.tx_with_nonce(account(3), TxKind::Call(account(9)), U256::ZERO, Bytes::new(), 21_000, 7);
    for i in 0..10 {
        b.transfer(account(i), account(i + 60), U256::from(1));
    }
    let (storage, block) = b.build();
    let error = same_everywhere(&storage, &block).unwrap_err();
    assert!(error.contains("transaction 10 is invalid"), "{error}");
}

#[test]
fn nonce_too_low_is_the_same_error() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    for i in 0..6 {
        b.fund(account(i), ether(1));
        b.transfer(account(i), account(i + 50), U256::from(1));
    }
    // account 2 already used nonce 0 in this block.
    b.tx_with_nonce(account(2), TxKind::Call(account(9)), U256::ZERO, Bytes::new(), 21_000, 0);
    let (storage, block) = b.build();
    let error = same_everywhere(&storage, &block).unwrap_err();
    assert!(error.contains("transaction 6 is invalid") && error.contains("nonce"), "{error}");
}

#[test]
fn intrinsic_gas_too_low_is_the_same_error() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    for i in 0..4 {
        b.fund(account(i), ether(1));
        b.transfer(account(i), account(i + 50), U256::from(1));
    }
    b.tx(account(1), TxKind::Call(account(9)), U256::ZERO, Bytes::new(), 20_000);
    let (storage, block) = b.build();
    let error = same_everywhere(&storage, &block).unwrap_err();
    assert!(error.contains("transaction 4 is invalid"), "{error}");
}

#[test]
fn transaction_gas_limit_above_the_block_gas_limit_is_the_same_error() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    b.fund(account(1), ether(1));
    b.tx(account(1), TxKind::Call(account(9)), U256::ZERO, Bytes::new(), 50_000);
    b.block_mut().env.gas_limit = 30_000;
    let (storage, block) = b.build();
    let error = same_everywhere(&storage, &block).unwrap_err();
    assert!(error.contains("transaction 0 has gas limit 50000"), "{error}");
}

#[test]
fn insufficient_balance_is_the_same_error() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    b.fund(account(1), ether(1));
    b.transfer(account(1), account(2), ether(2));
    let (storage, block) = b.build();
    let error = same_everywhere(&storage, &block).unwrap_err();
    assert!(error.contains("transaction 0 is invalid"), "{error}");
}

#[test]
fn block_gas_limit_exceeded_is_the_same_error() {
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    for i in 0..5 {
        b.fund(account(i), ether(1));
        b.transfer(account(i), account(i + 10), U256::from(1));
    }
    b.block_mut().env.gas_limit = 21_000 * 3;
    let (storage, block) = b.build();
    let error = same_everywhere(&storage, &block).unwrap_err();
    assert!(error.contains("transaction 3 has gas limit 21000"), "{error}");
}

#[test]
fn empty_block() {
    let (storage, block) = BlockBuilder::new(SpecId::CANCUN, COINBASE).build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(out.transactions.is_empty());
}

#[test]
fn pre_merge_rewards_and_plain_transfers() {
    let mut b = BlockBuilder::new(SpecId::BYZANTIUM, COINBASE);
    for i in 0..30 {
        b.fund(account(i), ether(1));
        b.transfer(account(i), account(i % 3 + 100), U256::from(1));
    }
    b.block_mut().unknown_ommers = 1;
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    // 3 ether block reward, 3/32 for the uncle, plus fees.
    assert!(balance(&storage, &out, COINBASE) > ether(3));
}

#[test]
fn contracts_paid_by_many_and_observed_by_some() {
    use parevm_fixtures::synthetic::op;
    let mut b = BlockBuilder::new(SpecId::CANCUN, COINBASE);
    // A contract that accepts ether and does nothing else; one that records its own balance;
    // one that pays 1 wei back to its caller; and one that records the sink's balance.
    let (sink, recorder, payer, watcher) = (account(500), account(501), account(502), account(503));
    b.contract(sink, Asm::new().op(&[op::STOP]).build(), []);
    b.contract(recorder, Asm::new().op(&[op::SELFBALANCE]).push(0).op(&[op::SSTORE]).build(), []);
    let pay_back = Asm::new()
        .push(0)
        .push(0)
        .push(0)
        .push(0)
        .push(1)
        .op(&[op::CALLER, op::GAS, op::CALL, op::POP])
        .build();
    b.contract(payer, pay_back, []);
    b.contract(
        watcher,
        Asm::new().push_address(sink).op(&[op::BALANCE]).push(0).op(&[op::SSTORE]).build(),
        [],
    );
    for i in 0..40 {
        b.fund(account(i), ether(1));
    }
    for i in 0..40u64 {
        let from = account(i);
        match i % 5 {
            0 | 1 => b.tx(from, TxKind::Call(sink), U256::from(1000 + i), Bytes::new(), 50_000),
            2 => b.tx(from, TxKind::Call(recorder), U256::from(7), Bytes::new(), 60_000),
            3 => b.tx(from, TxKind::Call(payer), U256::from(5), Bytes::new(), 80_000),
            _ => b.call(from, watcher, Bytes::new()),
        };
    }
    let (storage, block) = b.build();
    let out = same_everywhere(&storage, &block).unwrap();
    assert!(out.transactions.iter().all(|t| t.is_success()));
    // The last watcher call saw every payment to the sink before it.
    let paid: u64 = (0..39u64).filter(|i| i % 5 < 2).map(|i| 1000 + i).sum();
    assert_eq!(slot(&out, watcher, 0), U256::from(paid));
    assert_eq!(slot(&out, recorder, 0), U256::from(7 * 8));
    assert_eq!(balance(&storage, &out, payer), U256::from(4 * 8));
}
