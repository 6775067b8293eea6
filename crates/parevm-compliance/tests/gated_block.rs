//! A synthetic block of thousands of swaps on gated pools, with credential issuances and
//! revocations interleaved, gives the sequential outcome at 1, 2, 4 and 8 threads, 20 times
//! (and 5 times in `revert` mode).

use std::num::NonZeroUsize;

use parevm::{BlockOutput, Compliance, ComplianceMode, Config, ExecutionMode, Executor};
use parevm_fixtures::sequential;
use parevm_fixtures::workload::{generate, GeneratedBlock, Workload, WorkloadKind};

/// 3,000 transactions: swaps by 400 senders on 20 gated pools, issuances and revocations.
fn gated_block() -> GeneratedBlock {
    let workload = Workload {
        accounts: 400,
        pools: 20,
        hot_ratio: 0.2,
        ..Workload::new(WorkloadKind::Gated, 3_000)
    };
    generate(&workload)
}

#[test]
fn gated_block_is_deterministic_across_thread_counts() {
    let generated = gated_block();
    let compliance =
        generated.compliance.expect("gated blocks carry their configuration").compliance();
    let reference = sequential(&generated.storage, &generated.block, Some(&compliance)).unwrap();
    // The block exercises what it is meant to: exclusions, cascades, issuances.
    assert!(reference.excluded.len() > 50, "{} excluded", reference.excluded.len());
    assert!(reference.excluded.iter().any(|e| e.cascaded_from.is_some()));
    assert!(reference.transactions.len() > 2_000);
    assert_parallel_matches(&generated, &compliance, &reference, 20);
}

#[test]
fn gated_block_in_revert_mode_is_deterministic_and_charges_the_rejected() {
    let generated = gated_block();
    let hook = generated.compliance.expect("gated blocks carry their configuration");
    let compliance = Compliance::new(hook.compliance().hook, ComplianceMode::Revert);
    let reference = sequential(&generated.storage, &generated.block, Some(&compliance)).unwrap();
    // Every rejection is included as failed: nothing excluded, no cascade, all 3,000 in.
    assert!(reference.rejected.len() > 50, "{} rejected", reference.rejected.len());
    assert!(reference.excluded.is_empty());
    assert_eq!(reference.transactions.len(), 3_000);
    for r in &reference.rejected {
        let tx = reference.transactions.iter().find(|t| t.index == r.index).unwrap();
        assert!(!tx.is_success() && tx.gas_used() >= 21_000, "transaction {}", r.index);
    }
    assert_parallel_matches(&generated, &compliance, &reference, 5);
}

/// Block-STM at 1, 2, 4 and 8 threads, `rounds` times, gives `reference`.
fn assert_parallel_matches(
    generated: &GeneratedBlock,
    compliance: &Compliance,
    reference: &BlockOutput,
    rounds: usize,
) {
    for round in 0..rounds {
        for threads in [1, 2, 4, 8] {
            let config = Config::default()
                .with_threads(NonZeroUsize::new(threads).unwrap())
                .with_mode(ExecutionMode::Parallel)
                .with_compliance(Some(compliance.clone()));
            let executor = Executor::new(config).unwrap();
            let parallel = executor.execute(&generated.storage, &generated.block).unwrap();
            if let Some(difference) = reference.first_difference(&parallel.output) {
                panic!("round {round}, {threads} threads: {difference}");
            }
        }
    }
}
