//! Every synthetic workload replays identically on both paths, and its knobs do what they
//! say.

use std::num::NonZeroUsize;

use parevm_fixtures::both_paths_with;
use parevm_fixtures::workload::{generate, Size, Workload, WorkloadKind};

fn small(kind: WorkloadKind) -> Workload {
    Workload { accounts: 50, pools: 8, hot_ratio: 0.2, ..Workload::new(kind, 300) }
}

#[test]
fn every_workload_agrees_on_both_paths() {
    for kind in WorkloadKind::ALL {
        let generated = generate(&small(kind));
        let compliance = generated.compliance.map(|c| c.compliance());
        assert_eq!(compliance.is_some(), kind == WorkloadKind::Gated, "{kind:?}");
        let mut reference = None;
        for threads in [1, 2, 4] {
            let output = both_paths_with(
                &generated.storage,
                &generated.block,
                NonZeroUsize::new(threads).unwrap(),
                compliance.as_ref(),
            )
            .unwrap_or_else(|e| panic!("{kind:?} at {threads} threads: {e}"))
            .unwrap_or_else(|e| panic!("{kind:?} fails: {e}"));
            reference.get_or_insert(output);
        }
        let output = reference.unwrap();
        let failed = output.transactions.iter().filter(|t| !t.is_success()).count();
        assert_eq!(failed, 0, "{kind:?}: every generated transaction succeeds");
        assert_eq!(
            output.transactions.len() + output.excluded.len(),
            300,
            "{kind:?}: every transaction is included or excluded"
        );
        if kind == WorkloadKind::Gated {
            assert!(!output.excluded.is_empty(), "some senders lack credentials");
        } else {
            assert!(output.excluded.is_empty());
        }
    }
}

#[test]
fn gas_sizing_lands_near_the_budget() {
    for kind in [WorkloadKind::Transfers, WorkloadKind::Erc20, WorkloadKind::Swaps] {
        let workload = Workload { size: Size::Gas(20_000_000), ..small(kind) };
        let generated = generate(&workload);
        let output =
            parevm_fixtures::sequential(&generated.storage, &generated.block, None).unwrap();
        let ratio = output.gas_used as f64 / 20_000_000.0;
        assert!((0.85..1.15).contains(&ratio), "{kind:?}: {} gas", output.gas_used);
    }
}

#[test]
fn generation_is_deterministic_in_the_seed() {
    let a = generate(&small(WorkloadKind::Mixed));
    let b = generate(&small(WorkloadKind::Mixed));
    assert_eq!(a.block.transactions, b.block.transactions);
    let c = generate(&Workload { seed: 2, ..small(WorkloadKind::Mixed) });
    assert_ne!(a.block.transactions, c.block.transactions);
}
