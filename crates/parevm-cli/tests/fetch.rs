//! `parevm fetch` against a mock archive node on the loopback interface: a real HTTP
//! JSON-RPC server serving the repository's snapshots in geth's shapes (per-transaction
//! pre-states in which later transactions see what earlier ones changed), with injected
//! failures.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::{fs, thread};

use alloy_primitives::{Address, U256};
use parevm::Storage;
use parevm_fixtures::prestate_trace::{per_transaction, TracePrestate};
use parevm_fixtures::{load_prestate, load_snapshot, Snapshot};
use serde_json::{json, Value};

/// What the mock does to the next call of a method.
#[derive(Clone, Debug)]
enum Failure {
    Status(u16),
    /// Answers only after this long (longer than the client's timeout).
    Slow(Duration),
    Malformed,
    /// Leaves this account out of every transaction's trace.
    DropAccount(Address),
}

struct Block {
    number: u64,
    json: Value,
    traces: Vec<TracePrestate>,
    snapshot: Snapshot,
}

struct Mock {
    blocks: Vec<Block>,
    failures: Mutex<VecDeque<(&'static str, Failure)>>,
    calls: Mutex<BTreeMap<String, usize>>,
}

impl Mock {
    fn serving(dirs: &[PathBuf]) -> Arc<Self> {
        let blocks = dirs
            .iter()
            .map(|dir| {
                let snapshot = load_snapshot(dir).unwrap();
                let json: Value =
                    serde_json::from_slice(&fs::read(dir.join("block.json")).unwrap()).unwrap();
                let traces = per_transaction(&snapshot.storage, &snapshot.block).unwrap();
                Block { number: snapshot.header.number, json, traces, snapshot }
            })
            .collect();
        Arc::new(Self { blocks, failures: Mutex::default(), calls: Mutex::default() })
    }

    fn fail(&self, method: &'static str, failure: Failure) {
        self.failures.lock().unwrap().push_back((method, failure));
    }

    fn calls(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    /// The block `n` is the parent of (for state at n-1).
    fn child_of(&self, parent: u64) -> Option<&Block> {
        self.blocks.iter().find(|b| b.number == parent + 1)
    }

    fn block(&self, n: u64) -> Option<&Block> {
        self.blocks.iter().find(|b| b.number == n)
    }

    /// The result of one call, or the failure to inject.
    fn answer(&self, method: &str, params: &Value) -> Result<Value, Failure> {
        *self.calls.lock().unwrap().entry(method.to_string()).or_default() += 1;
        let mut dropped = None;
        {
            let mut failures = self.failures.lock().unwrap();
            if failures.front().is_some_and(|(m, _)| *m == method) {
                match failures.pop_front().unwrap().1 {
                    Failure::DropAccount(a) => dropped = Some(a),
                    failure => return Err(failure),
                }
            }
        }
        let number = |v: &Value| {
            u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        let address = |v: &Value| v.as_str().unwrap().parse::<Address>().unwrap();
        Ok(match method {
            "eth_getBlockByNumber" => {
                let n = number(&params[0]);
                match (self.block(n), params[1].as_bool().unwrap()) {
                    (Some(b), true) => b.json.clone(),
                    (_, false) => {
                        // Ancestors: their hashes from the block that reads them.
                        let hash = self.blocks.iter().find_map(|b| {
                            b.snapshot.storage.block_hash(n).ok().filter(|h| !h.is_zero())
                        });
                        hash.map_or(Value::Null, |h| json!({"number": params[0], "hash": h}))
                    }
                    (None, true) => Value::Null,
                }
            }
            "debug_traceBlockByNumber" => {
                let b = self.block(number(&params[0])).expect("traced blocks exist");
                let traces: Vec<Value> = b
                    .traces
                    .iter()
                    .map(|t| {
                        let mut t = t.clone();
                        if let Some(a) = dropped {
                            t.remove(&a);
                        }
                        json!({"txHash": "0x00", "result": t})
                    })
                    .collect();
                Value::Array(traces)
            }
            "eth_getBalance" | "eth_getTransactionCount" | "eth_getCode" | "eth_getStorageAt" => {
                let at = params.as_array().unwrap().last().unwrap();
                let state = &self.child_of(number(at)).expect("state at a served parent").snapshot;
                let account = state.storage.account(&address(&params[0]));
                match method {
                    "eth_getBalance" => json!(account.map_or(U256::ZERO, |a| a.basic.balance)),
                    "eth_getTransactionCount" => {
                        json!(format!("{:#x}", account.map_or(0, |a| a.basic.nonce)))
                    }
                    "eth_getCode" => {
                        let code = account
                            .and_then(|a| state.storage.code(&a.basic.code_hash))
                            .map(|c| c.original_bytes())
                            .unwrap_or_default();
                        json!(code)
                    }
                    _ => {
                        let slot: U256 = params[1].as_str().unwrap().parse().unwrap();
                        json!(alloy_primitives::B256::from(
                            state.storage.storage(&address(&params[0]), &slot).unwrap()
                        ))
                    }
                }
            }
            other => panic!("the mock does not serve {other}"),
        })
    }

    fn handle(&self, mut stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let request: Value = serde_json::from_slice(&body).unwrap();
        let one = |r: &Value| -> Result<Value, Failure> {
            let result = self.answer(r["method"].as_str().unwrap(), &r["params"])?;
            Ok(json!({"jsonrpc": "2.0", "id": r["id"], "result": result}))
        };
        let answer = match &request {
            Value::Array(batch) => {
                batch.iter().map(one).collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
            single => one(single),
        };
        let (status, body) = match answer {
            Ok(v) => (200, serde_json::to_vec(&v).unwrap()),
            Err(Failure::Status(code)) => (code, b"{\"error\": \"injected\"}".to_vec()),
            Err(Failure::Slow(pause)) => {
                thread::sleep(pause);
                return;
            }
            Err(Failure::Malformed) => {
                (200, b"{\"jsonrpc\": \"2.0\", \"id\": 0, \"result\": [".to_vec())
            }
            Err(Failure::DropAccount(_)) => unreachable!("applied in answer"),
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
    }

    /// Serves on a loopback port until the test ends; returns the URL.
    fn start(self: &Arc<Self>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mock = self.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let mock = mock.clone();
                thread::spawn(move || mock.handle(stream.unwrap()));
            }
        });
        url
    }
}

fn snapshot(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/snapshots").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parevm-fetch-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn fetch(url: &str, out: &Path, blocks: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parevm"))
        .args([
            "fetch",
            "--rpc",
            url,
            "--timeout",
            "0.5",
            "--backoff-ms",
            "5",
            "--retries",
            "6",
            "--out",
        ])
        .arg(out)
        .args(blocks)
        .output()
        .unwrap()
}

/// Every account the fetched pre-state `fetched` holds is as the source pre-state has it
/// (balance, nonce, code, and each slot fetched; empty accounts count as none). The source
/// may hold accounts and slots the block never touches.
fn assert_same_state(fetched: &Path, source: &Path) {
    let (fetched, source) =
        (load_prestate(fetched, None).unwrap(), load_prestate(source, None).unwrap());
    let mut compared = 0;
    for (address, account) in fetched.accounts() {
        let Some(expected) = source.account(address) else {
            assert!(account.basic.is_empty(), "{address} is not in the source");
            continue;
        };
        assert_eq!(account.basic, expected.basic, "{address}");
        for (slot, value) in &account.storage {
            let want = expected.storage.get(slot).copied().unwrap_or_default();
            assert!(*value == want, "{address} slot {slot}: {value} against {want}");
        }
        compared += 1;
    }
    assert!(compared > 100, "{compared}");
}

#[test]
fn fetches_and_verifies_under_injected_failures_then_resumes() {
    let mock = Mock::serving(&[snapshot("synthetic-mixed")]);
    let url = mock.start();
    mock.fail("eth_getBlockByNumber", Failure::Status(503));
    mock.fail("eth_getBlockByNumber", Failure::Status(429));
    mock.fail("debug_traceBlockByNumber", Failure::Slow(Duration::from_secs(2)));
    mock.fail("debug_traceBlockByNumber", Failure::Malformed);
    mock.fail("debug_traceBlockByNumber", Failure::Status(500));
    let out = scratch("failures");
    let result = fetch(&url, &out, &["20000000"]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    assert!(stdout.contains("1 fetched and verified"), "{stdout}");
    assert!(stdout.contains(" 5 retries"), "{stdout}");
    assert_eq!(mock.calls("debug_traceBlockByNumber"), 4);
    let fetched = out.join("20000000");
    assert_same_state(
        &fetched.join("prestate.json"),
        &snapshot("synthetic-mixed").join("prestate.json"),
    );
    let names: Vec<_> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["20000000"], "nothing else left in the folder");

    // Again: verified in place and skipped, no call to the node's tracer.
    let result = fetch(&url, &out, &["20000000"]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("0 fetched and verified, 1 already there"), "{stdout}");
    assert_eq!(mock.calls("debug_traceBlockByNumber"), 4);

    // A block the node does not have, and a node that keeps failing, are errors naming the
    // block and the call; nothing is written.
    let result = fetch(&url, &out, &["7"]);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("error: block 7: the node has no such block"), "{stderr}");
    for _ in 0..7 {
        mock.fail("eth_getBlockByNumber", Failure::Status(503));
    }
    let other = scratch("gave-up");
    let result = fetch(&url, &other, &["20000000"]);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("error: block 20000000: eth_getBlockByNumber: gave up after 7 tries"),
        "{stderr}"
    );
    assert_eq!(fs::read_dir(&other).unwrap().count(), 0);
    let result = fetch(&url, &other, &["9..3"]);
    assert!(String::from_utf8_lossy(&result.stderr).contains("the range is empty"));
}

#[test]
fn an_account_the_trace_misses_is_asked_for_and_the_block_still_verifies() {
    let mock = Mock::serving(&[snapshot("synthetic-mixed")]);
    let url = mock.start();
    // The router every swap calls, left out of every transaction's trace.
    let router: Address = "0x8080808080808080808080808080808080808080".parse().unwrap();
    mock.fail("debug_traceBlockByNumber", Failure::DropAccount(router));
    let out = scratch("dropped");
    let result = fetch(&url, &out, &["20000000"]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    assert!(mock.calls("eth_getCode") > 0);
    let prestate: Value =
        serde_json::from_slice(&fs::read(out.join("20000000/prestate.json")).unwrap()).unwrap();
    assert!(
        prestate.get(router.to_string().to_lowercase()).is_some()
            || prestate.get(router.to_string()).is_some()
    );
    assert_same_state(
        &out.join("20000000/prestate.json"),
        &snapshot("synthetic-mixed").join("prestate.json"),
    );
}

#[test]
fn an_interrupted_fetch_leaves_nothing_half_written_and_completes_on_the_next_run() {
    let mock = Mock::serving(&[snapshot("synthetic-mixed")]);
    let url = mock.start();
    for _ in 0..6 {
        mock.fail("debug_traceBlockByNumber", Failure::Slow(Duration::from_secs(2)));
    }
    let out = scratch("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_parevm"))
        .args(["fetch", "--rpc", &url, "--timeout", "1", "--backoff-ms", "5", "--out"])
        .arg(&out)
        .arg("20000000")
        .spawn()
        .unwrap();
    while mock.calls("debug_traceBlockByNumber") < 2 {
        thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("20000000").exists(), "no snapshot from a killed fetch");
    // What a fetch killed while writing leaves: a temporary folder, never the snapshot's.
    let stale = out.join(".20000000.partial-1");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("block.json"), "{\"trunc").unwrap();
    mock.failures.lock().unwrap().clear();
    let result = fetch(&url, &out, &["20000000"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let names: Vec<_> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["20000000"]);
}
