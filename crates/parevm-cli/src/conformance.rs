//! `parevm conformance`: the Ethereum consensus tests through both execution paths.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use parevm_fixtures::conformance::{discover, run_files, Counts, FileReport};
use serde::Serialize;

use crate::json::write_json;
use crate::table::Table;

/// Options of `parevm conformance`.
#[derive(Args)]
pub struct ConformanceArgs {
    /// A test file or a folder to walk (for example `ethereum-tests`).
    path: PathBuf,
    /// Worker threads of the parallel path for every case.
    #[arg(long, default_value = "2")]
    threads: NonZeroUsize,
    /// Write all results (counts per folder, failures, skips) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    total: Counts,
    by_folder: &'a BTreeMap<String, Counts>,
    files: &'a [FileReport],
}

/// The folder a file is reported under: its parent relative to the walked path.
fn folder_of(root: &Path, file: &Path) -> String {
    let parent = file.parent().unwrap_or(file);
    let relative = parent.strip_prefix(root).unwrap_or(parent);
    let name = relative.display().to_string();
    if name.is_empty() {
        ".".into()
    } else {
        name
    }
}

/// Runs `parevm conformance`.
pub fn run(args: ConformanceArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let files = discover(&args.path).map_err(|e| format!("{}: {e}", args.path.display()))?;
    if files.is_empty() {
        return Err(format!("{}: no test files (*.json) found", args.path.display()).into());
    }
    let progress = crate::progress::bar(files.len() as u64, "files");
    let start = Instant::now();
    let reports = run_files(&files, args.threads, || progress.inc(1));
    progress.finish_and_clear();
    let elapsed = start.elapsed();

    let mut by_folder: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    for report in &reports {
        *by_folder.entry(folder_of(&args.path, &report.file)).or_default() += report.counts;
        total += report.counts;
    }
    let mut table = Table::new(&["folder", "passed", "failed", "skipped"]);
    for (folder, counts) in &by_folder {
        table.row(vec![
            folder.clone(),
            counts.passed.to_string(),
            counts.failed.to_string(),
            counts.skipped.to_string(),
        ]);
    }
    table.row(vec![
        "total".into(),
        total.passed.to_string(),
        total.failed.to_string(),
        total.skipped.to_string(),
    ]);
    print!("{}", table.render());

    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for skip in reports.iter().flat_map(|r| &r.skips) {
        *reasons.entry(skip.reason.as_str()).or_default() += 1;
    }
    if !reasons.is_empty() {
        println!("\nskipped, by reason:");
        for (reason, count) in reasons {
            println!("  {count:>6}  {reason}");
        }
    }
    let failures: Vec<_> = reports.iter().flat_map(|r| &r.failures).collect();
    if !failures.is_empty() {
        println!("\nfailures:");
        for f in failures.iter().take(50) {
            println!("  {} :: {} [{}] {}: {}", f.file.display(), f.test, f.fork, f.case, f.message);
        }
        if failures.len() > 50 {
            println!("  ... and {} more (see --json)", failures.len() - 50);
        }
    }
    let threads = args.threads.get();
    println!(
        "\n{} files in {:.1} s; every case through the sequential path and Block-STM at \
         {threads} threads, and through alloy-evm's two executors (the parallel one at 1, \
         {threads} and {} threads in turn)",
        files.len(),
        elapsed.as_secs_f64(),
        (2 * threads).min(8)
    );
    println!(
        "conformance: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );
    println!(
        "alloy-evm: {} of the passed cases also identical through EthBlockExecutor and \
         ParallelBlockExecutor (results and bundles); the other {} have a transaction no alloy \
         envelope can carry",
        total.alloy_identical,
        total.passed - total.alloy_identical
    );

    if let Some(path) = &args.json {
        write_json(path, &JsonReport { total, by_folder: &by_folder, files: &reports })?;
    }
    Ok(if total.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
