//! Block snapshots: a folder with `block.json` (an `eth_getBlockByNumber(n, true)` response),
//! `prestate.json` (geth's `prestateTracer` shape: the state every account the block touches
//! had after block n-1) and, where the block reads `BLOCKHASH`, `block_hashes.json`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rpc_types_eth::{Block, BlockTransactions, Transaction};
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{block_env, mainnet_spec, tx_env, BlockInput, InMemoryStorage};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Ethereum mainnet's chain id.
pub const MAINNET_CHAIN_ID: u64 = 1;

/// Why a snapshot could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{path}: invalid at `{field}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where in the document the error is (for example `transactions[3].gas`).
        field: String,
        /// What is wrong there.
        message: String,
    },
    /// The file parses but its content cannot be executed.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One account of `prestate.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrestateAccount {
    balance: U256,
    #[serde(default)]
    nonce: u64,
    #[serde(default)]
    code: Option<Bytes>,
    #[serde(default)]
    storage: Option<BTreeMap<U256, U256>>,
}

/// A loaded block snapshot, ready to execute.
#[derive(Debug)]
pub struct Snapshot {
    /// The folder it was loaded from.
    pub dir: PathBuf,
    /// The block's header: the oracle its execution is verified against.
    pub header: Header,
    /// The block's hash as given in `block.json`.
    pub hash: B256,
    /// What the engine executes.
    pub block: BlockInput,
    /// The pre-state.
    pub storage: InMemoryStorage,
    /// Time spent recovering the senders from the signatures (`None` when they were trusted,
    /// see [`Senders`]).
    pub sender_recovery: Option<std::time::Duration>,
}

/// Whether the loader checks each transaction's `from` and `hash` against its signature and
/// fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Senders {
    /// Recover every sender from its signature (in parallel) and fail on the first
    /// transaction whose `from` or `hash` does not match (the default: trust nothing that
    /// can be checked).
    #[default]
    Recover,
    /// Take `from` and `hash` as given, for speed on snapshots already checked.
    Trust,
}

/// Checks every transaction's `from` against the signer recovered from its signature (with
/// the low-`s` rule from Homestead on) and its `hash` against the hash of its encoding;
/// `Err` names the first transaction that fails.
fn check_senders(txs: &[Transaction], homestead: bool) -> Result<(), String> {
    use alloy_consensus::transaction::SignerRecoverable;
    use alloy_eips::eip2718::Encodable2718;
    use rayon::prelude::*;
    let failure = txs.par_iter().enumerate().find_map_first(|(index, tx)| {
        let envelope = tx.inner.inner();
        let hash = alloy_primitives::keccak256(envelope.encoded_2718());
        if hash != *envelope.hash() {
            return Some(format!(
                "transaction {index}: its fields hash to {hash}, not to its `hash` {}",
                envelope.hash()
            ));
        }
        let recovered =
            if homestead { envelope.recover_signer() } else { envelope.recover_signer_unchecked() };
        match recovered {
            Ok(signer) if signer == tx.inner.signer() => None,
            Ok(signer) => Some(format!(
                "transaction {index}: its signature is by {signer}, not by its `from` {}",
                tx.inner.signer()
            )),
            Err(e) => Some(format!("transaction {index}: invalid signature: {e}")),
        }
    });
    failure.map_or(Ok(()), Err)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, SnapshotError> {
    let text =
        fs::read(path).map_err(|source| SnapshotError::Io { path: path.to_owned(), source })?;
    parse_json(path, &text)
}

/// Parses `text` (the content of `path`, which names it in errors).
fn parse_json<T: DeserializeOwned>(path: &Path, text: &[u8]) -> Result<T, SnapshotError> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        SnapshotError::Parse {
            path: path.to_owned(),
            field: if field == "." { "(document)".into() } else { field },
            message: e.into_inner().to_string(),
        }
    })
}

/// Parses `block.json` into a mainnet [`BlockInput`] and its header, checking the senders
/// as `senders` says.
pub fn load_block(path: &Path, senders: Senders) -> Result<LoadedBlock, SnapshotError> {
    block_from_json(path, read_json(path)?, senders)
}

/// A parsed `block.json`.
pub struct LoadedBlock {
    /// The header.
    pub header: Header,
    /// The block's hash as given.
    pub hash: B256,
    /// What the engine executes.
    pub block: BlockInput,
    /// Time spent recovering senders (`None` if trusted).
    pub sender_recovery: Option<std::time::Duration>,
}

fn block_from_json(
    path: &Path,
    block: Block,
    senders: Senders,
) -> Result<LoadedBlock, SnapshotError> {
    let invalid = |message: String| SnapshotError::Invalid { path: path.to_owned(), message };
    let txs = match block.transactions {
        BlockTransactions::Full(txs) => txs,
        BlockTransactions::Hashes(hashes) if hashes.is_empty() => Vec::new(),
        BlockTransactions::Hashes(_) => {
            return Err(invalid(
                "`transactions` holds hashes only; a snapshot needs full transaction objects \
                 (eth_getBlockByNumber with `true`)"
                    .into(),
            ))
        }
        BlockTransactions::Uncle => return Err(invalid("`transactions` is missing".into())),
    };
    let header = block.header.inner;
    let spec = mainnet_spec(header.number, header.timestamp);
    let sender_recovery = match senders {
        Senders::Trust => None,
        Senders::Recover => {
            let start = std::time::Instant::now();
            check_senders(&txs, spec.is_enabled_in(SpecId::HOMESTEAD)).map_err(invalid)?;
            Some(start.elapsed())
        }
    };
    let transactions = txs.iter().map(|tx| tx_env(tx.inner.inner(), tx.inner.signer())).collect();
    let input = BlockInput {
        spec,
        chain_id: MAINNET_CHAIN_ID,
        env: block_env(&header, spec),
        transactions,
        parent_hash: header.parent_hash,
        parent_beacon_block_root: header.parent_beacon_block_root,
        withdrawals: block.withdrawals.map(|w| w.into_inner()).unwrap_or_default(),
        ommers: Vec::new(),
        unknown_ommers: block.uncles.len(),
        block_rules: true,
        deposit_contract: alloy_eips::eip6110::MAINNET_DEPOSIT_CONTRACT_ADDRESS,
    };
    Ok(LoadedBlock { header, hash: block.header.hash, block: input, sender_recovery })
}

/// The transactions of `block.json` as alloy's recovered envelopes (senders as given: load
/// the block with [`Senders::Recover`] to check them), for executors that take alloy's
/// types.
pub fn load_alloy_transactions(path: &Path) -> Result<Vec<AlloyTransaction>, SnapshotError> {
    alloy_transactions_of(path, read_json(path)?)
}

/// [`load_alloy_transactions`] from the content of a snapshot's `block.json`, the snapshot
/// named `name` (as [`parse_snapshot`] takes it).
pub fn parse_alloy_transactions(
    name: &str,
    block_json: &[u8],
) -> Result<Vec<AlloyTransaction>, SnapshotError> {
    let path = PathBuf::from(name).join("block.json");
    alloy_transactions_of(&path, parse_json(&path, block_json)?)
}

/// A transaction as alloy-evm's executors take it: the envelope and its sender.
pub type AlloyTransaction = alloy_consensus::transaction::Recovered<alloy_consensus::TxEnvelope>;

fn alloy_transactions_of(
    path: &Path,
    block: Block,
) -> Result<Vec<AlloyTransaction>, SnapshotError> {
    match block.transactions {
        BlockTransactions::Full(txs) => Ok(txs.into_iter().map(|tx| tx.inner).collect()),
        BlockTransactions::Hashes(hashes) if hashes.is_empty() => Ok(Vec::new()),
        _ => Err(SnapshotError::Invalid {
            path: path.to_owned(),
            message: "`transactions` does not hold full transaction objects".into(),
        }),
    }
}

/// Parses `prestate.json` (and `block_hashes.json` if given) into an in-memory state.
pub fn load_prestate(
    path: &Path,
    block_hashes: Option<&Path>,
) -> Result<InMemoryStorage, SnapshotError> {
    let accounts: BTreeMap<Address, PrestateAccount> = read_json(path)?;
    let mut storage = prestate_from_json(accounts);
    if let Some(path) = block_hashes {
        let hashes: BTreeMap<String, B256> = read_json(path)?;
        insert_block_hashes(&mut storage, path, hashes)?;
    }
    Ok(storage)
}

fn prestate_from_json(accounts: BTreeMap<Address, PrestateAccount>) -> InMemoryStorage {
    let mut storage = InMemoryStorage::new();
    for (address, account) in accounts {
        storage.insert_account(
            address,
            account.balance,
            account.nonce,
            account.code.unwrap_or_default(),
            account.storage.unwrap_or_default(),
        );
    }
    storage
}

fn insert_block_hashes(
    storage: &mut InMemoryStorage,
    path: &Path,
    hashes: BTreeMap<String, B256>,
) -> Result<(), SnapshotError> {
    for (number, hash) in hashes {
        let number = number.parse::<u64>().map_err(|_| SnapshotError::Invalid {
            path: path.to_owned(),
            message: format!("key `{number}` is not a block number"),
        })?;
        storage.insert_block_hash(number, hash);
    }
    Ok(())
}

/// Loads the snapshot in folder `dir`, recovering every sender from its signature.
pub fn load_snapshot(dir: &Path) -> Result<Snapshot, SnapshotError> {
    load_snapshot_with(dir, Senders::Recover)
}

/// Loads the snapshot in folder `dir`, checking the senders as `senders` says.
pub fn load_snapshot_with(dir: &Path, senders: Senders) -> Result<Snapshot, SnapshotError> {
    let block = load_block(&dir.join("block.json"), senders)?;
    let hashes = dir.join("block_hashes.json");
    let storage =
        load_prestate(&dir.join("prestate.json"), hashes.exists().then_some(hashes.as_path()))?;
    Ok(Snapshot::new(dir.to_owned(), block, storage))
}

/// Parses a snapshot from the contents of its files, checking the senders as `senders` says;
/// `name` labels it in errors (as if it were the folder).
pub fn parse_snapshot(
    name: &str,
    block_json: &[u8],
    prestate_json: &[u8],
    senders: Senders,
) -> Result<Snapshot, SnapshotError> {
    let dir = PathBuf::from(name);
    let block_path = dir.join("block.json");
    let block = block_from_json(&block_path, parse_json(&block_path, block_json)?, senders)?;
    let prestate_path = dir.join("prestate.json");
    let storage = prestate_from_json(parse_json(&prestate_path, prestate_json)?);
    Ok(Snapshot::new(dir, block, storage))
}

impl Snapshot {
    fn new(dir: PathBuf, block: LoadedBlock, storage: InMemoryStorage) -> Self {
        let LoadedBlock { header, hash, block, sender_recovery } = block;
        Self { dir, header, hash, block, storage, sender_recovery }
    }
}

/// The gas the header of the snapshot in `dir` says its block used (reads `block.json`
/// without building the block: for partitioning many snapshots by gas).
pub fn snapshot_gas(dir: &Path) -> Result<u64, SnapshotError> {
    #[derive(Deserialize)]
    struct GasUsed {
        #[serde(rename = "gasUsed")]
        gas_used: alloy_primitives::U64,
    }
    let block: GasUsed = read_json(&dir.join("block.json"))?;
    Ok(block.gas_used.to())
}

/// The snapshot folders under `path`: `path` itself if it holds a `block.json`, otherwise
/// its sub-folders that do, ordered by block number where the names are numbers.
pub fn discover_snapshots(path: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    if path.join("block.json").is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let entries =
        fs::read_dir(path).map_err(|source| SnapshotError::Io { path: path.to_owned(), source })?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SnapshotError::Io { path: path.to_owned(), source })?;
        let dir = entry.path();
        if dir.join("block.json").is_file() {
            dirs.push(dir);
        }
    }
    if dirs.is_empty() {
        return Err(SnapshotError::Invalid {
            path: path.to_owned(),
            message: "no block.json here or in any sub-folder".into(),
        });
    }
    let key = |p: &PathBuf| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (name.parse::<u64>().unwrap_or(u64::MAX), name)
    };
    dirs.sort_by_key(key);
    Ok(dirs)
}
