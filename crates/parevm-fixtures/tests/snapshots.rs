//! Loading snapshots: the project's own sample replays and verifies; malformed files give
//! clear errors naming the file and the field.

use std::fs;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use parevm_fixtures::{load_snapshot, HeaderCheck, SnapshotError};
use parevm_fixtures::{parallel, sequential};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/snapshots/synthetic-mixed")
}

/// A scratch copy of the sample whose files a test may damage.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parevm-test-{}-{name}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    for file in ["block.json", "prestate.json"] {
        fs::copy(sample().join(file), dir.join(file)).unwrap();
    }
    dir
}

#[test]
fn the_shipped_sample_verifies_on_both_paths() {
    let snapshot = load_snapshot(&sample()).unwrap();
    assert_eq!(snapshot.block.transactions.len(), 500);
    let sequential = sequential(&snapshot.storage, &snapshot.block, None).unwrap();
    let check = HeaderCheck::new(&snapshot.header, snapshot.block.spec, &sequential);
    assert!(check.passed(), "{:?}", check.mismatches());
    for threads in [1, 2, 4] {
        let (parallel, _) =
            parallel(&snapshot.storage, &snapshot.block, NonZeroUsize::new(threads).unwrap(), None)
                .unwrap();
        assert_eq!(parallel, sequential, "{threads} threads");
    }
}

#[test]
fn truncated_block_json_names_the_file() {
    let dir = scratch("truncated");
    let text = fs::read(dir.join("block.json")).unwrap();
    fs::write(dir.join("block.json"), &text[..text.len() / 2]).unwrap();
    let error = load_snapshot(&dir).unwrap_err();
    assert!(matches!(error, SnapshotError::Parse { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("block.json") && message.contains("EOF"), "{message}");
}

#[test]
fn wrong_field_type_names_the_field() {
    let dir = scratch("wrong-type");
    let text = fs::read_to_string(dir.join("block.json")).unwrap();
    fs::write(dir.join("block.json"), text.replacen("\"gasUsed\": \"0x", "\"gasUsed\": [\"0x", 1))
        .unwrap();
    let message = load_snapshot(&dir).unwrap_err().to_string();
    assert!(message.contains("block.json"), "{message}");
    assert!(message.contains("invalid"), "{message}");
}

#[test]
fn prestate_account_without_balance_is_rejected() {
    let dir = scratch("no-balance");
    let text = fs::read_to_string(dir.join("prestate.json")).unwrap();
    let damaged = text.replacen("\"balance\": ", "\"balanc\": ", 1);
    assert_ne!(damaged, text);
    fs::write(dir.join("prestate.json"), damaged).unwrap();
    let error = load_snapshot(&dir).unwrap_err();
    let SnapshotError::Parse { path, field, message } = &error else { panic!("{error}") };
    assert!(path.ends_with("prestate.json"));
    assert!(field.starts_with("0x"), "the account is named: {field}");
    assert!(message.contains("balanc"), "{message}");
}

#[test]
fn block_with_only_transaction_hashes_is_rejected() {
    let dir = scratch("hashes-only");
    let text = fs::read_to_string(dir.join("block.json")).unwrap();
    let mut block: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hashes: Vec<_> =
        block["transactions"].as_array().unwrap().iter().map(|tx| tx["hash"].clone()).collect();
    block["transactions"] = serde_json::Value::Array(hashes);
    fs::write(dir.join("block.json"), block.to_string()).unwrap();
    let message = load_snapshot(&dir).unwrap_err().to_string();
    assert!(message.contains("hashes only"), "{message}");
}

#[test]
fn missing_prestate_is_an_io_error_naming_the_file() {
    let dir = scratch("no-prestate");
    fs::remove_file(dir.join("prestate.json")).unwrap();
    let error = load_snapshot(&dir).unwrap_err();
    assert!(matches!(error, SnapshotError::Io { .. }), "{error}");
    assert!(error.to_string().contains("prestate.json"));
}

#[test]
fn an_absurd_excess_blob_gas_loads_at_once_with_a_saturated_price() {
    // Found by the snapshot_parse fuzzer: revm's blob price loop ran for hours on it.
    let dir = scratch("excess-blob-gas");
    let block = fs::read_to_string(dir.join("block.json")).unwrap();
    assert!(block.contains("\"excessBlobGas\": \"0x0\""));
    let block =
        block.replace("\"excessBlobGas\": \"0x0\"", "\"excessBlobGas\": \"0xffffffffffffffff\"");
    fs::write(dir.join("block.json"), block).unwrap();
    let start = std::time::Instant::now();
    let snapshot = load_snapshot(&dir).unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let blob = snapshot.block.env.blob_excess_gas_and_price.unwrap();
    assert_eq!((blob.excess_blob_gas, blob.blob_gasprice), (u64::MAX, u128::MAX));
}
