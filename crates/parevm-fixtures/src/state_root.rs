//! The Merkle-Patricia state root of an in-memory state (alloy-trie).

use alloy_primitives::B256;
use alloy_trie::root::{state_root_unhashed, storage_root_unhashed};
use alloy_trie::TrieAccount;
use parevm::InMemoryStorage;

/// The state root of `state`: every account, with the root of its non-zero storage.
pub fn state_root(state: &InMemoryStorage) -> B256 {
    state_root_unhashed(state.accounts().map(|(address, account)| {
        let storage_root = storage_root_unhashed(
            account
                .storage
                .iter()
                .filter(|(_, value)| !value.is_zero())
                .map(|(slot, value)| (B256::from(*slot), *value)),
        );
        let trie = TrieAccount::new(
            account.basic.nonce,
            account.basic.balance,
            storage_root,
            account.basic.code_hash,
        );
        (*address, trie)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{b256, Address, Bytes, U256};

    #[test]
    fn empty_state_has_the_empty_root() {
        assert_eq!(state_root(&InMemoryStorage::new()), alloy_trie::EMPTY_ROOT_HASH);
    }

    #[test]
    fn zero_slots_do_not_count() {
        let mut a = InMemoryStorage::new();
        a.insert_account(
            Address::ZERO,
            U256::from(1),
            0,
            Bytes::new(),
            [(U256::from(1), U256::ZERO)],
        );
        let mut b = InMemoryStorage::new();
        b.insert_account(Address::ZERO, U256::from(1), 0, Bytes::new(), []);
        assert_eq!(state_root(&a), state_root(&b));
        assert_ne!(
            state_root(&a),
            b256!("0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
        );
    }
}
