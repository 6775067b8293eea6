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
    assert!(stdout.contains("embedded:synthetic-mixed"), "{stdout}");
    assert!(stdout.contains("1 blocks, 1 ok, 0 failed"), "{stdout}");
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
