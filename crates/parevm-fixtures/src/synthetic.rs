//! Blocks built in code, for tests, fuzzing and workloads: accounts, small contracts written
//! with a tiny assembler, and transactions with nonces filled in.

use alloy_primitives::map::AddressMap;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use parevm::revm::context::{BlockEnv, TxEnv};
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{BlockInput, InMemoryStorage};

/// EVM opcodes used by the contracts here.
#[allow(missing_docs)]
pub mod op {
    pub const STOP: u8 = 0x00;
    pub const ADD: u8 = 0x01;
    pub const LT: u8 = 0x10;
    pub const ISZERO: u8 = 0x15;
    pub const BALANCE: u8 = 0x31;
    pub const CALLER: u8 = 0x33;
    pub const CALLVALUE: u8 = 0x34;
    pub const CALLDATALOAD: u8 = 0x35;
    pub const CALLDATASIZE: u8 = 0x36;
    pub const CALLDATACOPY: u8 = 0x37;
    pub const COINBASE: u8 = 0x41;
    pub const SELFBALANCE: u8 = 0x47;
    pub const POP: u8 = 0x50;
    pub const MSTORE: u8 = 0x52;
    pub const SLOAD: u8 = 0x54;
    pub const SSTORE: u8 = 0x55;
    pub const JUMPI: u8 = 0x57;
    pub const GAS: u8 = 0x5a;
    pub const JUMPDEST: u8 = 0x5b;
    pub const LOG1: u8 = 0xa1;
    pub const CREATE: u8 = 0xf0;
    pub const CALL: u8 = 0xf1;
    pub const RETURN: u8 = 0xf3;
    pub const CREATE2: u8 = 0xf5;
    pub const REVERT: u8 = 0xfd;
    pub const SELFDESTRUCT: u8 = 0xff;
}

/// A minimal EVM assembler: opcodes and pushes, nothing else.
#[derive(Clone, Debug, Default)]
pub struct Asm(Vec<u8>);

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends opcodes.
    pub fn op(mut self, ops: &[u8]) -> Self {
        self.0.extend_from_slice(ops);
        self
    }

    /// Appends the shortest `PUSHn` of `value` (`PUSH1 0` for zero, valid on every fork).
    pub fn push(self, value: u64) -> Self {
        self.push_word(U256::from(value))
    }

    /// Appends the shortest `PUSHn` of a 256-bit `value`.
    pub fn push_word(mut self, value: U256) -> Self {
        let bytes = value.to_be_bytes::<32>();
        let skip = bytes.iter().take_while(|b| **b == 0).count().min(31);
        self.0.push(0x60 + (31 - skip) as u8);
        self.0.extend_from_slice(&bytes[skip..]);
        self
    }

    /// Appends `PUSH20 address`.
    pub fn push_address(mut self, address: Address) -> Self {
        self.0.push(0x73);
        self.0.extend_from_slice(address.as_slice());
        self
    }

    /// Appends a call of `target` with the current calldata through `opcode` (`CALL` or
    /// `CALLCODE` with `value`, `DELEGATECALL` or `STATICCALL` without), its success flag
    /// popped: the outcome is ignored, as a `try`/`catch` would.
    pub fn call_with_calldata(self, opcode: u8, target: Address, value: U256) -> Self {
        const DELEGATECALL: u8 = 0xf4;
        const STATICCALL: u8 = 0xfa;
        let mut asm = self
            .op(&[op::CALLDATASIZE])
            .push(0)
            .push(0)
            .op(&[op::CALLDATACOPY])
            .push(0) // return size
            .push(0) // return offset
            .op(&[op::CALLDATASIZE])
            .push(0); // arguments offset
        if opcode != DELEGATECALL && opcode != STATICCALL {
            asm = asm.push_word(value);
        }
        asm.push_address(target).op(&[op::GAS, opcode, op::POP])
    }

    /// The current length (for jump targets).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the program is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytecode.
    pub fn build(self) -> Bytes {
        self.0.into()
    }

    /// Init code that deploys `runtime` (at most 32 bytes... or any length: copied from the
    /// init code itself).
    pub fn deployer(runtime: &[u8]) -> Bytes {
        // PUSHn len, DUP1, PUSH1 offset, PUSH1 0, CODECOPY, PUSH1 0, RETURN, runtime...
        let prefix_len = 12u8;
        let len = runtime.len();
        assert!(len <= u16::MAX as usize, "runtime too large for this deployer");
        let mut code = vec![
            0x61,
            (len >> 8) as u8,
            len as u8,
            0x80,
            0x60,
            prefix_len,
            0x60,
            0,
            0x39,
            0x60,
            0,
            op::RETURN,
        ];
        debug_assert_eq!(code.len(), prefix_len as usize);
        code.extend_from_slice(runtime);
        code.into()
    }
}

/// Contracts used by tests and workloads.
pub mod contracts {
    use super::{op, Asm};
    use alloy_primitives::Bytes;

    /// Adds one to storage slot 0 and logs the new value: every call conflicts with every
    /// other.
    pub fn counter() -> Bytes {
        Asm::new()
            .push(0)
            .op(&[op::SLOAD])
            .push(1)
            .op(&[op::ADD, 0x80]) // DUP1
            .push(0)
            .op(&[op::SSTORE])
            .push(0)
            .op(&[op::MSTORE])
            .push(0xc0ffee)
            .push(32)
            .push(0)
            .op(&[op::LOG1, op::STOP])
            .build()
    }

    /// `slot[calldata[0..32]] += calldata[32..64]`: storage-heavy, conflicting only when two
    /// calls use the same slot.
    pub fn slot_adder() -> Bytes {
        Asm::new()
            .push(32)
            .op(&[op::CALLDATALOAD])
            .push(0)
            .op(&[op::CALLDATALOAD, op::SLOAD, op::ADD])
            .push(0)
            .op(&[op::CALLDATALOAD, op::SSTORE, op::STOP])
            .build()
    }

    /// Stores the block beneficiary's balance in slot 0.
    pub fn coinbase_reader() -> Bytes {
        Asm::new().op(&[op::COINBASE, op::BALANCE]).push(0).op(&[op::SSTORE, op::STOP]).build()
    }

    /// Self-destructs, sending its balance to the caller.
    pub fn suicidal() -> Bytes {
        Asm::new().op(&[op::CALLER, op::SELFDESTRUCT]).build()
    }

    /// Deploys its calldata as init code with CREATE2 (salt 0) and stores the new address in
    /// slot 0.
    pub fn create2_factory() -> Bytes {
        Asm::new()
            .op(&[op::CALLDATASIZE])
            .push(0)
            .push(0)
            .op(&[op::CALLDATACOPY])
            .push(0) // salt
            .op(&[op::CALLDATASIZE]) // size
            .push(0) // offset
            .push(0) // value
            .op(&[op::CREATE2])
            .push(0)
            .op(&[op::SSTORE, op::STOP])
            .build()
    }

    /// Always reverts.
    pub fn reverter() -> Bytes {
        Asm::new().push(0).push(0).op(&[op::REVERT]).build()
    }
}

/// Gas price every synthetic transaction pays (fee cap), in wei.
pub const GAS_PRICE: u128 = 20_000_000_000;
/// Priority fee of synthetic transactions, in wei.
pub const PRIORITY_FEE: u128 = 1_000_000_000;
/// Base fee of synthetic blocks, in wei.
pub const BASE_FEE: u64 = 10_000_000_000;

/// Builds a block and its pre-state.
#[derive(Clone, Debug)]
pub struct BlockBuilder {
    storage: InMemoryStorage,
    block: BlockInput,
    nonces: AddressMap<u64>,
}

impl BlockBuilder {
    /// An empty block under `spec` with beneficiary `coinbase`.
    pub fn new(spec: SpecId, coinbase: Address) -> Self {
        let env = BlockEnv {
            number: U256::from(20_000_000u64),
            beneficiary: coinbase,
            timestamp: U256::from(1_720_000_000u64),
            gas_limit: 1_000_000_000_000,
            basefee: if spec.is_enabled_in(SpecId::LONDON) { BASE_FEE } else { 0 },
            difficulty: U256::ZERO,
            prevrandao: spec.is_enabled_in(SpecId::MERGE).then_some(Default::default()),
            ..Default::default()
        };
        let mut block =
            BlockInput { block_rules: true, ..BlockInput::new(spec, 1, env, Vec::new()) };
        if spec.is_enabled_in(SpecId::CANCUN) {
            block.env.set_blob_excess_gas_and_price(0, 3_338_477);
            // A Cancun header carries the root EIP-4788 stores.
            block.parent_beacon_block_root = Some(Default::default());
        }
        Self { storage: InMemoryStorage::new(), block, nonces: AddressMap::default() }
    }

    /// Gives `address` `wei` (an externally owned account).
    pub fn fund(&mut self, address: Address, wei: U256) -> &mut Self {
        self.storage.insert_account(address, wei, 0, Bytes::new(), []);
        self
    }

    /// Places a contract with `code` and `storage` at `address`.
    pub fn contract(
        &mut self,
        address: Address,
        code: Bytes,
        storage: impl IntoIterator<Item = (U256, U256)>,
    ) -> &mut Self {
        self.storage.insert_account(address, U256::ZERO, 1, code, storage);
        self
    }

    /// The next nonce of `sender` (as the block so far would use it).
    pub fn next_nonce(&self, sender: Address) -> u64 {
        self.nonces
            .get(&sender)
            .copied()
            .unwrap_or_else(|| self.storage.account(&sender).map_or(0, |a| a.basic.nonce))
    }

    /// Appends a transaction with the sender's next nonce.
    pub fn tx(
        &mut self,
        from: Address,
        kind: TxKind,
        value: U256,
        data: Bytes,
        gas_limit: u64,
    ) -> &mut Self {
        let nonce = self.next_nonce(from);
        self.tx_with_nonce(from, kind, value, data, gas_limit, nonce)
    }

    /// Appends a transaction with an explicit nonce (which may be invalid).
    pub fn tx_with_nonce(
        &mut self,
        from: Address,
        kind: TxKind,
        value: U256,
        data: Bytes,
        gas_limit: u64,
        nonce: u64,
    ) -> &mut Self {
        let london = self.block.spec.is_enabled_in(SpecId::LONDON);
        self.block.transactions.push(TxEnv {
            tx_type: if london { 2 } else { 0 },
            caller: from,
            gas_limit,
            gas_price: GAS_PRICE,
            gas_priority_fee: london.then_some(PRIORITY_FEE),
            kind,
            value,
            data,
            nonce,
            chain_id: Some(1),
            ..Default::default()
        });
        self.nonces.insert(from, nonce + 1);
        self
    }

    /// Makes the last transaction an EIP-7702 one (type 4) carrying `authority`'s signed
    /// delegation to `delegate` with the authority's nonce `nonce` (the signature taken as
    /// recovered).
    pub fn authorize_last(&mut self, authority: Address, delegate: Address, nonce: u64) {
        use parevm::revm::context_interface::transaction::{
            Authorization, RecoveredAuthority, RecoveredAuthorization,
        };
        let tx = self.block.transactions.last_mut().expect("a transaction to authorize");
        tx.tx_type = 4;
        let auth = Authorization { chain_id: U256::from(1), address: delegate, nonce };
        tx.set_recovered_authorization(vec![RecoveredAuthorization::new_unchecked(
            auth,
            RecoveredAuthority::Valid(authority),
        )]);
    }

    /// Appends a plain transfer.
    pub fn transfer(&mut self, from: Address, to: Address, value: U256) -> &mut Self {
        self.tx(from, TxKind::Call(to), value, Bytes::new(), 21_000)
    }

    /// Appends a call.
    pub fn call(&mut self, from: Address, to: Address, data: Bytes) -> &mut Self {
        self.tx(from, TxKind::Call(to), U256::ZERO, data, 200_000)
    }

    /// Appends a contract creation; returns the new contract's address.
    pub fn create(&mut self, from: Address, init_code: Bytes) -> Address {
        let nonce = self.next_nonce(from);
        self.tx(from, TxKind::Create, U256::ZERO, init_code, 500_000);
        from.create(nonce)
    }

    /// The block and its pre-state.
    pub fn build(self) -> (InMemoryStorage, BlockInput) {
        (self.storage, self.block)
    }

    /// The pre-state being built.
    pub fn storage_mut(&mut self) -> &mut InMemoryStorage {
        &mut self.storage
    }

    /// The block being built.
    pub fn block_mut(&mut self) -> &mut BlockInput {
        &mut self.block
    }
}

/// A deterministic address for test account `i`.
pub fn account(i: u64) -> Address {
    let mut bytes = [0u8; 20];
    bytes[0] = 0xaa;
    bytes[12..].copy_from_slice(&i.to_be_bytes());
    Address::from(bytes)
}

/// One ether in wei.
pub fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(1_000_000_000_000_000_000u128)
}
