//! What a block allows: the dependency graph of its transactions, from their actual read
//! and write sets in a sequential run, and the speedup an ideal scheduler could reach.
//!
//! Transaction `j` depends on `i < j` if `j` reads a location (an account's balance, nonce
//! and code, or a storage slot) whose last writer before `j` is `i`. The beneficiary's fee
//! credit is left out, as the engine defers it (every transaction would otherwise depend on
//! the previous one); everything else counts as read if revm loaded it and as written if it
//! changed. The bound is list scheduling of the transactions, in block order, on `k`
//! workers with the measured per-transaction times: each starts when a worker is free and
//! its predecessors have finished. Block-STM cannot beat it on the same machine except by
//! noise; it tells how far the engine is from what the block allows.

use std::time::Instant;

use std::sync::Arc;

use alloy_primitives::map::{HashMap, HashSet};
use alloy_primitives::{Address, U256};
use parevm::revm::context::{BlockEnv, CfgEnv, Context, Journal, TxEnv};
use parevm::revm::database::State;
use parevm::revm::database_interface::bal::EvmDatabaseError;
use parevm::revm::database_interface::WrapDatabaseRef;
use parevm::revm::state::EvmState;
use parevm::revm::{Database, DatabaseCommit, ExecuteEvm, MainBuilder};
use parevm::{BlockInput, ExecutionError, Location, Storage, StorageDatabase, StorageError};

/// revm's `State` over the block's pre-state: the transactions' state so far.
pub(crate) type BlockState<'s, S> = State<WrapDatabaseRef<StorageDatabase<&'s S>>>;

/// The engine's error for a failed read of a [`BlockState`].
pub(crate) fn read_error(error: EvmDatabaseError<StorageError>) -> ExecutionError {
    match error {
        EvmDatabaseError::Database(e) => ExecutionError::Storage(e),
        // No block access list is configured.
        EvmDatabaseError::Bal(e) => ExecutionError::Internal(e.to_string()),
    }
}

/// A state location, for dependency tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(Address),
    Slot(Address, U256),
}

/// The dependency structure of one block.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// Number of transactions.
    pub transactions: usize,
    /// Gas used by each transaction.
    pub gas: Vec<u64>,
    /// Measured sequential execution time of each transaction, in seconds.
    pub times: Vec<f64>,
    /// For each transaction, the transactions it depends on.
    pub predecessors: Vec<Vec<usize>>,
    /// Accounts the transactions loaded that the storage does not hold (other than contracts
    /// they created), each with the first transaction that loaded it, in block order. In a
    /// snapshot that lists every account its block touches, an entry here is a defect of the
    /// snapshot; in one that leaves out accounts that did not exist yet, these are those
    /// accounts, and also any that the snapshot lost.
    pub absent_accounts: Vec<(usize, Address)>,
}

impl Analysis {
    /// The longest dependency chain, in transactions.
    pub fn longest_chain(&self) -> usize {
        self.chain(|_| 1.0) as usize
    }

    /// The longest dependency chain, weighted by gas.
    pub fn longest_chain_gas(&self) -> u64 {
        self.chain(|i| self.gas[i] as f64) as u64
    }

    fn chain(&self, weight: impl Fn(usize) -> f64) -> f64 {
        let mut depth = vec![0.0f64; self.transactions];
        for j in 0..self.transactions {
            let before = self.predecessors[j].iter().map(|&i| depth[i]).fold(0.0, f64::max);
            depth[j] = before + weight(j);
        }
        depth.into_iter().fold(0.0, f64::max)
    }

    /// Share of transactions that depend on no other.
    pub fn independent_share(&self) -> f64 {
        if self.transactions == 0 {
            return 1.0;
        }
        let free = self.predecessors.iter().filter(|p| p.is_empty()).count();
        free as f64 / self.transactions as f64
    }

    /// The list-scheduling bound on the speedup with `threads` workers.
    pub fn ideal_speedup(&self, threads: usize) -> f64 {
        let total: f64 = self.times.iter().sum();
        if total == 0.0 {
            return 1.0;
        }
        let mut free = vec![0.0f64; threads.max(1)];
        let mut finish = vec![0.0f64; self.transactions];
        for j in 0..self.transactions {
            let ready = self.predecessors[j].iter().map(|&i| finish[i]).fold(0.0, f64::max);
            let (worker, at) = free
                .iter()
                .copied()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("at least one worker");
            finish[j] = at.max(ready) + self.times[j];
            free[worker] = finish[j];
        }
        total / finish.into_iter().fold(0.0, f64::max)
    }
}

/// [`analyze`] run `runs` times (at least once), with each transaction's time the median of
/// its runs: single transactions take microseconds, and one run's times are noisy.
pub fn analyze_median<S: Storage>(
    storage: &S,
    block: &BlockInput,
    runs: usize,
) -> Result<Analysis, ExecutionError> {
    let runs: Vec<Analysis> =
        (0..runs.max(1)).map(|_| analyze(storage, block)).collect::<Result<_, _>>()?;
    let mut analysis = runs[0].clone();
    for (i, time) in analysis.times.iter_mut().enumerate() {
        let mut samples: Vec<f64> = runs.iter().map(|r| r.times[i]).collect();
        samples.sort_by(f64::total_cmp);
        *time = samples[samples.len() / 2];
    }
    Ok(analysis)
}

/// One executed transaction, as [`each_transaction`] shows it.
pub(crate) struct Executed<'a, 'db, S: Storage> {
    pub index: usize,
    pub tx: &'a TxEnv,
    /// Wall time of its execution, in seconds.
    pub time: f64,
    pub gas_used: u64,
    /// What it loaded and changed (revm's state, before it is committed).
    pub state: &'a EvmState,
    /// The block's state before the transaction.
    pub db: &'a mut BlockState<'db, S>,
}

/// Executes `block`'s transactions in order on `storage` (without the block's system calls
/// and rewards), showing each to `visit` before committing it.
pub(crate) fn each_transaction<S: Storage>(
    storage: &S,
    block: &BlockInput,
    mut visit: impl FnMut(Executed<'_, '_, S>) -> Result<(), ExecutionError>,
) -> Result<(), ExecutionError> {
    let state: BlockState<'_, S> =
        State::builder().with_database_ref(StorageDatabase(storage)).build();
    let mut evm =
        Context::<BlockEnv, TxEnv, CfgEnv, BlockState<'_, S>, Journal<BlockState<'_, S>>, ()>::new(
            state, block.spec,
        )
        .with_cfg(block.cfg())
        .with_block(block.env.clone())
        .build_mainnet();
    for (index, tx) in block.transactions.iter().enumerate() {
        let start = Instant::now();
        let result = evm.transact_one(tx.clone());
        let state = evm.finalize();
        let time = start.elapsed().as_secs_f64();
        let result = result.map_err(|e| match e {
            parevm::revm::context::result::EVMError::Transaction(reason) => {
                ExecutionError::InvalidTransaction { index, reason }
            }
            parevm::revm::context::result::EVMError::Database(e) => read_error(e),
            other => ExecutionError::Evm { index, message: other.to_string() },
        })?;
        let db = &mut evm.ctx.journaled_state.database;
        visit(Executed { index, tx, time, gas_used: result.tx_gas_used(), state: &state, db })?;
        db.commit(state);
    }
    Ok(())
}

/// Executes `block` sequentially on `storage`, recording read and write sets and times.
/// (The block's system calls and rewards are left out: they run outside the parallel phase.)
pub fn analyze<S: Storage>(storage: &S, block: &BlockInput) -> Result<Analysis, ExecutionError> {
    let beneficiary = block.env.beneficiary;
    let n = block.transactions.len();
    let mut last_writer: HashMap<Key, usize> = HashMap::default();
    let mut analysis = Analysis {
        transactions: n,
        gas: Vec::with_capacity(n),
        times: Vec::with_capacity(n),
        predecessors: Vec::with_capacity(n),
        absent_accounts: Vec::new(),
    };
    let mut seen: HashSet<Address> = HashSet::default();
    each_transaction(storage, block, |Executed { index, tx, time, gas_used, state, db }| {
        analysis.times.push(time);
        analysis.gas.push(gas_used);
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        for (address, account) in state {
            // A contract the transaction creates had no state before it: tracers leave it out.
            if seen.insert(*address) && !account.is_created() && absent(storage, address)? {
                analysis.absent_accounts.push((index, *address));
            }
            let involved = *address == tx.caller || tx.kind.to() == Some(address);
            if *address != beneficiary || involved {
                reads.push(Key::Account(*address));
                let before = db.basic(*address).map_err(read_error)?.unwrap_or_default();
                let after = &account.info;
                if account.is_touched()
                    && (before.balance != after.balance
                        || before.nonce != after.nonce
                        || before.code_hash != after.code_hash
                        || account.is_selfdestructed())
                {
                    writes.push(Key::Account(*address));
                }
            }
            for (slot, value) in &account.storage {
                reads.push(Key::Slot(*address, *slot));
                if value.is_changed() {
                    writes.push(Key::Slot(*address, *slot));
                }
            }
        }
        let mut predecessors: Vec<usize> =
            reads.iter().filter_map(|key| last_writer.get(key).copied()).collect();
        predecessors.sort_unstable();
        predecessors.dedup();
        analysis.predecessors.push(predecessors);
        for key in writes {
            last_writer.insert(key, index);
        }
        Ok(())
    })?;
    Ok(analysis)
}

/// Whether `storage` lacks the account at `address`.
fn absent<S: Storage>(storage: &S, address: &Address) -> Result<bool, ExecutionError> {
    match storage.basic(address) {
        Ok(account) => Ok(account.is_none()),
        Err(e) => Err(ExecutionError::Storage(StorageError {
            location: Location::Account(*address),
            source: Arc::new(e),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(predecessors: Vec<Vec<usize>>) -> Analysis {
        let n = predecessors.len();
        Analysis {
            transactions: n,
            gas: vec![10; n],
            times: vec![1.0; n],
            predecessors,
            absent_accounts: Vec::new(),
        }
    }

    #[test]
    fn bounds_of_known_graphs() {
        let independent = chain_of(vec![vec![]; 8]);
        assert_eq!(independent.longest_chain(), 1);
        assert_eq!(independent.ideal_speedup(2), 2.0);
        assert_eq!(independent.ideal_speedup(32), 8.0);
        assert_eq!(independent.independent_share(), 1.0);
        let serial = chain_of((0..8).map(|i| if i == 0 { vec![] } else { vec![i - 1] }).collect());
        assert_eq!(serial.longest_chain(), 8);
        assert_eq!(serial.longest_chain_gas(), 80);
        assert_eq!(serial.ideal_speedup(4), 1.0);
        // Two chains of four: two workers run them side by side.
        let two = chain_of((0..8).map(|i| if i < 2 { vec![] } else { vec![i - 2] }).collect());
        assert_eq!(two.longest_chain(), 4);
        assert_eq!(two.ideal_speedup(2), 2.0);
        assert_eq!(two.ideal_speedup(8), 2.0);
    }
}
