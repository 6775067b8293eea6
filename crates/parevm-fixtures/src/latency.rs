//! [`LatencyStorage`]: storage that pays a delay on every cold read, as a node reading state
//! from disk does. The engine reads the pre-state through [`Storage`] only on a miss in its
//! own block-level view, so the delay lands where a real node's disk reads would.

use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use dashmap::DashSet;
use parevm::revm::bytecode::Bytecode;
use parevm::{AccountBasic, Storage};

/// A location of the pre-state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(Address),
    Code(B256),
    Slot(Address, U256),
    BlockHash(u64),
}

/// Wraps a [`Storage`], sleeping `delay` on the first read of each location (a cold read)
/// until [`LatencyStorage::reset`]. Later reads of the same location are warm (a cache hit).
#[derive(Debug)]
pub struct LatencyStorage<S> {
    inner: S,
    delay: Duration,
    warm: DashSet<Key, alloy_primitives::map::DefaultHashBuilder>,
}

impl<S> LatencyStorage<S> {
    /// `inner` with `delay` per cold read.
    pub fn new(inner: S, delay: Duration) -> Self {
        Self { inner, delay, warm: DashSet::default() }
    }

    /// Makes every location cold again (between benchmark runs).
    pub fn reset(&self) {
        self.warm.clear();
    }

    fn touch(&self, key: Key) {
        if !self.delay.is_zero() && self.warm.insert(key) {
            std::thread::sleep(self.delay);
        }
    }
}

impl<S: Storage> Storage for LatencyStorage<S> {
    type Error = S::Error;

    fn basic(&self, address: &Address) -> Result<Option<AccountBasic>, S::Error> {
        self.touch(Key::Account(*address));
        self.inner.basic(address)
    }

    fn code_by_hash(&self, code_hash: &B256) -> Result<Option<Bytecode>, S::Error> {
        self.touch(Key::Code(*code_hash));
        self.inner.code_by_hash(code_hash)
    }

    fn storage(&self, address: &Address, index: &U256) -> Result<U256, S::Error> {
        self.touch(Key::Slot(*address, *index));
        self.inner.storage(address, index)
    }

    fn has_storage(&self, address: &Address) -> Result<bool, S::Error> {
        // A node reads the storage root with the account.
        self.touch(Key::Account(*address));
        self.inner.has_storage(address)
    }

    fn block_hash(&self, number: u64) -> Result<B256, S::Error> {
        self.touch(Key::BlockHash(number));
        self.inner.block_hash(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parevm::InMemoryStorage;

    #[test]
    fn only_cold_reads_wait() {
        let storage = LatencyStorage::new(InMemoryStorage::new(), Duration::from_millis(20));
        let address = Address::repeat_byte(1);
        let time = |f: &dyn Fn()| {
            let start = std::time::Instant::now();
            f();
            start.elapsed()
        };
        assert!(
            time(&|| assert!(storage.basic(&address).unwrap().is_none()))
                >= Duration::from_millis(20)
        );
        assert!(
            time(&|| assert!(storage.basic(&address).unwrap().is_none()))
                < Duration::from_millis(20)
        );
        storage.reset();
        assert!(
            time(&|| assert!(storage.basic(&address).unwrap().is_none()))
                >= Duration::from_millis(20)
        );
    }
}
