//! The mainnet snapshots through alloy-evm's `EthBlockExecutor` (what nodes run), through
//! parevm's alloy-evm executor at several thread counts (identical receipts, requests, gas
//! and `BundleState` with reverts) and through the engine's own path, sequential and
//! Block-STM (the same receipts, requests, gas and state); alloy-evm's own result matches the
//! header.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use alloy_consensus::proofs::calculate_receipt_root;
use alloy_consensus::TxReceipt;
use alloy_evm::eth::spec::EthSpec;
use alloy_primitives::{Address, Bloom};
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{Config, ExecutionMode, Executor};
use parevm_fixtures::alloy_oracle::{
    difference, engine_difference, run_parallel, run_sequential, AlloyBlock, ChainRules,
};
use parevm_fixtures::{discover_snapshots, load_alloy_transactions, load_snapshot_with, Senders};

const THREADS: [usize; 4] = [1, 2, 4, 8];

#[test]
#[ignore = "needs ../shared: CI runs it with PAREVM_MAINNET"]
fn mainnet_blocks_match_alloy_evm_at_every_thread_count() {
    let root = PathBuf::from(
        std::env::var("PAREVM_MAINNET").expect("PAREVM_MAINNET: the mainnet snapshots folder"),
    );
    let engines: Vec<Executor> = THREADS
        .iter()
        .map(|&t| {
            let threads = NonZeroUsize::new(t).unwrap();
            let config = Config::default().with_threads(threads).with_mode(ExecutionMode::Parallel);
            Executor::new(config).unwrap()
        })
        .collect();
    let (mut blocks, mut transactions, mut without_uncle_headers) = (0, 0, 0);
    for dir in discover_snapshots(&root).unwrap() {
        let snapshot = load_snapshot_with(&dir, Senders::Recover).unwrap();
        let txs = load_alloy_transactions(&dir.join("block.json")).unwrap();
        let alloy = AlloyBlock::of(&snapshot.block, ChainRules::Mainnet(EthSpec::mainnet()));
        let name = dir.display();

        let expected = run_sequential(&snapshot.storage, &alloy, txs.clone());
        let result = expected.result.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        let header = &snapshot.header;
        assert_eq!(result.gas_used, header.gas_used, "{name}: gas used");
        let bloom = result.receipts.iter().fold(Bloom::ZERO, |b, r| b | r.bloom());
        assert_eq!(bloom, header.logs_bloom, "{name}: logs bloom");
        if snapshot.block.spec.is_enabled_in(SpecId::BYZANTIUM) {
            let root = calculate_receipt_root(&result.receipts);
            assert_eq!(root, header.receipts_root, "{name}: receipts root");
        }

        // The engine's own path, sequential and Block-STM, against the same oracle. Uncles
        // known only by hash earn the beneficiary its 1/32 on the engine's side only (alloy-evm
        // takes uncle headers): its balance is left out there.
        let skip: &[Address] =
            if snapshot.block.unknown_ommers > 0 { &[header.beneficiary] } else { &[] };
        let sequential = parevm_fixtures::sequential(&snapshot.storage, &snapshot.block, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(d) = engine_difference(&snapshot.storage, &expected, &sequential, skip) {
            panic!("{name}: the engine's sequential path differs from EthBlockExecutor: {d}");
        }

        for (engine, threads) in engines.iter().zip(THREADS) {
            let ours = engine.execute(&snapshot.storage, &snapshot.block).unwrap().output;
            assert_eq!(ours, sequential, "{name}: the engine at {threads} threads");
            let (got, report) = run_parallel(&snapshot.storage, &alloy, txs.clone(), engine);
            if let Some(difference) = difference(&expected, &got) {
                panic!("{name} at {threads} threads: {difference}");
            }
            let report = report.expect("the block is valid");
            assert_eq!(report.parallel, txs.len(), "{name} at {threads} threads: all by Block-STM");
        }
        blocks += 1;
        transactions += txs.len();
        // Uncles listed by hash only: both executors credit no uncle rewards for them.
        without_uncle_headers += usize::from(snapshot.block.unknown_ommers > 0);
    }
    println!(
        "alloy-evm oracle: {blocks} blocks, {transactions} transactions, identical through the \
         alloy-evm executor at {THREADS:?} threads and through the engine's own path \
         ({without_uncle_headers} blocks with uncles known by hash only: no uncle rewards on \
         either side; their beneficiary's 1/32 per uncle is the engine's only)"
    );
    assert_eq!(blocks, 50, "the 50 mainnet snapshots");
}
