//! Building revm environments from alloy's consensus types, for embedders that hold blocks
//! as alloy headers and transactions.

use alloy_consensus::{Header, Transaction, Typed2718};
use alloy_primitives::{Address, U256};
use revm::context::{BlockEnv, TxEnv};
use revm::primitives::eip4844::{
    BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE,
};
use revm::primitives::hardfork::SpecId;

/// revm's transaction environment for `tx` sent by `sender` (already recovered).
pub fn tx_env<T: Transaction + Typed2718>(tx: &T, sender: Address) -> TxEnv {
    let mut env = TxEnv {
        tx_type: tx.ty(),
        caller: sender,
        gas_limit: tx.gas_limit(),
        // Legacy and EIP-2930 transactions have a gas price; later types a fee cap.
        gas_price: tx.gas_price().unwrap_or_else(|| tx.max_fee_per_gas()),
        kind: tx.kind(),
        value: tx.value(),
        data: tx.input().clone(),
        nonce: tx.nonce(),
        chain_id: tx.chain_id(),
        access_list: tx.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: if tx.gas_price().is_some() {
            None
        } else {
            tx.max_priority_fee_per_gas()
        },
        blob_hashes: tx.blob_versioned_hashes().map(<[_]>::to_vec).unwrap_or_default(),
        max_fee_per_blob_gas: tx.max_fee_per_blob_gas().unwrap_or_default(),
        ..Default::default()
    };
    if let Some(authorizations) = tx.authorization_list() {
        env.set_signed_authorization(authorizations.to_vec());
    }
    env
}

/// revm's block environment for `header` executing under `spec`.
pub fn block_env(header: &Header, spec: SpecId) -> BlockEnv {
    let mut env = BlockEnv {
        number: U256::from(header.number),
        beneficiary: header.beneficiary,
        timestamp: U256::from(header.timestamp),
        gas_limit: header.gas_limit,
        basefee: header.base_fee_per_gas.unwrap_or_default(),
        difficulty: header.difficulty,
        prevrandao: spec.is_enabled_in(SpecId::MERGE).then_some(header.mix_hash),
        ..Default::default()
    };
    if let Some(excess) = header.excess_blob_gas {
        let fraction = if spec.is_enabled_in(SpecId::PRAGUE) {
            BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE
        } else {
            BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN
        };
        env.set_blob_excess_gas_and_price(excess, fraction);
    }
    env
}
