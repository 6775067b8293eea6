//! `parevm replay --executor alloy`: a snapshot through alloy-evm's block-executor interface,
//! as a node runs it. The reference is alloy-evm's own `EthBlockExecutor` on revm's `State`
//! (with a compliance hook, which that executor cannot apply, parevm's executor with the
//! engine in sequential mode, which runs the hook on alloy-evm's state); it is verified
//! against the header. The other side is parevm's `ParallelBlockExecutor` with the engine as
//! `--mode` says, compared with the reference receipt for receipt and bundle for bundle
//! (reverts included). Transactions are the snapshot's alloy transactions: alloy-evm builds
//! every transaction's environment itself.

use std::time::Instant;

use alloy_evm::eth::spec::EthSpec;
use parevm::{Config, ExecutionMode, Executor};
use parevm_fixtures::alloy_oracle::{
    difference, run_parallel, run_sequential, AlloyBlock, AlloyRun, ChainRules,
};
use parevm_fixtures::{AlloyTransaction, HeaderCheck, Snapshot};

use super::{us, Record, ReplayArgs};
use crate::measure::Paired;

/// Replays `snapshot` (whose alloy transactions are `txs`) through alloy-evm's interface
/// into `record`: one untimed run of each side, then `--repeat` timed runs each,
/// alternating; every parallel run compared with the reference outside the timed region.
pub(super) fn replay(
    snapshot: &Snapshot,
    txs: &[AlloyTransaction],
    args: &ReplayArgs,
    executor: &Executor,
    record: &mut Record,
) -> Result<(), Box<dyn std::error::Error>> {
    let (storage, block) = (&snapshot.storage, &snapshot.block);
    let alloy = AlloyBlock::of(block, ChainRules::Mainnet(EthSpec::mainnet()));
    let compliance = executor.config().compliance.clone();
    // The hook's sequential reference: parevm's executor, all transactions through the hook.
    let gated = compliance
        .map(|c| {
            let config = Config::default().with_mode(ExecutionMode::Sequential);
            Executor::new(config.with_compliance(Some(c)))
        })
        .transpose()?;
    let sequential = || -> AlloyRun {
        match &gated {
            Some(gated) => run_parallel(storage, &alloy, txs.to_vec(), gated).0,
            None => run_sequential(storage, &alloy, txs.to_vec()),
        }
    };
    let reference = sequential();
    let result = reference.result.as_ref().map_err(|e| format!("alloy-evm: {e}"))?;
    record.gas_used = result.gas_used;
    let check = HeaderCheck::of_receipts(
        &snapshot.header,
        block.spec,
        result.gas_used,
        &result.receipts,
        &result.requests,
    );
    record.verified = check.passed();
    let mut problems = check.mismatches();

    let mut mismatch = None;
    let mut report = None;
    let mut paired = Paired::default();
    let compare = |run: &AlloyRun, mismatch: &mut Option<String>| {
        if mismatch.is_none() {
            *mismatch = difference(&reference, run);
        }
    };
    if !args.sequential {
        let (run, first) = run_parallel(storage, &alloy, txs.to_vec(), executor);
        compare(&run, &mut mismatch);
        report = first;
    }
    for _ in 0..args.repeat() {
        let start = Instant::now();
        let run = std::hint::black_box(sequential());
        paired.sequential(start.elapsed());
        if run != reference {
            problems.push("the sequential path is not deterministic".into());
        }
        if args.sequential {
            continue;
        }
        let start = Instant::now();
        let (run, _) = run_parallel(storage, &alloy, txs.to_vec(), executor);
        paired.parallel(start.elapsed());
        compare(&run, &mut mismatch);
    }
    record.sequential_us = Some(us(paired.sequential_median()));
    if let (Some(report), Some(spread)) = (report, paired.spread()) {
        record.parallel_us = Some(spread.parallel_us);
        record.speedup = Some(spread.speedup);
        record.speedup_q1 = Some(spread.ratio_q1);
        record.speedup_q3 = Some(spread.ratio_q3);
        record.parallel_path = Some(report.parallel > 0);
        record.excluded = report.excluded.len();
        record.matches_sequential = Some(mismatch.is_none());
        problems.extend(mismatch.map(|d| format!("differs from the reference: {d}")));
    } else if !args.sequential {
        problems.push("the parallel executor failed where the reference did not".into());
    }
    if !problems.is_empty() {
        record.error = Some(problems.join("; "));
    }
    Ok(())
}
