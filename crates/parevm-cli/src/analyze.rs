//! `parevm analyze`: what each block allows — its dependency graph from the actual read and
//! write sets of a sequential run, the longest chain, and the ideal speedups.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use parevm_fixtures::analysis::analyze_median;
use parevm_fixtures::{discover_snapshots, load_snapshot};
use serde::Serialize;

use crate::json::write_json;
use crate::table::Table;

/// Thread counts the ideal speedup is reported for.
const THREADS: [usize; 5] = [2, 4, 8, 16, 32];

/// Options of `parevm analyze`.
#[derive(Args)]
pub struct AnalyzeArgs {
    /// Snapshot folders, or folders of snapshot folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Write one JSON record per block to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One block's analysis, as written to `--json`.
#[derive(Serialize)]
struct Record {
    block: String,
    txs: usize,
    gas_used: u64,
    longest_chain_txs: usize,
    longest_chain_gas: u64,
    independent_share: f64,
    /// Ideal speedup at 2, 4, 8, 16 and 32 threads.
    ideal_speedup: Vec<(usize, f64)>,
}

/// Runs `parevm analyze`.
pub fn run(args: AnalyzeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut records = Vec::new();
    for path in &args.paths {
        for dir in discover_snapshots(path)? {
            let snapshot = load_snapshot(&dir)?;
            // Times are per transaction and tiny: take the per-transaction median of 5 runs.
            let analysis = analyze_median(&snapshot.storage, &snapshot.block, 5)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            records.push(Record {
                block: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                txs: analysis.transactions,
                gas_used: analysis.gas.iter().sum(),
                longest_chain_txs: analysis.longest_chain(),
                longest_chain_gas: analysis.longest_chain_gas(),
                independent_share: analysis.independent_share(),
                ideal_speedup: THREADS.iter().map(|&t| (t, analysis.ideal_speedup(t))).collect(),
            });
        }
    }
    let mut header = vec!["block", "txs", "gas", "chain (txs)", "chain (gas)", "independent"];
    let titles: Vec<String> = THREADS.iter().map(|t| format!("ideal {t}t")).collect();
    header.extend(titles.iter().map(String::as_str));
    let mut table = Table::new(&header);
    for r in &records {
        let mut row = vec![
            r.block.clone(),
            r.txs.to_string(),
            r.gas_used.to_string(),
            r.longest_chain_txs.to_string(),
            r.longest_chain_gas.to_string(),
            format!("{:.0}%", r.independent_share * 100.0),
        ];
        row.extend(r.ideal_speedup.iter().map(|(_, s)| format!("{s:.2}x")));
        table.row(row);
    }
    print!("{}", table.render());
    let nonempty: Vec<&Record> = records.iter().filter(|r| r.txs > 0).collect();
    if !nonempty.is_empty() {
        let geomean = |t: usize| {
            let logs: f64 = nonempty.iter().map(|r| r.ideal_speedup[t].1.ln()).sum();
            (logs / nonempty.len() as f64).exp()
        };
        let means: Vec<String> =
            THREADS.iter().enumerate().map(|(i, t)| format!("{t}t {:.2}x", geomean(i))).collect();
        println!(
            "{} blocks with transactions; ideal speedup, geometric mean: {}",
            nonempty.len(),
            means.join(", ")
        );
    }
    if let Some(path) = &args.json {
        write_json(path, &records)?;
    }
    Ok(ExitCode::SUCCESS)
}
