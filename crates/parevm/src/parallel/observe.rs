//! Instruction hooks that record which accounts' balances a transaction *observes*.
//!
//! Contracts are read without the credits other transactions paid them (see
//! [`super::vm`]); that is only sound if the transaction never looks at the balance. These
//! hooks wrap revm's own instructions and note the account before running them:
//! `BALANCE`, `SELFBALANCE`, and the executing account of a value-bearing `CALL`, `CALLCODE`,
//! `CREATE` or `CREATE2` (its balance is checked) and of `SELFDESTRUCT` (it sends all of it).
//! Every other instruction runs untouched, at no cost. `CALL` and `CALLCODE` also ask the
//! compliance gate ([`crate::compliance`]), if one is configured.

use alloy_primitives::{Address, B256, U256};
use revm::bytecode::opcode;
use revm::handler::instructions::EthInstructions;
use revm::interpreter::instructions::{contract, host};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_types::InputsTr;
use revm::interpreter::{Instruction, InstructionContext, InstructionExecResult};

use super::vm::VmDb;
use crate::compliance::gate;
use crate::Storage;

/// The context workers run revm with.
pub(crate) type WorkerContext<'a, S> = gate::TxContext<VmDb<'a, S>>;

type Ctx<'c, 'a, S> = InstructionContext<'c, WorkerContext<'a, S>, EthInterpreter>;

fn observe<S: Storage>(ctx: &mut Ctx<'_, '_, S>, address: Address) {
    ctx.host.journaled_state.database.observe(address);
}

fn current<S: Storage>(ctx: &Ctx<'_, '_, S>) -> Address {
    ctx.interpreter.input.target_address()
}

/// Whether stack item `n` (from the top) is a non-zero value.
fn nonzero<S: Storage>(ctx: &Ctx<'_, '_, S>, n: usize) -> bool {
    ctx.interpreter.stack.peek(n).is_ok_and(|v| v != U256::ZERO)
}

fn balance<S: Storage>(mut ctx: Ctx<'_, '_, S>) -> InstructionExecResult {
    if let Ok(word) = ctx.interpreter.stack.peek(0) {
        observe(&mut ctx, Address::from_word(B256::from(word)));
    }
    host::balance(ctx)
}

fn selfbalance<S: Storage>(mut ctx: Ctx<'_, '_, S>) -> InstructionExecResult {
    let address = current(&ctx);
    observe(&mut ctx, address);
    host::selfbalance(ctx)
}

fn call<S: Storage>(mut ctx: Ctx<'_, '_, S>) -> InstructionExecResult {
    gate::check_call(&mut ctx)?;
    // CALL: gas, address, value, ...
    if nonzero(&ctx, 2) {
        let address = current(&ctx);
        observe(&mut ctx, address);
    }
    contract::call::<{ opcode::CALL }, _, _>(ctx)
}

fn callcode<S: Storage>(mut ctx: Ctx<'_, '_, S>) -> InstructionExecResult {
    gate::check_call(&mut ctx)?;
    if nonzero(&ctx, 2) {
        let address = current(&ctx);
        observe(&mut ctx, address);
    }
    contract::call::<{ opcode::CALLCODE }, _, _>(ctx)
}

fn create<S: Storage>(mut ctx: Ctx<'_, '_, S>) -> InstructionExecResult {
    // CREATE: value, offset, size
    if nonzero(&ctx, 0) {
        let address = current(&ctx);
        observe(&mut ctx, address);
    }
    contract::create::<false, _, _>(ctx)
}

fn create2<S: Storage>(mut ctx: Ctx<'_, '_, S>) -> InstructionExecResult {
    if nonzero(&ctx, 0) {
        let address = current(&ctx);
        observe(&mut ctx, address);
    }
    contract::create::<true, _, _>(ctx)
}

fn selfdestruct<S: Storage>(mut ctx: Ctx<'_, '_, S>) -> InstructionExecResult {
    let address = current(&ctx);
    observe(&mut ctx, address);
    host::selfdestruct(ctx)
}

/// Replaces the balance-observing instructions of `instructions` with the hooks, keeping
/// their gas costs.
pub(crate) fn install<S: Storage>(
    instructions: &mut EthInstructions<EthInterpreter, WorkerContext<'_, S>>,
) {
    let hooks: [(u8, Instruction<EthInterpreter, WorkerContext<'_, S>>); 7] = [
        (opcode::BALANCE, Instruction::new(balance::<S>)),
        (opcode::SELFBALANCE, Instruction::new(selfbalance::<S>)),
        (opcode::CALL, Instruction::new(call::<S>)),
        (opcode::CALLCODE, Instruction::new(callcode::<S>)),
        (opcode::CREATE, Instruction::new(create::<S>)),
        (opcode::CREATE2, Instruction::new(create2::<S>)),
        (opcode::SELFDESTRUCT, Instruction::new(selfdestruct::<S>)),
    ];
    for (op, hook) in hooks {
        let gas = instructions.gas_table()[op as usize];
        instructions.insert_instruction(op, hook, gas);
    }
}
