//! The project's compiled Solidity contracts (`testdata/contracts/build`, from
//! `scripts/compile-contracts.sh`) run on both execution paths, with the storage layouts
//! their sources document.

use std::num::NonZeroUsize;
use std::path::Path;

use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use alloy_sol_types::{sol, SolCall};
use parevm::revm::primitives::hardfork::SpecId;
use parevm_fixtures::synthetic::{account, ether, BlockBuilder};
use parevm_fixtures::{parallel, sequential};

sol! {
    function transfer(address to, uint256 value) external returns (bool);
}

fn artifact(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/contracts/build")
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn runtime(name: &str) -> Bytes {
    artifact(name)["deployedBytecode"].as_str().unwrap().parse().unwrap()
}

/// The slot of `mapping[key]` for a mapping at `slot`.
fn mapping_slot(key: Address, slot: u64) -> U256 {
    let mut preimage = [0u8; 64];
    preimage[12..32].copy_from_slice(key.as_slice());
    preimage[56..].copy_from_slice(&slot.to_be_bytes());
    U256::from_be_bytes(keccak256(preimage).0)
}

#[test]
fn storage_layouts_are_the_documented_ones() {
    let slots = |name: &str| -> Vec<(String, String)> {
        artifact(name)["storageLayout"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["label"].as_str().unwrap().into(), v["slot"].as_str().unwrap().into()))
            .collect()
    };
    let expected = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(l, s)| (l.to_string(), s.to_string())).collect()
    };
    assert_eq!(
        slots("Token"),
        expected(&[("totalSupply", "0"), ("balanceOf", "1"), ("allowance", "2")])
    );
    assert_eq!(
        slots("CredentialRegistry"),
        expected(&[
            ("admin", "0"),
            ("issuers", "1"),
            ("credentials", "2"),
            ("poolPolicy", "3"),
            ("poolOptions", "4"),
            ("approvedRouter", "5")
        ])
    );
    assert_eq!(
        slots("Pair"),
        expected(&[
            ("token0", "0"),
            ("token1", "1"),
            ("reserve0", "2"),
            ("reserve1", "2"),
            ("blockTimestampLast", "2")
        ])
    );
    for name in ["Token", "Pair", "Router", "CredentialRegistry"] {
        assert!(runtime(name).len() > 100, "{name}");
    }
}

#[test]
fn token_transfers_agree_on_both_paths() {
    let token = Address::repeat_byte(0x70);
    let holders: Vec<Address> = (0..20).map(account).collect();
    let mut b = BlockBuilder::new(SpecId::CANCUN, Address::repeat_byte(0xcb));
    b.contract(
        token,
        runtime("Token"),
        holders.iter().map(|h| (mapping_slot(*h, 1), U256::from(1000))),
    );
    for (i, holder) in holders.iter().enumerate() {
        b.fund(*holder, ether(1));
        // Half pay a hot recipient, half each other; one tries to overspend and reverts.
        let to = if i % 2 == 0 { account(99) } else { holders[(i + 1) % holders.len()] };
        let value = if i == 7 { U256::from(5000) } else { U256::from(10 + i) };
        let data = transferCall { to, value }.abi_encode();
        b.tx(*holder, TxKind::Call(token), U256::ZERO, data.into(), 100_000);
    }
    let (storage, block) = b.build();
    let sequential = sequential(&storage, &block, None).unwrap();
    for threads in [1, 2, 4] {
        let (parallel, _) =
            parallel(&storage, &block, NonZeroUsize::new(threads).unwrap(), None).unwrap();
        assert_eq!(parallel, sequential, "{threads} threads");
    }
    assert!(!sequential.transactions[7].is_success(), "the overspend reverts");
    assert_eq!(sequential.transactions.iter().filter(|t| t.is_success()).count(), 19);
    let received: u64 = (0..20u64).filter(|i| i % 2 == 0).map(|i| 10 + i).sum();
    let hot = sequential.state.accounts[&token].storage[&mapping_slot(account(99), 1)];
    assert_eq!(hot, U256::from(received));
    // Each successful transfer logs one Transfer event.
    let topic = keccak256("Transfer(address,address,uint256)");
    assert!(sequential.transactions[0].logs()[0].topics()[0] == B256::from(topic));
}
