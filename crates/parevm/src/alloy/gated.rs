//! Transactions through the compliance hook on alloy-evm's state, outside Block-STM: what
//! [`ParallelBlockExecutor`](super::ParallelBlockExecutor) runs where the inner executor
//! would run a transaction sequentially, when the engine's configuration has a hook.
//!
//! alloy-evm's EVM runs revm's handler, which knows nothing of the hook; so such a
//! transaction runs on a revm instance of the engine's own, over the EVM's database (revm's
//! `State`) with the EVM's configuration and block, through the same
//! [`CheckedHandler`](crate::compliance::gate::CheckedHandler) the engine's sequential
//! executor runs. Its state is then committed by the inner executor, as any other.

use alloy_primitives::{Address, B256};
use revm::bytecode::Bytecode;
use revm::context::result::EVMError;
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::handler::Handler;
use revm::primitives::{StorageKey, StorageValue};
use revm::state::{AccountInfo, EvmState};
use revm::{Database, ExecuteEvm, MainBuilder};

pub(crate) use crate::compliance::gate::Gating;
use crate::compliance::gate::{self, CheckedHandler, SequentialDb, TxResult};
use crate::storage_collision::HasStorage;
use crate::tx_context::TxContext;
use crate::{Location, Rejection, StorageError};

/// How a gated transaction ended.
pub(crate) struct GatedTx {
    /// Its result, or why it has none.
    pub(crate) result: TxResult,
    /// Its state, to commit if it is included.
    pub(crate) state: EvmState,
    /// The rejection it was included as failed for ([`crate::ComplianceMode::Revert`]).
    pub(crate) reverted_by: Option<Rejection>,
}

/// Executes `tx` on `db` under `cfg` and `block` through the compliance gate of `gating`.
/// The database is only read: the caller commits the state if the transaction is included.
pub(crate) fn transact<DB: Database>(
    db: &mut DB,
    gating: &mut Gating<'_>,
    cfg: CfgEnv,
    block: BlockEnv,
    tx: TxEnv,
) -> Result<GatedTx, EVMError<StorageError>> {
    let spec = cfg.spec;
    let state = GatedState { db, gating: std::mem::take(gating) };
    let mut evm =
        TxContext::new(state, spec).with_cfg(cfg).with_block(block).with_tx(tx).build_mainnet();
    let result = CheckedHandler::new().run(&mut evm);
    let state = evm.finalize();
    *gating = evm.ctx.journaled_state.database.gating;
    let rejection = gating.take_rejection();
    let (result, reverted_by) = gate::classify(result, rejection)?;
    Ok(GatedTx { result, state, reverted_by })
}

/// The EVM's database with the gate on it, as the engine's handler needs it.
struct GatedState<'d, 'h, DB> {
    db: &'d mut DB,
    gating: Gating<'h>,
}

impl<DB: Database> Database for GatedState<'_, '_, DB> {
    type Error = StorageError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, StorageError> {
        self.db.basic(address).map_err(|e| StorageError::new(Location::Account(address), e))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, StorageError> {
        self.db.code_by_hash(code_hash).map_err(|e| StorageError::new(Location::Code(code_hash), e))
    }

    fn storage(
        &mut self,
        address: Address,
        index: StorageKey,
    ) -> Result<StorageValue, StorageError> {
        let location = Location::Storage(address, index);
        self.db.storage(address, index).map_err(|e| StorageError::new(location, e))
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, StorageError> {
        self.db.block_hash(number).map_err(|e| StorageError::new(Location::BlockHash(number), e))
    }
}

/// revm's `State` does not track whether an account has storage, and alloy-evm's executor
/// does not apply EIP-7610's storage half: neither does this.
impl<DB: Database> HasStorage for GatedState<'_, '_, DB> {
    fn has_storage(&mut self, _: Address) -> Result<bool, StorageError> {
        Ok(false)
    }
}

impl<'h, DB: Database> SequentialDb<'h> for GatedState<'_, 'h, DB> {
    fn gating(&mut self) -> &mut Gating<'h> {
        &mut self.gating
    }
}
