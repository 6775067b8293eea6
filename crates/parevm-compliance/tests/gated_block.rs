//! A synthetic block of thousands of swaps on gated pools, with credential issuances and
//! revocations interleaved, gives the sequential outcome at 1, 2, 4 and 8 threads, 20 times.

use std::num::NonZeroUsize;

use parevm::{execute_block, execute_sequential_with, Config, ExecutionMode};
use parevm_fixtures::workload::{generate, Workload, WorkloadKind};

#[test]
fn gated_block_is_deterministic_across_thread_counts() {
    let workload = Workload {
        accounts: 400,
        pools: 20,
        hot_ratio: 0.2,
        ..Workload::new(WorkloadKind::Gated, 3_000)
    };
    let generated = generate(&workload);
    let compliance =
        generated.compliance.expect("gated blocks carry their configuration").compliance();
    let reference =
        execute_sequential_with(&generated.storage, &generated.block, Some(&compliance)).unwrap();
    // The block exercises what it is meant to: exclusions, cascades, issuances.
    assert!(reference.excluded.len() > 50, "{} excluded", reference.excluded.len());
    assert!(reference.excluded.iter().any(|e| e.cascaded_from.is_some()));
    assert!(reference.transactions.len() > 2_000);
    for round in 0..20 {
        for threads in [1, 2, 4, 8] {
            let config = Config {
                threads: NonZeroUsize::new(threads).unwrap(),
                mode: ExecutionMode::Parallel,
                compliance: Some(compliance.clone()),
                ..Config::default()
            };
            let parallel = execute_block(&generated.storage, &generated.block, &config).unwrap();
            if let Some(difference) = reference.first_difference(&parallel.output) {
                panic!("round {round}, {threads} threads: {difference}");
            }
        }
    }
}
