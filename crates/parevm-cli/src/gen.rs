//! `parevm gen`: write a synthetic block snapshot that `parevm replay` can run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use parevm::execute_sequential;
use parevm_fixtures::workload::{generate, write_snapshot, Workload, WorkloadKind};

/// Kinds of synthetic blocks.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Transfers, storage-heavy calls, counter calls and deployments.
    Mixed,
    /// Plain ETH transfers.
    Transfers,
}

/// Options of `parevm gen`.
#[derive(Args)]
pub struct GenArgs {
    /// Folder to write `block.json` and `prestate.json` into (created if missing).
    out: PathBuf,
    /// Kind of transactions.
    #[arg(long, value_enum, default_value = "mixed")]
    kind: Kind,
    /// Number of transactions.
    #[arg(long, default_value_t = 500)]
    txs: usize,
    /// Number of sending accounts.
    #[arg(long, default_value_t = 200)]
    accounts: usize,
    /// Fraction of transactions touching a few hot locations, from 0 to 1.
    #[arg(long, default_value_t = 0.1)]
    hot_ratio: f64,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs `parevm gen`.
pub fn run(args: GenArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if !(0.0..=1.0).contains(&args.hot_ratio) {
        return Err(format!("--hot-ratio must be between 0 and 1, not {}", args.hot_ratio).into());
    }
    if args.accounts == 0 {
        return Err("--accounts must be at least 1".into());
    }
    let workload = Workload {
        kind: match args.kind {
            Kind::Mixed => WorkloadKind::Mixed,
            Kind::Transfers => WorkloadKind::Transfers,
        },
        transactions: args.txs,
        accounts: args.accounts,
        hot_ratio: args.hot_ratio,
        seed: args.seed,
    };
    let generated = generate(&workload);
    let output = execute_sequential(&generated.storage, &generated.block)?;
    write_snapshot(&args.out, &generated, &output)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "wrote {} ({} transactions, {} gas)",
        args.out.display(),
        output.transactions.len(),
        output.gas_used
    );
    Ok(ExitCode::SUCCESS)
}
