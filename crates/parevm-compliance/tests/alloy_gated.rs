//! The compliance hook through alloy-evm's interface: `ParallelBlockExecutor` with a hook in
//! the engine's configuration excludes, reverts and fails exactly as the engine's own
//! sequential executor does, whether Block-STM or the gated sequential path runs the
//! transactions, and a block builder calling it transaction by transaction gets the same
//! block.

use std::num::NonZeroUsize;

use parevm::alloy::ExecutionReport;
use parevm::{BlockOutput, Compliance, ComplianceMode, Config, ExecutionMode, Executor};
use parevm_fixtures::alloy_oracle::{
    alloy_transactions, difference, run_parallel, run_transaction_by_transaction, AlloyBlock,
    AlloyRun, ChainRules,
};
use parevm_fixtures::workload::{generate, GeneratedBlock, Workload, WorkloadKind};

/// 1,500 transactions: swaps by 300 senders on 12 gated pools, issuances and revocations.
fn gated_block() -> GeneratedBlock {
    let workload = Workload {
        accounts: 300,
        pools: 12,
        hot_ratio: 0.2,
        ..Workload::new(WorkloadKind::Gated, 1_500)
    };
    generate(&workload)
}

fn engine(compliance: &Compliance, mode: ExecutionMode, threads: usize) -> Executor {
    let config = Config::default()
        .with_threads(NonZeroUsize::new(threads).unwrap())
        .with_mode(mode)
        .with_compliance(Some(compliance.clone()));
    Executor::new(config).unwrap()
}

/// The block through `ParallelBlockExecutor` with `compliance`, as `mode` says.
fn run(
    generated: &GeneratedBlock,
    compliance: &Compliance,
    mode: ExecutionMode,
    threads: usize,
) -> (AlloyRun, Option<ExecutionReport>) {
    let block = &generated.block;
    let alloy = AlloyBlock::of(block, ChainRules::UpTo(block.spec));
    let txs = alloy_transactions(block).unwrap();
    run_parallel(&generated.storage, &alloy, txs, &engine(compliance, mode, threads))
}

/// The engine's own sequential executor, and through alloy-evm the gated sequential path and
/// Block-STM at 1, 2 and 4 threads: all the same block.
fn assert_all_agree(generated: &GeneratedBlock, compliance: &Compliance) -> BlockOutput {
    let n = generated.block.transactions.len();
    let reference = Executor::new(
        Config::default()
            .with_mode(ExecutionMode::Sequential)
            .with_compliance(Some(compliance.clone())),
    )
    .unwrap()
    .execute(&generated.storage, &generated.block)
    .unwrap()
    .output;
    let (sequential, report) = run(generated, compliance, ExecutionMode::Sequential, 1);
    let report = report.expect("the block is valid");
    let result = sequential.result.as_ref().unwrap();
    assert_eq!(result.receipts, reference.receipts());
    assert_eq!(result.gas_used, reference.gas_used);
    assert_eq!((report.parallel, report.sequential), (0, n));
    assert_eq!((&report.excluded, &report.rejected), (&reference.excluded, &reference.rejected));
    for threads in [1, 2, 4] {
        let (parallel, report) = run(generated, compliance, ExecutionMode::Parallel, threads);
        assert_eq!(difference(&sequential, &parallel), None, "{threads} threads");
        let report = report.unwrap();
        assert_eq!((report.parallel, report.sequential), (n, 0), "{threads} threads");
        assert_eq!(
            (&report.excluded, &report.rejected),
            (&reference.excluded, &reference.rejected)
        );
    }
    reference
}

fn compliance_of(generated: &GeneratedBlock) -> Compliance {
    generated.compliance.as_ref().expect("gated blocks carry their configuration").compliance()
}

#[test]
fn exclusions_through_alloy_evm_are_the_engines() {
    let generated = gated_block();
    let reference = assert_all_agree(&generated, &compliance_of(&generated));
    assert!(reference.excluded.len() > 20, "{} excluded", reference.excluded.len());
    assert!(reference.excluded.iter().any(|e| e.cascaded_from.is_some()));
}

#[test]
fn reverted_rejections_through_alloy_evm_are_the_engines() {
    let generated = gated_block();
    let compliance = Compliance::new(compliance_of(&generated).hook, ComplianceMode::Revert);
    let reference = assert_all_agree(&generated, &compliance);
    assert!(reference.rejected.len() > 20, "{} rejected", reference.rejected.len());
}

#[test]
fn an_exclusion_budget_through_alloy_evm_is_the_engines() {
    let generated = gated_block();
    // A budget that a few exclusions fill: the later rejections are included as failed.
    let compliance = compliance_of(&generated).with_exclusion_budget(300_000);
    let reference = assert_all_agree(&generated, &compliance);
    assert!(!reference.excluded.is_empty() && !reference.rejected.is_empty());
}

#[test]
fn a_rejection_fails_the_block_through_alloy_evm_in_fail_block_mode() {
    let generated = gated_block();
    let compliance = Compliance::new(compliance_of(&generated).hook, ComplianceMode::FailBlock);
    let (sequential, _) = run(&generated, &compliance, ExecutionMode::Sequential, 1);
    let error = sequential.result.as_ref().unwrap_err();
    assert!(error.contains("rejected"), "{error}");
    for threads in [1, 2] {
        let (parallel, _) = run(&generated, &compliance, ExecutionMode::Parallel, threads);
        assert_eq!(parallel.result, sequential.result);
    }
}

#[test]
fn a_builder_leaving_out_what_fails_gets_the_excluding_block() {
    let generated = gated_block();
    let compliance = compliance_of(&generated);
    let (whole, report) = run(&generated, &compliance, ExecutionMode::Parallel, 2);
    let block = &generated.block;
    let alloy = AlloyBlock::of(block, ChainRules::UpTo(block.spec));
    let txs = alloy_transactions(block).unwrap();
    let engine = engine(&compliance, ExecutionMode::Parallel, 2);
    let (one_by_one, left_out) =
        run_transaction_by_transaction(&generated.storage, &alloy, txs, &engine);
    assert_eq!(difference(&whole, &one_by_one), None);
    let excluded: Vec<usize> = report.unwrap().excluded.iter().map(|e| e.index).collect();
    assert_eq!(left_out, excluded);
}
