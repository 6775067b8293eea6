//! parevm's alloy-evm executor against alloy-evm's own `EthBlockExecutor` on revm's
//! `State`: the same receipts, requests, gas and `BundleState` (reverts included), on
//! random blocks and on blocks built for the hazards of committing Block-STM's states.

use std::num::NonZeroUsize;

use alloy_primitives::{Address, Bytes, U256};
use arbitrary::Unstructured;
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{BlockInput, Config, ExecutionMode, Executor, InMemoryStorage};
use parevm_fixtures::alloy_oracle::{
    alloy_transactions, difference, run_parallel, run_sequential, AlloyBlock, ChainRules,
};
use parevm_fixtures::synthetic::{account, contracts, ether, BlockBuilder};
use rand::{RngCore, SeedableRng};

const COINBASE: Address = Address::repeat_byte(0xcb);

fn engine(threads: usize) -> Executor {
    let threads = NonZeroUsize::new(threads).unwrap();
    Executor::new(Config::default().with_threads(threads).with_mode(ExecutionMode::Parallel))
        .unwrap()
}

/// Runs `block` through both executors at each of `threads`; panics on a difference.
/// Returns how many transactions Block-STM ran, over all thread counts, and whether the
/// block was valid.
fn compare(storage: &InMemoryStorage, block: &BlockInput, threads: &[usize]) -> (usize, bool) {
    let alloy = AlloyBlock::of(block, ChainRules::UpTo(block.spec));
    let txs = alloy_transactions(block).unwrap();
    let expected = run_sequential(storage, &alloy, txs.clone());
    let mut parallel = 0;
    for &t in threads {
        let (got, report) = run_parallel(storage, &alloy, txs.clone(), &engine(t));
        if let Some(difference) = difference(&expected, &got) {
            panic!("{:?} block at {t} threads: {difference}", block.spec);
        }
        parallel += report.map_or(0, |r| r.parallel);
    }
    (parallel, expected.result.is_ok())
}

#[test]
fn random_blocks_match_alloy_evm() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7610);
    let (mut blocks, mut valid, mut parallel) = (0, 0, 0);
    let mut bytes = vec![0u8; 4096];
    while blocks < 250 {
        rng.fill_bytes(&mut bytes);
        let Ok((storage, block, threads)) =
            parevm_fixtures::fuzzing::decode_block(&mut Unstructured::new(&bytes))
        else {
            continue;
        };
        let (ran, ok) = compare(&storage, &block, &[threads.get(), 1, 2, 4]);
        blocks += 1;
        valid += usize::from(ok);
        parallel += ran;
    }
    eprintln!("{blocks} random blocks, {valid} valid, {parallel} transactions by Block-STM");
    // The comparison must have exercised the parallel path, on valid blocks.
    assert!(valid >= 100, "only {valid} of {blocks} random blocks were valid");
    assert!(parallel >= 1000, "Block-STM ran only {parallel} transactions");
}

/// Many payments to one fresh account and one contract (read without pending credits, then
/// repaired from the committed state), an empty beneficiary paid a zero fee, and spending
/// from the credited accounts at the end.
fn credits_block(spec: SpecId, coinbase: Address) -> (InMemoryStorage, BlockInput) {
    let mut b = BlockBuilder::new(spec, coinbase);
    let senders: Vec<_> = (0..12).map(account).collect();
    for sender in &senders {
        b.fund(*sender, ether(10));
    }
    let fresh = Address::repeat_byte(0x77);
    let counter = Address::repeat_byte(0xc0);
    b.contract(counter, contracts::counter(), []);
    for (i, sender) in senders.iter().enumerate() {
        b.transfer(*sender, fresh, U256::from(1000 + i as u64));
        b.transfer(*sender, counter, U256::from(7 + i as u64));
    }
    // The fresh account spends what it received; a sender reads the counter again.
    b.fund(account(99), ether(1));
    b.transfer(account(99), fresh, U256::ZERO);
    b.call(senders[0], counter, Bytes::new());
    b.build()
}

#[test]
fn credits_to_shared_accounts_match_alloy_evm_in_every_fork() {
    for spec in [
        SpecId::FRONTIER,
        SpecId::HOMESTEAD,
        SpecId::SPURIOUS_DRAGON,
        SpecId::BYZANTIUM,
        SpecId::LONDON,
        SpecId::CANCUN,
        SpecId::PRAGUE,
    ] {
        // The beneficiary: one that does not exist yet, and one of the senders.
        for coinbase in [COINBASE, account(3)] {
            let (storage, block) = credits_block(spec, coinbase);
            let threads = [1, 2, 4, 8];
            let (parallel, ok) = compare(&storage, &block, &threads);
            assert!(ok, "{spec:?}: the block is valid");
            // Every state Block-STM kept was repaired, none left to the sequential path.
            let all = threads.len() * block.transactions.len();
            assert_eq!(parallel, all, "{spec:?} {coinbase}: Block-STM ran them all");
        }
    }
}

#[test]
fn per_transaction_methods_and_small_blocks_run_sequentially_and_agree() {
    let (storage, block) = credits_block(SpecId::CANCUN, COINBASE);
    let alloy = AlloyBlock::of(&block, ChainRules::UpTo(block.spec));
    let txs = alloy_transactions(&block).unwrap();
    let expected = run_sequential(&storage, &alloy, txs.clone());
    // `Auto` on one thread never runs Block-STM: the same result, all sequential.
    let auto = Executor::new(Config::default().with_threads(NonZeroUsize::MIN)).unwrap();
    let (got, report) = run_parallel(&storage, &alloy, txs, &auto);
    assert_eq!(difference(&expected, &got), None);
    let report = report.unwrap();
    assert_eq!((report.parallel, report.sequential), (0, block.transactions.len()));
}

#[test]
fn an_invalid_transaction_fails_the_block_as_alloy_evm_says() {
    let (storage, mut block) = credits_block(SpecId::CANCUN, COINBASE);
    // A nonce from the future: invalid, whatever the others do.
    block.transactions[5].nonce += 3;
    let alloy = AlloyBlock::of(&block, ChainRules::UpTo(block.spec));
    let txs = alloy_transactions(&block).unwrap();
    let expected = run_sequential(&storage, &alloy, txs.clone());
    assert!(expected.result.is_err());
    for threads in [1, 2, 4] {
        let (got, _) = run_parallel(&storage, &alloy, txs.clone(), &engine(threads));
        assert_eq!(difference(&expected, &got), None);
    }
}

/// A Frontier block with senders whose payments to `pool` a hook may refuse: `x` pays it,
/// then pays another account twice (each nonce then follows the refused one's); `y` pays it
/// once and another account once; two others pay each other in between.
fn refusals_block() -> (InMemoryStorage, BlockInput, Address) {
    let mut b = BlockBuilder::new(SpecId::FRONTIER, COINBASE);
    let [x, y, a, c] = [1, 2, 3, 4].map(account);
    for sender in [x, y, a, c] {
        b.fund(sender, ether(10));
    }
    let pool = Address::repeat_byte(0x90);
    b.transfer(x, pool, U256::from(1));
    b.transfer(x, a, U256::from(1));
    b.transfer(a, c, U256::from(5));
    b.transfer(c, a, U256::ZERO);
    b.transfer(x, a, U256::from(1));
    b.transfer(y, pool, U256::from(1));
    b.transfer(y, a, U256::from(1));
    let (storage, block) = b.build();
    (storage, block, pool)
}

#[test]
fn cascades_and_the_exclusion_budget_through_alloy_evm_are_the_engines() {
    use parevm::{Compliance, ComplianceMode, RejectionReason};
    let (storage, block, pool) = refusals_block();
    let n = block.transactions.len();
    let hook = std::sync::Arc::new(Refuses(pool));
    let alloy = AlloyBlock::of(&block, ChainRules::UpTo(block.spec));
    let txs = alloy_transactions(&block).unwrap();
    // Without a budget `x`'s later payments cascade from its first, `y`'s from its first;
    // with room for one exclusion, `y`'s rejection is included as failed and its next
    // payment is valid.
    let unbounded = Compliance::new(hook.clone(), ComplianceMode::Exclude);
    let bounded = unbounded.clone().with_exclusion_budget(30_000);
    for (compliance, excluded, rejected) in
        [(unbounded, vec![0, 1, 4, 5, 6], vec![]), (bounded, vec![0, 1, 4], vec![5])]
    {
        let config = |mode, threads| {
            Config::default()
                .with_mode(mode)
                .with_threads(NonZeroUsize::new(threads).unwrap())
                .with_compliance(Some(compliance.clone()))
        };
        let sequential = Executor::new(config(ExecutionMode::Sequential, 1)).unwrap();
        let reference = sequential.execute(&storage, &block).unwrap().output;
        assert_eq!(reference.excluded.iter().map(|e| e.index).collect::<Vec<_>>(), excluded);
        assert_eq!(reference.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), rejected);
        assert!(reference.excluded.iter().all(|e| e.rejection.reason == RejectionReason::Missing));
        let (expected, report) = run_parallel(&storage, &alloy, txs.clone(), &sequential);
        assert_eq!(expected.result.as_ref().unwrap().receipts, reference.receipts());
        let report = report.unwrap();
        assert_eq!((report.parallel, report.sequential), (0, n));
        assert_eq!(
            (&report.excluded, &report.rejected),
            (&reference.excluded, &reference.rejected)
        );
        for threads in [1, 2] {
            let engine = Executor::new(config(ExecutionMode::Parallel, threads)).unwrap();
            let (got, report) = run_parallel(&storage, &alloy, txs.clone(), &engine);
            assert_eq!(difference(&expected, &got), None, "{threads} threads");
            let report = report.unwrap();
            assert_eq!((report.parallel, report.sequential), (n, 0), "{threads} threads");
            assert_eq!(
                (&report.excluded, &report.rejected),
                (&reference.excluded, &reference.rejected)
            );
        }
    }
}

/// A hook that refuses every payment to or change of one account.
#[derive(Debug)]
struct Refuses(Address);

impl parevm::ComplianceHook for Refuses {
    fn check(
        &self,
        call: &parevm::GatedCall,
        _: &mut dyn parevm::StateView,
    ) -> Result<Option<parevm::Rejection>, parevm::ReadError> {
        let reason = parevm::RejectionReason::Missing;
        Ok((call.pool == self.0).then(|| parevm::Rejection::of_sender(call.pool, 0, reason)))
    }
}

#[test]
fn the_dao_forks_state_change_is_alloy_evms() {
    use alloy_evm::eth::dao_fork::{DAO_HARDFORK_ACCOUNTS, DAO_HARDFORK_BENEFICIARY};
    use alloy_evm::eth::spec::EthSpec;
    let dao = DAO_HARDFORK_ACCOUNTS;
    let mut b = BlockBuilder::new(SpecId::HOMESTEAD, COINBASE);
    // Two of the DAO's accounts (contracts, as all of them are on mainnet) are paid during
    // the block, the others do not exist (and stay so): all are drained into the refund
    // contract after the transactions.
    let sender = account(1);
    b.fund(sender, ether(10));
    for (dao_account, paid) in [(dao[0], 3), (dao[1], 2)] {
        b.contract(dao_account, contracts::counter(), []);
        let to = parevm::revm::primitives::TxKind::Call(dao_account);
        b.tx(sender, to, ether(paid), Bytes::new(), 100_000);
    }
    b.transfer(sender, DAO_HARDFORK_BENEFICIARY, ether(1));
    let (storage, mut block) = b.build();
    // Mainnet's block 1,920,000, at its own time (alloy-evm's mainnet schedule applies).
    block.env.number = U256::from(1_920_000);
    block.env.timestamp = U256::from(1_469_020_840);
    let engine = parevm_fixtures::sequential(&storage, &block, None).unwrap();
    let two = NonZeroUsize::new(2).unwrap();
    let (parallel, _) = parevm_fixtures::parallel(&storage, &block, two, None).unwrap();
    assert_eq!(engine, parallel);
    let refund = engine.state.account(&DAO_HARDFORK_BENEFICIARY).flatten().unwrap();
    assert_eq!(refund.balance, ether(6));

    let alloy = AlloyBlock::of(&block, ChainRules::Mainnet(EthSpec::mainnet()));
    let txs = alloy_transactions(&block).unwrap();
    let oracle = run_sequential(&storage, &alloy, txs);
    assert!(oracle.result.is_ok(), "{:?}", oracle.result);
    for address in dao.iter().chain([&DAO_HARDFORK_BENEFICIARY, &COINBASE, &sender]) {
        let ours = engine.state.account(address).map(|a| a.map(|a| (a.balance, a.nonce)));
        let theirs =
            oracle.bundle.state.get(address).map(|a| a.info.as_ref().map(|i| (i.balance, i.nonce)));
        assert_eq!(ours, theirs, "{address}");
    }
}
