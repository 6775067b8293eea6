//! EIP-7610, the storage-collision rule revm 43 lacks: a creation fails where the account at
//! the new address has neither code nor nonce but has non-empty storage.
//!
//! revm fails a creation whose address has code or a nonce (`CreateCollision`) but does not
//! look at storage. Both executors start every frame through [`frame_init`], which answers
//! the storage half of the rule before revm's `make_create_frame` runs and, on a collision,
//! returns exactly what revm returns for one: the creator's nonce bumped, the new address
//! warm, all the frame's gas spent, no address.
//!
//! Whether the account has storage comes from the database ([`HasStorage`]): the pre-state's
//! answer ([`Storage::has_storage`](crate::Storage::has_storage)) unless the block wiped
//! the account's storage before (self-destruct, creation, EIP-161 removal). That is exact
//! for the accounts the rule asks about, those without code or nonce: a storage slot is only
//! written by code running at the address, and nothing takes that code away again without
//! wiping the storage (SELFDESTRUCT) or giving the account a nonce (clearing an EIP-7702
//! delegation bumps the authority's nonce). The one exception, a creation before Spurious
//! Dragon whose init code returns no code (nonce 0, storage written), counts as a wipe, and
//! its address is never a creation's target again in the block (CREATE addresses are unique
//! per sender and nonce, and CREATE2 came with Constantinople).

use alloy_primitives::{Address, Bytes};
use revm::context::result::EVMError;
use revm::context::Journal;
use revm::context_interface::journaled_state::account::JournaledAccountTr;
use revm::context_interface::{ContextTr, JournalTr};
use revm::handler::{EthFrame, EvmTr, FrameResult, ItemOrResult};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_action::FrameInit;
use revm::interpreter::{
    CreateInputs, CreateOutcome, FrameInput, Gas, InstructionResult, InterpreterResult,
};
use revm::primitives::constants::CALL_STACK_LIMIT;
use revm::primitives::KECCAK_EMPTY;
use revm::Database;

use crate::tx_context::TxContext;

/// A database that can tell whether an account has storage, as the block's transactions so
/// far left it (see the module's documentation for what that answer may assume).
pub(crate) trait HasStorage: Database {
    /// Whether `address` has a non-zero storage slot, for an account without code or nonce.
    fn has_storage(&mut self, address: Address) -> Result<bool, Self::Error>;
}

/// `evm.frame_init(input)`, with EIP-7610's storage collision.
#[inline]
pub(crate) fn frame_init<DB, EVM>(
    evm: &mut EVM,
    input: FrameInit,
) -> Result<ItemOrResult<&mut EthFrame<EthInterpreter>, FrameResult>, EVMError<DB::Error>>
where
    DB: HasStorage,
    EVM: EvmTr<Context = TxContext<DB>, Frame = EthFrame<EthInterpreter>>,
{
    if let FrameInput::Create(inputs) = &input.frame_input {
        if let Some(result) = storage_collision(evm.ctx_mut(), input.depth, inputs)? {
            return Ok(ItemOrResult::Result(result));
        }
    }
    Ok(evm.frame_init(input)?)
}

/// The result of a creation that collides with an account's storage, after doing what revm
/// does before it reports a collision; `None` where revm decides (it fails the creation for
/// another reason first, or the address has code or a nonce, or no storage).
fn storage_collision<DB: HasStorage>(
    ctx: &mut TxContext<DB>,
    depth: usize,
    inputs: &CreateInputs,
) -> Result<Option<FrameResult>, DB::Error> {
    // revm's checks before the collision, in its order: depth, the value, the nonce.
    if depth > CALL_STACK_LIMIT as usize {
        return Ok(None);
    }
    let caller = ctx.journal_mut().load_account(inputs.caller())?.data;
    if caller.info.balance < inputs.value() || caller.info.nonce == u64::MAX {
        return Ok(None);
    }
    let target = inputs.created_address(caller.info.nonce);
    // Look at the account without warming it: revm warms it only after the nonce bump.
    let journal: &mut Journal<DB> = &mut ctx.journaled_state;
    let bare = match journal.inner.state.get(&target) {
        Some(account) => {
            !account.is_created()
                && account.info.nonce == 0
                && account.info.code_hash == KECCAK_EMPTY
        }
        None => journal
            .database
            .basic(target)?
            .is_some_and(|info| info.nonce == 0 && info.code_hash == KECCAK_EMPTY),
    };
    if !bare || !journal.database.has_storage(target)? {
        return Ok(None);
    }
    // What revm's `make_create_frame` does up to a collision: bump the creator's nonce and
    // warm the new address; `create_account_checkpoint` then changes nothing.
    let bumped = ctx.journal_mut().load_account_mut(inputs.caller())?.data.bump_nonce();
    debug_assert!(bumped, "the nonce was checked above");
    ctx.journal_mut().load_account(target)?;
    Ok(Some(FrameResult::Create(CreateOutcome {
        result: InterpreterResult {
            result: InstructionResult::CreateCollision,
            gas: Gas::new_with_regular_gas_and_reservoir(inputs.gas_limit(), inputs.reservoir()),
            output: Bytes::new(),
        },
        address: None,
        charged_create_state_gas: inputs.charged_create_state_gas(),
    })))
}
