//! `parevm gen`: write a synthetic block snapshot that `parevm replay` can run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use parevm_fixtures::workload::{generate, write_snapshot, Size, Workload, WorkloadKind};

/// Kinds of synthetic blocks.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Plain ETH transfers.
    Transfers,
    /// ERC-20 token transfers.
    Erc20,
    /// Swaps through a router on constant-product pools.
    Swaps,
    /// ETH and ERC-20 transfers, swaps, storage-heavy and counter calls, deployments.
    Mixed,
    /// Swaps on gated pools with credential issuances and revocations interleaved (writes
    /// `compliance.json` beside the block).
    Gated,
}

impl From<Kind> for WorkloadKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Transfers => WorkloadKind::Transfers,
            Kind::Erc20 => WorkloadKind::Erc20,
            Kind::Swaps => WorkloadKind::Swaps,
            Kind::Mixed => WorkloadKind::Mixed,
            Kind::Gated => WorkloadKind::Gated,
        }
    }
}

/// The workload knobs `gen` and `bench` share.
#[derive(Args, Clone, Debug)]
pub struct WorkloadArgs {
    /// Number of transactions [default: 500].
    #[arg(long, conflicts_with = "gas")]
    pub txs: Option<usize>,
    /// Size the block by gas instead: about this much gas used (e.g. 1000000000 for one
    /// gigagas).
    #[arg(long)]
    pub gas: Option<u64>,
    /// Number of sending accounts.
    #[arg(long, default_value_t = 1000)]
    pub accounts: usize,
    /// Fraction of transactions touching a few hot locations (one recipient, one slot,
    /// one pool), from 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub hot_ratio: f64,
    /// Number of pools of the swap workloads.
    #[arg(long, default_value_t = 100)]
    pub pools: usize,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl WorkloadArgs {
    /// The workload of `kind` these knobs describe, or why they are invalid.
    pub fn workload(&self, kind: WorkloadKind, default_txs: usize) -> Result<Workload, String> {
        if !(0.0..=1.0).contains(&self.hot_ratio) {
            return Err(format!("--hot-ratio must be between 0 and 1, not {}", self.hot_ratio));
        }
        if self.accounts == 0 {
            return Err("--accounts must be at least 1".into());
        }
        if self.pools == 0 {
            return Err("--pools must be at least 1".into());
        }
        let size = match (self.txs, self.gas) {
            (_, Some(0)) => return Err("--gas must be positive".into()),
            (_, Some(gas)) => Size::Gas(gas),
            (Some(txs), None) => Size::Transactions(txs),
            (None, None) => Size::Transactions(default_txs),
        };
        Ok(Workload {
            kind,
            size,
            accounts: self.accounts,
            hot_ratio: self.hot_ratio,
            pools: self.pools,
            seed: self.seed,
        })
    }
}

/// Options of `parevm gen`.
#[derive(Args)]
pub struct GenArgs {
    /// Folder to write `block.json` and `prestate.json` into (created if missing).
    out: PathBuf,
    /// Kind of transactions.
    #[arg(long, value_enum, default_value = "mixed")]
    kind: Kind,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Replace the snapshot `OUT` already holds.
    #[arg(long)]
    force: bool,
}

/// Runs `parevm gen`.
pub fn run(args: GenArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let workload = args.workload.workload(args.kind.into(), 500)?;
    if !args.force && args.out.join("block.json").exists() {
        return Err(format!(
            "{} already holds a snapshot (block.json); pass --force to replace it",
            args.out.display()
        )
        .into());
    }
    let generated = generate(&workload);
    let compliance = generated.compliance.map(|c| c.compliance());
    let output =
        parevm_fixtures::sequential(&generated.storage, &generated.block, compliance.as_ref())?;
    write_snapshot(&args.out, &generated, &output)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "wrote {} ({} transactions, {} included, {} gas)",
        args.out.display(),
        generated.block.transactions.len(),
        output.transactions.len(),
        output.gas_used
    );
    Ok(ExitCode::SUCCESS)
}
