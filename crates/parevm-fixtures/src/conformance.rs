//! The Ethereum consensus tests (`ethereum/tests`) through both execution paths.
//!
//! - State tests: each (fork, data/gas/value index) case is a one-transaction block on the
//!   test's `pre` state, without block rewards; the post-state root and the logs hash must
//!   match, and a transaction marked `expectException` must be rejected with the state
//!   unchanged.
//! - Blockchain tests: each block executes on the running state with rewards, withdrawals
//!   and system calls; gas used, logs bloom, receipts root and state root must match the
//!   block's header, and the final state must equal `postState` account by account.
//!
//! Every case runs sequentially and with Block-STM, and the two must agree exactly. Cases
//! that cannot run are skipped with a named reason, never silently.

use std::collections::BTreeMap;
use std::fs;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use alloy_eips::eip4895::Withdrawal;
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use parevm::revm::context::CfgEnv;
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{AccountBasic, BlockInput, ExecutionError, InMemoryStorage, Ommer, Storage};
use rayon::prelude::*;
use revm::statetest_types::blockchain::{BlockchainTestCase, ForkSpec};
use revm::statetest_types::{SpecName, TestSuite, TestUnit};
use serde::Serialize;

use crate::alloy_oracle;
use crate::both_paths::both_paths;
use crate::state_root::state_root;

/// A case that did not pass.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The test file.
    pub file: PathBuf,
    /// The test's name in the file.
    pub test: String,
    /// The fork.
    pub fork: String,
    /// The case within the test: `d/g/v` indexes of a state test, or `block N`.
    pub case: String,
    /// What differed first.
    pub message: String,
}

/// A case that was not run, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skip {
    /// The test file.
    pub file: PathBuf,
    /// The test's name, or `*` for the whole file.
    pub test: String,
    /// The fork, or `*`.
    pub fork: String,
    /// Why it was not run.
    pub reason: String,
}

/// Pass, fail and skip counts.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Cases that passed through both paths.
    pub passed: usize,
    /// Cases that failed on either path.
    pub failed: usize,
    /// Cases not run.
    pub skipped: usize,
    /// Of the passed cases, those also run through alloy-evm's `EthBlockExecutor` and
    /// parevm's `ParallelBlockExecutor` and found identical (results and bundles); the
    /// others have a transaction no alloy envelope can carry (a blob or EIP-7702
    /// transaction that creates, say).
    pub alloy_identical: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.alloy_identical += other.alloy_identical;
    }
}

/// The results of one test file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileReport {
    /// The file.
    pub file: PathBuf,
    /// Its counts.
    pub counts: Counts,
    /// Its failures.
    pub failures: Vec<Failure>,
    /// Its skips.
    pub skips: Vec<Skip>,
}

/// All JSON files under `path` (or `path` itself), sorted.
pub fn discover(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(entry) = stack.pop() {
        if entry.is_dir() {
            for child in fs::read_dir(&entry)? {
                stack.push(child?.path());
            }
        } else if entry.extension().is_some_and(|e| e == "json") {
            files.push(entry);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs every test file in `files` (in parallel across files), each case through the
/// sequential path and through Block-STM with `threads` threads, and through both alloy-evm
/// executors, the parallel one at 1, `threads` or twice `threads` ([`alloy_threads`]).
pub fn run_files(
    files: &[PathBuf],
    threads: NonZeroUsize,
    progress: impl Fn() + Sync,
) -> Vec<FileReport> {
    files
        .par_iter()
        .map(|file| {
            let report = run_file(file, threads);
            progress();
            report
        })
        .collect()
}

/// The thread count of the alloy-evm comparison of a file's case number `case`: 1, `threads`
/// and twice `threads` in turn, so that the suite goes through `ParallelBlockExecutor` at
/// several thread counts for the price of one (the engine's own comparison runs at
/// `threads`).
fn alloy_threads(threads: NonZeroUsize, case: usize) -> NonZeroUsize {
    match case % 3 {
        0 => NonZeroUsize::MIN,
        1 => threads,
        _ => threads.saturating_mul(NonZeroUsize::new(2).expect("two")),
    }
}

/// Runs one test file.
pub fn run_file(file: &Path, threads: NonZeroUsize) -> FileReport {
    let mut report = FileReport { file: file.to_owned(), ..FileReport::default() };
    let fail = |report: &mut FileReport, test: &str, message: String| {
        report.counts.failed += 1;
        report.failures.push(Failure {
            file: file.to_owned(),
            test: test.into(),
            fork: "*".into(),
            case: "*".into(),
            message,
        });
    };
    let text = match fs::read(file) {
        Ok(text) => text,
        Err(e) => {
            fail(&mut report, "*", format!("cannot read: {e}"));
            return report;
        }
    };
    let value: serde_json::Value = match serde_json::from_slice(&text) {
        Ok(value) => value,
        Err(e) => {
            fail(&mut report, "*", format!("invalid JSON: {e}"));
            return report;
        }
    };
    let is_blockchain = value
        .as_object()
        .and_then(|tests| tests.values().next())
        .is_some_and(|test| test.get("blocks").is_some());
    if is_blockchain {
        match serde_json::from_value::<BTreeMap<String, BlockchainTestCase>>(value) {
            Ok(tests) => {
                for (name, test) in tests {
                    run_blockchain_test(&mut report, &name, &test, threads);
                }
            }
            Err(e) => fail(&mut report, "*", format!("not a blockchain test: {e}")),
        }
    } else {
        match serde_json::from_value::<TestSuite>(value) {
            Ok(suite) => {
                for (name, unit) in suite.0 {
                    run_state_test(&mut report, &name, &unit, threads);
                }
            }
            Err(e) if is_malformed_value(&e) => report.skips.push(Skip {
                file: file.to_owned(),
                test: "*".into(),
                fork: "*".into(),
                reason: "a value does not fit in 256 bits: the test is about transaction decoding, not execution".into(),
            }),
            Err(e) => fail(&mut report, "*", format!("not a state test: {e}")),
        }
    }
    report.counts.skipped += report.skips.len();
    report
}

fn is_malformed_value(error: &serde_json::Error) -> bool {
    error.to_string().contains("0x:bigint")
}

/// The pre-state of a test. State tests read `BLOCKHASH(n)` as the keccak of the decimal
/// number (geth's test convention); blockchain tests get the real hashes.
#[derive(Debug)]
struct TestStorage {
    state: InMemoryStorage,
    hashes: BTreeMap<u64, B256>,
}

impl Storage for TestStorage {
    type Error = std::convert::Infallible;
    fn basic(&self, address: &Address) -> Result<Option<AccountBasic>, Self::Error> {
        self.state.basic(address)
    }
    fn code_by_hash(
        &self,
        code_hash: &B256,
    ) -> Result<Option<parevm::revm::bytecode::Bytecode>, Self::Error> {
        self.state.code_by_hash(code_hash)
    }
    fn storage(&self, address: &Address, index: &U256) -> Result<U256, Self::Error> {
        self.state.storage(address, index)
    }
    fn has_storage(&self, address: &Address) -> Result<bool, Self::Error> {
        self.state.has_storage(address)
    }
    fn block_hash(&self, number: u64) -> Result<B256, Self::Error> {
        Ok(self.hashes.get(&number).copied().unwrap_or_else(|| keccak256(number.to_string())))
    }
}

fn spec_of(name: &SpecName) -> Result<SpecId, String> {
    match name {
        SpecName::Constantinople => {
            Err("revm has no Constantinople without the Petersburg fix (EIP-1283 was withdrawn)"
                .into())
        }
        SpecName::Unknown => Err("unknown fork name".into()),
        other => Ok(other.to_spec_id()),
    }
}

fn run_state_test(report: &mut FileReport, name: &str, unit: &TestUnit, threads: NonZeroUsize) {
    let mut pre = InMemoryStorage::new();
    for (address, account) in &unit.pre {
        pre.insert_account(
            *address,
            account.balance,
            account.nonce,
            account.code.clone(),
            account.storage.iter().map(|(k, v)| (*k, *v)),
        );
    }
    let storage = TestStorage { state: pre, hashes: BTreeMap::new() };
    let pre_root = state_root(&storage.state);
    let chain_id = unit.env.current_chain_id.map_or(1, |id| id.saturating_to());
    for (fork_name, cases) in &unit.post {
        let fork = format!("{fork_name:?}");
        let spec = match spec_of(fork_name) {
            Ok(spec) => spec,
            Err(reason) => {
                for _ in cases {
                    report.skips.push(Skip {
                        file: report.file.clone(),
                        test: name.into(),
                        fork: fork.clone(),
                        reason: reason.clone(),
                    });
                }
                continue;
            }
        };
        let mut cfg = CfgEnv::new().with_chain_id(chain_id).with_spec_and_mainnet_gas_params(spec);
        let env = unit.block_env(&mut cfg);
        for case in cases {
            let index =
                format!("d{}/g{}/v{}", case.indexes.data, case.indexes.gas, case.indexes.value);
            let outcome = match case.tx_env(unit) {
                Err(_) if case.expect_exception.is_some() => Ok(false),
                Err(e) => Err(format!("cannot build the transaction: {e}")),
                Ok(tx) => {
                    let block = BlockInput::new(spec, chain_id, env.clone(), vec![tx]);
                    let done = report.counts.passed + report.counts.failed;
                    let alloy_threads = alloy_threads(threads, done);
                    check_state_case(&storage, &block, threads, case, pre_root).and_then(|()| {
                        alloy_oracle::compare_block(&storage, &block, None, alloy_threads)
                    })
                }
            };
            match outcome {
                Ok(alloy) => {
                    report.counts.passed += 1;
                    report.counts.alloy_identical += usize::from(alloy);
                }
                Err(message) => {
                    report.counts.failed += 1;
                    report.failures.push(Failure {
                        file: report.file.clone(),
                        test: name.into(),
                        fork: fork.clone(),
                        case: index,
                        message,
                    });
                }
            }
        }
    }
}

fn check_state_case(
    storage: &TestStorage,
    block: &BlockInput,
    threads: NonZeroUsize,
    case: &revm::statetest_types::Test,
    pre_root: B256,
) -> Result<(), String> {
    let result = both_paths(storage, block, threads)?;
    match (&case.expect_exception, result) {
        (Some(_), Err(ExecutionError::InvalidTransaction { .. }))
        | (Some(_), Err(ExecutionError::BlockGasLimitExceeded { .. })) => {
            if pre_root != case.hash {
                return Err(format!(
                    "rejected, but the expected root {} is not the pre-state root {pre_root}",
                    case.hash
                ));
            }
            Ok(())
        }
        (Some(expected), Err(e)) => Err(format!("expected {expected}, got another error: {e}")),
        (Some(expected), Ok(_)) => {
            Err(format!("expected the exception {expected}, but it executed"))
        }
        (None, Err(e)) => Err(format!("unexpected error: {e}")),
        (None, Ok(output)) => {
            let logs = output
                .transactions
                .iter()
                .flat_map(|t| t.logs().iter().cloned())
                .collect::<Vec<_>>();
            let logs_hash = keccak256(alloy_rlp::encode(&logs));
            if logs_hash != case.logs {
                return Err(format!("logs hash {logs_hash}, expected {}", case.logs));
            }
            let mut post = storage.state.clone();
            post.apply(&output.state);
            let root = state_root(&post);
            if root != case.hash {
                let detail = first_account_difference(
                    &post,
                    &case
                        .post_state
                        .iter()
                        .map(|(a, i)| {
                            (
                                *a,
                                (
                                    i.balance,
                                    i.nonce,
                                    i.code.clone(),
                                    i.storage.iter().map(|(k, v)| (*k, *v)).collect(),
                                ),
                            )
                        })
                        .collect(),
                );
                return Err(format!("state root {root}, expected {}{detail}", case.hash));
            }
            Ok(())
        }
    }
}

/// An expected account: balance, nonce, code, storage.
type ExpectedAccount = (U256, u64, Bytes, BTreeMap<U256, U256>);

/// The first field where `state` differs from `expected` (empty if `expected` is empty or
/// they agree).
fn first_account_difference(
    state: &InMemoryStorage,
    expected: &BTreeMap<Address, ExpectedAccount>,
) -> String {
    for (address, (balance, nonce, code, slots)) in expected {
        let Some(account) = state.account(address) else {
            return format!("; account {address} missing");
        };
        if account.basic.balance != *balance {
            return format!("; {address} balance {} expected {balance}", account.basic.balance);
        }
        if account.basic.nonce != *nonce {
            return format!("; {address} nonce {} expected {nonce}", account.basic.nonce);
        }
        if account.basic.code_hash != keccak256(code)
            && !(code.is_empty()
                && account.basic.code_hash == parevm::revm::primitives::KECCAK_EMPTY)
        {
            return format!("; {address} code differs");
        }
        for (slot, value) in slots {
            let actual = account.storage.get(slot).copied().unwrap_or_default();
            if actual != *value {
                return format!("; {address} slot {slot:#x} is {actual:#x}, expected {value:#x}");
            }
        }
        let extra = account
            .storage
            .iter()
            .find(|(slot, value)| !value.is_zero() && !slots.contains_key(slot));
        if let Some((slot, value)) = extra {
            return format!("; {address} slot {slot:#x} is {value:#x}, expected 0");
        }
    }
    if let Some(address) = state
        .accounts()
        .map(|(a, _)| *a)
        .find(|a| !expected.is_empty() && !expected.contains_key(a))
    {
        return format!("; unexpected account {address}");
    }
    String::new()
}

/// Transaction `index` of the RLP-encoded `block`, with its sender recovered from the
/// signature.
fn recovered_tx_env(block: &[u8], index: usize) -> Result<parevm::revm::context::TxEnv, String> {
    use alloy_consensus::transaction::SignerRecoverable;
    let block =
        <alloy_consensus::Block<alloy_consensus::TxEnvelope> as alloy_rlp::Decodable>::decode(
            &mut &block[..],
        )
        .map_err(|e| format!("cannot decode the block RLP: {e}"))?;
    let tx = block.body.transactions.get(index).ok_or("transaction missing from the RLP")?;
    let sender = tx.recover_signer().map_err(|e| format!("cannot recover the sender: {e}"))?;
    Ok(parevm::tx_env(tx, sender))
}

/// The spec of a block of a blockchain test, following transition forks.
fn fork_spec(network: ForkSpec, number: u64, timestamp: u64) -> Result<SpecId, String> {
    use ForkSpec::*;
    Ok(match network {
        Frontier => SpecId::FRONTIER,
        Homestead => SpecId::HOMESTEAD,
        EIP150 => SpecId::TANGERINE,
        EIP158 => SpecId::SPURIOUS_DRAGON,
        Byzantium => SpecId::BYZANTIUM,
        ConstantinopleFix => SpecId::PETERSBURG,
        Istanbul => SpecId::ISTANBUL,
        Berlin => SpecId::BERLIN,
        London => SpecId::LONDON,
        Paris => SpecId::MERGE,
        Shanghai => SpecId::SHANGHAI,
        Cancun => SpecId::CANCUN,
        Prague => SpecId::PRAGUE,
        Osaka => SpecId::OSAKA,
        FrontierToHomesteadAt5 => {
            if number >= 5 {
                SpecId::HOMESTEAD
            } else {
                SpecId::FRONTIER
            }
        }
        HomesteadToEIP150At5 => {
            if number >= 5 {
                SpecId::TANGERINE
            } else {
                SpecId::HOMESTEAD
            }
        }
        EIP158ToByzantiumAt5 => {
            if number >= 5 {
                SpecId::BYZANTIUM
            } else {
                SpecId::SPURIOUS_DRAGON
            }
        }
        ByzantiumToConstantinopleFixAt5 => {
            if number >= 5 {
                SpecId::PETERSBURG
            } else {
                SpecId::BYZANTIUM
            }
        }
        BerlinToLondonAt5 => {
            if number >= 5 {
                SpecId::LONDON
            } else {
                SpecId::BERLIN
            }
        }
        ParisToShanghaiAtTime15k => {
            if timestamp >= 15_000 {
                SpecId::SHANGHAI
            } else {
                SpecId::MERGE
            }
        }
        ShanghaiToCancunAtTime15k => {
            if timestamp >= 15_000 {
                SpecId::CANCUN
            } else {
                SpecId::SHANGHAI
            }
        }
        CancunToPragueAtTime15k => {
            if timestamp >= 15_000 {
                SpecId::PRAGUE
            } else {
                SpecId::CANCUN
            }
        }
        PragueToOsakaAtTime15k => {
            if timestamp >= 15_000 {
                SpecId::OSAKA
            } else {
                SpecId::PRAGUE
            }
        }
        other => {
            return Err(format!(
                "fork {other:?} is not supported (irregular state change, EOF or unreleased)"
            ))
        }
    })
}

fn run_blockchain_test(
    report: &mut FileReport,
    name: &str,
    test: &BlockchainTestCase,
    threads: NonZeroUsize,
) {
    let fork = format!("{:?}", test.network);
    let alloy_threads = alloy_threads(threads, report.counts.passed + report.counts.failed);
    let result = run_blocks(test, threads, alloy_threads);
    match result {
        Ok(Ok(alloy)) => {
            report.counts.passed += 1;
            report.counts.alloy_identical += usize::from(alloy);
        }
        Ok(Err((case, message))) => {
            report.counts.failed += 1;
            report.failures.push(Failure {
                file: report.file.clone(),
                test: name.into(),
                fork,
                case,
                message,
            });
        }
        Err(reason) => {
            report.skips.push(Skip { file: report.file.clone(), test: name.into(), fork, reason })
        }
    }
}

/// `Err` skips the test with a reason; `Ok(Err)` is a failure at a case; `Ok(Ok(alloy))`
/// says whether every block also went through both alloy-evm executors.
#[allow(clippy::type_complexity)]
fn run_blocks(
    test: &BlockchainTestCase,
    threads: NonZeroUsize,
    alloy_threads: NonZeroUsize,
) -> Result<Result<bool, (String, String)>, String> {
    let mut alloy = true;
    let mut state = InMemoryStorage::new();
    for (address, account) in &test.pre.0 {
        state.insert_account(
            *address,
            account.balance,
            account.nonce.saturating_to(),
            account.code.clone(),
            account.storage.iter().map(|(k, v)| (*k, *v)),
        );
    }
    let mut hashes = BTreeMap::new();
    hashes.insert(test.genesis_block_header.number.saturating_to(), test.genesis_block_header.hash);
    let mut storage = TestStorage { state, hashes };
    for (i, block) in test.blocks.iter().enumerate() {
        let case = format!("block {}", i + 1);
        if block.expect_exception.is_some() {
            return Err("invalid blocks (expectException) are outside the engine's scope: it does not validate headers".into());
        }
        let Some(header) = &block.block_header else {
            return Ok(Err((case, "block has no decoded header".into())));
        };
        let number: u64 = header.number.saturating_to();
        let timestamp: u64 = header.timestamp.saturating_to();
        let spec = fork_spec(test.network, number, timestamp)?;
        let mut cfg = CfgEnv::new().with_chain_id(1).with_spec_and_mainnet_gas_params(spec);
        let blob = header.excess_blob_gas.map(|excess| {
            parevm::blob_excess_gas_and_price(
                excess.saturating_to(),
                cfg.blob_base_fee_update_fraction(),
            )
        });
        cfg.set_max_blobs_per_tx(6);
        let mut transactions = Vec::new();
        for (index, tx) in block.transactions.iter().flatten().enumerate() {
            let built = match tx.sender {
                Some(_) => tx.to_tx_env(),
                // No `sender` given: decode the transaction from the block's RLP and
                // recover the sender from its signature.
                None => recovered_tx_env(&block.rlp, index),
            };
            match built {
                Ok(tx) => transactions.push(tx),
                Err(e) => return Ok(Err((case, format!("cannot build transaction {index}: {e}")))),
            }
        }
        let input = BlockInput {
            spec,
            chain_id: 1,
            env: header.to_block_env(blob),
            transactions,
            parent_hash: header.parent_hash,
            parent_beacon_block_root: header.parent_beacon_block_root,
            withdrawals: block
                .withdrawals
                .iter()
                .flatten()
                .map(|w| Withdrawal {
                    index: w.index.saturating_to(),
                    validator_index: w.validator_index.saturating_to(),
                    address: w.address,
                    amount: w.amount.saturating_to(),
                })
                .collect(),
            ommers: block
                .uncle_headers
                .iter()
                .flatten()
                .map(|u| Ommer { number: u.number.saturating_to(), beneficiary: u.coinbase })
                .collect(),
            unknown_ommers: 0,
            block_rules: true,
            deposit_contract: alloy_eips::eip6110::MAINNET_DEPOSIT_CONTRACT_ADDRESS,
        };
        let output = match both_paths(&storage, &input, threads) {
            Err(message) => return Ok(Err((case, message))),
            Ok(Err(e)) => return Ok(Err((case, format!("execution failed: {e}")))),
            Ok(Ok(output)) => output,
        };
        // The engine against EthBlockExecutor too, where EIP-7610 cannot separate them.
        let compared = (!alloy_oracle::has_eip7610_targets(&storage.state)).then_some(Ok(&output));
        match alloy_oracle::compare_block(&storage, &input, compared, alloy_threads) {
            Ok(compared) => alloy &= compared,
            Err(message) => return Ok(Err((case, message))),
        }
        if output.gas_used != header.gas_used.saturating_to::<u64>() {
            return Ok(Err((
                case,
                format!("gas used {}, header {}", output.gas_used, header.gas_used),
            )));
        }
        if output.logs_bloom().as_slice() != header.bloom.as_ref() {
            return Ok(Err((case, "logs bloom differs from the header".into())));
        }
        if spec.is_enabled_in(SpecId::BYZANTIUM) && output.receipts_root() != header.receipt_trie {
            return Ok(Err((
                case,
                format!("receipts root {}, header {}", output.receipts_root(), header.receipt_trie),
            )));
        }
        if let Some(expected) = header.requests_hash {
            let hash = output.requests.requests_hash();
            if hash != expected {
                return Ok(Err((case, format!("requests hash {hash}, header {expected}"))));
            }
        }
        storage.state.apply(&output.state);
        let root = state_root(&storage.state);
        if root != header.state_root {
            return Ok(Err((case, format!("state root {root}, header {}", header.state_root))));
        }
        storage.hashes.insert(number, header.hash);
    }
    if let Some(post) = &test.post_state {
        let expected = post
            .iter()
            .map(|(a, acc)| {
                (
                    *a,
                    (acc.balance, acc.nonce.saturating_to(), acc.code.clone(), acc.storage.clone()),
                )
            })
            .collect();
        let detail = first_account_difference(&storage.state, &expected);
        if !detail.is_empty() {
            return Ok(Err(("postState".into(), detail.trim_start_matches("; ").into())));
        }
    }
    Ok(Ok(alloy))
}
