//! revm's frame loop (`Handler::run_exec_loop`), written once for both executors: every
//! frame starts through [`storage_collision::frame_init`] (EIP-7610), and the compliance
//! gate records the frames through the loop's two callbacks.

use revm::context::result::EVMError;
use revm::handler::{EthFrame, EvmTr, FrameResult, ItemOrResult};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_action::FrameInit;

use crate::storage_collision::{self, HasStorage};
use crate::tx_context::TxContext;

/// Runs a transaction's frames from `input`. `start` starts a frame: `None` if it runs,
/// or the result of one that ended as it started; `ended` sees the result of every frame
/// that ran, before it is returned to its caller.
#[inline]
pub(crate) fn run<DB, EVM, Start, Ended>(
    evm: &mut EVM,
    input: FrameInit,
    mut start: Start,
    mut ended: Ended,
) -> Result<FrameResult, EVMError<DB::Error>>
where
    DB: HasStorage,
    EVM: EvmTr<Context = TxContext<DB>, Frame = EthFrame<EthInterpreter>>,
    Start: FnMut(&mut EVM, FrameInit) -> Result<Option<FrameResult>, EVMError<DB::Error>>,
    Ended: FnMut(&mut EVM, &FrameResult),
{
    if let Some(result) = start(evm, input)? {
        return Ok(result);
    }
    loop {
        let result = match evm.frame_run()? {
            ItemOrResult::Item(init) => match start(evm, init)? {
                None => continue,
                Some(result) => result,
            },
            ItemOrResult::Result(result) => {
                ended(evm, &result);
                result
            }
        };
        if let Some(result) = evm.frame_return_result(result)? {
            return Ok(result);
        }
    }
}

/// [`run`]'s `start` with nothing recorded.
#[inline]
pub(crate) fn start<DB, EVM>(
    evm: &mut EVM,
    input: FrameInit,
) -> Result<Option<FrameResult>, EVMError<DB::Error>>
where
    DB: HasStorage,
    EVM: EvmTr<Context = TxContext<DB>, Frame = EthFrame<EthInterpreter>>,
{
    Ok(match storage_collision::frame_init(evm, input)? {
        ItemOrResult::Item(_) => None,
        ItemOrResult::Result(result) => Some(result),
    })
}
