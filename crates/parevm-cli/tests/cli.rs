//! The `parevm` binary: exit status and error lines.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn parevm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_parevm"))
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/snapshots/synthetic-mixed")
}

#[test]
fn replay_without_arguments_replays_the_embedded_block() {
    let out = parevm().arg("replay").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("embedded:gated-swaps"), "{stdout}");
    assert!(stdout.contains("1 blocks, 1 ok, 0 failed"), "{stdout}");
    assert!(stdout.contains("(median of 20 runs per block)"), "{stdout}");
    // The plain-words ending: what ran, the agreement, the header, the bound.
    assert!(stdout.contains("Executed embedded:gated-swaps: 2000 transactions"), "{stdout}");
    assert!(stdout.contains("left out 356 of them"), "{stdout}");
    assert!(stdout.contains("bit for bit in each of the 20 runs"), "{stdout}");
    assert!(stdout.contains("matches the header recorded"), "{stdout}");
    assert!(stdout.contains("the block's dependencies allow at most"), "{stdout}");
}

#[test]
fn a_snapshot_lacking_an_account_names_the_transaction_that_loads_it() {
    // The router every swap calls, removed from the pre-state as if the snapshot lost it.
    let dir = scratch("lacking");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(sample().join("block.json"), dir.join("block.json")).unwrap();
    let mut prestate: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&fs::read(sample().join("prestate.json")).unwrap()).unwrap();
    let router = "0x8080808080808080808080808080808080808080";
    assert!(prestate.remove(router).is_some());
    fs::write(dir.join("prestate.json"), serde_json::to_vec(&prestate).unwrap()).unwrap();
    let out = parevm().args(["replay", "--sequential"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gas used: header"), "{stderr}");
    assert!(stderr.contains("loads accounts that prestate.json does not list"), "{stderr}");
    let first = stderr.split("does not list (").nth(1).unwrap();
    assert!(first.to_lowercase().contains(router), "{stderr}");

    // `gen` lists every account the block loads, empty ones too, so its snapshots pass
    // --strict; without the (empty) beneficiary the block still verifies, and only --strict
    // tells.
    let out = parevm().args(["replay", "--sequential", "--strict"]).arg(sample()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let beneficiary = "0xbebebebebebebebebebebebebebebebebebebebe";
    let mut prestate: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&fs::read(sample().join("prestate.json")).unwrap()).unwrap();
    assert_eq!(
        prestate.remove(beneficiary).unwrap(),
        serde_json::json!({"balance": "0x0", "nonce": 0})
    );
    fs::write(dir.join("prestate.json"), serde_json::to_vec(&prestate).unwrap()).unwrap();
    let out = parevm().args(["replay", "--sequential"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = parevm().args(["replay", "--sequential", "--strict"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "--strict: the block loads accounts that prestate.json does not list: \
             transaction 0: 0xBEbeBeBEbeBebeBeBEBEbebEBeBeBebeBeBebebe"
        ),
        "{stderr}"
    );
}

#[test]
fn gen_refuses_to_overwrite_a_snapshot_without_force() {
    let dir = scratch("force");
    let gen = |extra: &[&str]| {
        parevm()
            .args(["gen", "--kind", "transfers", "--txs", "20", "--accounts", "10"])
            .args(extra)
            .arg(&dir)
            .output()
            .unwrap()
    };
    assert!(gen(&[]).status.success());
    let before = fs::read(dir.join("block.json")).unwrap();
    let out = gen(&["--seed", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --force"));
    assert_eq!(fs::read(dir.join("block.json")).unwrap(), before, "left untouched");
    assert!(gen(&["--seed", "2", "--force"]).status.success());
    assert_ne!(fs::read(dir.join("block.json")).unwrap(), before);
    let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
}

#[test]
fn replay_plots_sorted_speedups_with_their_bounds() {
    let dir = scratch("plot");
    fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("replay.svg");
    let out = parevm()
        .args(["replay", "--threads", "2", "--mode", "parallel", "--plot"])
        .arg(&svg)
        .arg(sample())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chart = fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg"), "{chart}");
    for text in ["synthetic-mixed", "ideal bound (dependency graph)", "1x: as fast as sequential"] {
        assert!(chart.contains(text), "{text}: {chart}");
    }
}

#[test]
fn replay_writes_json_records() {
    let json = std::env::temp_dir().join(format!("parevm-cli-{}.json", std::process::id()));
    let out = parevm()
        .args(["replay", "--threads", "2", "--mode", "parallel", "--json"])
        .arg(&json)
        .arg(sample())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let record = &records[0];
    assert_eq!(record["txs"], 500);
    assert_eq!(record["verified"], true);
    assert_eq!(record["matches_sequential"], true);
    assert_eq!(record["threads"], 2);
    for field in ["sequential_us", "parallel_us", "speedup", "executions", "re_executions"] {
        assert!(record[field].is_number(), "{field}: {record}");
    }
}

#[test]
fn corrupted_block_fails_with_one_error_line() {
    let dir = std::env::temp_dir().join(format!("parevm-cli-bad-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::copy(sample().join("prestate.json"), dir.join("prestate.json")).unwrap();
    fs::write(dir.join("block.json"), "{\"number\": \"0x1\", \"hash\": ").unwrap();
    let out = parevm().arg("replay").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("block.json"), "{stderr}");
}

#[test]
fn a_path_without_snapshots_is_an_error() {
    let out = parevm().args(["replay", "/nonexistent/parevm"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/parevm"));
}

/// Generates a gated block of 300 transactions (with its `compliance.json`) in `dir`.
fn gen_gated(dir: &Path) {
    let out = parevm()
        .args(["gen", "--kind", "gated", "--txs", "300", "--accounts", "40", "--pools", "4"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parevm-cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_generated_gated_block_replays_with_its_compliance_file() {
    let dir = scratch("gated");
    gen_gated(&dir);
    assert!(dir.join("compliance.json").is_file());
    let json = dir.join("out.json");
    let out = parevm()
        .args(["replay", "--mode", "parallel", "--threads", "2", "--json"])
        .arg(&json)
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("compliance: 1 blocks with a hook"), "{stdout}");
    let records: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let record = &records[0];
    assert_eq!(record["compliance"], "exclude");
    assert_eq!(record["verified"], true);
    let outcomes = record["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 300);
    let excluded: Vec<_> = outcomes.iter().filter(|o| o["status"] == "excluded").collect();
    assert_eq!(excluded.len() as u64, record["excluded"].as_u64().unwrap());
    assert!(!excluded.is_empty());
    for o in &excluded {
        assert!(o["pool"].is_string() && o["claim"] == "kyc", "{o}");
        assert!(
            ["missing", "revoked", "nonce-gap"].contains(&o["reason"].as_str().unwrap()),
            "{o}"
        );
    }

    // An explicit configuration wins; a broken one is an error naming the file.
    let bad = dir.join("bad.json");
    fs::write(&bad, r#"{"registry": "0x12", "mode": "exclude"}"#).unwrap();
    let out = parevm().arg("replay").arg("--compliance").arg(&bad).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.json: invalid at `registry`"));
}

#[test]
fn bench_writes_json_and_a_chart() {
    let dir = scratch("bench");
    fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("bench.json"), dir.join("bench.svg"));
    let out = parevm()
        .args(["bench", "--gas", "2000000", "--repeat", "1", "--threads", "2", "--json"])
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("peak RSS"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let names: Vec<&str> =
        report["results"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "transfers",
            "erc20",
            "swaps",
            "swaps, hook on",
            "swaps, hook on, fail-block",
            "mixed",
            "gated, hook off",
            "gated",
            "gated, revert mode",
            "gated, exclusion budget"
        ]
    );
    assert!(report["results"].as_array().unwrap().iter().all(|r| r["matches_sequential"] == true));
    let chart = fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("swaps, hook on"), "{chart}");
    assert!(chart.contains("ideal bound (dependency graph)"), "{chart}");
    assert!(report["results"].as_array().unwrap().iter().all(|r| r["ideal_speedup"].is_number()));
    let out = parevm().args(["bench", "--workloads", "nft"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload `nft`"));
}

#[test]
fn analyze_reports_chains_and_bounds() {
    let out = parevm().arg("analyze").arg(sample()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ideal 2t") && stdout.contains("synthetic-mixed"), "{stdout}");
    assert!(stdout.contains("1 blocks with transactions"), "{stdout}");
}

#[test]
fn senders_are_recovered_and_checked_unless_trusted() {
    let block: serde_json::Value =
        serde_json::from_slice(&fs::read(sample().join("block.json")).unwrap()).unwrap();
    let tamper = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = scratch(name);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(sample().join("prestate.json"), dir.join("prestate.json")).unwrap();
        let mut block = block.clone();
        edit(&mut block["transactions"][7]);
        fs::write(dir.join("block.json"), serde_json::to_vec(&block).unwrap()).unwrap();
        dir
    };
    // Transaction 7 claims transaction 8's sender.
    let other = block["transactions"][8]["from"].clone();
    let dir = tamper("from", &|tx| tx["from"] = other.clone());
    let out = parevm().args(["replay", "--sequential"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("transaction 7: its signature is by"), "{stderr}");
    // Trusted, the forged sender is taken as given (and its nonce no longer fits).
    let out =
        parevm().args(["replay", "--sequential", "--trust-senders"]).arg(&dir).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("its signature is by"));

    let dir = tamper("hash", &|tx| {
        tx["hash"] = "0x1111111111111111111111111111111111111111111111111111111111111111".into()
    });
    let out = parevm().args(["replay", "--sequential"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("transaction 7: its fields hash to"), "{stderr}");

    // A signature that recovers to nobody (s = 0) is an error, not a panic.
    let dir = tamper("sig", &|tx| tx["s"] = "0x0".into());
    let out = parevm().args(["replay", "--sequential"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("transaction 7:"), "{stderr}");
}

/// (block, verified, matches_sequential, error) of every record of a `--jsonl` file.
fn verdicts(path: &Path) -> Vec<(String, bool, bool, bool)> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("{\"manifest\":"));
    lines
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                r["block"].as_str().unwrap().to_string(),
                r["verified"] == true,
                r["matches_sequential"] == true,
                r["error"].is_null(),
            )
        })
        .collect()
}

#[test]
fn shards_together_replay_exactly_what_one_process_does_and_report_merges_them() {
    let dir = scratch("shards");
    for (i, kind) in ["transfers", "erc20", "swaps", "mixed", "transfers"].iter().enumerate() {
        let out = parevm()
            .args(["gen", "--kind", kind, "--txs", &(20 + 15 * i).to_string()])
            .args(["--accounts", "12", "--seed", &i.to_string()])
            .arg(dir.join("blocks").join(format!("{}", 100 + i)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // One block that fails: its header claims other gas.
    let broken = dir.join("blocks/104/block.json");
    let text = fs::read_to_string(&broken).unwrap();
    let mut block: serde_json::Value = serde_json::from_str(&text).unwrap();
    block["gasUsed"] = "0x1".into();
    fs::write(&broken, serde_json::to_vec(&block).unwrap()).unwrap();

    let replay = |extra: &[&str], jsonl: &Path| {
        parevm()
            .args(["replay", "--threads", "2"])
            .args(extra)
            .arg("--jsonl")
            .arg(jsonl)
            .arg(dir.join("blocks"))
            .output()
            .unwrap()
    };
    let whole = dir.join("whole.jsonl");
    assert!(!replay(&[], &whole).status.success(), "block 104 fails");
    let mut sharded = Vec::new();
    let mut files = Vec::new();
    for i in 0..3 {
        let file = dir.join(format!("shard-{i}.jsonl"));
        let out = replay(&["--shard", &format!("{i}/3")], &file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&format!("shard {i}/3:")), "{stdout}");
        sharded.extend(verdicts(&file));
        files.push(file);
    }
    let mut expected = verdicts(&whole);
    expected.sort();
    sharded.sort();
    assert_eq!(sharded, expected, "same blocks, same verdicts");
    assert_eq!(expected.len(), 5);

    let out = parevm().arg("report").args(&files).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a failed block fails the report");
    assert!(stdout.contains("5 blocks in 3 shards, 4 ok, 1 failed"), "{stdout}");
    assert!(stdout.contains("failed: 104: gas used: header 1"), "{stdout}");
    // Missing or doubled shards, and an interrupted file, are refused.
    let out = parevm().arg("report").args(&files[..2]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard 2/3 is missing"));
    let out = parevm().arg("report").args([&files[0], &files[0], &files[1]]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard 0/3 appears twice"));
    let cut = dir.join("cut.jsonl");
    let text = fs::read_to_string(&whole).unwrap();
    fs::write(&cut, &text[..text.len() - 40]).unwrap();
    let out = parevm().arg("report").arg(&cut).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a complete block record"), "{stderr}");
    let out = parevm().args(["replay", "--shard", "3/3"]).arg(dir.join("blocks")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a shard"));
}

#[test]
fn replay_through_alloy_evm_verifies_compares_and_fails_on_a_wrong_header() {
    let dir = scratch("alloy");
    fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let out = parevm()
        .args(["replay", "--executor", "alloy", "--mode", "parallel", "--threads", "2"])
        .args(["--repeat", "2", "--json"])
        .arg(&json)
        .arg(sample())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let records: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let record = &records[0];
    assert_eq!(record["verified"], true, "{record}");
    assert_eq!(record["matches_sequential"], true, "{record}");
    assert_eq!(record["parallel_path"], true, "{record}");

    // The same block with a wrong gas total in its header fails, naming the field.
    let wrong = dir.join("wrong");
    fs::create_dir_all(&wrong).unwrap();
    fs::copy(sample().join("prestate.json"), wrong.join("prestate.json")).unwrap();
    let mut block: serde_json::Value =
        serde_json::from_slice(&fs::read(sample().join("block.json")).unwrap()).unwrap();
    block["gasUsed"] = "0x1".into();
    fs::write(wrong.join("block.json"), serde_json::to_vec(&block).unwrap()).unwrap();
    let out = parevm().args(["replay", "--executor", "alloy"]).arg(&wrong).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gas used: header 1"), "{stderr}");

    // What replay cannot do through alloy-evm is refused, not ignored.
    let out = parevm().args(["replay", "--executor", "alloy", "--stress", "2"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_gated_block_through_alloy_evm_excludes_what_the_engine_excludes() {
    let dir = scratch("alloy-gated");
    gen_gated(&dir);
    let mut excluded = Vec::new();
    for executor in ["engine", "alloy"] {
        let json = dir.join(format!("{executor}.json"));
        let out = parevm()
            .args(["replay", "--mode", "parallel", "--threads", "2", "--executor", executor])
            .arg("--json")
            .arg(&json)
            .arg(&dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let records: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
        assert_eq!(records[0]["verified"], true, "{executor}");
        excluded.push(records[0]["excluded"].as_u64().unwrap());
    }
    assert!(excluded[0] > 0);
    assert_eq!(excluded[0], excluded[1]);
}
