//! Times the mainnet snapshots (or any snapshot folders) three ways, in one process, in a
//! different order each round: alloy-evm's `EthBlockExecutor` (what a node runs today), parevm's
//! `ParallelBlockExecutor` through the same interface (Block-STM forced, and `auto`), and
//! parevm's own sequential path (the plain-revm yardstick). Every parallel run is compared
//! with `EthBlockExecutor`'s (receipts and bundle).
//!
//! `cargo run --release -p parevm --example alloy_replay -- DIR [ROUNDS] [THREADS]`

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alloy_evm::eth::spec::EthSpec;
use parevm::{Config, ExecutionMode, Executor};
use parevm_fixtures::alloy_oracle::{
    difference, run_parallel, run_sequential, AlloyBlock, ChainRules,
};
use parevm_fixtures::{discover_snapshots, load_alloy_transactions, load_snapshot_with, Senders};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 4], v[(3 * v.len()) / 4])
}

fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: alloy_replay DIR [ROUNDS] [THREADS]")?);
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let threads = NonZeroUsize::new(args.next().map_or(Ok(2), |a| a.parse())?).ok_or("threads")?;
    let forced =
        Executor::new(Config::default().with_threads(threads).with_mode(ExecutionMode::Parallel))?;
    let auto = Executor::new(Config::default().with_threads(threads).with_mode(
        if std::env::var("SEQ").is_ok() { ExecutionMode::Sequential } else { ExecutionMode::Auto },
    ))?;
    println!(
        "{:>10} {:>5} {:>10} {:>10} {:>10} {:>10} {:>13} {:>8}",
        "block", "txs", "revm µs", "alloy µs", "forced µs", "auto µs", "forced (IQR)", "auto"
    );
    let sequential = Executor::new(Config::default().with_mode(ExecutionMode::Sequential))?;
    let (mut forced_ratios, mut auto_ratios, mut yardstick) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sum_alloy, mut sum_revm, mut sum_forced, mut sum_auto) = (0.0, 0.0, 0.0, 0.0);
    for dir in discover_snapshots(&dir)? {
        let snapshot = load_snapshot_with(&dir, Senders::Trust)?;
        let txs = load_alloy_transactions(&dir.join("block.json"))?;
        let alloy = AlloyBlock::of(&snapshot.block, ChainRules::Mainnet(EthSpec::mainnet()));
        let expected = run_sequential(&snapshot.storage, &alloy, txs.clone());
        let mut times: [Vec<f64>; 4] = Default::default();
        for round in 0..rounds + 1 {
            // A different order each round (all 24 in turn), so that no variant always
            // follows the same one (a parallel run leaves its threads spinning briefly).
            let mut order = vec![0, 1, 2, 3];
            let mut code = round % 24;
            let mut perm = Vec::new();
            for n in (1..=4).rev() {
                perm.push(order.remove(code % n));
                code /= n;
            }
            for which in perm {
                let txs = txs.clone();
                let start = Instant::now();
                match which {
                    0 => {
                        std::hint::black_box(run_sequential(&snapshot.storage, &alloy, txs));
                    }
                    1 => {
                        std::hint::black_box(
                            sequential.execute(&snapshot.storage, &snapshot.block)?,
                        );
                    }
                    _ => {
                        let engine = if which == 2 { &forced } else { &auto };
                        let (got, _) = run_parallel(&snapshot.storage, &alloy, txs, engine);
                        if let Some(d) = difference(&expected, &got) {
                            return Err(format!("{}: {d}", dir.display()).into());
                        }
                    }
                }
                let elapsed: Duration = start.elapsed();
                if round > 0 {
                    times[which].push(elapsed.as_secs_f64() * 1e6);
                }
            }
        }
        let ratio =
            |k: usize| -> Vec<f64> { times[0].iter().zip(&times[k]).map(|(a, b)| a / b).collect() };
        let (forced_ratio, auto_ratio) = (median(ratio(2)), median(ratio(3)));
        let (q1, q3) = quartiles(ratio(2));
        let [alloy_us, revm_us, forced_us, auto_us] = times.clone().map(median);
        println!(
            "{:>10} {:>5} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>5.2}x ({:.2}-{:.2}) {:>7.2}x",
            dir.file_name().unwrap().to_string_lossy(),
            txs.len(),
            revm_us,
            alloy_us,
            forced_us,
            auto_us,
            forced_ratio,
            q1,
            q3,
            auto_ratio
        );
        forced_ratios.push(forced_ratio);
        auto_ratios.push(auto_ratio);
        yardstick.push(median(ratio(1)));
        sum_alloy += alloy_us;
        sum_revm += revm_us;
        sum_forced += forced_us;
        sum_auto += auto_us;
    }
    println!(
        "geomean over {} blocks at {threads} threads: Block-STM forced {:.3}x, auto {:.3}x against EthBlockExecutor; \
         EthBlockExecutor takes {:.3}x parevm's sequential time. Sums (µs): EthBlockExecutor {sum_alloy:.0}, \
         parevm sequential {sum_revm:.0}, forced {sum_forced:.0}, auto {sum_auto:.0}",
        forced_ratios.len(), geomean(&forced_ratios), geomean(&auto_ratios), geomean(&yardstick)
    );
    Ok(())
}
