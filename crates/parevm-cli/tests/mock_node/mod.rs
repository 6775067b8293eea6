//! A mock archive node on the loopback interface for the tests of `parevm fetch`: a real
//! JSON-RPC server (over HTTP, or over WebSocket) serving snapshots in geth's shapes (per-transaction pre-states in
//! which later transactions see what earlier ones changed), with injected failures.

#![allow(dead_code)] // each test binary uses a part

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::{fs, thread};

use alloy_primitives::{Address, U256};
use parevm::Storage;
use parevm_fixtures::prestate_trace::{per_transaction, TracePrestate};
use parevm_fixtures::{load_snapshot, Snapshot};
use serde_json::{json, Value};

/// What the mock does to the next call of a method.
#[derive(Clone, Debug)]
pub enum Failure {
    Status(u16),
    /// Answers only after this long (longer than the client's timeout).
    Slow(Duration),
    Malformed,
    /// A JSON-RPC error for this call alone (Infura's rate-limit code), the other calls of
    /// its batch answered.
    RateLimited,
    /// Leaves this account out of every transaction's trace.
    DropAccount(Address),
}

pub struct Block {
    pub number: u64,
    json: Value,
    traces: Vec<TracePrestate>,
    snapshot: Snapshot,
}

pub struct Mock {
    pub blocks: Vec<Block>,
    pub failures: Mutex<VecDeque<(&'static str, Failure)>>,
    calls: Mutex<BTreeMap<String, usize>>,
    /// HTTP requests or WebSocket messages received (a batch is one).
    requests: AtomicUsize,
}

impl Mock {
    pub fn serving(dirs: &[PathBuf]) -> Arc<Self> {
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
        Arc::new(Self {
            blocks,
            failures: Mutex::default(),
            calls: Mutex::default(),
            requests: AtomicUsize::new(0),
        })
    }

    pub fn fail(&self, method: &'static str, failure: Failure) {
        self.failures.lock().unwrap().push_back((method, failure));
    }

    pub fn calls(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
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

    /// The answer to one JSON-RPC message: a call or a batch of calls.
    fn answer_body(&self, body: &[u8]) -> Result<Value, Failure> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request: Value = serde_json::from_slice(body).unwrap();
        let one = |r: &Value| -> Result<Value, Failure> {
            Ok(match self.answer(r["method"].as_str().unwrap(), &r["params"]) {
                Ok(result) => json!({"jsonrpc": "2.0", "id": r["id"], "result": result}),
                Err(Failure::RateLimited) => json!({"jsonrpc": "2.0", "id": r["id"],
                    "error": {"code": -32005, "message": "rate limit exceeded"}}),
                Err(failure) => return Err(failure),
            })
        };
        match &request {
            Value::Array(batch) => {
                batch.iter().map(one).collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
            single => one(single),
        }
    }

    /// One WebSocket connection: each text message is answered in turn. A slow answer is
    /// never sent (the client times out); other failures have no WebSocket form.
    fn handle_ws(&self, stream: TcpStream) {
        let mut socket = tungstenite::accept(stream).unwrap();
        while let Ok(message) = socket.read() {
            let tungstenite::Message::Text(text) = message else { continue };
            match self.answer_body(text.as_bytes()) {
                Ok(answer) => {
                    let _ = socket.send(tungstenite::Message::Text(answer.to_string().into()));
                }
                Err(Failure::Slow(_)) => {}
                Err(failure) => panic!("{failure:?} has no WebSocket form in the mock"),
            }
        }
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
        let answer = self.answer_body(&body);
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
            Err(Failure::DropAccount(_) | Failure::RateLimited) => unreachable!("applied above"),
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
    }

    /// Serves HTTP on a loopback port until the test ends; returns the URL.
    pub fn start(self: &Arc<Self>) -> String {
        self.serve("http", Self::handle)
    }

    /// Serves WebSocket on a loopback port until the test ends; returns the URL.
    pub fn start_ws(self: &Arc<Self>) -> String {
        self.serve("ws", Self::handle_ws)
    }

    fn serve(self: &Arc<Self>, scheme: &str, handle: fn(&Self, TcpStream)) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let mock = self.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let mock = mock.clone();
                thread::spawn(move || handle(&mock, stream.unwrap()));
            }
        });
        url
    }
}
