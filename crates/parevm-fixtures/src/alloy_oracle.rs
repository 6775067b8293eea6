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
use alloy_primitives::{Bytes, Signature};
use parevm::alloy::{ExecutionReport, ParallelBlockExecutor};
use parevm::revm::context::{CfgEnv, TxEnv};
use parevm::revm::database::states::bundle_state::BundleRetention;
use parevm::revm::database::{BundleState, State};
use parevm::revm::database_interface::WrapDatabaseRef;
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{BlockInput, Executor, Storage, StorageDatabase};

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

/// Runs `block` (transactions as revm environments) through both alloy-evm executors, the
/// parallel one at `threads` on a shared [`engine`]: `Ok(true)` if they agree, `Ok(false)`
/// if the block has a transaction no alloy envelope can carry, `Err` with the difference.
pub fn compare_block<S: Storage + std::fmt::Debug>(
    storage: &S,
    block: &BlockInput,
    threads: std::num::NonZeroUsize,
) -> Result<bool, String> {
    let Some(txs) = block
        .transactions
        .iter()
        .map(|tx| envelope_for(tx).map(|envelope| (tx.clone(), envelope)))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(false);
    };
    let alloy = AlloyBlock::of(block, ChainRules::UpTo(block.spec));
    let expected = run_sequential(storage, &alloy, txs.clone());
    let (got, _) = run_parallel(storage, &alloy, txs, engine(threads));
    match difference(&expected, &got) {
        None => Ok(true),
        Some(d) => Err(format!("alloy-evm executors differ at {threads} threads: {d}")),
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
