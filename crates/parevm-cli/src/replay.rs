//! `parevm replay`: execute snapshots with the sequential and the parallel executor, check
//! that they agree exactly, verify against the header, and report times.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use alloy_primitives::Address;
use clap::{Args, ValueEnum};
use parevm::{
    BlockExecution, BlockOutput, Compliance, Config, ExecutionError, ExecutionMode, Executor,
};
use parevm_compliance::{Claim, ComplianceFile, ModeName};
use parevm_fixtures::analysis::analyze_median;
use parevm_fixtures::{
    discover_snapshots, load_snapshot_with, parse_snapshot, snapshot_gas, HeaderCheck, Senders,
    Snapshot,
};
use serde::Serialize;

mod alloy_path;

use crate::json::write_json;
use crate::measure::{
    breakdown, geomean, render_breakdowns, sequential_executor, timed, Breakdown, Paired,
};
use crate::plot::{speedup_chart, Bar};
use crate::report::{JsonLines, Manifest};
use crate::shard::{partition, Shard};
use crate::summary::Summary;
use crate::table::Table;

/// How the parallel side of `replay` chooses its executor.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// Block-STM for blocks large enough to benefit, sequential for the rest (the default
    /// of the library).
    Auto,
    /// Block-STM for every block.
    Parallel,
}

impl Mode {
    /// The engine configuration for this mode on `threads` threads (default: all cores).
    pub fn config(self, threads: Option<NonZeroUsize>) -> Config {
        let config = Config::default().with_mode(match self {
            Mode::Auto => ExecutionMode::Auto,
            Mode::Parallel => ExecutionMode::Parallel,
        });
        match threads {
            Some(threads) => config.with_threads(threads),
            None => config,
        }
    }
}

/// Which interface `replay` executes blocks through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    /// parevm's own: its sequential executor and `Executor` (Block-STM), from the
    /// snapshot's transactions as parevm converts them.
    Engine,
    /// alloy-evm's block-executor interface, as a node runs it: `EthBlockExecutor` (the
    /// reference, verified against the header) and parevm's `ParallelBlockExecutor`, from
    /// the snapshot's alloy transactions.
    Alloy,
}

/// Options of `parevm replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// Snapshot folders, or folders of snapshot folders [default: the synthetic block built
    /// into the binary].
    paths: Vec<PathBuf>,
    /// Worker threads for the parallel executor [default: available cores].
    #[arg(long)]
    threads: Option<NonZeroUsize>,
    /// Run the sequential reference executor only.
    #[arg(long)]
    sequential: bool,
    /// How the parallel side chooses its executor.
    #[arg(long, value_enum, default_value = "auto")]
    mode: Mode,
    /// The interface blocks are executed through.
    #[arg(long, value_enum, default_value = "engine", conflicts_with_all = ["stress", "phases", "strict", "plot"])]
    executor: ExecutorKind,
    /// Time each block this many times per executor (after one untimed warm-up run) and
    /// report the median; every parallel run is checked against the sequential result
    /// [default: 20 for the embedded block, else 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: Option<u32>,
    /// Stress mode: execute every block this many more times with Block-STM at random
    /// thread counts (1 to twice the cores) and, in builds with the `perturb` feature,
    /// random scheduling pauses; stop at the first divergence from sequential.
    #[arg(long, value_name = "ROUNDS")]
    stress: Option<u32>,
    /// Seed of the stress mode's random choices [default: from the clock, printed].
    #[arg(long)]
    stress_seed: Option<u64>,
    /// Write a JSON array with one record per block to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also print where Block-STM's time goes per worker (EVM, reads, recording, validation,
    /// commit, scheduling, idle), from separate runs with phase timers on.
    #[arg(long)]
    phases: bool,
    /// Compliance configuration (`{"registry": "0x…", "mode": "exclude" | "revert" | "fail-block"}`)
    /// for every block [default: each snapshot folder's own `compliance.json`, if any].
    #[arg(long, value_name = "FILE")]
    compliance: Option<PathBuf>,
    /// Fail a block whose transactions load an account its `prestate.json` does not list
    /// (other than contracts they create), naming the transaction and the account. Meant for
    /// snapshots recorded with every account their block touches, empty ones too, as `gen`
    /// writes them (the shared mainnet snapshots leave out accounts that did not exist
    /// before the block). Without it, a block that fails its header check names them.
    #[arg(long)]
    strict: bool,
    /// Take each transaction's `from` and `hash` as the snapshot gives them instead of
    /// recovering the sender from the signature and hashing the fields (faster loading; the
    /// recovery's cost is reported apart from execution either way).
    #[arg(long)]
    trust_senders: bool,
    /// Replay only share I of N (from 0) of the blocks found: a deterministic partition,
    /// balanced by gas, so that N processes (a Kubernetes Indexed Job, a Slurm array) each
    /// replay a disjoint share and together every block once.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Write one JSON line per block to this file as it finishes (flushed), after a first
    /// line naming the shard and its blocks; `parevm report` merges such files.
    #[arg(long, value_name = "FILE")]
    jsonl: Option<PathBuf>,
    /// Draw the per-block speedups, sorted, beside each block's ideal bound (from its
    /// dependency graph, as `parevm analyze` computes it) as an SVG chart.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

impl ReplayArgs {
    /// Timed runs per block and executor.
    fn repeat(&self) -> u32 {
        self.repeat.unwrap_or(if self.paths.is_empty() { EMBEDDED_REPEAT } else { 1 })
    }
}

/// One transaction's fate under a compliance hook, as written to `--json`.
#[derive(Serialize)]
struct OutcomeRecord {
    index: usize,
    /// `included`, `rejected` (included as failed, `revert` mode) or `excluded`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    success: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gas_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// The contract between the sender and the pool whose credential failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    caller: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cascaded_from: Option<usize>,
}

/// Every transaction's fate, in block order.
fn outcomes(output: &BlockOutput) -> Vec<OutcomeRecord> {
    let mut records: Vec<OutcomeRecord> = output
        .transactions
        .iter()
        .map(|tx| {
            let rejection =
                output.rejected.iter().find(|r| r.index == tx.index).map(|r| r.rejection);
            OutcomeRecord {
                index: tx.index,
                status: if rejection.is_some() { "rejected" } else { "included" },
                success: Some(tx.is_success()),
                gas_used: Some(tx.gas_used()),
                pool: rejection.map(|r| r.pool.to_string()),
                claim: rejection.map(|r| Claim::describe(r.claim)),
                reason: rejection.map(|r| r.reason.as_str()),
                caller: rejection.and_then(|r| r.caller).map(|c| c.to_string()),
                cascaded_from: None,
            }
        })
        .chain(output.excluded.iter().map(|e| OutcomeRecord {
            index: e.index,
            status: "excluded",
            success: None,
            gas_used: None,
            pool: Some(e.rejection.pool.to_string()),
            claim: Some(Claim::describe(e.rejection.claim)),
            reason: Some(if e.cascaded_from.is_some() {
                "nonce-gap"
            } else {
                e.rejection.reason.as_str()
            }),
            caller: e.rejection.caller.map(|c| c.to_string()),
            cascaded_from: e.cascaded_from,
        }))
        .collect();
    records.sort_by_key(|r| r.index);
    records
}

/// One block's result, as written to `--json`.
#[derive(Serialize, Default)]
struct Record {
    block: String,
    number: Option<u64>,
    txs: usize,
    gas_used: u64,
    verified: bool,
    matches_sequential: Option<bool>,
    threads: usize,
    parallel_path: Option<bool>,
    sequential_us: Option<f64>,
    parallel_us: Option<f64>,
    speedup: Option<f64>,
    /// First and third quartiles of the per-round ratios sequential / parallel.
    speedup_q1: Option<f64>,
    speedup_q3: Option<f64>,
    executions: u64,
    re_executions: u64,
    validation_aborts: u64,
    dependency_waits: u64,
    /// Block-STM handed the block to the sequential executor (EIP-7610 on an account its
    /// store cannot answer for).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    sequential_fallback: bool,
    /// The compliance mode, if a hook was configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    compliance: Option<&'static str>,
    /// Transactions the compliance hook left out.
    excluded: usize,
    /// Every transaction's fate, when a compliance hook was configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcomes: Option<Vec<OutcomeRecord>>,
    /// Block-STM's phases (with `--phases`, where it ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    phases: Option<Breakdown>,
    /// Time spent recovering the senders from the signatures while loading (not part of
    /// either execution time; absent with `--trust-senders`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_recovery_us: Option<f64>,
    /// The list-scheduling bound on the speedup at `threads` from the block's dependency
    /// graph (with `--plot`, and for the embedded block).
    #[serde(skip_serializing_if = "Option::is_none")]
    ideal_speedup: Option<f64>,
    error: Option<String>,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The synthetic block built into the binary, with its compliance configuration (see
/// `testdata/README.md`).
const EMBEDDED_NAME: &str = "embedded:gated-swaps";
const EMBEDDED_BLOCK: &[u8] = include_bytes!("../../../testdata/snapshots/gated-swaps/block.json");
const EMBEDDED_PRESTATE: &[u8] =
    include_bytes!("../../../testdata/snapshots/gated-swaps/prestate.json");
const EMBEDDED_COMPLIANCE: &[u8] =
    include_bytes!("../../../testdata/snapshots/gated-swaps/compliance.json");
/// Timed runs of the embedded block by default: enough for a median and its spread.
const EMBEDDED_REPEAT: u32 = 20;

/// Where a snapshot comes from.
enum Source {
    Dir(PathBuf),
    Embedded,
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Dir(dir) => {
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            }
            Source::Embedded => EMBEDDED_NAME.into(),
        }
    }

    fn load(&self, senders: Senders) -> Result<Snapshot, parevm_fixtures::SnapshotError> {
        match self {
            Source::Dir(dir) => load_snapshot_with(dir, senders),
            Source::Embedded => {
                parse_snapshot(EMBEDDED_NAME, EMBEDDED_BLOCK, EMBEDDED_PRESTATE, senders)
            }
        }
    }

    fn alloy_transactions(
        &self,
    ) -> Result<Vec<parevm_fixtures::AlloyTransaction>, parevm_fixtures::SnapshotError> {
        match self {
            Source::Dir(dir) => parevm_fixtures::load_alloy_transactions(&dir.join("block.json")),
            Source::Embedded => {
                parevm_fixtures::parse_alloy_transactions(EMBEDDED_NAME, EMBEDDED_BLOCK)
            }
        }
    }

    fn display(&self) -> String {
        match self {
            Source::Dir(dir) => dir.display().to_string(),
            Source::Embedded => EMBEDDED_NAME.into(),
        }
    }
}

/// The compliance configuration of `source`: `--compliance`, else the folder's own.
fn compliance_of(
    source: &Source,
    args: &ReplayArgs,
) -> Result<Option<ComplianceFile>, parevm_compliance::ComplianceFileError> {
    match (&args.compliance, source) {
        (Some(path), _) => ComplianceFile::load(path).map(Some),
        (None, Source::Dir(dir)) => ComplianceFile::load_from_dir(dir),
        (None, Source::Embedded) => ComplianceFile::parse(
            &Path::new(EMBEDDED_NAME).join(parevm_compliance::COMPLIANCE_FILE),
            EMBEDDED_COMPLIANCE,
        )
        .map(Some),
    }
}

/// Replays one snapshot into a record.
fn replay_one(source: &Source, args: &ReplayArgs, executor: &mut Executor) -> Record {
    let mut record = Record {
        block: source.name(),
        threads: executor.config().threads.get(),
        ..Record::default()
    };
    let senders = if args.trust_senders { Senders::Trust } else { Senders::Recover };
    let loaded = source.load(senders).map_err(|e| e.to_string()).and_then(|snapshot| {
        let compliance = compliance_of(source, args).map_err(|e| e.to_string())?;
        Ok((snapshot, compliance))
    });
    let (snapshot, compliance) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            record.error = Some(e);
            return record;
        }
    };
    record.compliance = compliance.map(|c| match c.mode {
        ModeName::Exclude => "exclude",
        ModeName::Revert => "revert",
        ModeName::FailBlock => "fail-block",
    });
    executor.set_compliance(compliance.map(|c| c.compliance()));
    record.number = Some(snapshot.header.number);
    record.sender_recovery_us = snapshot.sender_recovery.map(us);
    record.txs = snapshot.block.transactions.len();
    let replayed = match args.executor {
        ExecutorKind::Engine => {
            replay_snapshot(&snapshot, args, executor, &mut record).map_err(Into::into)
        }
        ExecutorKind::Alloy => source
            .alloy_transactions()
            .map_err(Into::into)
            .and_then(|txs| alloy_path::replay(&snapshot, &txs, args, executor, &mut record)),
    };
    if let Err(e) = replayed {
        record.error = Some(e.to_string());
    }
    record
}

/// Executes `snapshot` once untimed with each path (warming caches and the allocator, and
/// giving the sequential reference), then `repeat` timed times each, alternating so that both
/// see the same machine conditions. Every parallel output is compared with the reference,
/// outside the timed region.
fn replay_snapshot(
    snapshot: &Snapshot,
    args: &ReplayArgs,
    executor: &mut Executor,
    record: &mut Record,
) -> Result<(), ExecutionError> {
    let (storage, block) = (&snapshot.storage, &snapshot.block);
    let compliance = executor.config().compliance.clone();
    let compliance = compliance.as_ref();
    let sequential = sequential_executor(compliance)?;
    let run_sequential = || sequential.execute(storage, block).map(|e| e.output);
    let reference = run_sequential()?;
    record.gas_used = reference.gas_used;
    record.excluded = reference.excluded.len();
    if compliance.is_some() {
        record.outcomes = Some(outcomes(&reference));
    }
    let check = HeaderCheck::new(&snapshot.header, block.spec, &reference);
    record.verified = check.passed();
    let mut problems = check.mismatches();
    // The bound is drawn (--plot) or told (the embedded block's summary) only beside a
    // measured speedup, which --sequential does not take.
    let wants_bound = !args.sequential && (args.plot.is_some() || args.paths.is_empty());
    if args.strict || wants_bound || !record.verified {
        // One run finds the absent accounts; the bound takes per-transaction medians.
        let analysis = analyze_median(storage, block, if wants_bound { 3 } else { 1 })?;
        let absent = &analysis.absent_accounts;
        if args.strict && !absent.is_empty() {
            problems.push(format!(
                "--strict: the block loads accounts that prestate.json does not list: {}",
                name_absent(absent)
            ));
        } else if !record.verified && !absent.is_empty() {
            problems.push(format!(
                "the block also loads accounts that prestate.json does not list ({}): new \
                 accounts, or, if one of them existed before the block, what the snapshot lacks",
                name_absent(absent)
            ));
        }
        if wants_bound {
            record.ideal_speedup = Some(analysis.ideal_speedup(record.threads));
        }
    }

    let mut mismatch = None;
    // Of a parallel run, only its counters are kept past its comparison: holding its output
    // while the next run executes would add a block's output to the parallel side's peak
    // memory that the sequential side does not hold (both hold the reference and the run
    // in flight, no more).
    let counters = |execution: BlockExecution| (execution.parallel, execution.stats);
    let mut last_parallel =
        if args.sequential { None } else { Some(counters(executor.execute(storage, block)?)) };
    let mut paired = Paired::default();
    for _ in 0..args.repeat() {
        let (output, time) = timed(run_sequential);
        paired.sequential(time);
        if output? != reference {
            problems.push("the sequential path is not deterministic".into());
        }
        if args.sequential {
            continue;
        }
        let (parallel, time) = timed(|| executor.execute(storage, block));
        paired.parallel(time);
        let parallel = parallel?;
        if parallel.output != reference && mismatch.is_none() {
            mismatch = Some(first_difference(&reference, &parallel.output));
        }
        last_parallel = Some(counters(parallel));
    }
    record.sequential_us = Some(us(paired.sequential_median()));
    if let Some(rounds) = args.stress {
        if let Err(divergence) = stress(snapshot, &reference, compliance, rounds, args.stress_seed)
        {
            problems.push(divergence);
        }
    }
    if let (Some((ran_parallel, stats)), Some(spread)) = (last_parallel, paired.spread()) {
        record.parallel_us = Some(spread.parallel_us);
        record.speedup = Some(spread.speedup);
        record.speedup_q1 = Some(spread.ratio_q1);
        record.speedup_q3 = Some(spread.ratio_q3);
        if args.phases && ran_parallel {
            record.phases = breakdown(executor, storage, block, args.repeat())?;
        }
        record.parallel_path = Some(ran_parallel);
        record.executions = stats.executions;
        record.re_executions = stats.re_executions;
        record.validation_aborts = stats.validation_aborts;
        record.dependency_waits = stats.dependency_waits;
        record.sequential_fallback = stats.sequential_fallback;
        record.matches_sequential = Some(mismatch.is_none());
        problems.extend(mismatch);
    }
    if !problems.is_empty() {
        record.error = Some(problems.join("; "));
    }
    Ok(())
}

/// The first few of `absent` (transaction index, account), and how many more.
fn name_absent(absent: &[(usize, Address)]) -> String {
    const NAMED: usize = 5;
    let mut named: Vec<String> = absent
        .iter()
        .take(NAMED)
        .map(|(index, address)| format!("transaction {index}: {address}"))
        .collect();
    if absent.len() > NAMED {
        named.push(format!("and {} more", absent.len() - NAMED));
    }
    named.join(", ")
}

/// Whether this binary perturbs scheduling in stress runs.
const PERTURBS: bool = cfg!(feature = "perturb");

/// Executes `snapshot` `rounds` times with Block-STM at random thread counts (and random
/// scheduling perturbation where built in); `Err` describes the first divergence with what
/// is needed to reproduce it.
fn stress(
    snapshot: &Snapshot,
    reference: &BlockOutput,
    compliance: Option<&Compliance>,
    rounds: u32,
    seed: Option<u64>,
) -> Result<(), String> {
    use rand::{Rng, SeedableRng};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for round in 0..rounds {
        let threads = NonZeroUsize::new(rng.random_range(1..=2 * cores)).expect("at least 1");
        let run_seed: u64 = rng.random_range(1..u64::MAX);
        let config = parevm_fixtures::racing(threads).with_compliance(compliance.cloned());
        #[cfg(feature = "perturb")]
        let config = config.with_perturbation(std::num::NonZeroU64::new(run_seed));
        let result = Executor::new(config)
            .and_then(|executor| executor.execute(&snapshot.storage, &snapshot.block))
            .map(|execution| execution.output);
        let divergence = match result {
            Ok(output) if output == *reference => continue,
            Ok(output) => first_difference(reference, &output),
            Err(e) => format!("parallel failed: {e}"),
        };
        return Err(format!(
            "stress round {round} diverged at {threads} threads, perturbation seed {run_seed} \
             (stress seed {seed}, perturbation {}): {divergence}",
            if PERTURBS { "on" } else { "off" }
        ));
    }
    Ok(())
}

/// Describes where the parallel output first differs from the sequential one.
fn first_difference(sequential: &BlockOutput, parallel: &BlockOutput) -> String {
    let difference = sequential.first_difference(parallel).unwrap_or_default();
    format!("parallel differs from sequential at {difference}")
}

/// Runs `parevm replay`.
pub fn run(args: ReplayArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = args.mode.config(args.threads);
    let threads = config.threads;
    let mut executor = Executor::new(config)?;
    if let Some(rounds) = args.stress {
        eprintln!(
            "stress: {rounds} extra rounds per block at random thread counts; scheduling perturbation {}",
            if PERTURBS { "on" } else { "off (build with --features perturb)" }
        );
    }
    let mut sources = Vec::new();
    for path in &args.paths {
        sources.extend(discover_snapshots(path)?.into_iter().map(Source::Dir));
    }
    if args.paths.is_empty() {
        if args.shard.is_some() {
            return Err("--shard needs snapshot folders to share out".into());
        }
        sources.push(Source::Embedded);
    }
    let shard = args.shard.unwrap_or(Shard::ALL);
    if args.shard.is_some() || args.jsonl.is_some() {
        let mut names: Vec<String> = sources.iter().map(Source::name).collect();
        names.sort();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "two snapshots are named {}: a shard or a JSON-lines record names blocks by \
                 folder name, so names must be unique",
                twice[0]
            )
            .into());
        }
    }
    if shard.count > 1 {
        // A block whose header cannot be read weighs nothing: its replay reports the error.
        let weighed: Vec<(String, u64)> = sources
            .iter()
            .map(|s| match s {
                Source::Dir(dir) => (s.name(), snapshot_gas(dir).unwrap_or(0)),
                Source::Embedded => (s.name(), 0),
            })
            .collect();
        let shard_of = partition(&weighed, shard.count);
        let mut index = 0;
        sources.retain(|_| {
            index += 1;
            shard_of[index - 1] == shard.index
        });
    }
    let mut lines = match &args.jsonl {
        Some(path) => {
            let blocks = sources.iter().map(Source::name).collect();
            let mode = format!("{:?}", args.mode).to_lowercase();
            let manifest = Manifest::new(shard, blocks, threads.get(), mode);
            Some(JsonLines::create(path, manifest)?)
        }
        None => None,
    };
    let progress = crate::progress::bar(sources.len() as u64, "blocks");
    let mut records = Vec::with_capacity(sources.len());
    for source in &sources {
        progress.set_message(source.display());
        let record = replay_one(source, &args, &mut executor);
        if let Some(error) = &record.error {
            progress.suspend(|| eprintln!("error: {}: {error}", source.display()));
        }
        if let Some(lines) = &mut lines {
            lines.write(&record)?;
        }
        records.push(record);
        progress.inc(1);
    }
    progress.finish_and_clear();
    if shard.count > 1 {
        println!("shard {shard}: {} of the blocks, balanced by gas", records.len());
    }

    print!("{}", render(&records, args.sequential));
    if args.phases {
        let phased =
            records.iter().filter_map(|r| r.phases.as_ref().map(|p| (r.block.as_str(), p)));
        print!("{}", render_breakdowns(phased));
    }
    let ok = |r: &Record| r.error.is_none() && r.verified && r.matches_sequential != Some(false);
    let failed = records.iter().filter(|r| !ok(r)).count();
    let seq_total: f64 = records.iter().filter_map(|r| r.sequential_us).sum();
    println!(
        "{} blocks, {} ok, {} failed; sequential total {:.3} ms (median of {} runs per block)",
        records.len(),
        records.len() - failed,
        failed,
        seq_total / 1e3,
        args.repeat()
    );
    let recovered: Vec<f64> = records.iter().filter_map(|r| r.sender_recovery_us).collect();
    if !recovered.is_empty() {
        println!(
            "senders: recovered from the signatures and checked against `from` and `hash` in {:.3} ms \
             for {} blocks (loading, not in the times above; --trust-senders skips it)",
            recovered.iter().sum::<f64>() / 1e3,
            recovered.len()
        );
    }
    let gated: Vec<&Record> = records.iter().filter(|r| r.compliance.is_some()).collect();
    if !gated.is_empty() {
        println!(
            "compliance: {} blocks with a hook, {} transactions excluded (per-transaction outcomes in --json)",
            gated.len(),
            gated.iter().map(|r| r.excluded).sum::<usize>()
        );
    }
    if !args.sequential {
        let par_total: f64 = records.iter().filter_map(|r| r.parallel_us).sum();
        let speedups: Vec<f64> = records.iter().filter_map(|r| r.speedup).collect();
        let worst = speedups.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "parallel ({}, {:?}) total {:.3} ms; speedup geometric mean {:.3}x, worst {:.3}x, total {:.3}x",
            crate::summary::threads(threads.get()),
            args.mode,
            par_total / 1e3,
            geomean(speedups.iter().copied()).unwrap_or(f64::NAN),
            worst,
            seq_total / par_total
        );
    }

    if let (true, [record]) = (args.paths.is_empty(), records.as_slice()) {
        if let Some(summary) = summary(record, args.repeat()) {
            print!("\n{}", summary.render());
        }
    }

    if let Some(path) = &args.json {
        write_json(path, &records)?;
    }
    if let Some(path) = &args.plot {
        let mut bars: Vec<Bar> = records
            .iter()
            .filter_map(|r| {
                Some(Bar { label: r.block.clone(), speedup: r.speedup?, ideal: r.ideal_speedup })
            })
            .collect();
        bars.sort_by(|a, b| a.speedup.total_cmp(&b.speedup));
        let title = format!(
            "parevm replay: speedup per block, sorted ({} threads, {:?} mode)",
            threads, args.mode
        );
        speedup_chart(path, &title, &bars).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What the embedded block is.
const EMBEDDED_DESCRIPTION: &str = "swaps by 1000 senders on 200 constant-product pools gated \
     by an on-chain credential registry, with KYC credentials issued and revoked in the same block";

/// The plain-words summary of the embedded block's replay, if it ran on both paths.
fn summary(record: &Record, runs: u32) -> Option<Summary<'_>> {
    Some(Summary {
        block: &record.block,
        description: EMBEDDED_DESCRIPTION,
        txs: record.txs,
        excluded: record.compliance.map(|_| record.excluded),
        gas_used: record.gas_used,
        threads: record.threads,
        runs,
        agreed: record.matches_sequential?,
        verified: record.verified,
        parallel_path: record.parallel_path?,
        sequential_ms: record.sequential_us? / 1e3,
        parallel_ms: record.parallel_us? / 1e3,
        speedup: record.speedup?,
        quartiles: (record.speedup_q1?, record.speedup_q3?),
        ideal: record.ideal_speedup?,
    })
}

fn render(records: &[Record], sequential_only: bool) -> String {
    let ms = |v: Option<f64>| v.map_or("-".into(), |us| format!("{:.3}", us / 1e3));
    let yes = |b: bool| if b { "yes" } else { "NO" }.to_string();
    if sequential_only {
        let mut table = Table::new(&["block", "txs", "gas", "time (ms)", "verified"]);
        for r in records {
            table.row(vec![
                r.block.clone(),
                r.txs.to_string(),
                r.gas_used.to_string(),
                ms(r.sequential_us),
                yes(r.verified),
            ]);
        }
        return table.render();
    }
    let mut table = Table::new(&[
        "block", "txs", "gas", "seq (ms)", "par (ms)", "speedup", "q1–q3", "path", "re-exec",
        "verified", "= seq",
    ]);
    for r in records {
        table.row(vec![
            r.block.clone(),
            r.txs.to_string(),
            r.gas_used.to_string(),
            ms(r.sequential_us),
            ms(r.parallel_us),
            r.speedup.map_or("-".into(), |s| format!("{s:.2}x")),
            match (r.speedup_q1, r.speedup_q3) {
                (Some(q1), Some(q3)) => format!("{q1:.2}–{q3:.2}"),
                _ => "-".into(),
            },
            match r.parallel_path {
                Some(true) => "par".into(),
                Some(false) => "seq".into(),
                None => "-".into(),
            },
            r.re_executions.to_string(),
            yes(r.verified),
            r.matches_sequential.map_or("-".into(), yes),
        ]);
    }
    table.render()
}
