//! What the engine executes: one block's environment, transactions and post-block rules.

use alloy_eips::eip4895::Withdrawal;
use alloy_eips::eip6110::MAINNET_DEPOSIT_CONTRACT_ADDRESS;
use alloy_hardforks::{EthereumHardfork, EthereumHardforks, ForkCondition};
use alloy_primitives::{Address, B256, U256};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::primitives::hardfork::SpecId;

/// An uncle (ommer) header, as far as rewards need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ommer {
    /// The uncle's block number.
    pub number: u64,
    /// The uncle's beneficiary, who receives the uncle reward.
    pub beneficiary: Address,
}

/// One block, ready to execute.
#[derive(Clone, Debug)]
pub struct BlockInput {
    /// The hard fork the block executes under.
    pub spec: SpecId,
    /// Chain id (1 for Ethereum mainnet).
    pub chain_id: u64,
    /// Header fields revm needs: number, beneficiary, timestamp, gas limit, base fee, ...
    pub env: BlockEnv,
    /// The transactions, in block order, with their senders already recovered.
    pub transactions: Vec<TxEnv>,
    /// Hash of the parent block (EIP-2935 history contract, from Prague on).
    pub parent_hash: B256,
    /// Parent beacon block root (EIP-4788 system call, from Cancun on).
    pub parent_beacon_block_root: Option<B256>,
    /// Validator withdrawals (from Shanghai on), credited after the transactions.
    pub withdrawals: Vec<Withdrawal>,
    /// Uncles whose headers are known; their beneficiaries receive uncle rewards.
    pub ommers: Vec<Ommer>,
    /// Uncles listed only by hash (as in RPC blocks): the beneficiary still receives the
    /// 1/32 inclusion reward for each, but the uncles' own rewards cannot be credited.
    pub unknown_ommers: usize,
    /// Whether the fork's rules around the transactions apply: the system calls (EIP-4788
    /// and 2935 before the transactions, EIP-7002 and 7251 after them), the EIP-7685
    /// requests, and the proof-of-work block and uncle rewards. State tests execute
    /// transactions without them. (Withdrawals and the DAO fork's state change apply
    /// whenever the block has them.)
    pub block_rules: bool,
    /// The EIP-6110 deposit contract, whose deposit events become the block's deposit
    /// requests (from Prague on): mainnet's unless set.
    pub deposit_contract: Address,
}

impl BlockInput {
    /// A block of `transactions` on chain `chain_id` under `spec`, with no parent hash,
    /// beacon root, withdrawals or uncles and without the block-level rules (as a state test
    /// executes a transaction); set the other fields, and `block_rules`, for a real block.
    pub fn new(spec: SpecId, chain_id: u64, env: BlockEnv, transactions: Vec<TxEnv>) -> Self {
        Self {
            spec,
            chain_id,
            env,
            transactions,
            parent_hash: B256::ZERO,
            parent_beacon_block_root: None,
            withdrawals: Vec::new(),
            ommers: Vec::new(),
            unknown_ommers: 0,
            block_rules: false,
            deposit_contract: MAINNET_DEPOSIT_CONTRACT_ADDRESS,
        }
    }

    /// revm's configuration for this block.
    pub fn cfg(&self) -> CfgEnv {
        let mut cfg =
            CfgEnv::new().with_chain_id(self.chain_id).with_spec_and_mainnet_gas_params(self.spec);
        // Blobs per transaction: at most a block's worth (6 in Cancun, 9 in Prague), and 6
        // from Osaka on (EIP-7594).
        if self.spec.is_enabled_in(SpecId::OSAKA) {
            cfg.set_max_blobs_per_tx(6);
        } else if self.spec.is_enabled_in(SpecId::PRAGUE) {
            cfg.set_max_blobs_per_tx(9);
        } else if self.spec.is_enabled_in(SpecId::CANCUN) {
            cfg.set_max_blobs_per_tx(6);
        }
        cfg
    }

    /// Total gas limit of all transactions.
    pub fn total_gas_limit(&self) -> u64 {
        self.transactions.iter().map(|tx| tx.gas_limit).sum()
    }
}

/// A chain on which every fork up to `self.0` is active from genesis and none after:
/// alloy-evm's view (`EthereumHardforks`) of a block whose fork is a revm [`SpecId`], as in a
/// [`BlockInput`], a state test or a synthetic block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForksUpTo(pub SpecId);

impl EthereumHardforks for ForksUpTo {
    fn ethereum_fork_activation(&self, fork: EthereumHardfork) -> ForkCondition {
        use EthereumHardfork as F;
        let (needs, by_time) = match fork {
            F::Frontier => (SpecId::FRONTIER, false),
            F::Homestead => (SpecId::HOMESTEAD, false),
            F::Tangerine => (SpecId::TANGERINE, false),
            F::SpuriousDragon => (SpecId::SPURIOUS_DRAGON, false),
            F::Byzantium => (SpecId::BYZANTIUM, false),
            F::Constantinople | F::Petersburg => (SpecId::PETERSBURG, false),
            F::Istanbul | F::MuirGlacier => (SpecId::ISTANBUL, false),
            F::Berlin => (SpecId::BERLIN, false),
            F::London | F::ArrowGlacier | F::GrayGlacier => (SpecId::LONDON, false),
            F::Paris => (SpecId::MERGE, false),
            F::Shanghai => (SpecId::SHANGHAI, true),
            F::Cancun => (SpecId::CANCUN, true),
            F::Prague => (SpecId::PRAGUE, true),
            F::Osaka => (SpecId::OSAKA, true),
            // The DAO fork's irregular state change, the blob-parameter-only forks and later
            // forks are not part of a block given by its `SpecId`.
            _ => return ForkCondition::Never,
        };
        match (self.0.is_enabled_in(needs), by_time) {
            (false, _) => ForkCondition::Never,
            (true, false) => ForkCondition::Block(0),
            (true, true) => ForkCondition::Timestamp(0),
        }
    }
}

/// The proof-of-work block reward of `spec` in wei (zero from the merge on), as alloy-evm
/// computes it.
pub fn base_block_reward(spec: SpecId) -> U256 {
    U256::from(alloy_evm::block::calc::base_block_reward(ForksUpTo(spec), 0).unwrap_or_default())
}

/// The hard fork of an Ethereum mainnet block, from its number and timestamp.
pub fn mainnet_spec(number: u64, timestamp: u64) -> SpecId {
    // Timestamp-activated forks first (all after the merge).
    if number >= 15_537_394 {
        return match timestamp {
            t if t >= 1_764_798_551 => SpecId::OSAKA,
            t if t >= 1_746_612_311 => SpecId::PRAGUE,
            t if t >= 1_710_338_135 => SpecId::CANCUN,
            t if t >= 1_681_338_455 => SpecId::SHANGHAI,
            _ => SpecId::MERGE,
        };
    }
    match number {
        n if n >= 12_965_000 => SpecId::LONDON,
        n if n >= 12_244_000 => SpecId::BERLIN,
        n if n >= 9_069_000 => SpecId::ISTANBUL,
        // Constantinople and Petersburg activated together on mainnet.
        n if n >= 7_280_000 => SpecId::PETERSBURG,
        n if n >= 4_370_000 => SpecId::BYZANTIUM,
        n if n >= 2_675_000 => SpecId::SPURIOUS_DRAGON,
        n if n >= 2_463_000 => SpecId::TANGERINE,
        n if n >= 1_150_000 => SpecId::HOMESTEAD,
        _ => SpecId::FRONTIER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainnet_fork_boundaries() {
        let cases = [
            (0, 0, SpecId::FRONTIER),
            (1_149_999, 0, SpecId::FRONTIER),
            (1_150_000, 0, SpecId::HOMESTEAD),
            (2_462_999, 0, SpecId::HOMESTEAD),
            (2_463_000, 0, SpecId::TANGERINE),
            (2_675_000, 0, SpecId::SPURIOUS_DRAGON),
            (4_369_999, 0, SpecId::SPURIOUS_DRAGON),
            (4_370_000, 0, SpecId::BYZANTIUM),
            (7_280_000, 0, SpecId::PETERSBURG),
            (9_069_000, 0, SpecId::ISTANBUL),
            (12_243_999, 0, SpecId::ISTANBUL),
            (12_244_000, 0, SpecId::BERLIN),
            (12_965_000, 0, SpecId::LONDON),
            (15_537_393, 1_663_224_162, SpecId::LONDON),
            (15_537_394, 1_663_224_179, SpecId::MERGE),
            (17_034_869, 1_681_338_443, SpecId::MERGE),
            (17_034_870, 1_681_338_455, SpecId::SHANGHAI),
            (19_426_586, 1_710_338_123, SpecId::SHANGHAI),
            (19_426_587, 1_710_338_135, SpecId::CANCUN),
            (22_431_084, 1_746_612_311, SpecId::PRAGUE),
            (23_935_694, 1_764_798_551, SpecId::OSAKA),
        ];
        for (number, timestamp, spec) in cases {
            assert_eq!(mainnet_spec(number, timestamp), spec, "block {number}");
        }
    }

    const ETHER: u128 = 1_000_000_000_000_000_000;

    #[test]
    fn rewards_by_fork() {
        assert_eq!(base_block_reward(SpecId::FRONTIER), U256::from(5 * ETHER));
        assert_eq!(base_block_reward(SpecId::SPURIOUS_DRAGON), U256::from(5 * ETHER));
        assert_eq!(base_block_reward(SpecId::BYZANTIUM), U256::from(3 * ETHER));
        assert_eq!(base_block_reward(SpecId::PETERSBURG), U256::from(2 * ETHER));
        assert_eq!(base_block_reward(SpecId::LONDON), U256::from(2 * ETHER));
        assert_eq!(base_block_reward(SpecId::MERGE), U256::ZERO);
    }
}
