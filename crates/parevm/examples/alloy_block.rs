//! Executing a block in parallel through alloy-evm's block-executor interface, as a node
//! does: a revm database with a few accounts, signed transactions recovered to their
//! senders, `ParallelBlockExecutor` where a node has `EthBlockExecutor`, then the receipts
//! and the `BundleState` (with reverts) a node persists.
//!
//! Run with `cargo run --release -p parevm --example alloy_block`.

use std::borrow::Cow;

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_evm::block::BlockExecutor;
use alloy_evm::eth::receipt_builder::AlloyReceiptBuilder;
use alloy_evm::eth::spec::EthSpec;
use alloy_evm::eth::{EthBlockExecutionCtx, EthBlockExecutor};
use alloy_evm::{EthEvmFactory, EvmEnv, EvmFactory};
use alloy_primitives::{Address, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use parevm::alloy::ParallelBlockExecutor;
use parevm::revm::context::{BlockEnv, CfgEnv};
use parevm::revm::database::states::bundle_state::BundleRetention;
use parevm::revm::database::{CacheDB, EmptyDB, State};
use parevm::revm::primitives::hardfork::SpecId;
use parevm::revm::state::AccountInfo;
use parevm::{Config, ExecutionMode, Executor};

const ETHER: u128 = 1_000_000_000_000_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The state before the block: 16 funded accounts (a node has its own database here).
    let keys: Vec<PrivateKeySigner> = (1..=16u8)
        .map(|i| PrivateKeySigner::from_bytes(&B256::repeat_byte(i)))
        .collect::<Result<_, _>>()?;
    let mut db = CacheDB::new(EmptyDB::new());
    for key in &keys {
        db.insert_account_info(
            key.address(),
            AccountInfo { balance: U256::from(10 * ETHER), ..Default::default() },
        );
    }

    // The block: each account pays an exchange's deposit address and a fresh account.
    let exchange = Address::repeat_byte(0xee);
    let basefee = 7;
    let mut transactions = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        for (nonce, to) in
            [exchange, Address::with_last_byte(0x40 + i as u8)].into_iter().enumerate()
        {
            let tx = TxEip1559 {
                chain_id: 1,
                nonce: nonce as u64,
                gas_limit: 21_000,
                max_fee_per_gas: 100,
                max_priority_fee_per_gas: 2,
                to: TxKind::Call(to),
                value: U256::from(ETHER / 100),
                ..Default::default()
            };
            let signature = key.sign_hash_sync(&tx.signature_hash())?;
            let envelope = TxEnvelope::from(tx.into_signed(signature));
            // A node recovers every sender from its signature.
            transactions.push(envelope.try_into_recovered()?);
        }
    }

    let env = EvmEnv {
        cfg_env: CfgEnv::new_with_spec(SpecId::CANCUN).with_chain_id(1),
        block_env: BlockEnv {
            number: U256::from(20_000_000),
            timestamp: U256::from(1_720_000_000),
            beneficiary: Address::repeat_byte(0xcb),
            gas_limit: 30_000_000,
            basefee,
            prevrandao: Some(B256::ZERO),
            ..Default::default()
        },
    };
    let ctx = || EthBlockExecutionCtx {
        parent_hash: B256::ZERO,
        parent_beacon_block_root: Some(B256::ZERO),
        ommers: &[],
        withdrawals: Some(Cow::Owned(Vec::new())),
        extra_data: Default::default(),
        tx_count_hint: Some(transactions.len()),
        slot_number: None,
    };
    let spec = EthSpec::mainnet();

    // Where a node builds an `EthBlockExecutor`: the same arguments, plus parevm's executor
    // (its threads are kept between blocks).
    let engine = Executor::new(Config::default().with_mode(ExecutionMode::Parallel))?;
    let mut state = State::builder().with_database(db.clone()).with_bundle_update().build();
    let evm = EthEvmFactory::default().create_evm(&mut state, env.clone());
    let executor =
        ParallelBlockExecutor::new(&engine, evm, ctx(), &spec, AlloyReceiptBuilder::default());
    let (result, report) = executor.execute_block_with_report(transactions.iter())?;
    state.merge_transitions(BundleRetention::Reverts);
    let bundle = state.take_bundle();

    println!(
        "{} transactions, {} by Block-STM on {} threads, {} gas",
        result.receipts.len(),
        report.parallel,
        engine.config().threads,
        result.gas_used
    );
    for (i, receipt) in result.receipts.iter().enumerate().take(4) {
        println!(
            "  receipt {i}: success {}, cumulative gas {}",
            receipt.status(),
            receipt.cumulative_gas_used()
        );
    }
    println!(
        "bundle: {} accounts changed, {} reverts; the exchange holds {} wei",
        bundle.state.len(),
        bundle.reverts.iter().map(Vec::len).sum::<usize>(),
        bundle.account(&exchange).and_then(|a| a.info.as_ref()).map_or(U256::ZERO, |i| i.balance)
    );

    // What the node ran before: alloy-evm's own executor, sequentially. The same result.
    let mut reference = State::builder().with_database(db).with_bundle_update().build();
    let evm = EthEvmFactory::default().create_evm(&mut reference, env);
    let expected = EthBlockExecutor::new(evm, ctx(), &spec, AlloyReceiptBuilder::default())
        .execute_block(transactions.iter())?;
    reference.merge_transitions(BundleRetention::Reverts);
    if expected != result || reference.take_bundle() != bundle {
        return Err("the parallel block differs from EthBlockExecutor's".into());
    }
    println!("identical to alloy-evm's EthBlockExecutor: receipts, gas and bundle with reverts");
    Ok(())
}
