//! `parevm replay`: execute snapshots, verify against headers, report times.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use parevm::{execute_sequential, BlockOutput, ExecutionError};
use parevm_fixtures::{discover_snapshots, load_snapshot, HeaderCheck, Snapshot};
use serde::Serialize;

use crate::table::Table;

/// Options of `parevm replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// Snapshot folders, or folders of snapshot folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Time each block this many times and report the median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Write one JSON record per block to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One block's result, as written to `--json`.
#[derive(Serialize)]
struct Record {
    block: String,
    number: Option<u64>,
    txs: usize,
    gas_used: u64,
    verified: bool,
    sequential_us: Option<f64>,
    error: Option<String>,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Executes `snapshot` `repeat` times; returns the output of the last run and the median time.
fn time_sequential(
    snapshot: &Snapshot,
    repeat: u32,
) -> Result<(BlockOutput, Duration), ExecutionError> {
    let mut samples = Vec::with_capacity(repeat as usize);
    let mut output = None;
    for _ in 0..repeat {
        let start = Instant::now();
        let out = execute_sequential(&snapshot.storage, &snapshot.block)?;
        samples.push(start.elapsed());
        output = Some(out);
    }
    Ok((output.expect("repeat is at least 1"), median(samples)))
}

fn replay_one(dir: &Path, repeat: u32) -> Record {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut record = Record {
        block: name,
        number: None,
        txs: 0,
        gas_used: 0,
        verified: false,
        sequential_us: None,
        error: None,
    };
    let snapshot = match load_snapshot(dir) {
        Ok(s) => s,
        Err(e) => {
            record.error = Some(e.to_string());
            return record;
        }
    };
    record.number = Some(snapshot.header.number);
    record.txs = snapshot.block.transactions.len();
    match time_sequential(&snapshot, repeat) {
        Ok((output, time)) => {
            record.gas_used = output.gas_used;
            record.sequential_us = Some(time.as_secs_f64() * 1e6);
            let check = HeaderCheck::new(&snapshot.header, snapshot.block.spec, &output);
            record.verified = check.passed();
            if !record.verified {
                record.error = Some(check.mismatches().join("; "));
            }
        }
        Err(e) => record.error = Some(format!("{}: {e}", dir.display())),
    }
    record
}

/// Runs `parevm replay`.
pub fn run(args: ReplayArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut dirs = Vec::new();
    for path in &args.paths {
        dirs.extend(discover_snapshots(path)?);
    }
    let progress = ProgressBar::new(dirs.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} blocks  {msg}")
            .expect("static template"),
    );
    let mut records = Vec::with_capacity(dirs.len());
    for dir in &dirs {
        progress.set_message(dir.display().to_string());
        let record = replay_one(dir, args.repeat);
        if let Some(error) = &record.error {
            progress.suspend(|| eprintln!("error: {}: {error}", record.block));
        }
        records.push(record);
        progress.inc(1);
    }
    progress.finish_and_clear();

    let mut table = Table::new(&["block", "txs", "gas", "time (ms)", "verified"]);
    for r in &records {
        table.row(vec![
            r.block.clone(),
            r.txs.to_string(),
            r.gas_used.to_string(),
            r.sequential_us
                .map_or("-".into(), |us| format!("{:.3}", us / 1e3)),
            if r.verified {
                "yes".into()
            } else {
                "NO".into()
            },
        ]);
    }
    print!("{}", table.render());
    let failed = records.iter().filter(|r| !r.verified).count();
    let total_ms: f64 = records.iter().filter_map(|r| r.sequential_us).sum::<f64>() / 1e3;
    println!(
        "{} blocks, {} verified, {} failed; total execution time {:.3} ms (median of {} runs per block)",
        records.len(),
        records.len() - failed,
        failed,
        total_ms,
        args.repeat
    );

    if let Some(path) = &args.json {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = BufWriter::new(file);
        serde_json::to_writer_pretty(&mut out, &records)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
