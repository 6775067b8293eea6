//! Instruction hooks that record which accounts' balances a transaction *observes*.
//!
//! Contracts are read without the credits other transactions paid them (see
//! [`super::vm`]); that is only sound if the transaction never looks at the balance. These
//! hooks wrap revm's own instructions and note the account before running them:
//! `BALANCE`, `SELFBALANCE`, and the executing account of a value-bearing `CALL`, `CALLCODE`,
//! `CREATE` or `CREATE2` (its balance is checked) and of `SELFDESTRUCT` (it sends all of it).
//! Every other instruction runs untouched, at no cost.

use alloy_primitives::{Address, B256, U256};
use revm::bytecode::opcode;
use revm::handler::instructions::EthInstructions;
use revm::interpreter::instructions::{contract, host};
use revm::interpreter::interpreter::EthInterpreter;
use revm::interpreter::interpreter_types::InputsTr;
use revm::interpreter::{Instruction, InstructionContext, InstructionExecResult};
use revm::Database;

use crate::compliance::gate::GatedDb;
use crate::tx_context::TxContext;

/// A database that notes which accounts' balances the transaction observed.
pub(crate) trait ObservesBalances {
    /// Notes that the transaction observed `address`'s balance.
    fn observe(&mut self, address: Address);
}

type Ctx<'c, DB> = InstructionContext<'c, TxContext<DB>, EthInterpreter>;

fn observe<DB: Database + ObservesBalances>(ctx: &mut Ctx<'_, DB>, address: Address) {
    ctx.host.journaled_state.database.observe(address);
}

fn current<DB: Database>(ctx: &Ctx<'_, DB>) -> Address {
    ctx.interpreter.input.target_address()
}

/// Whether stack item `n` (from the top) is a non-zero value.
fn nonzero<DB: Database>(ctx: &Ctx<'_, DB>, n: usize) -> bool {
    ctx.interpreter.stack.peek(n).is_ok_and(|v| v != U256::ZERO)
}

fn balance<'h, DB: GatedDb<'h> + ObservesBalances>(mut ctx: Ctx<'_, DB>) -> InstructionExecResult {
    if let Ok(word) = ctx.interpreter.stack.peek(0) {
        observe(&mut ctx, Address::from_word(B256::from(word)));
    }
    host::balance(ctx)
}

fn selfbalance<'h, DB: GatedDb<'h> + ObservesBalances>(
    mut ctx: Ctx<'_, DB>,
) -> InstructionExecResult {
    let address = current(&ctx);
    observe(&mut ctx, address);
    host::selfbalance(ctx)
}

fn call<'h, DB: GatedDb<'h> + ObservesBalances>(mut ctx: Ctx<'_, DB>) -> InstructionExecResult {
    // CALL: gas, address, value, ...
    if nonzero(&ctx, 2) {
        let address = current(&ctx);
        observe(&mut ctx, address);
    }
    contract::call::<{ opcode::CALL }, _, _>(ctx)
}

fn callcode<'h, DB: GatedDb<'h> + ObservesBalances>(mut ctx: Ctx<'_, DB>) -> InstructionExecResult {
    if nonzero(&ctx, 2) {
        let address = current(&ctx);
        observe(&mut ctx, address);
    }
    contract::call::<{ opcode::CALLCODE }, _, _>(ctx)
}

fn create<'h, DB: GatedDb<'h> + ObservesBalances>(mut ctx: Ctx<'_, DB>) -> InstructionExecResult {
    // CREATE: value, offset, size
    if nonzero(&ctx, 0) {
        let address = current(&ctx);
        observe(&mut ctx, address);
    }
    contract::create::<false, _, _>(ctx)
}

fn create2<'h, DB: GatedDb<'h> + ObservesBalances>(mut ctx: Ctx<'_, DB>) -> InstructionExecResult {
    if nonzero(&ctx, 0) {
        let address = current(&ctx);
        observe(&mut ctx, address);
    }
    contract::create::<true, _, _>(ctx)
}

fn selfdestruct<'h, DB: GatedDb<'h> + ObservesBalances>(
    mut ctx: Ctx<'_, DB>,
) -> InstructionExecResult {
    let address = current(&ctx);
    observe(&mut ctx, address);
    host::selfdestruct(ctx)
}

/// Replaces the balance-observing instructions of `instructions` with the hooks, keeping
/// their gas costs.
pub(crate) fn install<'h, DB: GatedDb<'h> + ObservesBalances>(
    instructions: &mut EthInstructions<EthInterpreter, TxContext<DB>>,
) {
    let hooks: [(u8, Instruction<EthInterpreter, TxContext<DB>>); 7] = [
        (opcode::BALANCE, Instruction::new(balance::<DB>)),
        (opcode::SELFBALANCE, Instruction::new(selfbalance::<DB>)),
        (opcode::CALL, Instruction::new(call::<DB>)),
        (opcode::CALLCODE, Instruction::new(callcode::<DB>)),
        (opcode::CREATE, Instruction::new(create::<DB>)),
        (opcode::CREATE2, Instruction::new(create2::<DB>)),
        (opcode::SELFDESTRUCT, Instruction::new(selfdestruct::<DB>)),
    ];
    for (op, hook) in hooks {
        let gas = instructions.gas_table()[op as usize];
        instructions.insert_instruction(op, hook, gas);
    }
}
