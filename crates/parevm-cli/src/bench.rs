//! `parevm bench`: sequential against parallel on the synthetic workload suite (the default,
//! generated in memory) or on snapshot folders, with a table, JSON, an SVG chart and the
//! run's peak memory.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::ProgressBar;
use parevm::{BlockInput, Compliance, ComplianceMode, Executor, InMemoryStorage};
use parevm_compliance::{ComplianceFile, RegistryHook};
use parevm_fixtures::analysis::analyze_median;
use parevm_fixtures::workload::{generate, Size, WorkloadKind, REGISTRY};
use parevm_fixtures::{discover_snapshots, load_snapshot, LatencyStorage};
use serde::Serialize;

use crate::gen::WorkloadArgs;
use crate::json::write_json;
use crate::measure::{breakdown, render_breakdowns, sequential_executor, timed, Breakdown, Paired};
use crate::plot::{speedup_chart, Bar};
use crate::replay::Mode;
use crate::table::Table;

/// Options of `parevm bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Benchmark these snapshot folders (or folders of them) instead of the synthetic suite.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    blocks: Vec<PathBuf>,
    /// Run only these workloads of the suite (`transfers`, `erc20`, `swaps`, `mixed`,
    /// `gated`) [default: all].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    workloads: Vec<String>,
    /// Worker threads for the parallel executor [default: available cores].
    #[arg(long)]
    threads: Option<NonZeroUsize>,
    /// Timed runs per executor and block (after one untimed warm-up); medians are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// How the parallel side chooses its executor.
    #[arg(long, value_enum, default_value = "auto")]
    mode: Mode,
    /// Delay per cold storage read, in microseconds (as a node reading state from disk).
    #[arg(long, default_value_t = 0)]
    latency_us: u64,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the speedup of each workload or block as an SVG chart into this file, beside the
    /// ideal bound of its dependency graph (computed for the chart, also in the table).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Also print where Block-STM's time goes (EVM, reads, recording, validation, commit,
    /// scheduling, idle) per worker, from separate runs with phase timers on.
    #[arg(long)]
    phases: bool,
    /// Size and shape of the synthetic workloads [default size: --gas 1000000000 each].
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// One benchmarked block.
struct Case {
    name: String,
    storage: InMemoryStorage,
    block: BlockInput,
    compliance: Option<Compliance>,
}

/// One result row, as written to `--json`.
#[derive(Serialize)]
struct Row {
    name: String,
    txs: usize,
    included: usize,
    gas_used: u64,
    compliance: bool,
    parallel_path: bool,
    sequential_ms: f64,
    parallel_ms: f64,
    speedup: f64,
    /// First and third quartiles of the per-round ratios sequential / parallel.
    speedup_q1: f64,
    speedup_q3: f64,
    /// Gas per second of the parallel side.
    gas_per_second: f64,
    re_executions: u64,
    validation_aborts: u64,
    matches_sequential: bool,
    /// The list-scheduling bound on the speedup at this thread count, from the block's
    /// dependency graph (with `--plot`).
    #[serde(skip_serializing_if = "Option::is_none")]
    ideal_speedup: Option<f64>,
    /// Block-STM's phases (with `--phases`).
    #[serde(skip_serializing_if = "Option::is_none")]
    phases: Option<Breakdown>,
}

/// The whole run, as written to `--json`.
#[derive(Serialize)]
struct Report<'a> {
    threads: usize,
    mode: String,
    repeat: u32,
    latency_us: u64,
    peak_rss_bytes: Option<u64>,
    results: &'a [Row],
}

/// The exclusion budget of the bench's budgeted gated case: 5 Mgas, about 50 rejected
/// router swaps.
const GATED_BENCH_BUDGET: u64 = 5_000_000;

/// The synthetic suite: every workload kind, plus the swap block with the compliance hook
/// on (no pool gated: the hook's pure cost, in `exclude` and `fail-block` mode), and the
/// gated block with it off, in `revert` mode and in `exclude` mode with an exclusion
/// budget beside its own (`exclude`).
fn suite(
    args: &WorkloadArgs,
    only: &[String],
    progress: &ProgressBar,
) -> Result<Vec<Case>, String> {
    if let Some(unknown) =
        only.iter().find(|name| !WorkloadKind::ALL.iter().any(|k| k.name() == name.as_str()))
    {
        return Err(format!(
            "unknown workload `{unknown}` (transfers, erc20, swaps, mixed, gated)"
        ));
    }
    let mut cases = Vec::new();
    for kind in WorkloadKind::ALL {
        if !only.is_empty() && !only.iter().any(|name| name == kind.name()) {
            continue;
        }
        progress.set_message(format!("generating {}", kind.name()));
        let mut workload = args.workload(kind, 0)?;
        if args.txs.is_none() && args.gas.is_none() {
            workload.size = Size::Gas(1_000_000_000);
        }
        let generated = generate(&workload);
        let plain = Case {
            name: kind.name().into(),
            compliance: generated.compliance.map(|c| c.compliance()),
            storage: generated.storage,
            block: generated.block,
        };
        // The swap block with the hook on (no pool gated) and the gated block with it off,
        // each beside its plain row, hook off first.
        let other = |name: &str, compliance| Case {
            name: name.into(),
            storage: plain.storage.clone(),
            block: plain.block.clone(),
            compliance,
        };
        match kind {
            WorkloadKind::Swaps => {
                let hook =
                    Compliance::new(Arc::new(RegistryHook::new(REGISTRY)), ComplianceMode::Exclude);
                // The same hook in the validator's mode: nothing is rejected, so the cost
                // must be the same.
                let failing = Compliance::new(hook.hook.clone(), ComplianceMode::FailBlock);
                let on = other("swaps, hook on", Some(hook));
                let fail_block = other("swaps, hook on, fail-block", Some(failing));
                cases.extend([plain, on, fail_block]);
            }
            WorkloadKind::Gated => {
                let off = other("gated, hook off", None);
                // The same block with rejections included as failed, paying their gas.
                let reverting = plain
                    .compliance
                    .clone()
                    .map(|c| Compliance::new(c.hook, ComplianceMode::Revert));
                let revert = other("gated, revert mode", reverting);
                // `exclude` with a budget: the first rejections excluded, the rest charged.
                let budgeted = plain.compliance.clone().map(|c| {
                    Compliance::new(c.hook, ComplianceMode::Exclude)
                        .with_exclusion_budget(GATED_BENCH_BUDGET)
                });
                let budget = other("gated, exclusion budget", budgeted);
                cases.extend([off, plain, revert, budget]);
            }
            _ => cases.push(plain),
        }
    }
    Ok(cases)
}

fn snapshots(paths: &[PathBuf]) -> Result<Vec<Case>, Box<dyn std::error::Error>> {
    let mut cases = Vec::new();
    for path in paths {
        for dir in discover_snapshots(path)? {
            let snapshot = load_snapshot(&dir)?;
            let compliance = ComplianceFile::load_from_dir(&dir)?.map(|c| c.compliance());
            cases.push(Case {
                name: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                storage: snapshot.storage,
                block: snapshot.block,
                compliance,
            });
        }
    }
    Ok(cases)
}

/// The process's peak resident set size, from `/proc/self/status` (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn bench_case(
    case: &Case,
    args: &BenchArgs,
    executor: &mut Executor,
) -> Result<Row, Box<dyn std::error::Error>> {
    let storage = LatencyStorage::new(&case.storage, Duration::from_micros(args.latency_us));
    let compliance = case.compliance.as_ref();
    executor.set_compliance(case.compliance.clone());
    let sequential = sequential_executor(compliance)?;
    let run_sequential = || sequential.execute(&storage, &case.block).map(|e| e.output);
    let reference = run_sequential()?;
    storage.reset();
    let mut last = executor.execute(&storage, &case.block)?;
    let mut matches = last.output == reference;
    let mut paired = Paired::default();
    for _ in 0..args.repeat {
        storage.reset();
        let (output, time) = timed(run_sequential);
        paired.sequential(time);
        matches &= output? == reference;
        storage.reset();
        let (execution, time) = timed(|| executor.execute(&storage, &case.block));
        paired.parallel(time);
        // The previous run's output is dropped outside the timed region, as the sequential
        // one is.
        last = execution?;
        matches &= last.output == reference;
    }
    let spread = paired.spread().expect("at least one parallel run");
    let (seq, par) = (spread.sequential_us / 1e6, spread.parallel_us / 1e6);
    let ideal_speedup = match args.plot {
        Some(_) => Some(
            analyze_median(&case.storage, &case.block, 3)?
                .ideal_speedup(executor.config().threads.get()),
        ),
        None => None,
    };
    let phases = if args.phases && last.parallel {
        storage.reset();
        breakdown(executor, &storage, &case.block, args.repeat)?
    } else {
        None
    };
    Ok(Row {
        name: case.name.clone(),
        txs: case.block.transactions.len(),
        included: reference.transactions.len(),
        gas_used: reference.gas_used,
        compliance: compliance.is_some(),
        parallel_path: last.parallel,
        sequential_ms: seq * 1e3,
        parallel_ms: par * 1e3,
        speedup: spread.speedup,
        speedup_q1: spread.ratio_q1,
        speedup_q3: spread.ratio_q3,
        gas_per_second: reference.gas_used as f64 / par.max(f64::MIN_POSITIVE),
        re_executions: last.stats.re_executions,
        validation_aborts: last.stats.validation_aborts,
        matches_sequential: matches,
        ideal_speedup,
        phases,
    })
}

/// Runs `parevm bench`.
pub fn run(args: BenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = args.mode.config(args.threads);
    let threads = config.threads.get();
    let mut executor = Executor::new(config)?;
    let progress = crate::progress::bar(0, "blocks");
    let cases = if args.blocks.is_empty() {
        suite(&args.workload, &args.workloads, &progress)?
    } else {
        snapshots(&args.blocks)?
    };
    progress.set_length(cases.len() as u64);
    let mut rows = Vec::with_capacity(cases.len());
    for case in &cases {
        progress.set_message(case.name.clone());
        rows.push(
            bench_case(case, &args, &mut executor).map_err(|e| format!("{}: {e}", case.name))?,
        );
        progress.inc(1);
    }
    progress.finish_and_clear();
    let peak = peak_rss();

    let mut columns = vec![
        "workload", "txs", "included", "gas", "seq (ms)", "par (ms)", "speedup", "q1–q3", "Mgas/s",
        "path", "re-exec", "= seq",
    ];
    let bounded = rows.iter().any(|r| r.ideal_speedup.is_some());
    if bounded {
        columns.push("ideal");
    }
    let mut table = Table::new(&columns);
    for r in &rows {
        let mut row = vec![
            r.name.clone(),
            r.txs.to_string(),
            r.included.to_string(),
            r.gas_used.to_string(),
            format!("{:.2}", r.sequential_ms),
            format!("{:.2}", r.parallel_ms),
            format!("{:.2}x", r.speedup),
            format!("{:.2}–{:.2}", r.speedup_q1, r.speedup_q3),
            format!("{:.0}", r.gas_per_second / 1e6),
            if r.parallel_path { "par" } else { "seq" }.into(),
            r.re_executions.to_string(),
            if r.matches_sequential { "yes" } else { "NO" }.into(),
        ];
        if bounded {
            row.push(r.ideal_speedup.map_or("-".into(), |s| format!("{s:.2}x")));
        }
        table.row(row);
    }
    print!("{}", table.render());
    println!(
        "{}, {:?} mode, median of {} runs, {} µs per cold read; peak RSS {}",
        crate::summary::threads(threads),
        args.mode,
        args.repeat,
        args.latency_us,
        peak.map_or("unknown".into(), |b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64))
    );
    if args.phases {
        let phased = rows.iter().filter_map(|r| r.phases.as_ref().map(|p| (r.name.as_str(), p)));
        print!("{}", render_breakdowns(phased));
    }

    if let Some(path) = &args.json {
        let report = Report {
            threads,
            mode: format!("{:?}", args.mode).to_lowercase(),
            repeat: args.repeat,
            latency_us: args.latency_us,
            peak_rss_bytes: peak,
            results: &rows,
        };
        write_json(path, &report)?;
    }
    if let Some(path) = &args.plot {
        let bars: Vec<Bar> = rows
            .iter()
            .map(|r| Bar { label: r.name.clone(), speedup: r.speedup, ideal: r.ideal_speedup })
            .collect();
        let title = format!("parevm: parallel speedup over sequential, {threads} threads");
        speedup_chart(path, &title, &bars).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let diverged = rows.iter().filter(|r| !r.matches_sequential).count();
    if diverged > 0 {
        eprintln!("error: {diverged} blocks differ between sequential and parallel execution");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
