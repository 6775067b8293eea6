//! The compliance scenarios of issue 5, each executed sequentially and with Block-STM at 1,
//! 2, 4 and 8 threads, which must agree exactly.

use std::num::NonZeroUsize;

use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolValue};
use parevm::revm::primitives::hardfork::SpecId;
use parevm::revm::primitives::KECCAK_EMPTY;
use parevm::{
    BlockInput, BlockOutput, ComplianceMode, ExecutionError, InMemoryStorage, Rejection,
    RejectionReason,
};
use parevm_compliance::layout::{Credential, RegistryState, CALLER_CHAIN};
use parevm_compliance::{Claim, ComplianceFile};
use parevm_fixtures::both_paths_with;
use parevm_fixtures::defi::{
    allowance_slot, balance_slot, delegation_designator, gated_pair_storage, Artifact, IBatch,
    IForwarder, IPair, IRegistry, IRouter, IToken,
};
use parevm_fixtures::synthetic::{account, ether, Asm, BlockBuilder};

const REGISTRY: Address = Address::repeat_byte(0xc5);
const TOKEN_A: Address = Address::repeat_byte(0x7a);
const TOKEN_B: Address = Address::repeat_byte(0x7b);
const POOL: Address = Address::repeat_byte(0x9a);
const ROUTER: Address = Address::repeat_byte(0x80);
const FORWARDER: Address = Address::repeat_byte(0xf0);
const PROXY: Address = Address::repeat_byte(0xf1);

const RESERVE: u128 = 1_000_000 * 10u128.pow(18);
/// Tokens A the pool holds above its reserve: what one direct swap can take as input.
const SURPLUS: u128 = 10u128.pow(18);

fn admin() -> Address {
    account(1000)
}
/// Active, may attest every named claim.
fn issuer() -> Address {
    account(1001)
}
/// Active, may attest only NOT_SANCTIONED.
fn narrow_issuer() -> Address {
    account(1002)
}
/// Holds a valid KYC credential.
fn alice() -> Address {
    account(1)
}
/// Holds no credential.
fn bob() -> Address {
    account(2)
}

/// Block timestamp of [`BlockBuilder`] blocks.
const NOW: u64 = 1_720_000_000;

fn valid(issuer: Address) -> Credential {
    Credential { issuer, expires_at: NOW + 86_400, revoked: false }
}

/// A Prague block with the registry (pool gated on KYC), two tokens, the gated pool, the
/// router, a forwarder and a proxy to it; `alice` has KYC, `bob` nothing. `registry`
/// adds to the registry's pre-state.
fn world(registry: impl FnOnce(RegistryState) -> RegistryState) -> BlockBuilder {
    let mut b = BlockBuilder::new(SpecId::PRAGUE, Address::repeat_byte(0xcb));
    let state = RegistryState::new(admin())
        .issuer(issuer(), Claim::mask(&Claim::ALL), true)
        .issuer(narrow_issuer(), Claim::NotSanctioned.bit(), true)
        .credential(alice(), Claim::Kyc.id(), valid(issuer()))
        .policy(POOL, Claim::Kyc.bit());
    b.contract(
        REGISTRY,
        Artifact::CredentialRegistry.runtime(),
        registry(state).slots().collect::<Vec<_>>(),
    );
    let holders = [alice(), bob(), PROXY, account(3), account(4)];
    let token_slots = |pool_balance: u128| {
        let mut slots = vec![(balance_slot(POOL), U256::from(pool_balance))];
        for holder in holders {
            slots.push((balance_slot(holder), U256::from(100u128 * 10u128.pow(18))));
            slots.push((allowance_slot(holder, ROUTER), U256::MAX));
        }
        slots
    };
    b.contract(TOKEN_A, Artifact::Token.runtime(), token_slots(RESERVE + SURPLUS));
    b.contract(TOKEN_B, Artifact::Token.runtime(), token_slots(RESERVE));
    b.contract(
        POOL,
        Artifact::GatedPair.runtime(),
        gated_pair_storage(TOKEN_A, TOKEN_B, RESERVE, RESERVE, REGISTRY),
    );
    b.contract(ROUTER, Artifact::Router.runtime(), []);
    b.contract(FORWARDER, Artifact::Forwarder.runtime(), []);
    b.contract(
        PROXY,
        Artifact::Proxy.runtime(),
        [(U256::ZERO, U256::from_be_slice(FORWARDER.as_slice()))],
    );
    for user in [admin(), issuer(), narrow_issuer(), alice(), bob(), account(3), account(4)] {
        b.fund(user, ether(10));
    }
    b
}

/// A swap taking the pool's surplus of token A as input: 0.1 B out.
fn direct_swap(to: Address) -> Bytes {
    IPair::swapCall { amount0Out: U256::ZERO, amount1Out: U256::from(10u128.pow(17)), to }
        .abi_encode()
        .into()
}

fn router_swap(to: Address) -> Bytes {
    IRouter::swapExactTokensForTokensCall {
        pair: POOL,
        tokenIn: TOKEN_A,
        amountIn: U256::from(10u128.pow(18)),
        amountOutMin: U256::ZERO,
        to,
    }
    .abi_encode()
    .into()
}

fn forward(target: Address, data: Bytes) -> Bytes {
    IForwarder::forwardCall { target, data }.abi_encode().into()
}

fn registry_call(b: &mut BlockBuilder, from: Address, data: Vec<u8>) {
    b.tx(from, TxKind::Call(REGISTRY), U256::ZERO, data.into(), 200_000);
}

fn swap(b: &mut BlockBuilder, from: Address) {
    b.tx(from, TxKind::Call(ROUTER), U256::ZERO, router_swap(from), 300_000);
}

/// Executes with the registry hook in `mode` on both paths at 1, 2, 4 and 8 threads.
fn run(
    storage: &InMemoryStorage,
    block: &BlockInput,
    mode: ComplianceMode,
) -> Result<BlockOutput, ExecutionError> {
    let file = ComplianceFile {
        registry: REGISTRY,
        mode: match mode {
            ComplianceMode::Exclude => parevm_compliance::ModeName::Exclude,
            ComplianceMode::Revert => parevm_compliance::ModeName::Revert,
            ComplianceMode::FailBlock => parevm_compliance::ModeName::FailBlock,
        },
        exclusion_budget: None,
    };
    run_with(storage, block, &file.compliance())
}

/// Executes with `compliance` on both paths at 1, 2, 4 and 8 threads.
fn run_with(
    storage: &InMemoryStorage,
    block: &BlockInput,
    compliance: &parevm::Compliance,
) -> Result<BlockOutput, ExecutionError> {
    let mut first = None;
    for threads in [1, 2, 4, 8] {
        let threads = NonZeroUsize::new(threads).unwrap();
        let result = both_paths_with(storage, block, threads, Some(compliance))
            .unwrap_or_else(|difference| panic!("{threads} threads: {difference}"));
        first.get_or_insert(result);
    }
    first.unwrap()
}

fn exclude(b: BlockBuilder) -> BlockOutput {
    let (storage, block) = b.build();
    run(&storage, &block, ComplianceMode::Exclude).expect("the block executes")
}

/// The outcome of transaction `index`: `Ok(success)` if included, `Err(rejection)` if not.
fn outcome(output: &BlockOutput, index: usize) -> Result<bool, (Rejection, Option<usize>)> {
    if let Some(e) = output.excluded.iter().find(|e| e.index == index) {
        return Err((e.rejection, e.cascaded_from));
    }
    let tx = output.transactions.iter().find(|t| t.index == index).expect("listed");
    Ok(tx.is_success())
}

fn rejected(claim: Claim, reason: RejectionReason) -> Result<bool, (Rejection, Option<usize>)> {
    Err((Rejection { pool: POOL, claim: claim.id(), reason, caller: None }, None))
}

/// The sender's account is untouched by its excluded transactions.
fn assert_untouched(output: &BlockOutput, sender: Address) {
    assert!(!output.state.accounts.contains_key(&sender), "{sender} was changed");
}

#[test]
fn compliant_direct_swap_is_included() {
    let mut b = world(|s| s);
    b.call(alice(), POOL, direct_swap(alice()));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), Ok(true));
    assert!(output.excluded.is_empty());
}

#[test]
fn sender_without_credential_is_excluded_without_trace() {
    let mut b = world(|s| s);
    b.call(bob(), POOL, direct_swap(bob()));
    b.call(alice(), POOL, direct_swap(alice()));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Missing));
    assert_eq!(outcome(&output, 1), Ok(true), "the surplus is still there for alice");
    assert_untouched(&output, bob());
    assert_eq!(output.transactions.len(), 1);
    assert_eq!(output.gas_used, output.transactions[0].gas_used(), "no gas for bob");
    assert_eq!(output.receipts().len(), 1);
}

#[test]
fn swaps_through_the_router_are_checked() {
    let mut b = world(|s| s);
    swap(&mut b, bob());
    swap(&mut b, alice());
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Missing));
    assert_eq!(outcome(&output, 1), Ok(true));
}

#[test]
fn swaps_through_a_proxy_are_checked() {
    // bob -> Proxy -(DELEGATECALL)-> Forwarder code -(CALL)-> pool.
    let mut b = world(|s| s);
    b.call(bob(), PROXY, forward(POOL, direct_swap(bob())));
    b.call(alice(), PROXY, forward(POOL, direct_swap(alice())));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Missing));
    assert_eq!(outcome(&output, 1), Ok(true));
}

#[test]
fn swaps_from_a_constructor_are_checked() {
    let init = |to: Address| -> Bytes {
        let mut code = Artifact::CallOnDeploy.creation().to_vec();
        code.extend((POOL, direct_swap(to)).abi_encode_params());
        code.into()
    };
    let mut b = world(|s| s);
    b.tx(bob(), TxKind::Create, U256::ZERO, init(bob()), 500_000);
    b.tx(alice(), TxKind::Create, U256::ZERO, init(alice()), 500_000);
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Missing));
    assert_eq!(outcome(&output, 1), Ok(true));
    assert_untouched(&output, bob());
}

#[test]
fn eip7702_delegated_senders_are_checked() {
    // Both senders delegate to the forwarder and call themselves: their own code calls the pool.
    let mut b = world(|s| s);
    for user in [bob(), alice()] {
        b.storage_mut().insert_account(user, ether(10), 0, delegation_designator(FORWARDER), []);
    }
    b.call(bob(), bob(), forward(POOL, direct_swap(bob())));
    b.call(alice(), alice(), forward(POOL, direct_swap(alice())));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Missing));
    assert_eq!(outcome(&output, 1), Ok(true));
}

#[test]
fn credential_issued_earlier_in_the_block_is_honoured() {
    let mut b = world(|s| s);
    swap(&mut b, account(3));
    registry_call(
        &mut b,
        issuer(),
        IRegistry::issueCall { subject: account(3), claim: Claim::Kyc.id(), expiresAt: NOW + 100 }
            .abi_encode(),
    );
    swap(&mut b, account(3));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Missing));
    assert_eq!(outcome(&output, 1), Ok(true));
    // Transaction 2 has nonce 1 but the sender's first transaction was excluded: it is a
    // nonce gap, excluded with the first one's rejection.
    assert_eq!(
        outcome(&output, 2),
        Err((
            Rejection { pool: POOL, claim: 0, reason: RejectionReason::Missing, caller: None },
            Some(0)
        ))
    );
}

#[test]
fn credential_issued_earlier_admits_a_first_swap() {
    let mut b = world(|s| s);
    registry_call(
        &mut b,
        issuer(),
        IRegistry::issueCall { subject: account(3), claim: Claim::Kyc.id(), expiresAt: NOW + 100 }
            .abi_encode(),
    );
    swap(&mut b, account(3));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), Ok(true));
    assert_eq!(outcome(&output, 1), Ok(true));
}

#[test]
fn credential_revoked_earlier_in_the_block_is_honoured() {
    let mut b = world(|s| s);
    swap(&mut b, alice());
    registry_call(
        &mut b,
        issuer(),
        IRegistry::revokeCall { subject: alice(), claim: Claim::Kyc.id() }.abi_encode(),
    );
    swap(&mut b, alice());
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), Ok(true));
    assert_eq!(outcome(&output, 1), Ok(true));
    assert_eq!(outcome(&output, 2), rejected(Claim::Kyc, RejectionReason::Revoked));
}

#[test]
fn expiry_at_the_block_timestamp_is_expired() {
    let mut b = world(|s| {
        s.credential(account(3), Claim::Kyc.id(), Credential { expires_at: NOW, ..valid(issuer()) })
            .credential(
                account(4),
                Claim::Kyc.id(),
                Credential { expires_at: NOW + 1, ..valid(issuer()) },
            )
    });
    swap(&mut b, account(3));
    swap(&mut b, account(4));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Expired));
    assert_eq!(outcome(&output, 1), Ok(true));
}

#[test]
fn issuer_deactivated_mid_block() {
    let mut b = world(|s| s);
    swap(&mut b, alice());
    registry_call(
        &mut b,
        admin(),
        IRegistry::setIssuerCall {
            issuer: issuer(),
            claimMask: Claim::mask(&Claim::ALL),
            active: false,
        }
        .abi_encode(),
    );
    swap(&mut b, alice());
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), Ok(true));
    assert_eq!(outcome(&output, 1), Ok(true));
    assert_eq!(outcome(&output, 2), rejected(Claim::Kyc, RejectionReason::IssuerInactive));
}

#[test]
fn issuer_not_allowed_for_the_claim() {
    // A KYC credential from an issuer that may only attest NOT_SANCTIONED (written into the
    // pre-state: the registry itself would refuse to issue it), and one whose issuer lost
    // the right mid-block.
    let mut b = world(|s| s.credential(account(3), Claim::Kyc.id(), valid(narrow_issuer())));
    swap(&mut b, account(3));
    swap(&mut b, alice());
    registry_call(
        &mut b,
        admin(),
        IRegistry::setIssuerCall { issuer: issuer(), claimMask: Claim::Human.bit(), active: true }
            .abi_encode(),
    );
    swap(&mut b, alice());
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::IssuerNotAllowed));
    assert_eq!(outcome(&output, 1), Ok(true));
    assert_eq!(outcome(&output, 3), rejected(Claim::Kyc, RejectionReason::IssuerNotAllowed));
}

#[test]
fn policy_changed_mid_block() {
    let mut b = world(|s| s);
    swap(&mut b, alice());
    registry_call(
        &mut b,
        admin(),
        IRegistry::setPoolPolicyCall {
            pool: POOL,
            requiredClaims: Claim::mask(&[Claim::Kyc, Claim::Accredited]),
        }
        .abi_encode(),
    );
    swap(&mut b, alice());
    // Lifting the policy admits bob.
    registry_call(
        &mut b,
        admin(),
        IRegistry::setPoolPolicyCall { pool: POOL, requiredClaims: U256::ZERO }.abi_encode(),
    );
    swap(&mut b, bob());
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), Ok(true));
    assert_eq!(outcome(&output, 2), rejected(Claim::Accredited, RejectionReason::Missing));
    assert_eq!(outcome(&output, 4), Ok(true));
}

#[test]
fn staticcall_price_quote_is_allowed() {
    let mut b = world(|s| s);
    let quote = IRouter::quoteCall { pair: POOL, tokenIn: TOKEN_A, amountIn: U256::from(1000) }
        .abi_encode();
    b.call(bob(), ROUTER, quote.into());
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), Ok(true));
    // But a direct call to the pool, even to a view function, is a call that could change it.
    let mut b = world(|s| s);
    b.call(bob(), POOL, IPair::getReservesCall {}.abi_encode().into());
    assert_eq!(outcome(&exclude(b), 0), rejected(Claim::Kyc, RejectionReason::Missing));
}

#[test]
fn exclusion_cascades_to_the_senders_later_transactions() {
    let mut b = world(|s| s);
    swap(&mut b, bob()); // 0: rejected
    b.call(
        bob(),
        TOKEN_A,
        IToken::transferCall { to: alice(), value: U256::from(1) }.abi_encode().into(),
    ); // 1: nonce gap
    swap(&mut b, alice()); // 2
    b.transfer(bob(), alice(), U256::from(5)); // 3: nonce gap
    b.call(
        account(3),
        TOKEN_A,
        IToken::transferCall { to: alice(), value: U256::from(1) }.abi_encode().into(),
    ); // 4
    let output = exclude(b);
    let missing =
        Rejection { pool: POOL, claim: 0, reason: RejectionReason::Missing, caller: None };
    assert_eq!(outcome(&output, 0), Err((missing, None)));
    assert_eq!(outcome(&output, 1), Err((missing, Some(0))));
    assert_eq!(outcome(&output, 2), Ok(true));
    assert_eq!(outcome(&output, 3), Err((missing, Some(0))));
    assert_eq!(outcome(&output, 4), Ok(true));
    assert_untouched(&output, bob());
    let indices: Vec<usize> = output.transactions.iter().map(|t| t.index).collect();
    assert_eq!(indices, [2, 4]);
}

/// Bob's transaction with nonce `nonce`: a direct swap on the pool (rejected, bob has no
/// credential) or a plain transfer to alice.
fn bob_tx(b: &mut BlockBuilder, nonce: u64, swap: bool) {
    let (to, data, gas) =
        if swap { (POOL, direct_swap(bob()), 300_000) } else { (alice(), Bytes::new(), 21_000) };
    b.tx_with_nonce(bob(), TxKind::Call(to), U256::ZERO, data, gas, nonce);
}

#[test]
fn a_nonce_gap_no_exclusion_caused_is_not_a_cascade() {
    let mut b = world(|s| s);
    bob_tx(&mut b, 0, true); // 0: rejected, nonce 0 unused
    bob_tx(&mut b, 0, false); // 1: nonce 0 again, included
    bob_tx(&mut b, 2, false); // 2: nonce 1 was never sent: the gap is bob's own
    let (storage, block) = b.build();
    match run(&storage, &block, ComplianceMode::Exclude) {
        Err(ExecutionError::InvalidTransaction { index: 2, .. }) => {}
        other => panic!("expected transaction 2 invalid, got {other:?}"),
    }
    // The same gap with nonce 1 carried by an excluded transaction is a cascade.
    let mut b = world(|s| s);
    bob_tx(&mut b, 0, true); // 0: rejected
    bob_tx(&mut b, 1, false); // 1: cascades (nonce 0 unused)
    bob_tx(&mut b, 3, false); // 2: nonces 0 and 1 unused, but 2 never sent
    let (storage, block) = b.build();
    match run(&storage, &block, ComplianceMode::Exclude) {
        Err(ExecutionError::InvalidTransaction { index: 2, .. }) => {}
        other => panic!("expected transaction 2 invalid, got {other:?}"),
    }
}

#[test]
fn a_cascade_names_the_rejection_that_left_its_nonce_unused() {
    let mut b = world(|s| s);
    bob_tx(&mut b, 0, true); // 0: rejected (nonce 0)
    bob_tx(&mut b, 0, false); // 1: included, bob's nonce is 1
    bob_tx(&mut b, 1, true); // 2: rejected (nonce 1)
    bob_tx(&mut b, 2, false); // 3: cascades from 2, not from 0
    bob_tx(&mut b, 3, false); // 4: cascades from 2 through 3
    let output = exclude(b);
    let missing =
        Rejection { pool: POOL, claim: 0, reason: RejectionReason::Missing, caller: None };
    assert_eq!(outcome(&output, 0), Err((missing, None)));
    assert_eq!(outcome(&output, 1), Ok(true));
    assert_eq!(outcome(&output, 2), Err((missing, None)));
    assert_eq!(outcome(&output, 3), Err((missing, Some(2))));
    assert_eq!(outcome(&output, 4), Err((missing, Some(2))));
}

#[test]
fn fail_block_mode_names_the_first_rejected_transaction() {
    let mut b = world(|s| s);
    swap(&mut b, alice());
    swap(&mut b, bob());
    b.call(account(3), POOL, direct_swap(account(3)));
    let (storage, block) = b.build();
    let error = run(&storage, &block, ComplianceMode::FailBlock).unwrap_err();
    match error {
        ExecutionError::ComplianceRejected { index, rejection } => {
            assert_eq!(index, 1);
            assert_eq!(
                rejection,
                Rejection { pool: POOL, claim: 0, reason: RejectionReason::Missing, caller: None }
            );
        }
        other => panic!("unexpected error {other}"),
    }
    let message = run(&storage, &block, ComplianceMode::FailBlock).unwrap_err().to_string();
    assert!(message.contains("transaction 1 rejected"), "{message}");
}

#[test]
fn without_compliance_the_pool_is_open_and_nothing_changes() {
    let mut b = world(|s| s);
    swap(&mut b, bob());
    let (storage, block) = b.build();
    let plain = parevm_fixtures::sequential(&storage, &block, None).unwrap();
    assert!(plain.excluded.is_empty());
    assert!(plain.transactions[0].is_success());
}

#[test]
fn the_check_sees_the_transactions_own_registry_writes() {
    // A contract issuer credentials the sender and swaps for it in one transaction: the
    // check must see the credential written earlier in the same transaction. Another issues,
    // revokes and swaps: rejected as revoked (not as missing).
    let batch = Address::repeat_byte(0xba);
    let mut b = world(|s| s.issuer(batch, Claim::mask(&Claim::ALL), true));
    b.contract(batch, Artifact::Batch.runtime(), []);
    let issue = |subject: Address| -> Bytes {
        IRegistry::issueCall { subject, claim: Claim::Kyc.id(), expiresAt: NOW + 100 }
            .abi_encode()
            .into()
    };
    let revoke = |subject: Address| -> Bytes {
        IRegistry::revokeCall { subject, claim: Claim::Kyc.id() }.abi_encode().into()
    };
    let run = |targets: Vec<Address>, data: Vec<Bytes>| -> Bytes {
        IBatch::runCall { targets, data }.abi_encode().into()
    };
    // The revoking one first: its swap would change the pool (the surplus is still there).
    b.call(
        account(4),
        batch,
        run(
            vec![REGISTRY, REGISTRY, POOL],
            vec![issue(account(4)), revoke(account(4)), direct_swap(account(4))],
        ),
    );
    b.call(
        account(3),
        batch,
        run(vec![REGISTRY, POOL], vec![issue(account(3)), direct_swap(account(3))]),
    );
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Revoked));
    assert_eq!(outcome(&output, 1), Ok(true));
}

// The rule on state (issue 14): a sender without the credentials may not *change* a gated
// account by any path, and calls that leave it unchanged are not rejections.

/// Runtime code that calls `target` with its own calldata through `opcode` (`CALL` and
/// `CALLCODE` with `value`, or `DELEGATECALL`), ignores the outcome and stops.
fn caller_code(opcode: u8, target: Address, value: U256) -> Bytes {
    use parevm::revm::bytecode::opcode as op;
    Asm::new().call_with_calldata(opcode, target, value).op(&[op::STOP]).build()
}

const CATCHER: Address = Address::repeat_byte(0xca);

/// A swap the pool refuses: more of token B out than it holds.
fn failing_swap(to: Address) -> Bytes {
    IPair::swapCall { amount0Out: U256::ZERO, amount1Out: U256::from(RESERVE * 2), to }
        .abi_encode()
        .into()
}

#[test]
fn a_view_call_through_a_contract_leaves_the_pool_unchanged_and_is_allowed() {
    // A legacy oracle reads the pool by CALL (not STATICCALL): nothing changes.
    let mut b = world(|s| s);
    let quote = forward(POOL, IPair::getReservesCall {}.abi_encode().into());
    b.call(bob(), FORWARDER, quote);
    assert_eq!(outcome(&exclude(b), 0), Ok(true));
}

#[test]
fn a_caught_failing_pool_call_is_allowed_and_a_caught_successful_one_is_not() {
    let mut b = world(|s| s);
    b.contract(CATCHER, caller_code(parevm::revm::bytecode::opcode::CALL, POOL, U256::ZERO), []);
    b.call(bob(), CATCHER, direct_swap(bob())); // 0: the swap would succeed: rejected
    b.call(account(3), CATCHER, failing_swap(account(3))); // 1: the pool reverts, caught
    b.call(alice(), CATCHER, direct_swap(alice())); // 2: credentialed
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Missing));
    assert_eq!(outcome(&output, 1), Ok(true), "the catcher succeeds, the pool is unchanged");
    assert_eq!(outcome(&output, 2), Ok(true));
}

#[test]
fn a_call_with_more_value_than_the_caller_holds_is_allowed() {
    let mut b = world(|s| s);
    let call = parevm::revm::bytecode::opcode::CALL;
    b.contract(CATCHER, caller_code(call, POOL, ether(1_000)), []);
    b.call(bob(), CATCHER, Bytes::new());
    assert_eq!(outcome(&exclude(b), 0), Ok(true), "the CALL fails: nothing reaches the pool");
}

#[test]
fn callcode_and_delegatecall_into_the_pools_code_are_treated_alike() {
    use parevm::revm::bytecode::opcode as op;
    let (callcode, delegatecall) = (Address::repeat_byte(0xcc), Address::repeat_byte(0xdc));
    let mut b = world(|s| s);
    b.contract(callcode, caller_code(op::CALLCODE, POOL, U256::ZERO), []);
    b.contract(delegatecall, caller_code(op::DELEGATECALL, POOL, U256::ZERO), []);
    b.call(bob(), callcode, direct_swap(bob()));
    b.call(bob(), delegatecall, direct_swap(bob()));
    let output = exclude(b);
    // The pool's code runs on the caller's storage: the pool itself is not changed.
    assert_eq!(outcome(&output, 0), Ok(true));
    assert_eq!(outcome(&output, 1), Ok(true));
    assert!(!output.state.accounts.contains_key(&POOL));
}

#[test]
fn selfdestruct_paying_a_gated_pool_is_checked() {
    use parevm::revm::bytecode::opcode as op;
    let destructor = Address::repeat_byte(0xde);
    let mut b = world(|s| s);
    let code = Asm::new().push_address(POOL).op(&[op::SELFDESTRUCT]).build();
    b.storage_mut().insert_account(destructor, ether(1), 1, code, []);
    b.call(bob(), destructor, Bytes::new());
    b.call(alice(), destructor, Bytes::new());
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::Missing));
    assert_eq!(outcome(&output, 1), Ok(true));
    assert_eq!(output.state.accounts[&POOL].info.as_ref().unwrap().balance, ether(1));
}

#[test]
fn create2_deploying_at_a_gated_address_is_checked() {
    let factory = Address::repeat_byte(0xfa);
    let init = Asm::deployer(&[parevm::revm::bytecode::opcode::STOP]);
    let target = factory.create2(alloy_primitives::B256::ZERO, alloy_primitives::keccak256(&init));
    // A counterfactual address gated before anything is deployed there, holding ETH.
    let mut b = world(|s| s.policy(target, Claim::Kyc.bit()));
    b.contract(factory, parevm_fixtures::synthetic::contracts::create2_factory(), []);
    b.fund(target, ether(1));
    b.tx(bob(), TxKind::Call(factory), U256::ZERO, init.clone(), 200_000);
    b.tx(alice(), TxKind::Call(factory), U256::ZERO, init, 200_000);
    let output = exclude(b);
    let missing =
        Rejection { pool: target, claim: 0, reason: RejectionReason::Missing, caller: None };
    assert_eq!(outcome(&output, 0), Err((missing, None)));
    assert_eq!(outcome(&output, 1), Ok(true));
    assert!(output.state.accounts[&target].info.as_ref().unwrap().code_hash != KECCAK_EMPTY);
}

/// Makes the block's last transaction an EIP-7702 one carrying `authority`'s signed
/// delegation to the forwarder (its nonce 0).
fn authorize_last(b: &mut BlockBuilder, authority: Address) {
    b.authorize_last(authority, FORWARDER, 0);
    b.block_mut().transactions.last_mut().unwrap().gas_limit = 100_000;
}

#[test]
fn an_eip7702_authorization_giving_code_to_a_gated_account_is_checked() {
    // A code-less gated account that signed a delegation; whoever sends it sets its code.
    let gated = account(77);
    let mut b = world(|s| s.policy(gated, Claim::Kyc.bit()));
    b.fund(gated, ether(1));
    for sender in [bob(), alice()] {
        b.transfer(sender, account(4), U256::ZERO);
        authorize_last(&mut b, gated);
    }
    let output = exclude(b);
    let missing =
        Rejection { pool: gated, claim: 0, reason: RejectionReason::Missing, caller: None };
    assert_eq!(outcome(&output, 0), Err((missing, None)));
    assert_eq!(outcome(&output, 1), Ok(true));
    assert_eq!(output.state.accounts[&gated].info.as_ref().unwrap().nonce, 1);
}

// `revert` mode: a rejection costs the sender.

fn revert(b: BlockBuilder) -> BlockOutput {
    let (storage, block) = b.build();
    run(&storage, &block, ComplianceMode::Revert).expect("the block executes")
}

fn nonce_and_balance(output: &BlockOutput, account: Address) -> (u64, U256) {
    let info = output.state.accounts[&account].info.as_ref().expect("exists");
    (info.nonce, info.balance)
}

#[test]
fn revert_mode_includes_a_rejected_transaction_as_failed_and_charges_its_gas() {
    let mut b = world(|s| s);
    b.call(bob(), POOL, direct_swap(bob())); // 0: rejected before its first frame
    swap(&mut b, bob()); // 1: rejected after its frames (through the router)
    b.transfer(bob(), account(4), U256::from(7)); // 2: bob's next nonce: no cascade
    b.call(alice(), POOL, direct_swap(alice())); // 3: the surplus is still there
    let output = revert(b);
    let missing =
        Rejection { pool: POOL, claim: 0, reason: RejectionReason::Missing, caller: None };
    assert!(output.excluded.is_empty());
    let rejected: Vec<_> = output.rejected.iter().map(|r| (r.index, r.rejection)).collect();
    assert_eq!(rejected, [(0, missing), (1, missing)]);
    assert_eq!(
        [0, 1, 2, 3].map(|i| outcome(&output, i)),
        [Ok(false), Ok(false), Ok(true), Ok(true)]
    );
    let gas: Vec<u64> = output.transactions.iter().map(|t| t.gas_used()).collect();
    assert_eq!(output.gas_used, gas.iter().sum::<u64>(), "the rejected count in the block");
    // The early rejection pays the intrinsic gas only; the router swap pays for the frames
    // it ran up to the rejection.
    let intrinsic = 21_000 + 16 * 4 + 16 * 3 * 32; // selector and three non-zero words
    assert!(gas[0] <= intrinsic, "{}", gas[0]);
    assert!(gas[1] > gas[0] + 20_000, "{} against {}", gas[1], gas[0]);
    // Bob used three nonces and paid for all three; the pool and his tokens are untouched.
    let (nonce, balance) = nonce_and_balance(&output, bob());
    assert_eq!(nonce, 3);
    let price = U256::from(parevm_fixtures::synthetic::BASE_FEE)
        + U256::from(parevm_fixtures::synthetic::PRIORITY_FEE);
    let paid = U256::from(gas[0] + gas[1] + gas[2]) * price + U256::from(7);
    assert_eq!(balance, ether(10) - paid);
    let token_a = &output.state.accounts[&TOKEN_A].storage;
    assert!(!token_a.contains_key(&balance_slot(bob())), "bob's tokens did not move");
}

#[test]
fn revert_mode_excludes_what_no_revert_undoes() {
    // An EIP-7702 authorization is applied before the first frame and survives a revert.
    let gated = account(77);
    let mut b = world(|s| s.policy(gated, Claim::Kyc.bit()));
    b.fund(gated, ether(1));
    b.transfer(bob(), account(4), U256::ZERO);
    authorize_last(&mut b, gated);
    let output = revert(b);
    let missing =
        Rejection { pool: gated, claim: 0, reason: RejectionReason::Missing, caller: None };
    assert_eq!(outcome(&output, 0), Err((missing, None)));
    assert!(output.rejected.is_empty());
    assert!(!output.state.accounts.contains_key(&gated));
}

/// Runtime code that burns about `rounds` × 80 gas hashing, then calls the pool with its
/// calldata: the "free computation" attack, paid for only in `revert` mode.
fn burner(rounds: u64) -> Bytes {
    use parevm::revm::bytecode::opcode as op;
    let asm = Asm::new().push(rounds);
    let top = asm.len() as u64;
    asm.op(&[op::JUMPDEST])
        .push(64)
        .push(0)
        .op(&[op::KECCAK256, op::POP])
        .push(1)
        .op(&[op::SWAP1, op::SUB, op::DUP1])
        .push(top)
        .op(&[op::JUMPI, op::POP])
        .call_with_calldata(op::CALL, POOL, U256::ZERO)
        .op(&[op::STOP])
        .build()
}

#[test]
fn free_computation_costs_nothing_under_exclude_and_its_gas_under_revert() {
    let burn = Address::repeat_byte(0xbb);
    let attackers: Vec<Address> = (0..8).map(|i| account(500 + i)).collect();
    let mut b = world(|s| s);
    b.contract(burn, burner(38_500), []);
    for attacker in &attackers {
        b.fund(*attacker, ether(1));
        b.tx(*attacker, TxKind::Call(burn), U256::ZERO, direct_swap(*attacker), 3_500_000);
    }
    b.call(alice(), POOL, direct_swap(alice()));
    let (storage, block) = b.build();
    let file =
        |mode, exclusion_budget| ComplianceFile { registry: REGISTRY, mode, exclusion_budget };
    use parevm_compliance::ModeName;
    let modes = [
        ("exclude", file(ModeName::Exclude, None)),
        ("exclude, 10 Mgas budget", file(ModeName::Exclude, Some(10_000_000))),
        ("revert", file(ModeName::Revert, None)),
    ];
    let mut outputs = Vec::new();
    for (name, file) in modes {
        let compliance = file.compliance();
        let output = run_with(&storage, &block, &compliance).expect("the block executes");
        // The demo's figures (printed with --nocapture): one sequential run of the block.
        let started = std::time::Instant::now();
        parevm_fixtures::sequential(&storage, &block, Some(&compliance)).unwrap();
        let elapsed = started.elapsed();
        let charged: u64 = output
            .rejected
            .iter()
            .map(|r| output.transactions.iter().find(|t| t.index == r.index).unwrap().gas_used())
            .sum();
        println!(
            "8 burners, {name}: {} excluded (work unpaid, still valid next block), {} charged \
             {charged} gas, block gas {}, sequential {elapsed:?}",
            output.excluded.len(),
            output.rejected.len(),
            output.gas_used
        );
        outputs.push(output);
    }
    let [excluded, budgeted, reverted] = <[BlockOutput; 3]>::try_from(outputs).unwrap();
    // Exclude: the work was done, nobody paid, and the transactions stay valid.
    assert_eq!(excluded.excluded.len(), 8);
    assert_eq!(excluded.transactions.len(), 1);
    for attacker in &attackers {
        assert!(!excluded.state.accounts.contains_key(attacker), "untouched: replayable");
    }
    // The budget: three burners' work (about 3.0M gas each) unpaid, the other five pay.
    assert_eq!((budgeted.excluded.len(), budgeted.rejected.len()), (3, 5));
    // Revert: each burner paid for about 3M gas and used its nonce.
    assert_eq!(reverted.rejected.len(), 8);
    for (tx, attacker) in reverted.transactions.iter().zip(&attackers) {
        assert!(tx.gas_used() > 2_900_000 && !tx.is_success(), "{}", tx.gas_used());
        let (nonce, balance) = nonce_and_balance(&reverted, *attacker);
        assert_eq!(nonce, 1);
        assert!(balance < ether(1) - U256::from(2_900_000u64 * 11_000_000_000));
    }
    assert_eq!(outcome(&reverted, 8), Ok(true), "the honest swap still goes through");
}

#[test]
fn an_exclusion_budget_bounds_the_free_work_in_block_order() {
    let burn = Address::repeat_byte(0xbb);
    let attackers: Vec<Address> = (0..8).map(|i| account(500 + i)).collect();
    // The second attacker holds KYC, revoked by the block's first transaction: whether its
    // burner spends budget, and so which later burners fit, depends on an earlier write.
    let mut b = world(|s| s.credential(attackers[1], Claim::Kyc.id(), valid(issuer())));
    b.contract(burn, burner(38_500), []);
    registry_call(
        &mut b,
        issuer(),
        IRegistry::revokeCall { subject: attackers[1], claim: Claim::Kyc.id() }.abi_encode(),
    );
    for attacker in &attackers {
        b.fund(*attacker, ether(1));
        b.tx(*attacker, TxKind::Call(burn), U256::ZERO, direct_swap(*attacker), 3_500_000);
    }
    b.call(bob(), POOL, direct_swap(bob())); // refused by its `to`: 22k-odd gas, still fits
    let (storage, block) = b.build();
    let file = ComplianceFile {
        registry: REGISTRY,
        mode: parevm_compliance::ModeName::Exclude,
        exclusion_budget: Some(10_000_000),
    };
    let indices = |output: &BlockOutput| {
        let excluded: Vec<usize> = output.excluded.iter().map(|e| e.index).collect();
        let rejected: Vec<usize> = output.rejected.iter().map(|r| r.index).collect();
        (excluded, rejected)
    };
    let output = run_with(&storage, &block, &file.compliance()).expect("the block executes");
    // Each burner spends about 3.0M gas before its rejection: three fit in 10M, then bob.
    let (excluded, rejected) = indices(&output);
    assert_eq!(excluded, [1, 2, 3, 9], "attackers 0 to 2, and bob, within the budget");
    assert_eq!(rejected, [4, 5, 6, 7, 8], "the other burners pay");
    for tx in output.transactions.iter().filter(|t| rejected.contains(&t.index)) {
        assert!(tx.gas_used() > 2_900_000 && !tx.is_success(), "{}", tx.gas_used());
    }
    for attacker in &attackers[3..] {
        assert_eq!(nonce_and_balance(&output, *attacker).0, 1, "its nonce is used");
    }
    for attacker in &attackers[..3] {
        assert!(!output.state.accounts.contains_key(attacker), "excluded: untouched");
    }
    // Without the revocation, attacker 1 trades the pool's surplus: the later burners'
    // swaps revert, leave the pool unchanged and are not rejected at all.
    let mut without = block.clone();
    without.transactions.remove(0);
    let output = run_with(&storage, &without, &file.compliance()).expect("the block executes");
    assert_eq!(indices(&output), (vec![0, 8], vec![]));
    assert_eq!(outcome(&output, 1), Ok(true));
    // A budget of zero makes every rejection pay, as revert mode does.
    let zero = ComplianceFile { exclusion_budget: Some(0), ..file };
    let output = run_with(&storage, &block, &zero.compliance()).expect("the block executes");
    assert_eq!(indices(&output), (vec![], vec![1, 2, 3, 4, 5, 6, 7, 8, 9]));
}

// Pool policy options: the caller chain (credentials are not lent) and self-attestation.

fn unapproved(caller: Address) -> Result<bool, (Rejection, Option<usize>)> {
    let reason = RejectionReason::UnapprovedCaller;
    Err((Rejection { pool: POOL, claim: Claim::Kyc.id(), reason, caller: Some(caller) }, None))
}

#[test]
fn credentials_lent_through_a_contract_are_refused_with_the_caller_chain_option() {
    // Alice (KYC) has an uncredentialed contract trade for bob, and trades herself through
    // the router; the same block with and without the pool's CALLER_CHAIN option.
    // (Account 3, also KYC, trades through the router: alice's next nonce would cascade.)
    let block = |options: u64, approve_router: bool| {
        let mut b = world(|s| {
            s.options(POOL, options).router(ROUTER, approve_router).credential(
                account(3),
                Claim::Kyc.id(),
                valid(issuer()),
            )
        });
        b.call(alice(), FORWARDER, forward(POOL, direct_swap(bob())));
        swap(&mut b, account(3));
        exclude(b)
    };
    // Today's meaning without the option: only the sender counts.
    let output = block(0, false);
    assert_eq!((outcome(&output, 0), outcome(&output, 1)), (Ok(true), Ok(true)));
    // With it, the forwarder is between alice and the pool: refused, naming it; so is an
    // unapproved router.
    let output = block(CALLER_CHAIN, false);
    assert_eq!(outcome(&output, 0), unapproved(FORWARDER));
    assert_eq!(outcome(&output, 1), unapproved(ROUTER));
    let output = block(CALLER_CHAIN, true);
    assert_eq!(outcome(&output, 0), unapproved(FORWARDER));
    assert_eq!(outcome(&output, 1), Ok(true), "an approved router may be between");
}

#[test]
fn a_contract_between_may_hold_the_credentials_itself() {
    // The proxy (to the forwarder) holds KYC: alice may trade through it; a view through the
    // unapproved router changes nothing and is not checked.
    let mut b = world(|s| {
        s.options(POOL, CALLER_CHAIN).credential(PROXY, Claim::Kyc.id(), valid(issuer()))
    });
    b.call(alice(), PROXY, forward(POOL, direct_swap(alice())));
    let quote = IRouter::quoteCall { pair: POOL, tokenIn: TOKEN_A, amountIn: U256::from(1000) };
    b.call(alice(), ROUTER, quote.abi_encode().into());
    let output = exclude(b);
    assert_eq!((outcome(&output, 0), outcome(&output, 1)), (Ok(true), Ok(true)));
}

#[test]
fn a_credentialed_sender_driving_an_uncredentialed_7702_account_is_refused() {
    // Bob's account delegates to the forwarder; alice calls it, and bob's code trades.
    let kyc = account(3);
    let mut b =
        world(|s| s.options(POOL, CALLER_CHAIN).credential(kyc, Claim::Kyc.id(), valid(issuer())));
    b.storage_mut().insert_account(bob(), ether(10), 0, delegation_designator(FORWARDER), []);
    b.call(alice(), bob(), forward(POOL, direct_swap(bob())));
    // A credentialed account's own delegated code trading for it is not a contract between:
    // it is the sender.
    b.storage_mut().insert_account(kyc, ether(10), 0, delegation_designator(FORWARDER), []);
    b.call(kyc, kyc, forward(POOL, direct_swap(kyc)));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), unapproved(bob()));
    assert_eq!(outcome(&output, 1), Ok(true));
}

#[test]
fn router_approval_and_pool_options_changed_mid_block_bind_later_transactions() {
    // Three KYC senders, so that an exclusion does not cascade into the next swap.
    let mut b = world(|s| {
        s.credential(account(3), Claim::Kyc.id(), valid(issuer())).credential(
            account(4),
            Claim::Kyc.id(),
            valid(issuer()),
        )
    });
    swap(&mut b, alice()); // 0: no option yet
    registry_call(
        &mut b,
        admin(),
        IRegistry::setPoolOptionsCall { pool: POOL, options: U256::from(CALLER_CHAIN) }
            .abi_encode(),
    );
    swap(&mut b, account(3)); // 2: the router is not approved
    registry_call(
        &mut b,
        admin(),
        IRegistry::setRouterCall { router: ROUTER, approved: true }.abi_encode(),
    );
    swap(&mut b, account(4)); // 4: now it is
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), Ok(true));
    assert_eq!(outcome(&output, 2), unapproved(ROUTER));
    assert_eq!(outcome(&output, 4), Ok(true));
}

#[test]
fn an_issuer_may_not_attest_itself_unless_the_admin_allows_it() {
    let me = narrow_issuer();
    let kyc_issuer = |s: RegistryState| s.issuer(me, Claim::mask(&Claim::ALL), true);
    let self_issue = |b: &mut BlockBuilder| {
        let issue =
            IRegistry::issueCall { subject: me, claim: Claim::Kyc.id(), expiresAt: NOW + 100 };
        registry_call(b, me, issue.abi_encode());
    };
    // The registry refuses the self-issuance (the transaction reverts), so the trade is
    // refused as missing; a self-issued credential already in state is refused as such.
    let mut b = world(kyc_issuer);
    self_issue(&mut b);
    b.call(me, POOL, direct_swap(me));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), Ok(false), "the registry reverts the self-issuance");
    assert_eq!(outcome(&output, 1), rejected(Claim::Kyc, RejectionReason::Missing));
    let mut b = world(|s| kyc_issuer(s).credential(me, Claim::Kyc.id(), valid(me)));
    b.call(me, POOL, direct_swap(me));
    let output = exclude(b);
    assert_eq!(outcome(&output, 0), rejected(Claim::Kyc, RejectionReason::SelfAttested));
    // The admin allows it mid-block; a later setIssuer keeps the permission.
    let mut b = world(kyc_issuer);
    registry_call(
        &mut b,
        admin(),
        IRegistry::setSelfAttestationCall { issuer: me, allowed: true }.abi_encode(),
    );
    registry_call(
        &mut b,
        admin(),
        IRegistry::setIssuerCall { issuer: me, claimMask: Claim::mask(&Claim::ALL), active: true }
            .abi_encode(),
    );
    self_issue(&mut b);
    b.call(me, POOL, direct_swap(me));
    let output = exclude(b);
    assert_eq!(outcome(&output, 2), Ok(true), "self-issuance allowed");
    assert_eq!(outcome(&output, 3), Ok(true), "and honoured");
}
