//! [`CallTree`]: the frames of the transaction being executed, so that a change of a gated
//! account can name the contracts between the sender and the change (its caller chain).
//!
//! Invariants, kept by [`super::gate`]'s frame loop:
//! - frames are recorded in the order revm starts them (depth first), so the frames started
//!   after a frame and before it ended are exactly its descendants;
//! - a frame that ended without success is removed with its descendants (revm undid their
//!   journal entries), so every recorded frame's changes are still in the journal;
//! - a frame's journal range (`start..end`) holds the journal entries made while it ran,
//!   its descendants' included.

use alloy_primitives::Address;
use revm::context_interface::journaled_state::entry::JournalEntry;
use smallvec::SmallVec;

/// One frame: the account it acts as (its target address: the callee of a `CALL`, the
/// caller's own account for `DELEGATECALL` and `CALLCODE`, the new account of a creation).
#[derive(Clone, Copy, Debug)]
struct Frame {
    target: Address,
    parent: Option<u32>,
    /// Journal length when the frame started.
    start: usize,
    /// Journal length when it ended (`usize::MAX` while it runs).
    end: usize,
}

/// The transaction's frames that have not been undone.
#[derive(Debug, Default)]
pub(crate) struct CallTree {
    frames: Vec<Frame>,
    /// The running frames, innermost last.
    open: Vec<u32>,
}

impl CallTree {
    /// Forgets every frame: the previous transaction's, or the frames of this one when they
    /// were undone as a whole.
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.open.clear();
    }

    /// A frame acting as `target` started when the journal had `start` entries; it runs
    /// until [`Self::end`].
    pub(crate) fn start(&mut self, target: Address, start: usize) {
        let index = self.record(target, start, usize::MAX);
        self.open.push(index);
    }

    /// A call or creation acting as `target` that ended as it started (no code, a
    /// precompile, or a failure before its first instruction): `start..end` are its entries.
    pub(crate) fn immediate(&mut self, target: Address, start: usize, end: usize, ok: bool) {
        if ok {
            self.record(target, start, end);
        }
    }

    fn record(&mut self, target: Address, start: usize, end: usize) -> u32 {
        let parent = self.open.last().copied();
        let index = self.frames.len() as u32;
        self.frames.push(Frame { target, parent, start, end });
        index
    }

    /// The innermost running frame ended, the journal then having `end` entries; without
    /// success its changes were undone, and it is forgotten with its descendants.
    pub(crate) fn end(&mut self, end: usize, ok: bool) {
        let Some(index) = self.open.pop() else { return };
        if ok {
            self.frames[index as usize].end = end;
        } else {
            self.frames.truncate(index as usize);
        }
    }

    /// The contracts between the transaction's sender and its changes of `account`, in
    /// address order, without `account` and `origin`: for each journal entry changing
    /// `account`, the frames above the innermost frame acting as `account` that contains
    /// it, or, if none does (a `SELFDESTRUCT` paying it), the innermost frame containing it
    /// and every frame above. Changes outside every frame (EIP-7702 authorizations, the
    /// sender's nonce) have none.
    pub(crate) fn callers_of(
        &self,
        journal: &[JournalEntry],
        account: Address,
        origin: Address,
    ) -> SmallVec<[Address; 4]> {
        let mut callers = SmallVec::<[Address; 4]>::new();
        let first = self.frames.first().map_or(journal.len(), |f| f.start);
        for (at, entry) in journal.iter().enumerate().skip(first) {
            if !changes(entry, account) {
                continue;
            }
            // Frames are depth first: the last one containing the entry is the innermost.
            let Some(innermost) = self.frames.iter().rposition(|f| f.start <= at && at < f.end)
            else {
                continue;
            };
            let mut frame = Some(innermost as u32);
            let mut path = SmallVec::<[Address; 8]>::new();
            let mut below_account = false;
            while let Some(index) = frame {
                let f = self.frames[index as usize];
                if f.target == account && !below_account {
                    // Only the frames above the pool's own frame are between.
                    path.clear();
                    below_account = true;
                } else {
                    path.push(f.target);
                }
                frame = f.parent;
            }
            callers.extend(path);
        }
        callers.retain(|a| *a != account && *a != origin);
        callers.sort_unstable();
        callers.dedup();
        callers
    }
}

/// Whether `entry` changes `account` (not a warm-up, touch or transient slot).
fn changes(entry: &JournalEntry, account: Address) -> bool {
    match entry {
        JournalEntry::AccountDestroyed { address, target, .. } => {
            *address == account || *target == account
        }
        JournalEntry::BalanceTransfer { from, to, .. } => *from == account || *to == account,
        JournalEntry::BalanceChange { address, .. }
        | JournalEntry::NonceChange { address, .. }
        | JournalEntry::NonceBump { address }
        | JournalEntry::AccountCreated { address, .. }
        | JournalEntry::StorageChanged { address, .. }
        | JournalEntry::CodeChange { address, .. } => *address == account,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;

    fn a(byte: u8) -> Address {
        Address::repeat_byte(byte)
    }

    fn write(address: Address) -> JournalEntry {
        JournalEntry::StorageChanged { key: U256::ZERO, had_value: U256::ZERO, address }
    }

    #[test]
    fn callers_are_the_frames_above_the_pools_own() {
        let (origin, router, helper, pool) = (a(1), a(2), a(3), a(9));
        let mut tree = CallTree::default();
        let mut journal = Vec::new();
        // router -> helper (reverts) ; router -> pool (writes) -> router callback (view)
        tree.start(router, journal.len());
        tree.start(helper, journal.len());
        journal.push(write(pool));
        journal.pop(); // undone by the revert
        tree.end(journal.len(), false);
        tree.start(pool, journal.len());
        journal.push(write(pool));
        tree.start(router, journal.len());
        tree.end(journal.len(), true);
        tree.end(journal.len(), true);
        tree.end(journal.len(), true);
        assert_eq!(tree.callers_of(&journal, pool, origin).as_slice(), [router]);
        // A change the pool's frame made through a callee: still only the router between.
        let mut tree = CallTree::default();
        let mut journal = Vec::new();
        tree.start(router, 0);
        tree.start(pool, 0);
        tree.start(helper, 0);
        journal.push(JournalEntry::BalanceTransfer {
            balance: U256::from(1),
            from: helper,
            to: pool,
        });
        tree.end(1, true);
        tree.end(1, true);
        tree.end(1, true);
        assert_eq!(tree.callers_of(&journal, pool, origin).as_slice(), [router]);
    }

    #[test]
    fn a_change_from_outside_the_pool_names_the_frames_that_made_it() {
        let (origin, router, destroyer, pool) = (a(1), a(2), a(3), a(9));
        let mut tree = CallTree::default();
        tree.start(router, 0);
        tree.start(destroyer, 0);
        let journal = vec![JournalEntry::AccountDestroyed {
            had_balance: U256::from(1),
            address: destroyer,
            target: pool,
            destroyed_status:
                revm::context_interface::journaled_state::entry::SelfdestructionRevertStatus::GloballySelfdestroyed,
        }];
        tree.end(1, true);
        tree.end(1, true);
        assert_eq!(tree.callers_of(&journal, pool, origin).as_slice(), [router, destroyer]);
        // The sender itself (an EIP-7702 account running its own code) is not a caller, nor
        // are changes before the first frame.
        let mut tree = CallTree::default();
        let journal = vec![write(pool), write(pool)];
        tree.start(origin, 1);
        tree.end(2, true);
        assert!(tree.callers_of(&journal, pool, origin).is_empty());
        tree.clear();
        assert!(tree.callers_of(&journal, pool, origin).is_empty());
    }
}
