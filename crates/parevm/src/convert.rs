//! Building revm environments from alloy's consensus types, for embedders that hold blocks
//! as alloy headers and transactions.

use alloy_consensus::Header;
use alloy_primitives::{Address, U256};
use revm::context::{BlockEnv, TxEnv};
use revm::context_interface::block::BlobExcessGasAndPrice;
use revm::primitives::eip4844::{
    BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE,
};
use revm::primitives::hardfork::SpecId;

/// revm's transaction environment for `tx` sent by `sender` (already recovered): alloy-evm's
/// conversion (`FromRecoveredTx`), the one a node's executor applies, for any alloy
/// transaction type or envelope.
pub fn tx_env<T>(tx: &T, sender: Address) -> TxEnv
where
    TxEnv: alloy_evm::FromRecoveredTx<T>,
{
    alloy_evm::FromRecoveredTx::from_recovered_tx(tx, sender)
}

/// revm's block environment for `header` executing under `spec`. (Not alloy-evm's
/// `EvmEnv::for_eth_block`: that computes the blob gas price with revm's loop, which a
/// hostile `excess_blob_gas` keeps running for hours; see [`blob_excess_gas_and_price`].)
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
        env.blob_excess_gas_and_price = Some(blob_excess_gas_and_price(excess, fraction));
    }
    env
}

/// The blob gas price for `excess_blob_gas` (EIP-4844's `fake_exponential(1, excess,
/// fraction)`), saturating at `u128::MAX`.
///
/// revm's own computation loops once per term with unchecked `u128` products: for an excess
/// far beyond anything a chain can reach (a hostile or corrupt header) its products wrap and
/// the loop runs for hours. Here a product that would overflow ends the loop with the
/// saturated price; every input revm computes without overflow gives revm's result.
pub fn blob_excess_gas_and_price(excess_blob_gas: u64, fraction: u64) -> BlobExcessGasAndPrice {
    let denominator = u128::from(fraction.max(1));
    let numerator = u128::from(excess_blob_gas);
    let mut output: u128 = 0;
    let mut accum = denominator;
    let mut i: u128 = 1;
    let price = loop {
        if accum == 0 {
            break output / denominator;
        }
        let next = output.checked_add(accum).and_then(|sum| {
            let product = accum.checked_mul(numerator)?;
            Some((sum, product / (denominator * i)))
        });
        match next {
            Some((sum, term)) => (output, accum) = (sum, term),
            None => break u128::MAX,
        }
        i += 1;
    };
    BlobExcessGasAndPrice { excess_blob_gas, blob_gasprice: price }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_price_matches_revm_and_saturates_instead_of_hanging() {
        for fraction in [BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE]
        {
            for excess in [0, 1, 131_072, 10_000_000, 20 * fraction, 40 * fraction] {
                assert_eq!(
                    blob_excess_gas_and_price(excess, fraction),
                    BlobExcessGasAndPrice::new(excess, fraction),
                    "{excess}/{fraction}"
                );
            }
        }
        // revm's loop would run for hours here.
        let start = std::time::Instant::now();
        // (At 120 times the fraction revm's products already wrap, to a wrong finite price.)
        for excess in [u64::MAX, u64::MAX / 3, 1 << 40, 120 * BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN]
        {
            let price = blob_excess_gas_and_price(excess, BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN);
            assert_eq!(price.blob_gasprice, u128::MAX);
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
