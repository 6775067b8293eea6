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
use alloy_sol_types::SolCall;
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{block_env, mainnet_spec, tx_env, BlockInput, BlockOutput, InMemoryStorage};
use parevm_compliance::layout::{Credential, RegistryState};
use parevm_compliance::{Claim, ComplianceFile, ModeName};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::defi::{
    allowance_slot, balance_slot, gated_pair_storage, pair_storage, Artifact, IRegistry, IRouter,
    IToken,
};
use crate::synthetic::{contracts, ether, Asm, BASE_FEE, GAS_PRICE, PRIORITY_FEE};
use crate::MAINNET_CHAIN_ID;

/// What kind of transactions a synthetic block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// Plain ETH transfers to fresh recipients (or, for hot transactions, one recipient).
    Transfers,
    /// ERC-20 `transfer`s of one token to fresh recipients (or one hot recipient).
    Erc20,
    /// Swaps through the router on constant-product pools (hot transactions use pool 0).
    Swaps,
    /// A mix: ETH and ERC-20 transfers, swaps, storage-heavy and counter calls, deployments.
    Mixed,
    /// Swaps on gated pools by senders of whom most hold a KYC credential, with credential
    /// issuances and revocations interleaved (run with the `compliance` of the block).
    Gated,
}

impl WorkloadKind {
    /// Every kind, in the order the benchmark suite runs them.
    pub const ALL: [WorkloadKind; 5] = [
        WorkloadKind::Transfers,
        WorkloadKind::Erc20,
        WorkloadKind::Swaps,
        WorkloadKind::Mixed,
        WorkloadKind::Gated,
    ];

    /// The kind's name (`transfers`, `erc20`, `swaps`, `mixed`, `gated`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Transfers => "transfers",
            Self::Erc20 => "erc20",
            Self::Swaps => "swaps",
            Self::Mixed => "mixed",
            Self::Gated => "gated",
        }
    }

    /// Typical gas used by one transaction of this kind (measured on generated blocks), to
    /// turn a gas budget into a transaction count.
    pub fn typical_gas(self) -> u64 {
        match self {
            Self::Transfers => 21_000,
            Self::Erc20 => 51_000,
            Self::Swaps => 80_000,
            Self::Mixed => 46_000,
            Self::Gated => 77_000,
        }
    }
}

/// How big a synthetic block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// This many transactions.
    Transactions(usize),
    /// About this much gas used (the kind's typical gas per transaction decides the count).
    Gas(u64),
}

/// Parameters of a synthetic block.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// The kind of transactions.
    pub kind: WorkloadKind,
    /// Number of transactions or gas.
    pub size: Size,
    /// Number of sending accounts.
    pub accounts: usize,
    /// Fraction of transactions that touch a few hot locations (one recipient, one slot,
    /// one pool).
    pub hot_ratio: f64,
    /// Number of pools of the swap workloads.
    pub pools: usize,
    /// Seed of the deterministic generator.
    pub seed: u64,
}

impl Workload {
    /// `kind` with `transactions` transactions, 1,000 accounts, 100 pools, no hot
    /// transactions, seed 1.
    pub fn new(kind: WorkloadKind, transactions: usize) -> Self {
        Self {
            kind,
            size: Size::Transactions(transactions),
            accounts: 1_000,
            hot_ratio: 0.0,
            pools: 100,
            seed: 1,
        }
    }

    /// The number of transactions the block will have.
    pub fn transactions(&self) -> usize {
        match self.size {
            Size::Transactions(n) => n,
            Size::Gas(gas) => {
                usize::try_from(gas.div_ceil(self.kind.typical_gas())).unwrap_or(usize::MAX)
            }
        }
    }
}

/// A generated block: pre-state, what the engine executes, and the transactions (signed
/// only when written out: signing thousands of transactions costs seconds).
#[derive(Clone, Debug)]
pub struct GeneratedBlock {
    /// The pre-state.
    pub storage: InMemoryStorage,
    /// The block as the engine executes it.
    pub block: BlockInput,
    /// The transactions, unsigned, in order.
    pub unsigned: Vec<TxEip1559>,
    /// Index of each transaction's signing key (see [`GeneratedBlock::signed`]).
    signers: Vec<usize>,
    /// The generator's seed (keys derive from it).
    seed: u64,
    /// Their senders.
    pub senders: Vec<Address>,
    /// The header fields known before execution (number, timestamp, beneficiary, ...).
    pub header: Header,
    /// The compliance configuration the block is meant to run with (gated workloads).
    pub compliance: Option<ComplianceFile>,
}

impl GeneratedBlock {
    /// The transactions, signed (in parallel).
    pub fn signed(&self) -> Vec<TxEnvelope> {
        use rayon::prelude::*;
        let keys: Vec<PrivateKeySigner> = {
            let max = self.signers.iter().copied().max().map_or(0, |m| m + 1);
            (0..max).into_par_iter().map(|i| signer(self.seed, i)).collect()
        };
        self.unsigned
            .par_iter()
            .zip(self.signers.par_iter())
            .map(|(tx, &key)| {
                let signature = keys[key]
                    .sign_hash_sync(&tx.signature_hash())
                    .expect("signing with a valid key cannot fail");
                TxEnvelope::from(tx.clone().into_signed(signature))
            })
            .collect()
    }
}

/// Address of the storage-heavy contract of the mixed workload.
pub const SLOT_ADDER: Address = Address::repeat_byte(0x51);
/// Address of the counter contract of the mixed workload.
pub const COUNTER: Address = Address::repeat_byte(0xc0);
/// Beneficiary of synthetic blocks.
pub const BENEFICIARY: Address = Address::repeat_byte(0xbe);
/// The two tokens of the token and swap workloads.
pub const TOKEN_A: Address = Address::repeat_byte(0x7a);
/// The second token.
pub const TOKEN_B: Address = Address::repeat_byte(0x7b);
/// The swap router.
pub const ROUTER: Address = Address::repeat_byte(0x80);
/// The credential registry of the gated workload.
pub const REGISTRY: Address = Address::repeat_byte(0xc5);
/// Issuers of the gated workload's credentials.
const ISSUERS: usize = 4;
/// Share of the gated workload's senders holding a KYC credential before the block.
const CREDENTIALED_SHARE: f64 = 0.85;
/// Pool reserves of each token, and each sender's token balance.
const RESERVE: u128 = 1_000_000_000 * 10u128.pow(18);
const USER_TOKENS: u128 = 1_000_000 * 10u128.pow(18);

/// Address of pool `i`.
pub fn pool_address(i: usize) -> Address {
    let mut bytes = [0x9a; 20];
    bytes[12..].copy_from_slice(&(i as u64).to_be_bytes());
    Address::from(bytes)
}

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

/// One transaction before signing: sender index, target, value, input, gas limit.
struct Draft {
    from: usize,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas_limit: u64,
}

/// What the generator keeps while drafting transactions.
struct Drafter<'w> {
    workload: &'w Workload,
    rng: ChaCha8Rng,
    accounts: usize,
    /// Gated workload: the issuer of each sender's credential, if any.
    credential_issuer: Vec<Option<usize>>,
}

impl Drafter<'_> {
    fn hot(&mut self) -> bool {
        self.rng.random_bool(self.workload.hot_ratio.clamp(0.0, 1.0))
    }

    fn fresh_address(&mut self) -> Address {
        let mut bytes = [0u8; 20];
        self.rng.fill(&mut bytes);
        Address::from(bytes)
    }

    fn sender(&mut self) -> usize {
        self.rng.random_range(0..self.accounts)
    }

    fn transfer(&mut self) -> Draft {
        let to = if self.hot() { Address::repeat_byte(0x40) } else { self.fresh_address() };
        Draft {
            from: self.sender(),
            to: TxKind::Call(to),
            value: U256::from(self.rng.random_range(1..1_000_000_000u64)),
            input: Bytes::new(),
            gas_limit: 21_000,
        }
    }

    fn erc20(&mut self) -> Draft {
        let to = if self.hot() { Address::repeat_byte(0x41) } else { self.fresh_address() };
        let value = U256::from(self.rng.random_range(1..1_000_000u64));
        Draft {
            from: self.sender(),
            to: TxKind::Call(TOKEN_A),
            value: U256::ZERO,
            input: IToken::transferCall { to, value }.abi_encode().into(),
            gas_limit: 100_000,
        }
    }

    fn swap(&mut self, from: usize, recipient: Address) -> Draft {
        let pool =
            if self.hot() { 0 } else { self.rng.random_range(0..self.workload.pools.max(1)) };
        let token_in = if self.rng.random_bool(0.5) { TOKEN_A } else { TOKEN_B };
        let amount_in =
            U256::from(self.rng.random_range(1_000u64..1_000_000)) * U256::from(10u64.pow(12));
        Draft {
            from,
            to: TxKind::Call(ROUTER),
            value: U256::ZERO,
            input: IRouter::swapExactTokensForTokensCall {
                pair: pool_address(pool),
                tokenIn: token_in,
                amountIn: amount_in,
                amountOutMin: U256::ZERO,
                to: recipient,
            }
            .abi_encode()
            .into(),
            gas_limit: 200_000,
        }
    }

    fn mixed(&mut self, senders: &[Address]) -> Draft {
        match self.rng.random_range(0..10) {
            0..=2 => self.transfer(),
            3..=4 => self.erc20(),
            5..=6 => {
                let from = self.sender();
                self.swap(from, senders[from])
            }
            7 => {
                let mut data = [0u8; 64];
                let slot: u64 = if self.hot() { 0 } else { self.rng.random_range(1..1_000_000) };
                data[24..32].copy_from_slice(&slot.to_be_bytes());
                data[56..].copy_from_slice(&self.rng.random_range(1..1000u64).to_be_bytes());
                Draft {
                    from: self.sender(),
                    to: TxKind::Call(SLOT_ADDER),
                    value: U256::ZERO,
                    input: Bytes::copy_from_slice(&data),
                    gas_limit: 60_000,
                }
            }
            8 => Draft {
                from: self.sender(),
                to: TxKind::Call(COUNTER),
                value: U256::ZERO,
                input: Bytes::new(),
                gas_limit: 60_000,
            },
            _ => Draft {
                from: self.sender(),
                to: TxKind::Create,
                value: U256::ZERO,
                input: Asm::deployer(&contracts::counter()),
                gas_limit: 120_000,
            },
        }
    }

    /// A gated-workload transaction: mostly swaps, some issuances and revocations (by the
    /// credential's issuer, so that each issuer's transactions form their own chain).
    fn gated(&mut self, senders: &[Address], now: u64) -> Draft {
        let roll = self.rng.random_range(0..100);
        let subject = self.sender();
        let issuer_key = |i: usize| self.accounts + 1 + i;
        if roll < 4 {
            let issuer = self.rng.random_range(0..ISSUERS);
            self.credential_issuer[subject] = Some(issuer);
            return Draft {
                from: issuer_key(issuer),
                to: TxKind::Call(REGISTRY),
                value: U256::ZERO,
                input: IRegistry::issueCall {
                    subject: senders[subject],
                    claim: Claim::Kyc.id(),
                    expiresAt: now + 86_400,
                }
                .abi_encode()
                .into(),
                gas_limit: 100_000,
            };
        }
        if roll < 7 {
            if let Some(issuer) = self.credential_issuer[subject].take() {
                return Draft {
                    from: issuer_key(issuer),
                    to: TxKind::Call(REGISTRY),
                    value: U256::ZERO,
                    input: IRegistry::revokeCall {
                        subject: senders[subject],
                        claim: Claim::Kyc.id(),
                    }
                    .abi_encode()
                    .into(),
                    gas_limit: 100_000,
                };
            }
        }
        self.swap(subject, senders[subject])
    }
}

/// Generates the block described by `workload` (Cancun, mainnet chain id).
pub fn generate(workload: &Workload) -> GeneratedBlock {
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
    let kind = workload.kind;
    let gated = kind == WorkloadKind::Gated;
    let accounts = workload.accounts.max(1);
    // Senders 0..accounts; the gated workload adds its admin and issuers after them.
    let keys = accounts + if gated { 1 + ISSUERS } else { 0 };
    let senders: Vec<Address> = {
        use rayon::prelude::*;
        (0..keys).into_par_iter().map(|i| signer(workload.seed, i).address()).collect()
    };
    let mut drafter = Drafter {
        workload,
        rng: ChaCha8Rng::seed_from_u64(workload.seed),
        accounts,
        credential_issuer: vec![None; accounts],
    };

    let mut storage = InMemoryStorage::new();
    for address in &senders {
        storage.insert_account(*address, ether(1000), 0, Bytes::new(), []);
    }
    if matches!(kind, WorkloadKind::Mixed) {
        storage.insert_account(SLOT_ADDER, U256::ZERO, 1, contracts::slot_adder(), []);
        storage.insert_account(COUNTER, U256::ZERO, 1, contracts::counter(), []);
    }
    let pools = workload.pools.max(1);
    if !matches!(kind, WorkloadKind::Transfers) {
        // Every sender holds both tokens and lets the router spend them; every pool holds
        // its reserves.
        let mut slots = Vec::with_capacity(2 * accounts + pools);
        for sender in &senders[..accounts] {
            slots.push((balance_slot(*sender), U256::from(USER_TOKENS)));
            slots.push((allowance_slot(*sender, ROUTER), U256::MAX));
        }
        if kind != WorkloadKind::Erc20 {
            slots.extend((0..pools).map(|i| (balance_slot(pool_address(i)), U256::from(RESERVE))));
        }
        let code = Artifact::Token.runtime();
        storage.insert_account(TOKEN_A, U256::ZERO, 1, code.clone(), slots.clone());
        storage.insert_account(TOKEN_B, U256::ZERO, 1, code, slots);
    }
    if matches!(kind, WorkloadKind::Swaps | WorkloadKind::Mixed | WorkloadKind::Gated) {
        storage.insert_account(ROUTER, U256::ZERO, 1, Artifact::Router.runtime(), []);
        let code = if gated { Artifact::GatedPair.runtime() } else { Artifact::Pair.runtime() };
        for i in 0..pools {
            let slots = if gated {
                gated_pair_storage(TOKEN_A, TOKEN_B, RESERVE, RESERVE, REGISTRY)
            } else {
                pair_storage(TOKEN_A, TOKEN_B, RESERVE, RESERVE)
            };
            storage.insert_account(pool_address(i), U256::ZERO, 1, code.clone(), slots);
        }
    }
    if gated {
        let admin = senders[accounts];
        let mut registry = RegistryState::new(admin);
        for i in 0..ISSUERS {
            registry = registry.issuer(senders[accounts + 1 + i], Claim::mask(&Claim::ALL), true);
        }
        for (i, sender) in senders[..accounts].iter().enumerate() {
            if drafter.rng.random_bool(CREDENTIALED_SHARE) {
                let issuer = i % ISSUERS;
                drafter.credential_issuer[i] = Some(issuer);
                let credential = Credential {
                    issuer: senders[accounts + 1 + issuer],
                    expires_at: header.timestamp + 86_400,
                    revoked: false,
                };
                registry = registry.credential(*sender, Claim::Kyc.id(), credential);
            }
        }
        for i in 0..pools {
            registry = registry.policy(pool_address(i), Claim::Kyc.bit());
        }
        storage.insert_account(
            REGISTRY,
            U256::ZERO,
            1,
            Artifact::CredentialRegistry.runtime(),
            registry.slots().collect::<Vec<_>>(),
        );
    }

    let count = workload.transactions();
    let mut nonces = vec![0u64; keys];
    let mut unsigned = Vec::with_capacity(count);
    let mut signers = Vec::with_capacity(count);
    for _ in 0..count {
        let draft = match kind {
            WorkloadKind::Transfers => drafter.transfer(),
            WorkloadKind::Erc20 => drafter.erc20(),
            WorkloadKind::Swaps => {
                let from = drafter.sender();
                drafter.swap(from, senders[from])
            }
            WorkloadKind::Mixed => drafter.mixed(&senders),
            WorkloadKind::Gated => drafter.gated(&senders, header.timestamp),
        };
        unsigned.push(TxEip1559 {
            chain_id: MAINNET_CHAIN_ID,
            nonce: nonces[draft.from],
            gas_limit: draft.gas_limit,
            max_fee_per_gas: GAS_PRICE,
            max_priority_fee_per_gas: PRIORITY_FEE,
            to: draft.to,
            value: draft.value,
            access_list: Default::default(),
            input: draft.input,
        });
        nonces[draft.from] += 1;
        signers.push(draft.from);
    }
    let tx_senders: Vec<Address> = signers.iter().map(|&i| senders[i]).collect();

    let block = BlockInput {
        spec,
        chain_id: MAINNET_CHAIN_ID,
        env: block_env(&header, spec),
        transactions: unsigned
            .iter()
            .zip(&tx_senders)
            .map(|(tx, from)| tx_env(tx, *from))
            .collect(),
        parent_hash: header.parent_hash,
        parent_beacon_block_root: header.parent_beacon_block_root,
        withdrawals: Vec::new(),
        ommers: Vec::new(),
        unknown_ommers: 0,
        block_rules: true,
        deposit_contract: alloy_eips::eip6110::MAINNET_DEPOSIT_CONTRACT_ADDRESS,
    };
    let compliance = gated.then_some(ComplianceFile {
        registry: REGISTRY,
        mode: ModeName::Exclude,
        exclusion_budget: None,
    });
    GeneratedBlock {
        storage,
        block,
        unsigned,
        signers,
        seed: workload.seed,
        senders: tx_senders,
        header,
        compliance,
    }
}

/// One account of `prestate.json`.
#[derive(Serialize, Default)]
struct PrestateAccount {
    balance: U256,
    nonce: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<Bytes>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    storage: std::collections::BTreeMap<B256, B256>,
}

/// Writes `generated` as a snapshot folder (`block.json`, `prestate.json`, and
/// `compliance.json` for gated blocks), with the header
/// fields that execution determines (gas used, logs bloom, receipts root) taken from
/// `output`, the block's execution result. `prestate.json` lists every account the block's
/// transactions load, those that do not exist yet as empty accounts (the same to the EVM
/// from Spurious Dragon on), so that the snapshot passes `replay --strict`.
pub fn write_snapshot(
    dir: &Path,
    generated: &GeneratedBlock,
    output: &BlockOutput,
) -> std::io::Result<()> {
    let mut header = generated.header.clone();
    header.gas_used = output.gas_used;
    header.logs_bloom = output.logs_bloom();
    header.receipts_root = output.receipts_root();
    let signed = generated.signed();
    header.transactions_root = calculate_transaction_root(&signed);
    let hash = header.hash_slow();
    let transactions = signed
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
    let size = signed.iter().map(|t| t.encode_2718_len()).sum::<usize>();
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
    let absent = crate::analysis::analyze(&generated.storage, &generated.block)
        .map_err(std::io::Error::other)?
        .absent_accounts;
    for (_, address) in absent {
        accounts.insert(address, PrestateAccount::default());
    }
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
    // Every file is written under a temporary name first and renamed into place, `block.json`
    // last (it is what marks a folder as a snapshot): an interrupted write leaves the old
    // files or none, never a truncated one.
    let mut files = vec![("prestate.json", json(&accounts))];
    let compliance_path = dir.join(parevm_compliance::COMPLIANCE_FILE);
    match &generated.compliance {
        Some(compliance) => files.push((parevm_compliance::COMPLIANCE_FILE, json(compliance))),
        None if compliance_path.exists() => fs::remove_file(compliance_path)?,
        None => {}
    }
    files.push(("block.json", json(&block)));
    let temporary = |name: &str| dir.join(format!(".{name}.partial"));
    for (name, contents) in &files {
        fs::write(temporary(name), contents)?;
    }
    for (name, _) in &files {
        fs::rename(temporary(name), dir.join(name))?;
    }
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
