//! JSON lines of `replay --jsonl` and `parevm report`, which merges the files of a sharded
//! replay into one summary and refuses a merge with a block missing or counted twice.
//!
//! A file's first line is its manifest (`{"manifest": {"shard": I, "of": N, "blocks": [...],
//! ...}}`: which share it is and every block of that share); each further line is one
//! block's record, written and flushed as the block finishes, so an interrupted replay
//! leaves every finished block on disk and `report` names the ones it lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::shard::Shard;
use crate::table::Table;

/// What a JSON-lines file covers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// This file's shard, from 0.
    pub shard: usize,
    /// The number of shards.
    pub of: usize,
    /// Every block of this shard, by folder name.
    pub blocks: Vec<String>,
    pub threads: usize,
    pub mode: String,
}

#[derive(Serialize, Deserialize)]
struct ManifestLine {
    manifest: Manifest,
}

/// A `replay --jsonl` output being written.
pub struct JsonLines {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonLines {
    /// Creates (or truncates) `path` and writes the manifest line.
    pub fn create(path: &Path, manifest: Manifest) -> Result<Self, String> {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut lines = Self { path: path.to_owned(), out: BufWriter::new(file) };
        lines.write(&ManifestLine { manifest })?;
        Ok(lines)
    }

    /// Appends one line and flushes it.
    pub fn write<T: Serialize>(&mut self, value: &T) -> Result<(), String> {
        let mut line = serde_json::to_vec(value).expect("records serialise");
        line.push(b'\n');
        self.out
            .write_all(&line)
            .and_then(|()| self.out.flush())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

impl Manifest {
    /// The manifest of `shard` holding `blocks`.
    pub fn new(shard: Shard, blocks: Vec<String>, threads: usize, mode: String) -> Self {
        Self { shard: shard.index, of: shard.count, blocks, threads, mode }
    }
}

/// The fields of a block's record that the report uses.
#[derive(Debug, Deserialize)]
struct Record {
    block: String,
    gas_used: u64,
    verified: bool,
    matches_sequential: Option<bool>,
    sequential_us: Option<f64>,
    parallel_us: Option<f64>,
    speedup: Option<f64>,
    error: Option<String>,
}

impl Record {
    fn ok(&self) -> bool {
        self.error.is_none() && self.verified && self.matches_sequential != Some(false)
    }
}

/// Options of `parevm report`.
#[derive(Args)]
pub struct ReportArgs {
    /// JSON-lines files of `replay --jsonl`, one per shard.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// One file, read.
struct ShardFile {
    path: PathBuf,
    manifest: Manifest,
    records: Vec<Record>,
}

fn read_file(path: &Path) -> Result<ShardFile, String> {
    let at = |line: usize, what: String| format!("{}:{line}: {what}", path.display());
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = BufReader::new(file).lines().enumerate();
    let (_, first) = lines.next().ok_or_else(|| format!("{}: empty", path.display()))?;
    let first = first.map_err(|e| at(1, e.to_string()))?;
    let manifest = serde_json::from_str::<ManifestLine>(&first)
        .map_err(|e| at(1, format!("not a replay --jsonl manifest: {e}")))?
        .manifest;
    let mut records = Vec::new();
    for (i, line) in lines {
        let line = line.map_err(|e| at(i + 1, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str::<Record>(&line).map_err(|e| {
            at(i + 1, format!("not a complete block record (an interrupted replay?): {e}"))
        })?;
        records.push(record);
    }
    Ok(ShardFile { path: path.to_owned(), manifest, records })
}

/// Every block's record across `files`, or why the files do not make one whole replay.
fn merge(files: Vec<ShardFile>) -> Result<(usize, Vec<Record>), String> {
    let of = files[0].manifest.of;
    let mut by_shard: BTreeMap<usize, &Path> = BTreeMap::new();
    for file in &files {
        let m = &file.manifest;
        if m.of != of {
            return Err(format!(
                "{} is shard {}/{} but {} is of {of} shards",
                file.path.display(),
                m.shard,
                m.of,
                files[0].path.display()
            ));
        }
        if let Some(other) = by_shard.insert(m.shard, &file.path) {
            return Err(format!(
                "shard {}/{of} appears twice: {} and {}",
                m.shard,
                other.display(),
                file.path.display()
            ));
        }
    }
    if let Some(missing) = (0..of).find(|s| !by_shard.contains_key(s)) {
        return Err(format!("shard {missing}/{of} is missing"));
    }
    let mut expected: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in &files {
        for block in &file.manifest.blocks {
            if let Some(other) = expected.insert(block.clone(), file.path.clone()) {
                return Err(format!(
                    "block {block} is in two shards: {} and {}",
                    other.display(),
                    file.path.display()
                ));
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut records = Vec::new();
    for file in files {
        let listed: BTreeSet<&String> = file.manifest.blocks.iter().collect();
        for record in file.records {
            if !listed.contains(&record.block) {
                return Err(format!(
                    "{}: block {} is not in its shard's manifest",
                    file.path.display(),
                    record.block
                ));
            }
            if !seen.insert(record.block.clone()) {
                return Err(format!("block {} is recorded twice", record.block));
            }
            records.push(record);
        }
    }
    let missing: Vec<&str> =
        expected.keys().map(String::as_str).filter(|b| !seen.contains(*b)).take(10).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} blocks have no record (an interrupted shard?), among them {}",
            expected.len() - seen.len(),
            missing.join(", ")
        ));
    }
    records.sort_by(|a, b| a.block.cmp(&b.block));
    Ok((of, records))
}

/// Runs `parevm report`.
pub fn run(args: ReportArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let files = args.files.iter().map(|p| read_file(p)).collect::<Result<Vec<_>, _>>()?;
    let threads: BTreeSet<(usize, String)> =
        files.iter().map(|f| (f.manifest.threads, f.manifest.mode.clone())).collect();
    let mut table = Table::new(&["shard", "blocks", "gas", "seq (ms)", "par (ms)"]);
    let mut shards: Vec<&ShardFile> = files.iter().collect();
    shards.sort_by_key(|f| f.manifest.shard);
    for f in &shards {
        let ms = |v: f64| format!("{:.3}", v / 1e3);
        table.row(vec![
            format!("{}/{}", f.manifest.shard, f.manifest.of),
            f.records.len().to_string(),
            f.records.iter().map(|r| r.gas_used).sum::<u64>().to_string(),
            ms(f.records.iter().filter_map(|r| r.sequential_us).sum()),
            ms(f.records.iter().filter_map(|r| r.parallel_us).sum()),
        ]);
    }
    let (of, records) = merge(files)?;
    print!("{}", table.render());
    let failed: Vec<&Record> = records.iter().filter(|r| !r.ok()).collect();
    for r in &failed {
        println!("failed: {}: {}", r.block, r.error.as_deref().unwrap_or("not verified"));
    }
    let seq: f64 = records.iter().filter_map(|r| r.sequential_us).sum();
    println!(
        "{} blocks in {of} shards, {} ok, {} failed; sequential total {:.3} ms",
        records.len(),
        records.len() - failed.len(),
        failed.len(),
        seq / 1e3
    );
    let speedups: Vec<(&str, f64)> =
        records.iter().filter_map(|r| Some((r.block.as_str(), r.speedup?))).collect();
    if !speedups.is_empty() {
        let par: f64 = records.iter().filter_map(|r| r.parallel_us).sum();
        let geomean = crate::measure::geomean(speedups.iter().map(|(_, s)| *s)).expect("not empty");
        let (worst_block, worst) =
            speedups.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)).expect("not empty");
        let runs: Vec<String> =
            threads.iter().map(|(t, m)| format!("{}, {m}", crate::summary::threads(*t))).collect();
        println!(
            "parallel ({}) total {:.3} ms; speedup geometric mean {geomean:.3}x, worst \
             {worst:.3}x ({worst_block}), total {:.3}x",
            runs.join("; "),
            par / 1e3,
            seq / par
        );
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(shard: usize, of: usize, blocks: &[&str], recorded: &[&str]) -> ShardFile {
        let record = |b: &&str| Record {
            block: b.to_string(),
            gas_used: 1,
            verified: true,
            matches_sequential: Some(true),
            sequential_us: Some(2.0),
            parallel_us: Some(1.0),
            speedup: Some(2.0),
            error: None,
        };
        ShardFile {
            path: PathBuf::from(format!("s{shard}.jsonl")),
            manifest: Manifest {
                shard,
                of,
                blocks: blocks.iter().map(|b| b.to_string()).collect(),
                threads: 2,
                mode: "auto".into(),
            },
            records: recorded.iter().map(record).collect(),
        }
    }

    #[test]
    fn merges_a_whole_replay_and_refuses_the_rest() {
        let whole = || vec![file(0, 2, &["1", "3"], &["3", "1"]), file(1, 2, &["2"], &["2"])];
        let (of, records) = merge(whole()).unwrap();
        assert_eq!(of, 2);
        assert_eq!(records.iter().map(|r| r.block.as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);

        let cases: Vec<(Vec<ShardFile>, &str)> = vec![
            (vec![file(0, 2, &["1"], &["1"])], "shard 1/2 is missing"),
            (
                vec![file(0, 2, &["1"], &["1"]), file(0, 2, &["2"], &["2"])],
                "shard 0/2 appears twice",
            ),
            (vec![file(0, 2, &["1"], &["1"]), file(1, 3, &["2"], &["2"])], "of 2 shards"),
            (
                vec![file(0, 2, &["1"], &["1"]), file(1, 2, &["1"], &["1"])],
                "block 1 is in two shards",
            ),
            (vec![file(0, 1, &["1", "2"], &["1", "1", "2"])], "block 1 is recorded twice"),
            (vec![file(0, 1, &["1", "2"], &["1"])], "1 blocks have no record"),
            (vec![file(0, 1, &["1"], &["1", "9"])], "block 9 is not in its shard's manifest"),
        ];
        for (files, message) in cases {
            let error = merge(files).map(|_| ()).unwrap_err();
            assert!(error.contains(message), "{error} / {message}");
        }
    }
}
