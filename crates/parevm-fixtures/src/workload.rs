//! Synthetic blocks with properly signed transactions, written in the same snapshot format
//! as real mainnet blocks so that `parevm replay` runs them.

use std::fs;
use std::path::Path;

use alloy_consensus::{
    proofs::calculate_transaction_root, Header, SignableTransaction, TxEip1559, TxEnvelope,
    EMPTY_OMMER_ROOT_HASH,
};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use alloy_rpc_types_eth::{Block, BlockTransactions, Transaction};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{block_env, mainnet_spec, tx_env, BlockInput, BlockOutput, InMemoryStorage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::synthetic::{contracts, ether, Asm, BASE_FEE, GAS_PRICE, PRIORITY_FEE};
use crate::MAINNET_CHAIN_ID;

/// What kind of transactions a synthetic block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Transfers, calls to a storage-heavy contract and to a counter, and deployments.
    Mixed,
    /// Plain ETH transfers only.
    Transfers,
}

/// Parameters of a synthetic block.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// The kind of transactions.
    pub kind: WorkloadKind,
    /// Number of transactions.
    pub transactions: usize,
    /// Number of sending accounts.
    pub accounts: usize,
    /// Fraction of transactions that touch a few hot locations (one recipient, one slot).
    pub hot_ratio: f64,
    /// Seed of the deterministic generator.
    pub seed: u64,
}

/// A generated block: pre-state, what the engine executes, and the signed transactions.
#[derive(Clone, Debug)]
pub struct GeneratedBlock {
    /// The pre-state.
    pub storage: InMemoryStorage,
    /// The block as the engine executes it.
    pub block: BlockInput,
    /// The signed transactions, in order.
    pub transactions: Vec<TxEnvelope>,
    /// Their senders.
    pub senders: Vec<Address>,
    /// The header fields known before execution (number, timestamp, beneficiary, ...).
    pub header: Header,
}

/// Address of the storage-heavy contract of the mixed workload.
pub const SLOT_ADDER: Address = Address::repeat_byte(0x51);
/// Address of the counter contract of the mixed workload.
pub const COUNTER: Address = Address::repeat_byte(0xc0);
/// Beneficiary of synthetic blocks.
pub const BENEFICIARY: Address = Address::repeat_byte(0xbe);

fn signer(seed: u64, index: usize) -> PrivateKeySigner {
    let mut material = [0u8; 16];
    material[..8].copy_from_slice(&seed.to_be_bytes());
    material[8..].copy_from_slice(&(index as u64).to_be_bytes());
    // A keccak output is a valid secp256k1 key with overwhelming probability; rehash if not.
    let mut key = keccak256(material);
    loop {
        match PrivateKeySigner::from_bytes(&key) {
            Ok(signer) => return signer,
            Err(_) => key = keccak256(key),
        }
    }
}

/// Generates the block described by `workload` (Cancun, mainnet chain id).
pub fn generate(workload: &Workload) -> GeneratedBlock {
    let mut rng = ChaCha8Rng::seed_from_u64(workload.seed);
    let header = Header {
        number: 20_000_000,
        timestamp: 1_720_000_000,
        beneficiary: BENEFICIARY,
        gas_limit: u64::MAX / 2,
        base_fee_per_gas: Some(BASE_FEE),
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        mix_hash: keccak256(workload.seed.to_be_bytes()),
        withdrawals_root: Some(alloy_trie::EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::ZERO),
        ..Default::default()
    };
    let spec = mainnet_spec(header.number, header.timestamp);
    debug_assert_eq!(spec, SpecId::CANCUN);

    let mut storage = InMemoryStorage::new();
    let accounts = workload.accounts.max(1);
    let signers: Vec<PrivateKeySigner> = (0..accounts).map(|i| signer(workload.seed, i)).collect();
    for s in &signers {
        storage.insert_account(s.address(), ether(1000), 0, Bytes::new(), []);
    }
    storage.insert_account(SLOT_ADDER, U256::ZERO, 1, contracts::slot_adder(), []);
    storage.insert_account(COUNTER, U256::ZERO, 1, contracts::counter(), []);
    let hot_recipient = Address::repeat_byte(0x40);

    let mut nonces = vec![0u64; accounts];
    let mut transactions = Vec::with_capacity(workload.transactions);
    let mut senders = Vec::with_capacity(workload.transactions);
    for _ in 0..workload.transactions {
        let from = rng.random_range(0..accounts);
        let hot = rng.random_bool(workload.hot_ratio.clamp(0.0, 1.0));
        let pick = match workload.kind {
            WorkloadKind::Transfers => 0,
            WorkloadKind::Mixed => rng.random_range(0..10),
        };
        let (to, value, input, gas_limit) = match pick {
            0..=4 => {
                let to = if hot {
                    hot_recipient
                } else {
                    let mut bytes = [0u8; 20];
                    rng.fill(&mut bytes);
                    Address::from(bytes)
                };
                (
                    TxKind::Call(to),
                    U256::from(rng.random_range(1..1_000_000_000u64)),
                    Bytes::new(),
                    21_000,
                )
            }
            5..=7 => {
                let mut data = [0u8; 64];
                let slot: u64 = if hot { 0 } else { rng.random_range(1..1_000_000) };
                data[24..32].copy_from_slice(&slot.to_be_bytes());
                data[56..].copy_from_slice(&rng.random_range(1..1000u64).to_be_bytes());
                (TxKind::Call(SLOT_ADDER), U256::ZERO, Bytes::copy_from_slice(&data), 60_000)
            }
            8 => (TxKind::Call(COUNTER), U256::ZERO, Bytes::new(), 60_000),
            _ => (TxKind::Create, U256::ZERO, Asm::deployer(&contracts::counter()), 120_000),
        };
        let tx = TxEip1559 {
            chain_id: MAINNET_CHAIN_ID,
            nonce: nonces[from],
            gas_limit,
            max_fee_per_gas: GAS_PRICE,
            max_priority_fee_per_gas: PRIORITY_FEE,
            to,
            value,
            access_list: Default::default(),
            input,
        };
        nonces[from] += 1;
        let signature = signers[from]
            .sign_hash_sync(&tx.signature_hash())
            .expect("signing with a valid key cannot fail");
        transactions.push(TxEnvelope::from(tx.into_signed(signature)));
        senders.push(signers[from].address());
    }

    let block = BlockInput {
        spec,
        chain_id: MAINNET_CHAIN_ID,
        env: block_env(&header, spec),
        transactions: transactions
            .iter()
            .zip(&senders)
            .map(|(tx, from)| tx_env(tx, *from))
            .collect(),
        parent_hash: header.parent_hash,
        parent_beacon_block_root: header.parent_beacon_block_root,
        withdrawals: Vec::new(),
        ommers: Vec::new(),
        unknown_ommers: 0,
        block_rewards: true,
    };
    GeneratedBlock { storage, block, transactions, senders, header }
}

/// One account of `prestate.json`.
#[derive(Serialize)]
struct PrestateAccount {
    balance: U256,
    nonce: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<Bytes>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    storage: std::collections::BTreeMap<B256, B256>,
}

/// Writes `generated` as a snapshot folder (`block.json`, `prestate.json`), with the header
/// fields that execution determines (gas used, logs bloom, receipts root) taken from
/// `output`, the block's execution result.
pub fn write_snapshot(
    dir: &Path,
    generated: &GeneratedBlock,
    output: &BlockOutput,
) -> std::io::Result<()> {
    let mut header = generated.header.clone();
    header.gas_used = output.gas_used;
    header.logs_bloom = output.logs_bloom();
    header.receipts_root = output.receipts_root();
    header.transactions_root = calculate_transaction_root(&generated.transactions);
    let hash = header.hash_slow();
    let transactions = generated
        .transactions
        .iter()
        .zip(&generated.senders)
        .enumerate()
        .map(|(index, (tx, from))| Transaction {
            inner: alloy_consensus::transaction::Recovered::new_unchecked(tx.clone(), *from),
            block_hash: Some(hash),
            block_number: Some(header.number),
            transaction_index: Some(index as u64),
            effective_gas_price: Some(u128::from(BASE_FEE) + PRIORITY_FEE),
            block_timestamp: None,
        })
        .collect();
    let size = generated.transactions.iter().map(|t| t.encode_2718_len()).sum::<usize>();
    let block = Block {
        header: alloy_rpc_types_eth::Header {
            hash,
            inner: header,
            total_difficulty: None,
            size: Some(U256::from(size)),
        },
        uncles: Vec::new(),
        transactions: BlockTransactions::Full(transactions),
        withdrawals: Some(Default::default()),
    };
    let mut accounts = std::collections::BTreeMap::new();
    for (address, account) in generated.storage.accounts() {
        let code = generated
            .storage
            .code(&account.basic.code_hash)
            .map(|c| c.original_bytes())
            .filter(|c| !c.is_empty());
        let storage =
            account.storage.iter().map(|(k, v)| (B256::from(*k), B256::from(*v))).collect();
        accounts.insert(
            *address,
            PrestateAccount {
                balance: account.basic.balance,
                nonce: account.basic.nonce,
                code,
                storage,
            },
        );
    }
    fs::create_dir_all(dir)?;
    let json = |value: &dyn erased::Json| value.to_pretty();
    fs::write(dir.join("block.json"), json(&block))?;
    fs::write(dir.join("prestate.json"), json(&accounts))?;
    Ok(())
}

mod erased {
    /// Pretty JSON of anything serialisable (keeps `write_snapshot` free of generics).
    pub trait Json {
        fn to_pretty(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_pretty(&self) -> String {
            serde_json::to_string_pretty(self).expect("snapshot types always serialise") + "\n"
        }
    }
}
