//! `parevm fetch`: snapshots from an archive node's JSON-RPC, each replayed and verified
//! against its header before it is declared fetched.
//!
//! Per block: `eth_getBlockByNumber(n, true)` is `block.json` as the node returns it;
//! `debug_traceBlockByNumber(n, prestateTracer)` gives each transaction's pre-state, and the
//! block's is the first occurrence of each account and slot ([`first_occurrences`]). The
//! block is then executed on that pre-state, system calls, rewards and withdrawals included,
//! with every read recorded: an account or slot the pre-state lacks is asked for at block
//! n-1 (`eth_getBalance`, `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt`) and
//! the block executed again until nothing is missing; each `BLOCKHASH` it reads is asked for
//! with `eth_getBlockByNumber(k, false)`. The folder is written under a temporary name,
//! loaded (senders recovered), executed and checked against the header, and only then
//! renamed into place: an interrupted fetch never leaves a half-written snapshot, and a
//! block already in place is verified and skipped.
//!
//! The node is treated as shared, rate-limited and flaky: a block's state calls go in
//! JSON-RPC batches (`--batch`), requests are bounded (`--concurrency`), each has a
//! timeout, and timeouts, HTTP 429 and 5xx, rate-limit errors, dropped connections and
//! malformed responses are retried with exponential backoff (a call failing alone in a
//! batch is asked again without the others); giving up names the block and the call.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_rpc_client::{ClientBuilder, RpcClient};
use alloy_transport::{RpcError, TransportErrorKind};
use clap::Args;
use parevm::{AccountBasic, Storage};
use parevm_fixtures::prestate_trace::{
    first_occurrences, per_transaction_until_error, TraceAccount, TracePrestate,
};
use parevm_fixtures::{load_snapshot, parse_snapshot, HeaderCheck, Senders};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Options of `parevm fetch`.
#[derive(Args)]
pub struct FetchArgs {
    /// The node's JSON-RPC endpoint (`http://`, `https://`, `ws://` or `wss://`); it must
    /// serve `debug_traceBlockByNumber` with geth's `prestateTracer` (an archive node).
    #[arg(long)]
    rpc: String,
    /// Folder to write one snapshot folder per block into (named by block number).
    #[arg(long)]
    out: PathBuf,
    /// Blocks: numbers, or inclusive ranges `A..B`.
    #[arg(required = true, value_name = "BLOCK|A..B")]
    blocks: Vec<String>,
    /// Calls in flight at once (blocks fetched at once too).
    #[arg(long, default_value = "4")]
    concurrency: NonZeroUsize,
    /// Retries of a failing call before giving up on its block.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Seconds a call may take before it counts as failed (and is retried).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// First retry delay in milliseconds, doubled on each further retry.
    #[arg(long, default_value_t = 250)]
    backoff_ms: u64,
    /// State calls (balances, nonces, code, slots, ancestors' hashes) sent together in one
    /// JSON-RPC batch; 1 sends each alone (for nodes that refuse batches).
    #[arg(long, default_value = "100")]
    batch: NonZeroUsize,
}

/// Parses `N` or `A..B` (inclusive) into block numbers.
fn parse_blocks(specs: &[String]) -> Result<Vec<u64>, String> {
    let mut blocks = BTreeSet::new();
    for spec in specs {
        let number = |s: &str| {
            s.trim().parse::<u64>().map_err(|_| format!("`{spec}` is not a block or a range A..B"))
        };
        match spec.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("`{spec}`: the range is empty"));
                }
                blocks.extend(a..=b);
            }
            None => {
                blocks.insert(number(spec)?);
            }
        }
    }
    Ok(blocks.into_iter().collect())
}

/// Counters of one fetch session.
#[derive(Default)]
struct Stats {
    /// JSON-RPC calls, each counted in every attempt.
    calls: AtomicU64,
    /// HTTP requests or WebSocket messages (a batch is one).
    requests: AtomicU64,
    retries: AtomicU64,
}

/// The node, with the session's bounds and retry policy.
struct Node {
    client: RpcClient,
    permits: Semaphore,
    retries: u32,
    timeout: Duration,
    backoff: Duration,
    stats: Stats,
    /// State calls per JSON-RPC batch.
    batch: usize,
}

/// Whether a failed call is worth repeating: the node or the path to it may recover.
fn retryable(error: &RpcError<TransportErrorKind>) -> bool {
    match error {
        RpcError::Transport(TransportErrorKind::HttpError(http)) => {
            http.status == 429 || http.status >= 500
        }
        RpcError::Transport(kind) => {
            kind.is_retry_err()
                || matches!(kind, TransportErrorKind::Custom(_) | TransportErrorKind::BackendGone)
        }
        RpcError::DeserError { .. } => true,
        RpcError::ErrorResp(payload) => payload.is_retry_err(),
        _ => false,
    }
}

/// Why one attempt at a call failed.
enum Failed {
    /// The node or the path to it may recover: try again after a pause.
    Again(String),
    /// Trying again cannot help.
    Final(String),
}

impl Failed {
    fn from_rpc(error: &RpcError<TransportErrorKind>) -> Self {
        if retryable(error) {
            Self::Again(error.to_string())
        } else {
            Self::Final(error.to_string())
        }
    }
}

/// The retry schedule of one call: exponential backoff, capped at 30 s.
struct Backoff<'a> {
    node: &'a Node,
    attempt: u32,
    delay: Duration,
}

impl Backoff<'_> {
    /// After a failed attempt at `what`: `Ok` once the pause is over, `Err` when the call
    /// has had all its tries (the message names the block and the call).
    async fn pause(&mut self, block: u64, what: &str, failed: Failed) -> Result<(), String> {
        let failure = match failed {
            Failed::Final(e) => return Err(format!("block {block}: {what}: {e}")),
            Failed::Again(e) => e,
        };
        if self.attempt == self.node.retries {
            return Err(format!(
                "block {block}: {what}: gave up after {} tries; last: {failure}",
                self.attempt + 1
            ));
        }
        self.node.stats.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(block, what, attempt = self.attempt, %failure, "retrying");
        tokio::time::sleep(self.delay).await;
        self.attempt += 1;
        self.delay = (self.delay * 2).min(Duration::from_secs(30));
        Ok(())
    }
}

impl Node {
    fn backoff(&self) -> Backoff<'_> {
        Backoff { node: self, attempt: 0, delay: self.backoff }
    }

    /// The answer to a call that timed out, as an attempt's failure.
    fn timed_out(&self) -> Failed {
        Failed::Again(format!("no answer within {:.1} s", self.timeout.as_secs_f64()))
    }

    /// Calls `method` for `block`'s sake, retrying what may pass on a second try.
    async fn call<R: alloy_json_rpc::RpcRecv>(
        &self,
        block: u64,
        method: &'static str,
        params: Value,
    ) -> Result<R, String> {
        let mut backoff = self.backoff();
        loop {
            let outcome = {
                let _permit = self.permits.acquire().await.expect("never closed");
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::timeout(self.timeout, self.client.request(method, params.clone()))
                    .await
            };
            let failed = match outcome {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(error)) => Failed::from_rpc(&error),
                Err(_) => self.timed_out(),
            };
            backoff.pause(block, method, failed).await?;
        }
    }

    /// Asks the state calls `asks` at block `parent` for `block`'s sake: one call, or one
    /// JSON-RPC batch for several. A batch that fails as a whole is sent again; calls in
    /// it that fail alone are sent again without the ones already answered.
    async fn ask(&self, block: u64, parent: &str, asks: Vec<Ask>) -> Result<Vec<Answer>, String> {
        if let [one] = asks.as_slice() {
            let value: Value = self.call(block, one.method(), one.params(parent)).await?;
            return one.answer(value).map(|a| vec![a]).map_err(|e| format!("block {block}: {e}"));
        }
        let mut answers: Vec<Option<Answer>> = asks.iter().map(|_| None).collect();
        let mut backoff = self.backoff();
        loop {
            let open: Vec<usize> = (0..asks.len()).filter(|&i| answers[i].is_none()).collect();
            let what = format!("a batch of {} state calls", open.len());
            let failed = {
                let _permit = self.permits.acquire().await.expect("never closed");
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.stats.calls.fetch_add(open.len() as u64, Ordering::Relaxed);
                let mut batch = self.client.new_batch();
                let waiters: Vec<_> = open
                    .iter()
                    .map(|&i| {
                        let ask = &asks[i];
                        batch
                            .add_call::<_, Value>(ask.method(), &ask.params(parent))
                            .expect("JSON values serialise")
                    })
                    .collect();
                match tokio::time::timeout(self.timeout, batch.send()).await {
                    Err(_) => Some(self.timed_out()),
                    Ok(Err(error)) => Some(Failed::from_rpc(&error)),
                    Ok(Ok(())) => {
                        let mut first = None;
                        for (&i, waiter) in open.iter().zip(waiters) {
                            let failed = match waiter.await {
                                Ok(value) => match asks[i].answer(value) {
                                    Ok(answer) => {
                                        answers[i] = Some(answer);
                                        continue;
                                    }
                                    Err(e) => Failed::Again(e),
                                },
                                Err(error) => match Failed::from_rpc(&error) {
                                    Failed::Again(e) => {
                                        Failed::Again(format!("{}: {e}", asks[i].method()))
                                    }
                                    Failed::Final(e) => {
                                        Failed::Final(format!("{}: {e}", asks[i].method()))
                                    }
                                },
                            };
                            // A final failure decides; otherwise the first is reported.
                            if first.is_none() || matches!(failed, Failed::Final(_)) {
                                first = Some(failed);
                            }
                        }
                        first
                    }
                }
            };
            match failed {
                None => return Ok(answers.into_iter().map(|a| a.expect("answered")).collect()),
                Some(failed) => backoff.pause(block, &what, failed).await?,
            }
        }
    }
}

/// One state call at the parent block.
#[derive(Clone, Copy)]
enum Ask {
    Balance(Address),
    Nonce(Address),
    Code(Address),
    Slot(Address, U256),
    /// The hash of block `k`, from its header.
    Hash(u64),
}

/// The answer to an [`Ask`].
enum Answer {
    Balance(Address, U256),
    Nonce(Address, u64),
    Code(Address, Bytes),
    Slot(Address, U256, U256),
    /// `None`: the node has no such block.
    Hash(u64, Option<B256>),
}

impl Ask {
    fn method(&self) -> &'static str {
        match self {
            Self::Balance(_) => "eth_getBalance",
            Self::Nonce(_) => "eth_getTransactionCount",
            Self::Code(_) => "eth_getCode",
            Self::Slot(..) => "eth_getStorageAt",
            Self::Hash(_) => "eth_getBlockByNumber",
        }
    }

    fn params(&self, parent: &str) -> Value {
        match *self {
            Self::Balance(a) | Self::Nonce(a) | Self::Code(a) => serde_json::json!([a, parent]),
            Self::Slot(a, slot) => serde_json::json!([a, B256::from(slot), parent]),
            Self::Hash(k) => serde_json::json!([hex(k), false]),
        }
    }

    /// Reads the node's answer; an answer of the wrong shape is an error naming the call.
    fn answer(&self, value: Value) -> Result<Answer, String> {
        let shape = |e: serde_json::Error| format!("{}: malformed answer: {e}", self.method());
        Ok(match *self {
            Self::Balance(a) => Answer::Balance(a, serde_json::from_value(value).map_err(shape)?),
            Self::Nonce(a) => {
                Answer::Nonce(a, serde_json::from_value::<U64>(value).map_err(shape)?.to())
            }
            Self::Code(a) => Answer::Code(a, serde_json::from_value(value).map_err(shape)?),
            Self::Slot(a, slot) => {
                Answer::Slot(a, slot, serde_json::from_value(value).map_err(shape)?)
            }
            Self::Hash(k) => {
                let header: Option<Value> = serde_json::from_value(value).map_err(shape)?;
                let hash = match header.and_then(|mut h| h.get_mut("hash").map(Value::take)) {
                    Some(hash) => Some(serde_json::from_value(hash).map_err(shape)?),
                    None => None,
                };
                Answer::Hash(k, hash)
            }
        })
    }
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

/// What an execution over the pre-state read that the pre-state does not hold.
#[derive(Default)]
struct Misses {
    accounts: BTreeSet<Address>,
    slots: BTreeSet<(Address, U256)>,
    block_hashes: BTreeSet<u64>,
}

/// The pre-state built so far, recording every read it cannot answer.
struct Recording<'a> {
    prestate: &'a parevm::InMemoryStorage,
    /// Accounts the node says do not exist at block n-1.
    absent: &'a BTreeSet<Address>,
    /// Slots known (listed in a trace or asked for).
    known_slots: &'a BTreeSet<(Address, U256)>,
    misses: Mutex<Misses>,
}

impl Storage for Recording<'_> {
    type Error = std::convert::Infallible;

    fn basic(&self, address: &Address) -> Result<Option<AccountBasic>, Self::Error> {
        let account = self.prestate.basic(address)?;
        if account.is_none() && !self.absent.contains(address) {
            self.misses.lock().expect("not poisoned").accounts.insert(*address);
        }
        Ok(account)
    }

    fn code_by_hash(
        &self,
        code_hash: &B256,
    ) -> Result<Option<parevm::revm::bytecode::Bytecode>, Self::Error> {
        self.prestate.code_by_hash(code_hash)
    }

    fn storage(&self, address: &Address, index: &U256) -> Result<U256, Self::Error> {
        if self.prestate.account(address).is_some()
            && !self.known_slots.contains(&(*address, *index))
        {
            self.misses.lock().expect("not poisoned").slots.insert((*address, *index));
        }
        self.prestate.storage(address, index)
    }

    fn has_storage(&self, address: &Address) -> Result<bool, Self::Error> {
        // The trace lists only the slots the block read, and a creation that collides with
        // an account's storage (EIP-7610) reads none. Such an account would be taken for one
        // without storage; the block would then fail its header check below, not pass.
        self.prestate.has_storage(address)
    }

    fn block_hash(&self, number: u64) -> Result<B256, Self::Error> {
        self.misses.lock().expect("not poisoned").block_hashes.insert(number);
        self.prestate.block_hash(number)
    }
}

/// A block's pre-state under construction.
#[derive(Default)]
struct Prestate {
    accounts: TracePrestate,
    /// Accounts whose pre-block state the node confirmed with state calls.
    confirmed: BTreeSet<Address>,
    absent: BTreeSet<Address>,
    known_slots: BTreeSet<(Address, U256)>,
}

impl Prestate {
    fn json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.accounts).expect("serialisable")
    }
}

/// Executes the block on `prestate` and returns what it read that is missing.
fn missing(block_json: &[u8], prestate: &Prestate, number: u64) -> Result<Misses, String> {
    let snapshot =
        parse_snapshot(&number.to_string(), block_json, &prestate.json(), Senders::Trust)
            .map_err(|e| format!("block {number}: {e}"))?;
    let recording = Recording {
        prestate: &snapshot.storage,
        absent: &prestate.absent,
        known_slots: &prestate.known_slots,
        misses: Mutex::default(),
    };
    // A failure (a sender not yet known, say) still shows what was missing.
    let _ = parevm_fixtures::sequential(&recording, &snapshot.block, None);
    Ok(recording.misses.into_inner().expect("not poisoned"))
}

/// Accounts the pre-state holds that may not have existed before the block: an account a
/// transaction creates (by a value transfer, say) is absent from that transaction's trace and
/// first shows up, changed, in a later one. Executing on the pre-state so far, any account
/// that a transaction sees as existing but that its trace from the node leaves out is such a
/// suspect, unless the node already confirmed it; the caller asks the node about each.
fn created_in_block(
    block_json: &[u8],
    prestate: &Prestate,
    traces: &[TracePrestate],
    number: u64,
) -> Result<Vec<Address>, String> {
    let snapshot =
        parse_snapshot(&number.to_string(), block_json, &prestate.json(), Senders::Trust)
            .map_err(|e| format!("block {number}: {e}"))?;
    let (mut ours, failed) = per_transaction_until_error(&snapshot.storage, &snapshot.block);
    if failed.is_some() {
        // The transaction that failed shows nothing; its sender and recipient are what a
        // wrong pre-state most often gets wrong (a nonce, a balance).
        if let Some(tx) = snapshot.block.transactions.get(ours.len()) {
            let involved = [Some(tx.caller), tx.kind.to().copied()];
            let account = TraceAccount::default();
            ours.push(involved.into_iter().flatten().map(|a| (a, account.clone())).collect());
        }
    }
    let mut suspects = BTreeSet::new();
    for (seen, node) in ours.iter().zip(traces) {
        suspects.extend(
            seen.keys()
                .filter(|a| !node.contains_key(*a) && !prestate.confirmed.contains(*a))
                .filter(|a| prestate.accounts.contains_key(*a)),
        );
    }
    Ok(suspects.into_iter().collect())
}

/// Fetches one block into `out/<number>`; `Ok(false)` if it was already there and verified.
async fn fetch_block(node: Arc<Node>, out: PathBuf, number: u64) -> Result<bool, String> {
    let dest = out.join(number.to_string());
    if dest.join("block.json").is_file() {
        let dir = dest.clone();
        tokio::task::spawn_blocking(move || verify(&dir))
            .await
            .expect("verification does not panic")
            .map_err(|e| {
                format!(
                    "block {number}: {} exists but {e}; remove it to fetch again",
                    dest.display()
                )
            })?;
        return Ok(false);
    }
    let block: Option<Value> =
        node.call(number, "eth_getBlockByNumber", serde_json::json!([hex(number), true])).await?;
    let block = block.ok_or_else(|| format!("block {number}: the node has no such block"))?;
    let block_json = serde_json::to_vec_pretty(&block).expect("serialisable");
    let traces: Vec<Value> = node
        .call(
            number,
            "debug_traceBlockByNumber",
            serde_json::json!([hex(number), {"tracer": "prestateTracer"}]),
        )
        .await?;
    let mut per_tx = Vec::with_capacity(traces.len());
    for (index, item) in traces.into_iter().enumerate() {
        if let Some(error) = item.get("error") {
            return Err(format!("block {number}: trace of transaction {index}: {error}"));
        }
        let result = item.get("result").cloned().unwrap_or(item);
        let trace: TracePrestate = serde_json::from_value(result).map_err(|e| {
            format!(
                "block {number}: trace of transaction {index} is not a prestateTracer result: {e}"
            )
        })?;
        per_tx.push(trace);
    }
    let accounts = first_occurrences(per_tx.iter().cloned());
    let known_slots = accounts
        .iter()
        .flat_map(|(a, account)| account.storage.keys().map(move |s| (*a, *s)))
        .collect();
    let mut prestate = Prestate { accounts, known_slots, ..Prestate::default() };
    let parent = hex(number.saturating_sub(1));
    let mut block_hashes = BTreeMap::new();
    for _round in 0..8 {
        let (json, state) = (block_json.clone(), std::mem::take(&mut prestate));
        let (misses, state) = tokio::task::spawn_blocking(move || {
            let misses = missing(&json, &state, number);
            (misses, state)
        })
        .await
        .expect("execution does not panic");
        prestate = state;
        let misses = misses?;
        let hashes: Vec<u64> =
            misses.block_hashes.into_iter().filter(|k| !block_hashes.contains_key(k)).collect();
        let mut suspects = Vec::new();
        if misses.accounts.is_empty() && misses.slots.is_empty() && hashes.is_empty() {
            let (json, state, traces) =
                (block_json.clone(), std::mem::take(&mut prestate), per_tx.clone());
            let (found, state) = tokio::task::spawn_blocking(move || {
                let found = created_in_block(&json, &state, &traces, number);
                (found, state)
            })
            .await
            .expect("execution does not panic");
            prestate = state;
            suspects = found?;
            if suspects.is_empty() {
                return write_verified(&out, &dest, number, &block_json, &prestate, &block_hashes);
            }
        }
        let mut asks = Vec::new();
        for address in misses.accounts.into_iter().chain(suspects) {
            asks.extend([Ask::Balance(address), Ask::Nonce(address), Ask::Code(address)]);
        }
        asks.extend(misses.slots.into_iter().map(|(address, slot)| Ask::Slot(address, slot)));
        asks.extend(hashes.into_iter().map(Ask::Hash));
        let mut calls = JoinSet::new();
        for chunk in asks.chunks(node.batch) {
            let (node, parent, chunk) = (node.clone(), parent.clone(), chunk.to_vec());
            calls.spawn(async move { node.ask(number, &parent, chunk).await });
        }
        let mut accounts: BTreeMap<Address, (U256, u64, Bytes)> = BTreeMap::new();
        while let Some(answers) = calls.join_next().await {
            for answer in answers.expect("calls do not panic")? {
                match answer {
                    Answer::Balance(address, balance) => {
                        accounts.entry(address).or_default().0 = balance;
                    }
                    Answer::Nonce(address, nonce) => accounts.entry(address).or_default().1 = nonce,
                    Answer::Code(address, code) => accounts.entry(address).or_default().2 = code,
                    Answer::Slot(address, slot, value) => {
                        prestate.known_slots.insert((address, slot));
                        if let Some(account) = prestate.accounts.get_mut(&address) {
                            account.storage.insert(slot, value);
                        }
                    }
                    Answer::Hash(k, Some(hash)) => {
                        block_hashes.insert(k, hash);
                    }
                    Answer::Hash(k, None) => {
                        return Err(format!(
                            "block {number}: the node has no block {k} (read by BLOCKHASH)"
                        ))
                    }
                }
            }
        }
        for (address, (balance, nonce, code)) in accounts {
            if balance.is_zero() && nonce == 0 && code.is_empty() {
                prestate.accounts.remove(&address);
                prestate.absent.insert(address);
            } else {
                prestate.confirmed.insert(address);
                // The state at the parent, keeping the slots the traces listed.
                let account = prestate.accounts.entry(address).or_default();
                account.balance = balance;
                account.nonce = nonce;
                account.code = (!code.is_empty()).then_some(code);
            }
        }
    }
    Err(format!("block {number}: its reads did not settle after 8 rounds of state calls"))
}

/// Loads the snapshot in `dir` (recovering senders), executes it and checks the header.
fn verify(dir: &Path) -> Result<(), String> {
    let snapshot = load_snapshot(dir).map_err(|e| e.to_string())?;
    let output = parevm_fixtures::sequential(&snapshot.storage, &snapshot.block, None)
        .map_err(|e| format!("does not execute: {e}"))?;
    let check = HeaderCheck::new(&snapshot.header, snapshot.block.spec, &output);
    if check.passed() {
        Ok(())
    } else {
        Err(format!("does not verify against its header: {}", check.mismatches().join("; ")))
    }
}

/// Writes the snapshot under a temporary name beside `dest`, verifies it and renames it.
fn write_verified(
    out: &Path,
    dest: &Path,
    number: u64,
    block_json: &[u8],
    prestate: &Prestate,
    block_hashes: &BTreeMap<u64, B256>,
) -> Result<bool, String> {
    let partial = out.join(format!(".{number}.partial-{}", std::process::id()));
    let io = |e: std::io::Error| format!("block {number}: {}: {e}", partial.display());
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial).map_err(io)?;
    fs::write(partial.join("prestate.json"), prestate.json()).map_err(io)?;
    if !block_hashes.is_empty() {
        let hashes: BTreeMap<String, B256> =
            block_hashes.iter().map(|(k, h)| (k.to_string(), *h)).collect();
        let json = serde_json::to_vec_pretty(&hashes).expect("serialisable");
        fs::write(partial.join("block_hashes.json"), json).map_err(io)?;
    }
    fs::write(partial.join("block.json"), block_json).map_err(io)?;
    if let Err(e) = verify(&partial) {
        let _ = fs::remove_dir_all(&partial);
        return Err(format!("block {number}: the fetched snapshot {e}"));
    }
    fs::rename(&partial, dest).map_err(|e| format!("block {number}: {}: {e}", dest.display()))?;
    Ok(true)
}

/// Removes temporary folders that an interrupted fetch left in `out`.
fn remove_partials(out: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(out)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') && name.to_string_lossy().contains(".partial-") {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Runs `parevm fetch`.
pub fn run(args: FetchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let blocks = parse_blocks(&args.blocks)?;
    if args.timeout.is_nan() || args.timeout <= 0.0 {
        return Err("--timeout must be positive".into());
    }
    fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    remove_partials(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let start = Instant::now();
    let progress = crate::progress::bar(blocks.len() as u64, "blocks");
    let (fetched, skipped, failed, stats) = runtime.block_on(async {
        let client = ClientBuilder::default()
            .connect(&args.rpc)
            .await
            .map_err(|e| format!("{}: cannot connect: {e}", args.rpc))?;
        let node = Arc::new(Node {
            client,
            permits: Semaphore::new(args.concurrency.get()),
            retries: args.retries,
            timeout: Duration::from_secs_f64(args.timeout),
            backoff: Duration::from_millis(args.backoff_ms),
            stats: Stats::default(),
            batch: args.batch.get(),
        });
        let (mut fetched, mut skipped, mut failed) = (0u64, 0u64, 0u64);
        let mut tasks = JoinSet::new();
        let mut pending = blocks.iter().copied();
        loop {
            while tasks.len() < args.concurrency.get() {
                let Some(number) = pending.next() else { break };
                let (node, out) = (node.clone(), args.out.clone());
                tasks.spawn(async move { (number, fetch_block(node, out, number).await) });
            }
            let Some(done) = tasks.join_next().await else { break };
            let (number, result) = done.expect("fetch tasks do not panic");
            progress.set_message(format!("block {number}"));
            match result {
                Ok(true) => fetched += 1,
                Ok(false) => skipped += 1,
                Err(e) => {
                    failed += 1;
                    progress.suspend(|| eprintln!("error: {e}"));
                }
            }
            progress.inc(1);
        }
        let stats = &node.stats;
        let stats = [&stats.calls, &stats.requests, &stats.retries]
            .map(|counter| counter.load(Ordering::Relaxed));
        Ok::<_, String>((fetched, skipped, failed, stats))
    })?;
    progress.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{} blocks: {fetched} fetched and verified, {skipped} already there (verified), {failed} \
         failed; {} calls in {} requests, {} retries; {seconds:.2} s, {:.2} blocks/s",
        blocks.len(),
        stats[0],
        stats[1],
        stats[2],
        (fetched + skipped) as f64 / seconds.max(1e-9)
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
