//! The fuzz targets' logic, shared by `fuzz/` (cargo-fuzz) and the tests that replay the
//! committed corpus, so that CI checks every corpus entry without the fuzzer.

use std::num::NonZeroUsize;

use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use arbitrary::{Result as ArbResult, Unstructured};
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{BlockInput, InMemoryStorage};

use crate::alloy_oracle::{compare_block, has_eip7610_targets};
use crate::both_paths::both_paths;
use crate::parse_snapshot;
use crate::synthetic::{contracts, ether, op, Asm, BlockBuilder};

const SPECS: [SpecId; 13] = [
    SpecId::FRONTIER,
    SpecId::HOMESTEAD,
    SpecId::TANGERINE,
    SpecId::SPURIOUS_DRAGON,
    SpecId::BYZANTIUM,
    SpecId::PETERSBURG,
    SpecId::ISTANBUL,
    SpecId::BERLIN,
    SpecId::LONDON,
    SpecId::MERGE,
    SpecId::SHANGHAI,
    SpecId::CANCUN,
    SpecId::PRAGUE,
];

/// Calls the address in `calldata[0..32]` with the value in `calldata[32..64]` and all gas:
/// call-heavy, and sends value from a contract (which observes its balance).
fn forwarder() -> Bytes {
    Asm::new()
        .push(0)
        .push(0)
        .push(0)
        .push(0)
        .push(32)
        .op(&[op::CALLDATALOAD])
        .push(0)
        .op(&[op::CALLDATALOAD, op::GAS, op::CALL, op::POP, op::STOP])
        .build()
}

/// Addresses of the contracts of a fuzzed block.
const CONTRACTS: usize = 8;

fn contract_address(i: usize) -> Address {
    Address::with_last_byte(0xc0 + i as u8)
}

/// Decodes a small block from fuzz input: a handful of accounts, contracts that are storage
/// heavy, create and self-destruct, call others and revert, and transactions among them with
/// random values, nonces (some invalid), gas limits and calldata. Returns it with the
/// thread count to run it at.
pub fn decode_block(
    u: &mut Unstructured<'_>,
) -> ArbResult<(InMemoryStorage, BlockInput, NonZeroUsize)> {
    let spec = *u.choose(&SPECS)?;
    let threads = NonZeroUsize::new(u.int_in_range(1..=8)?).expect("at least 1");
    let eoas = u.int_in_range(2..=6usize)?;
    let eoa = |i: usize| Address::with_last_byte(0x10 + i as u8);
    // The beneficiary is sometimes one of the senders.
    let coinbase =
        if u.ratio(1, 4)? { eoa(u.choose_index(eoas)?) } else { Address::repeat_byte(0xcb) };
    let mut b = BlockBuilder::new(spec, coinbase);
    for i in 0..eoas {
        // Mostly funded; now and then too poor to pay for gas.
        let wei = match u.int_in_range(0..=15u8)? {
            0 => U256::ZERO,
            1 => U256::from(u.int_in_range(1..=10_000_000_000_000_000u64)?),
            2..=9 => ether(1),
            _ => ether(100),
        };
        b.fund(eoa(i), wei);
    }
    let codes = [
        contracts::slot_adder(),
        contracts::counter(),
        contracts::coinbase_reader(),
        contracts::create2_factory(),
        contracts::reverter(),
        Asm::new().op(&[op::STOP]).build(),
        Asm::new()
            .push_address(contract_address(0))
            .op(&[op::BALANCE])
            .push(0)
            .op(&[op::SSTORE])
            .build(),
        forwarder(),
    ];
    debug_assert_eq!(codes.len(), CONTRACTS);
    for (i, code) in codes.into_iter().enumerate() {
        let slots = [(U256::from(1), U256::from(u.int_in_range(0..=3u8)?))];
        b.contract(contract_address(i), code, slots);
    }
    let suicidal_init = Asm::deployer(&contracts::suicidal());
    let child = contract_address(3).create2_from_code([0u8; 32], &suicidal_init);
    if u.ratio(1, 3)? {
        // The factory's CREATE2 address already holds storage without code or nonce
        // (EIP-7610): a creation there collides, unless the block removed the account first
        // (a touch while it is empty).
        let wei = if u.arbitrary()? { U256::ZERO } else { U256::from(7) };
        let slots = [(U256::from(1), U256::from(1))];
        b.storage_mut().insert_account(child, wei, 0, Bytes::new(), slots);
    }
    let txs = u.int_in_range(0..=24usize)?;
    for _ in 0..txs {
        let from = eoa(u.choose_index(eoas)?);
        let scale = u64::from(u.int_in_range(0..=3u8)?) * 1_000_000;
        let value = U256::from(u.int_in_range(0..=scale)?);
        let gas_choice = *u.choose(&[30_000u64, 100_000, 300_000, 1_000_000])?;
        let (kind, data) = match u.int_in_range(0..=5u8)? {
            0 => (TxKind::Call(eoa(u.choose_index(eoas)?)), Bytes::new()),
            1 => (TxKind::Call(coinbase), Bytes::new()),
            2 => {
                let target = u.choose_index(CONTRACTS)?;
                let data = match target {
                    3 => suicidal_init.clone(),
                    7 => {
                        let mut data = [0u8; 64];
                        let callee = contract_address(u.choose_index(CONTRACTS)?);
                        data[12..32].copy_from_slice(callee.as_slice());
                        data[63] = u.int_in_range(0..=3u8)?;
                        Bytes::copy_from_slice(&data)
                    }
                    _ => {
                        let mut data = [0u8; 64];
                        data[31] = u.int_in_range(0..=3u8)?;
                        data[63] = u.arbitrary()?;
                        Bytes::copy_from_slice(&data)
                    }
                };
                (TxKind::Call(contract_address(target)), data)
            }
            3 => (TxKind::Create, Asm::deployer(&contracts::counter())),
            4 => (TxKind::Create, suicidal_init.clone()),
            _ => {
                // The factory's child (self-destructed, not yet created, or an account with
                // storage only), called with value.
                (TxKind::Call(child), Bytes::new())
            }
        };
        // Plain transfers get exactly 21,000 gas; everything else a random budget, which
        // may be too little (out of gas) but covers the intrinsic cost.
        let gas = if data.is_empty() && !matches!(kind, TxKind::Create) {
            21_000
        } else {
            gas_choice.max(60_000)
        };
        if u.ratio(1, 48)? {
            let nonce = b.next_nonce(from).saturating_add(u.int_in_range(0..=2)?).saturating_sub(1);
            b.tx_with_nonce(from, kind, value, data, gas, nonce);
        } else {
            b.tx(from, kind, value, data, gas);
        }
    }
    let (storage, block) = b.build();
    Ok((storage, block, threads))
}

/// The `differential` target: a decoded block must execute identically sequentially and in
/// parallel, identically through alloy-evm's `EthBlockExecutor` and parevm's
/// `ParallelBlockExecutor` (results and bundles), and, unless the block holds an EIP-7610
/// collision target ([`has_eip7610_targets`]), the engine's result must be
/// `EthBlockExecutor`'s. `Err` describes a divergence.
pub fn differential(data: &[u8]) -> Result<(), String> {
    let mut u = Unstructured::new(data);
    let Ok((storage, block, threads)) = decode_block(&mut u) else { return Ok(()) };
    let ours = both_paths(&storage, &block, threads)
        .map_err(|e| format!("divergence at {threads} threads under {:?}: {e}", block.spec))?;
    // The engine against EthBlockExecutor too, where EIP-7610 cannot separate them.
    let compared = (!has_eip7610_targets(&storage)).then_some(ours.as_ref());
    compare_block(&storage, &block, compared, threads)
        .map(|_| ())
        .map_err(|e| format!("under {:?}: {e}", block.spec))
}

/// The `snapshot_parse` target: bytes up to the first NUL are `block.json`, the rest
/// `prestate.json`; parsing gives a snapshot or an error, never a panic.
pub fn snapshot_parse(data: &[u8]) {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (block, rest) = data.split_at(split);
    let prestate = rest.get(1..).unwrap_or_default();
    let _ = parse_snapshot("fuzz", block, prestate, crate::Senders::Recover);
}

/// Accounts of a fuzzed gated block: an admin, three issuers, five users.
const GATED_ACCOUNTS: u64 = 9;
/// Pools of a fuzzed gated block (gated or not by the fuzzed policy).
const GATED_POOLS: usize = 3;

/// Decodes a small gated-pool block: a registry with random issuers (claim masks, active
/// flags), credentials (issuers, expiries around the block timestamp, revocations) and pool
/// policies; then transactions that swap through the router or call pools directly or via a
/// forwarder, and that issue, revoke and change issuers and policies, from random senders.
/// Returns it with the compliance configuration and thread count to run it at.
pub fn decode_gated_block(
    u: &mut Unstructured<'_>,
) -> ArbResult<(InMemoryStorage, BlockInput, parevm::Compliance, NonZeroUsize)> {
    use alloy_sol_types::SolCall;
    use parevm_compliance::layout::{Credential, RegistryState, CALLER_CHAIN};

    use crate::defi::{
        allowance_slot, balance_slot, gated_pair_storage, Artifact, IForwarder, IPair, IRegistry,
        IRouter,
    };
    use crate::workload::{pool_address, REGISTRY, ROUTER, TOKEN_A, TOKEN_B};

    const NOW: u64 = 1_720_000_000;
    let forwarder = Address::repeat_byte(0xf0);
    let who = |i: u64| crate::synthetic::account(3000 + i);
    let mut b = BlockBuilder::new(SpecId::PRAGUE, Address::repeat_byte(0xcb));
    let mut registry = RegistryState::new(who(0));
    for issuer in 1..=3 {
        let mask = U256::from(u.int_in_range(0u8..=15)?);
        registry = registry.issuer_with(who(issuer), mask, u.arbitrary()?, u.arbitrary()?);
        if u.ratio(1u8, 3)? {
            // A credential the issuer issued itself (valid only if it may attest itself).
            let credential =
                Credential { issuer: who(issuer), expires_at: NOW + 10, revoked: false };
            registry = registry.credential(who(issuer), u.int_in_range(0u8..=3)?, credential);
        }
    }
    for user in 4..GATED_ACCOUNTS {
        for claim in 0..4u8 {
            if u.ratio(1u8, 2)? {
                let credential = Credential {
                    issuer: who(u.int_in_range(1..=3)?),
                    expires_at: NOW - 2 + u64::from(u.int_in_range(0u8..=4)?),
                    revoked: u.ratio(1u8, 5)?,
                };
                registry = registry.credential(who(user), claim, credential);
            }
        }
    }
    for pool in 0..GATED_POOLS {
        registry = registry.policy(pool_address(pool), U256::from(u.int_in_range(0u8..=15)?));
        if u.ratio(1u8, 3)? {
            registry = registry.options(pool_address(pool), CALLER_CHAIN);
        }
    }
    // The contracts that stand between senders and pools, approved as routers or not.
    registry = registry.router(ROUTER, u.arbitrary()?).router(forwarder, u.arbitrary()?);
    // Paths that change a gated account without calling it, and calls that leave it
    // unchanged: a contract calling a pool and ignoring the outcome (try/catch), one
    // self-destructing to a pool, CREATE2 at a gated counterfactual address, and an EIP-7702
    // authorization for a gated code-less account.
    let catcher = Address::repeat_byte(0xca);
    let destructor = Address::repeat_byte(0xde);
    let factory = Address::repeat_byte(0xfa);
    let init = Asm::deployer(&[op::STOP]);
    let counterfactual = factory.create2(B256::ZERO, keccak256(&init));
    let delegator = who(GATED_ACCOUNTS);
    registry = registry
        .policy(counterfactual, U256::from(u.int_in_range(0u8..=15)?))
        .policy(delegator, U256::from(u.int_in_range(0u8..=15)?));
    b.contract(
        REGISTRY,
        Artifact::CredentialRegistry.runtime(),
        registry.slots().collect::<Vec<_>>(),
    );
    let reserve = U256::from(10u128.pow(24));
    let token = || {
        let mut slots: Vec<(U256, U256)> =
            (0..GATED_POOLS).map(|p| (balance_slot(pool_address(p)), reserve)).collect();
        for i in 0..GATED_ACCOUNTS {
            slots.push((balance_slot(who(i)), reserve));
            slots.push((allowance_slot(who(i), ROUTER), U256::MAX));
        }
        slots
    };
    b.contract(TOKEN_A, Artifact::Token.runtime(), token());
    b.contract(TOKEN_B, Artifact::Token.runtime(), token());
    b.contract(ROUTER, Artifact::Router.runtime(), []);
    b.contract(forwarder, Artifact::Forwarder.runtime(), []);
    for pool in 0..GATED_POOLS {
        b.contract(
            pool_address(pool),
            Artifact::GatedPair.runtime(),
            gated_pair_storage(TOKEN_A, TOKEN_B, 10u128.pow(24), 10u128.pow(24), REGISTRY),
        );
    }
    for i in 0..GATED_ACCOUNTS {
        b.fund(who(i), ether(10));
    }
    let pool0 = pool_address(0);
    let catcher_code =
        Asm::new().call_with_calldata(op::CALL, pool0, U256::ZERO).op(&[op::STOP]).build();
    b.contract(catcher, catcher_code, []);
    let destructor_code = Asm::new().push_address(pool0).op(&[op::SELFDESTRUCT]).build();
    b.storage_mut().insert_account(destructor, ether(1), 1, destructor_code, []);
    b.contract(factory, contracts::create2_factory(), []);
    b.fund(counterfactual, ether(1));
    b.fund(delegator, ether(1));
    let txs = u.int_in_range(1..=24)?;
    for _ in 0..txs {
        let from = who(u.int_in_range(0..=GATED_ACCOUNTS - 1)?);
        let pool = pool_address(u.int_in_range(0..=GATED_POOLS - 1)?);
        let subject = who(u.int_in_range(4..=GATED_ACCOUNTS - 1)?);
        let claim = u.int_in_range(0u8..=3)?;
        let swap = IRouter::swapExactTokensForTokensCall {
            pair: pool,
            tokenIn: if u.arbitrary()? { TOKEN_A } else { TOKEN_B },
            amountIn: U256::from(u.int_in_range(1u64..=1_000_000)?),
            amountOutMin: U256::ZERO,
            to: from,
        };
        let mut authorize = None;
        let (to, data): (Address, Vec<u8>) = match u.int_in_range(0u8..=17)? {
            14 => {
                // A swap on the pool through the forwarder (a contract between).
                let out = U256::from(u.int_in_range(1u64..=1000)?);
                let swap = IPair::swapCall { amount0Out: U256::ZERO, amount1Out: out, to: from };
                (
                    forwarder,
                    IForwarder::forwardCall { target: pool, data: swap.abi_encode().into() }
                        .abi_encode(),
                )
            }
            15 => (
                REGISTRY,
                IRegistry::setPoolOptionsCall {
                    pool,
                    options: U256::from(u.int_in_range(0u64..=CALLER_CHAIN)?),
                }
                .abi_encode(),
            ),
            16 => (
                REGISTRY,
                IRegistry::setRouterCall {
                    router: if u.arbitrary()? { ROUTER } else { forwarder },
                    approved: u.arbitrary()?,
                }
                .abi_encode(),
            ),
            17 => (
                REGISTRY,
                IRegistry::setSelfAttestationCall {
                    issuer: who(u.int_in_range(1..=3)?),
                    allowed: u.arbitrary()?,
                }
                .abi_encode(),
            ),
            10 => {
                // A swap on pool 0 that succeeds, or one it refuses (more out than it has).
                let out = if u.arbitrary()? { U256::from(1000) } else { reserve * U256::from(2) };
                let swap = IPair::swapCall { amount0Out: U256::ZERO, amount1Out: out, to: from };
                (catcher, swap.abi_encode())
            }
            11 => (destructor, Vec::new()),
            12 => (factory, init.to_vec()),
            13 => {
                authorize = Some(u.int_in_range(0u64..=1)?);
                (who(u.int_in_range(0..=GATED_ACCOUNTS - 1)?), Vec::new())
            }
            0..=3 => (ROUTER, swap.abi_encode()),
            4 => {
                let quote = IPair::getReservesCall {}.abi_encode();
                (
                    forwarder,
                    IForwarder::forwardCall { target: pool, data: quote.into() }.abi_encode(),
                )
            }
            5 => (
                REGISTRY,
                IRegistry::issueCall {
                    // Sometimes the sender itself: self-attestation.
                    subject: if u.ratio(1u8, 4)? { from } else { subject },
                    claim,
                    expiresAt: NOW + u64::from(u.int_in_range(0u8..=2)?),
                }
                .abi_encode(),
            ),
            6 => (REGISTRY, IRegistry::revokeCall { subject, claim }.abi_encode()),
            7 => (
                REGISTRY,
                IRegistry::setIssuerCall {
                    issuer: who(u.int_in_range(1..=3)?),
                    claimMask: U256::from(u.int_in_range(0u8..=15)?),
                    active: u.arbitrary()?,
                }
                .abi_encode(),
            ),
            8 => (
                REGISTRY,
                IRegistry::setPoolPolicyCall {
                    pool,
                    requiredClaims: U256::from(u.int_in_range(0u8..=15)?),
                }
                .abi_encode(),
            ),
            _ => (
                ROUTER,
                IRouter::quoteCall { pair: pool, tokenIn: TOKEN_A, amountIn: U256::from(1000) }
                    .abi_encode(),
            ),
        };
        b.tx(from, TxKind::Call(to), U256::ZERO, data.into(), 300_000);
        if let Some(nonce) = authorize {
            b.authorize_last(delegator, forwarder, nonce);
        }
    }
    let hook = std::sync::Arc::new(parevm_compliance::RegistryHook::new(REGISTRY));
    let compliance = match u.int_in_range(0u8..=4)? {
        0 => parevm::Compliance::new(hook, parevm::ComplianceMode::FailBlock),
        1 => parevm::Compliance::new(hook, parevm::ComplianceMode::Revert),
        // A budget that some of the block's exclusions fit in and others do not.
        2 => parevm::Compliance::new(hook, parevm::ComplianceMode::Exclude)
            .with_exclusion_budget(u.int_in_range(0..=200_000)?),
        _ => parevm::Compliance::new(hook, parevm::ComplianceMode::Exclude),
    };
    let threads = NonZeroUsize::new(u.int_in_range(1..=8)?).expect("at least 1");
    let (storage, block) = b.build();
    Ok((storage, block, compliance, threads))
}

/// The `compliance` target: a random gated block must have the same outcome (included and
/// excluded transactions, state, or the same error) sequentially and with Block-STM.
pub fn compliance(data: &[u8]) -> Result<(), String> {
    let mut u = Unstructured::new(data);
    let Ok((storage, block, compliance, threads)) = decode_gated_block(&mut u) else {
        return Ok(());
    };
    crate::both_paths_with(&storage, &block, threads, Some(&compliance))
        .map(|_| ())
        .map_err(|e| format!("divergence at {threads} threads ({:?}): {e}", compliance.mode))
}
