//! Failure behaviour: storage errors and panics end execution with an error, never a hang
//! or a partial result, on both paths.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_eips::eip4788::BEACON_ROOTS_ADDRESS;
use alloy_primitives::{Address, Bytes, B256, U256};
use parevm::revm::bytecode::Bytecode;
use parevm::revm::primitives::hardfork::SpecId;
use parevm::{AccountBasic, ExecutionError, InMemoryStorage, Storage};
use parevm_fixtures::synthetic::{account, contracts, ether, BlockBuilder};
use parevm_fixtures::{parallel, sequential};

#[derive(Debug, thiserror::Error)]
#[error("disk on fire")]
struct DiskError;

/// Fails (or panics) on the `fail_at`-th read and every read after it, and on every read of
/// `poisoned`.
struct FailingStorage {
    inner: InMemoryStorage,
    fail_at: usize,
    panic: bool,
    reads: AtomicUsize,
    poisoned: Option<Address>,
}

impl FailingStorage {
    fn new(inner: InMemoryStorage, fail_at: usize, panic: bool) -> Self {
        Self { inner, fail_at, panic, reads: AtomicUsize::new(0), poisoned: None }
    }

    fn check_account(&self, address: &Address) -> Result<(), DiskError> {
        if self.poisoned == Some(*address) {
            return Err(DiskError);
        }
        self.check()
    }

    fn check(&self) -> Result<(), DiskError> {
        if self.reads.fetch_add(1, Ordering::SeqCst) >= self.fail_at {
            if self.panic {
                panic!("storage backend crashed");
            }
            return Err(DiskError);
        }
        Ok(())
    }
}

impl Storage for FailingStorage {
    type Error = DiskError;
    fn basic(&self, address: &Address) -> Result<Option<AccountBasic>, DiskError> {
        self.check_account(address)?;
        Ok(self.inner.basic(address).unwrap())
    }
    fn code_by_hash(&self, code_hash: &B256) -> Result<Option<Bytecode>, DiskError> {
        self.check()?;
        Ok(self.inner.code_by_hash(code_hash).unwrap())
    }
    fn storage(&self, address: &Address, index: &U256) -> Result<U256, DiskError> {
        self.check_account(address)?;
        Ok(self.inner.storage(address, index).unwrap())
    }
    fn has_storage(&self, address: &Address) -> Result<bool, DiskError> {
        self.check_account(address)?;
        Ok(self.inner.has_storage(address).unwrap())
    }
    fn block_hash(&self, number: u64) -> Result<B256, DiskError> {
        self.check()?;
        Ok(self.inner.block_hash(number).unwrap())
    }
}

fn block() -> (InMemoryStorage, parevm::BlockInput) {
    let mut b = BlockBuilder::new(SpecId::CANCUN, Address::repeat_byte(0xcb));
    let adder = account(100);
    b.contract(adder, contracts::slot_adder(), []);
    for i in 0..40 {
        b.fund(account(i), ether(1));
        b.transfer(account(i), account(i + 1), U256::from(1));
        let mut data = [0u8; 64];
        data[31] = (i % 3) as u8;
        data[63] = 1;
        b.call(account(i), adder, Bytes::copy_from_slice(&data));
    }
    b.build()
}

/// The fewest storage reads either path makes for `block`.
fn fewest_reads(inner: &InMemoryStorage, block: &parevm::BlockInput) -> usize {
    let storage = FailingStorage::new(inner.clone(), usize::MAX, false);
    sequential(&storage, block, None).unwrap();
    let mut fewest = storage.reads.swap(0, Ordering::SeqCst);
    for threads in [1, 2, 4, 8] {
        parallel(&storage, block, NonZeroUsize::new(threads).unwrap(), None).unwrap();
        fewest = fewest.min(storage.reads.swap(0, Ordering::SeqCst));
    }
    fewest
}

#[test]
fn storage_error_on_the_kth_read_is_an_error_naming_the_location() {
    let (inner, block) = block();
    let fewest = fewest_reads(&inner, &block);
    assert!(fewest > 40, "{fewest}");
    for fail_at in [0, 1, 5, 20, 60, fewest - 1] {
        let storage = FailingStorage::new(inner.clone(), fail_at, false);
        let error = sequential(&storage, &block, None).unwrap_err();
        assert!(
            matches!(&error, ExecutionError::Storage(e) if e.to_string().contains("disk on fire")),
            "sequential, read {fail_at}: {error}"
        );
        for threads in [1, 2, 4, 8] {
            storage.reads.store(0, Ordering::SeqCst);
            let error =
                parallel(&storage, &block, NonZeroUsize::new(threads).unwrap(), None).unwrap_err();
            let ExecutionError::Storage(e) = &error else {
                panic!("parallel, read {fail_at}, {threads} threads: {error}")
            };
            assert!(e.to_string().starts_with("reading "), "{e}");
        }
    }
}

#[test]
fn storage_error_names_the_account_on_both_paths() {
    let (inner, block) = block();
    // A contract the transactions call, and the EIP-4788 contract the (Cancun) block's
    // system call reads before them: alloy-evm's `SystemCaller` passes revm's error on only
    // as text, and the engine still returns the storage error.
    for poisoned in [account(100), BEACON_ROOTS_ADDRESS] {
        let mut storage = FailingStorage::new(inner.clone(), usize::MAX, false);
        storage.poisoned = Some(poisoned);
        let expected = format!("storage error: reading account {poisoned}: disk on fire");
        assert_eq!(sequential(&storage, &block, None).unwrap_err().to_string(), expected);
        for threads in [1, 2, 4, 8] {
            let error =
                parallel(&storage, &block, NonZeroUsize::new(threads).unwrap(), None).unwrap_err();
            assert_eq!(error.to_string(), expected, "{threads} threads");
        }
    }
}

#[test]
fn a_panic_in_a_worker_is_an_error_and_all_threads_are_joined() {
    let (inner, block) = block();
    for threads in [1, 2, 4, 8] {
        let storage = FailingStorage::new(inner.clone(), 30, true);
        let error =
            parallel(&storage, &block, NonZeroUsize::new(threads).unwrap(), None).unwrap_err();
        assert!(
            matches!(&error, ExecutionError::Panic(m) if m.contains("storage backend crashed")),
            "{threads} threads: {error}"
        );
    }
}

#[test]
fn a_panic_is_an_error_on_both_paths_of_the_executor() {
    use parevm::{Config, ExecutionMode, Executor};
    let (inner, block) = block();
    for mode in [ExecutionMode::Sequential, ExecutionMode::Parallel] {
        for threads in [1, 2, 4] {
            let config =
                Config::default().with_threads(NonZeroUsize::new(threads).unwrap()).with_mode(mode);
            let executor = Executor::new(config).unwrap();
            let storage = FailingStorage::new(inner.clone(), 30, true);
            let error = executor.execute(&storage, &block).unwrap_err();
            assert!(
                matches!(&error, ExecutionError::Panic(m) if m.contains("storage backend crashed")),
                "{mode:?}, {threads} threads: {error}"
            );
            // The executor is still usable afterwards.
            assert!(executor.execute(&inner, &block).is_ok());
        }
    }
}

#[test]
fn without_failures_the_wrapper_changes_nothing() {
    let (inner, block) = block();
    let expected = sequential(&inner, &block, None).unwrap();
    let storage = FailingStorage::new(inner, usize::MAX, false);
    let (parallel, _) = parallel(&storage, &block, NonZeroUsize::new(4).unwrap(), None).unwrap();
    assert_eq!(parallel, expected);
}
