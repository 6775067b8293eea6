//! The correctness oracle nodes run: alloy-evm's [`EthBlockExecutor`] on revm's [`State`],
//! against parevm's [`ParallelBlockExecutor`] on the same state, compared receipt for
//! receipt and bundle for bundle (reverts included).

use std::borrow::Cow;

use alloy_consensus::transaction::Recovered;
use alloy_consensus::ReceiptEnvelope;
use alloy_consensus::{
    Header, Signed, TxEip1559, TxEip2930, TxEip4844, TxEip7702, TxEnvelope, TxLegacy,
};
use alloy_evm::block::{BlockExecutionResult, BlockExecutor, ExecutableTxParts};
use alloy_evm::eth::receipt_builder::AlloyReceiptBuilder;
use alloy_evm::eth::spec::{EthExecutorSpec, EthSpec};
use alloy_evm::eth::{EthBlockExecutionCtx, EthBlockExecutor};
use alloy_evm::{EthEvmFactory, EvmEnv, EvmFactory};
use alloy_hardforks::{EthereumHardfork, EthereumHardforks, ForkCondition};
use alloy_primitives::{Address, Bytes, Signature, U256};
use parevm::alloy::{ExecutionReport, ParallelBlockExecutor};
use parevm::revm::context::{CfgEnv, TxEnv};
use parevm::revm::database::states::bundle_state::BundleRetention;
use parevm::revm::database::{BundleState, State};
use parevm::revm::database_interface::WrapDatabaseRef;
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{AccountBasic, BlockInput, BlockOutput, Executor, Storage, StorageDatabase};

/// What one executor made of a block: its result (or error, as text) and the bundle the
/// state holds afterwards, with reverts.
#[derive(Debug, PartialEq)]
pub struct AlloyRun {
    /// Receipts, requests and gas, or the error.
    pub result: Result<BlockExecutionResult<ReceiptEnvelope>, String>,
    /// `State::take_bundle` after `merge_transitions(BundleRetention::Reverts)`.
    pub bundle: BundleState,
}

/// Everything alloy-evm's executor needs besides the state and the transactions.
#[derive(Clone, Debug)]
pub struct AlloyBlock {
    /// The EVM environment.
    pub env: EvmEnv,
    /// Parent hash, beacon root, withdrawals.
    pub parent_hash: alloy_primitives::B256,
    /// EIP-4788's root.
    pub parent_beacon_block_root: Option<alloy_primitives::B256>,
    /// Uncle headers (only their number and beneficiary matter).
    pub ommers: Vec<Header>,
    /// Withdrawals, if the block has any.
    pub withdrawals: Option<Vec<alloy_eips::eip4895::Withdrawal>>,
    /// The chain's rules.
    pub spec: ChainRules,
}

/// The fork rules alloy-evm's executor applies around the transactions.
#[derive(Clone, Debug)]
pub enum ChainRules {
    /// Ethereum mainnet's schedule (for real blocks).
    Mainnet(EthSpec),
    /// Every fork up to this one active from genesis, none after (for synthetic blocks,
    /// whose number and timestamp say nothing of their fork).
    UpTo(SpecId),
}

impl EthereumHardforks for ChainRules {
    fn ethereum_fork_activation(&self, fork: EthereumHardfork) -> ForkCondition {
        match self {
            Self::Mainnet(spec) => spec.ethereum_fork_activation(fork),
            Self::UpTo(spec) => parevm::ForksUpTo(*spec).ethereum_fork_activation(fork),
        }
    }
}

impl EthExecutorSpec for ChainRules {
    fn deposit_contract_address(&self) -> Option<alloy_primitives::Address> {
        match self {
            Self::Mainnet(spec) => spec.deposit_contract_address(),
            Self::UpTo(_) => None,
        }
    }
}

impl AlloyBlock {
    /// The same block as `block`, for alloy-evm: its environment and configuration,
    /// withdrawals and known uncles, under `spec`'s rules. A block from Cancun on without a
    /// beacon root gets the zero root (alloy-evm requires one).
    pub fn of(block: &BlockInput, spec: ChainRules) -> Self {
        let cfg: CfgEnv = block.cfg();
        let ommers = block
            .ommers
            .iter()
            .map(|o| Header { number: o.number, beneficiary: o.beneficiary, ..Default::default() })
            .collect();
        Self {
            env: EvmEnv { cfg_env: cfg, block_env: block.env.clone() },
            parent_hash: block.parent_hash,
            parent_beacon_block_root: block
                .parent_beacon_block_root
                .or_else(|| block.spec.is_enabled_in(SpecId::CANCUN).then_some(Default::default())),
            ommers,
            withdrawals: Some(block.withdrawals.clone()),
            spec,
        }
    }

    fn ctx(&self, transactions: usize) -> EthBlockExecutionCtx<'_> {
        EthBlockExecutionCtx {
            parent_hash: self.parent_hash,
            parent_beacon_block_root: self.parent_beacon_block_root,
            ommers: &self.ommers,
            withdrawals: self.withdrawals.as_deref().map(Cow::Borrowed),
            extra_data: Bytes::new(),
            tx_count_hint: Some(transactions),
            slot_number: None,
        }
    }
}

/// Runs `transactions` through alloy-evm's [`EthBlockExecutor`] on `storage`.
pub fn run_sequential<S, T>(storage: &S, block: &AlloyBlock, transactions: Vec<T>) -> AlloyRun
where
    S: Storage + std::fmt::Debug,
    T: ExecutableTxParts<TxEnv, TxEnvelope>,
{
    let mut state = new_state(storage);
    let n = transactions.len();
    let result = {
        let evm = EthEvmFactory::default().create_evm(&mut state, block.env.clone());
        EthBlockExecutor::new(evm, block.ctx(n), &block.spec, AlloyReceiptBuilder::default())
            .execute_block(transactions)
            .map_err(|e| e.to_string())
    };
    AlloyRun { result, bundle: take_bundle(state) }
}

/// Runs `transactions` through parevm's [`ParallelBlockExecutor`] on `engine`'s threads.
pub fn run_parallel<S, T>(
    storage: &S,
    block: &AlloyBlock,
    transactions: Vec<T>,
    engine: &Executor,
) -> (AlloyRun, Option<ExecutionReport>)
where
    S: Storage + std::fmt::Debug,
    T: ExecutableTxParts<TxEnv, TxEnvelope>,
{
    let mut state = new_state(storage);
    let n = transactions.len();
    let (result, report) = {
        let evm = EthEvmFactory::default().create_evm(&mut state, block.env.clone());
        let executor = ParallelBlockExecutor::new(
            engine,
            evm,
            block.ctx(n),
            &block.spec,
            AlloyReceiptBuilder::default(),
        );
        match executor.execute_block_with_report(transactions) {
            Ok((result, report)) => (Ok(result), Some(report)),
            Err(e) => (Err(e.to_string()), None),
        }
    };
    (AlloyRun { result, bundle: take_bundle(state) }, report)
}

/// Runs `transactions` through parevm's [`ParallelBlockExecutor`] one at a time, as a block
/// builder does: each through [`BlockExecutor::execute_transaction`], a transaction that
/// fails left out, then the block finished. Returns the run and the indices left out.
pub fn run_transaction_by_transaction<S, T>(
    storage: &S,
    block: &AlloyBlock,
    transactions: Vec<T>,
    engine: &Executor,
) -> (AlloyRun, Vec<usize>)
where
    S: Storage + std::fmt::Debug,
    T: ExecutableTxParts<TxEnv, TxEnvelope>,
{
    let mut state = new_state(storage);
    let n = transactions.len();
    let mut left_out = Vec::new();
    let result = {
        let evm = EthEvmFactory::default().create_evm(&mut state, block.env.clone());
        let mut executor = ParallelBlockExecutor::new(
            engine,
            evm,
            block.ctx(n),
            &block.spec,
            AlloyReceiptBuilder::default(),
        );
        let run = executor.apply_pre_execution_changes().map_err(|e| e.to_string());
        run.and_then(|()| {
            for (index, tx) in transactions.into_iter().enumerate() {
                if executor.execute_transaction(tx).is_err() {
                    left_out.push(index);
                }
            }
            executor.apply_post_execution_changes().map_err(|e| e.to_string())
        })
    };
    (AlloyRun { result, bundle: take_bundle(state) }, left_out)
}

/// Where `parallel` differs from `sequential`, if it does.
pub fn difference(sequential: &AlloyRun, parallel: &AlloyRun) -> Option<String> {
    if sequential.result != parallel.result {
        return Some(match (&sequential.result, &parallel.result) {
            (Ok(a), Ok(b)) => {
                let first = a.receipts.iter().zip(&b.receipts).position(|(x, y)| x != y);
                format!(
                    "results differ (gas {} vs {}, {} vs {} receipts, first differing receipt \
                     {first:?}, requests equal: {})",
                    a.gas_used,
                    b.gas_used,
                    a.receipts.len(),
                    b.receipts.len(),
                    a.requests == b.requests
                )
            }
            (a, b) => format!("sequential {a:?}, parallel {b:?}"),
        });
    }
    if sequential.bundle != parallel.bundle {
        let (a, b) = (&sequential.bundle, &parallel.bundle);
        let mut addresses: Vec<_> = a.state.keys().chain(b.state.keys()).collect();
        addresses.sort_unstable();
        addresses.dedup();
        for address in addresses {
            let (x, y) = (a.state.get(address), b.state.get(address));
            if x != y {
                return Some(format!("bundle account {address}: {y:?}, expected {x:?}"));
            }
        }
        if a.reverts != b.reverts {
            return Some(format!("bundle reverts: {:?}, expected {:?}", b.reverts, a.reverts));
        }
        return Some("bundle contracts or sizes differ".into());
    }
    None
}

/// Whether `state` holds storage at an account without code or nonce. A creation there
/// collides under EIP-7610's storage rule, which the engine applies (as geth does and the
/// consensus tests expect) and alloy-evm's `EthBlockExecutor` cannot (revm's `State` does
/// not know whether an account has storage), so the two may differ on such a block and
/// [`engine_difference`] does not apply to it.
pub fn has_eip7610_targets(state: &parevm::InMemoryStorage) -> bool {
    state.accounts().any(|(_, account)| {
        account.basic.nonce == 0
            && account.basic.code_hash == parevm::revm::primitives::KECCAK_EMPTY
            && !account.storage.is_empty()
    })
}

/// Where the engine's own output for a block (`Executor::execute`, sequential or parallel)
/// differs from alloy-evm's `EthBlockExecutor` on the same block, if it does: gas, receipts,
/// requests, and every account and storage slot either side changed, read after the block
/// (an account one side records as touched and the other leaves out compares by its
/// pre-state value). `skip` names accounts left out of the comparison.
pub fn engine_difference<S: Storage>(
    storage: &S,
    expected: &AlloyRun,
    output: &BlockOutput,
    skip: &[Address],
) -> Option<String> {
    let result = match &expected.result {
        Ok(result) => result,
        Err(e) => return Some(format!("alloy-evm failed ({e}), the engine did not")),
    };
    if result.gas_used != output.gas_used {
        return Some(format!("gas used {}, alloy-evm {}", output.gas_used, result.gas_used));
    }
    let receipts = output.receipts();
    if let Some(i) = (0..receipts.len().max(result.receipts.len()))
        .find(|&i| receipts.get(i) != result.receipts.get(i))
    {
        return Some(format!(
            "receipt {i}: {:?}, alloy-evm {:?}",
            receipts.get(i),
            result.receipts.get(i)
        ));
    }
    if output.requests != result.requests {
        return Some(format!("requests {:?}, alloy-evm {:?}", output.requests, result.requests));
    }
    let bundle = &expected.bundle.state;
    let mut addresses: Vec<&Address> = output.state.accounts.keys().chain(bundle.keys()).collect();
    addresses.sort_unstable();
    addresses.dedup();
    for address in addresses.into_iter().filter(|a| !skip.contains(a)) {
        let before = storage.basic(address).ok().flatten();
        let ours = output.state.account(address).unwrap_or(before);
        let theirs =
            bundle.get(address).map_or(before, |a| a.info.as_ref().map(AccountBasic::from));
        if ours != theirs {
            return Some(format!("account {address}: {ours:?}, alloy-evm {theirs:?}"));
        }
        let change = output.state.accounts.get(address);
        let account = bundle.get(address);
        let mut slots: Vec<U256> = change.iter().flat_map(|c| c.storage.keys().copied()).collect();
        slots.extend(account.iter().flat_map(|a| a.storage.keys().copied()));
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            let before = || storage.storage(address, &slot).unwrap_or_default();
            let ours = output.state.storage(address, &slot).unwrap_or_else(before);
            let theirs = account.and_then(|a| a.storage_slot(slot)).unwrap_or_else(before);
            if ours != theirs {
                return Some(format!("{address} slot {slot:#x}: {ours}, alloy-evm {theirs}"));
            }
        }
    }
    None
}

fn new_state<S: Storage + std::fmt::Debug>(
    storage: &S,
) -> State<WrapDatabaseRef<StorageDatabase<&S>>> {
    State::builder().with_database_ref(StorageDatabase(storage)).with_bundle_update().build()
}

fn take_bundle<DB: parevm::revm::Database>(mut state: State<DB>) -> BundleState {
    state.merge_transitions(BundleRetention::Reverts);
    state.take_bundle()
}

/// An alloy transaction with `tx`'s fields and sender (signature not checked), for blocks
/// built as revm environments: the executors execute `tx` and build receipts from this.
/// `None` where no alloy transaction has these fields (a blob or EIP-7702 transaction that
/// creates, an unknown type).
pub fn envelope_for(tx: &TxEnv) -> Option<Recovered<TxEnvelope>> {
    let signature = Signature::test_signature();
    let to = tx.kind;
    let address = to.to().copied();
    let envelope = match tx.tx_type {
        0 => TxEnvelope::Legacy(Signed::new_unhashed(
            TxLegacy {
                chain_id: tx.chain_id,
                nonce: tx.nonce,
                gas_price: tx.gas_price,
                gas_limit: tx.gas_limit,
                to,
                value: tx.value,
                input: tx.data.clone(),
            },
            signature,
        )),
        1 => TxEnvelope::Eip2930(Signed::new_unhashed(
            TxEip2930 {
                chain_id: tx.chain_id.unwrap_or(1),
                nonce: tx.nonce,
                gas_price: tx.gas_price,
                gas_limit: tx.gas_limit,
                to,
                value: tx.value,
                access_list: tx.access_list.clone(),
                input: tx.data.clone(),
            },
            signature,
        )),
        2 => TxEnvelope::Eip1559(Signed::new_unhashed(
            TxEip1559 {
                chain_id: tx.chain_id.unwrap_or(1),
                nonce: tx.nonce,
                gas_limit: tx.gas_limit,
                max_fee_per_gas: tx.gas_price,
                max_priority_fee_per_gas: tx.gas_priority_fee.unwrap_or_default(),
                to,
                value: tx.value,
                access_list: tx.access_list.clone(),
                input: tx.data.clone(),
            },
            signature,
        )),
        3 => TxEnvelope::Eip4844(Signed::new_unhashed(
            TxEip4844 {
                chain_id: tx.chain_id.unwrap_or(1),
                nonce: tx.nonce,
                gas_limit: tx.gas_limit,
                max_fee_per_gas: tx.gas_price,
                max_priority_fee_per_gas: tx.gas_priority_fee.unwrap_or_default(),
                to: address?,
                value: tx.value,
                access_list: tx.access_list.clone(),
                blob_versioned_hashes: tx.blob_hashes.clone(),
                max_fee_per_blob_gas: tx.max_fee_per_blob_gas,
                input: tx.data.clone(),
            }
            .into(),
            signature,
        )),
        4 => TxEnvelope::Eip7702(Signed::new_unhashed(
            TxEip7702 {
                chain_id: tx.chain_id.unwrap_or(1),
                nonce: tx.nonce,
                gas_limit: tx.gas_limit,
                max_fee_per_gas: tx.gas_price,
                max_priority_fee_per_gas: tx.gas_priority_fee.unwrap_or_default(),
                to: address?,
                value: tx.value,
                access_list: tx.access_list.clone(),
                authorization_list: tx
                    .authorization_list
                    .iter()
                    .filter_map(|a| a.as_ref().left().cloned())
                    .collect(),
                input: tx.data.clone(),
            },
            signature,
        )),
        _ => return None,
    };
    Some(Recovered::new_unchecked(envelope, tx.caller))
}

/// `block`'s transactions, each with the alloy transaction [`envelope_for`] gives, as the
/// executors take them; `None` if one has no envelope.
pub fn alloy_transactions(block: &BlockInput) -> Option<Vec<(TxEnv, Recovered<TxEnvelope>)>> {
    block
        .transactions
        .iter()
        .map(|tx| envelope_for(tx).map(|envelope| (tx.clone(), envelope)))
        .collect()
}

/// Runs `block` (transactions as revm environments) through both alloy-evm executors, the
/// parallel one at `threads` on a shared [`engine`], and compares the engine's own result
/// `ours` with `EthBlockExecutor`'s if given ([`engine_difference`]; state tests, which run
/// without the block-level rules alloy-evm applies, give none). `Ok(true)` if all agree,
/// `Ok(false)` if the block has a transaction no alloy envelope can carry, `Err` with the
/// difference.
pub fn compare_block<S: Storage + std::fmt::Debug>(
    storage: &S,
    block: &BlockInput,
    ours: Option<Result<&BlockOutput, &parevm::ExecutionError>>,
    threads: std::num::NonZeroUsize,
) -> Result<bool, String> {
    let Some(txs) = alloy_transactions(block) else {
        return Ok(false);
    };
    let alloy = AlloyBlock::of(block, ChainRules::UpTo(block.spec));
    let expected = run_sequential(storage, &alloy, txs.clone());
    let (got, _) = run_parallel(storage, &alloy, txs, engine(threads));
    if let Some(d) = difference(&expected, &got) {
        return Err(format!("alloy-evm executors differ at {threads} threads: {d}"));
    }
    let difference = match (ours, &expected.result) {
        (None, _) | (Some(Err(_)), Err(_)) => None,
        (Some(Ok(output)), _) => engine_difference(storage, &expected, output, &[]),
        (Some(Err(e)), Ok(_)) => Some(format!("the engine failed ({e}), alloy-evm did not")),
    };
    match difference {
        None => Ok(true),
        Some(d) => Err(format!("the engine differs from EthBlockExecutor: {d}")),
    }
}

/// A Block-STM executor for `threads` (1 to 8, clamped), made once per thread count and
/// kept: test runners and fuzzers execute thousands of blocks, and a thread pool per block
/// would dominate them.
pub fn engine(threads: std::num::NonZeroUsize) -> &'static Executor {
    static ENGINES: std::sync::OnceLock<Vec<Executor>> = std::sync::OnceLock::new();
    let engines = ENGINES.get_or_init(|| {
        (1..=8)
            .map(|t| {
                let threads = std::num::NonZeroUsize::new(t).expect("at least 1");
                let config = parevm::Config::default()
                    .with_threads(threads)
                    .with_mode(parevm::ExecutionMode::Parallel);
                Executor::new(config).expect("a thread pool of at most 8 threads")
            })
            .collect()
    });
    &engines[threads.get().clamp(1, 8) - 1]
}
