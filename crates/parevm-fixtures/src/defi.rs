//! The project's DeFi contracts (compiled from `testdata/contracts/src`, embedded in the
//! binary) and how to place them in a pre-state: token balances and allowances, pool
//! reserves, the credential registry. Shared by the workload generator and the tests.

use alloy_primitives::{keccak256, Address, Bytes, U256};
use alloy_sol_types::sol;

sol! {
    /// ERC-20 `Token`.
    interface IToken {
        function transfer(address to, uint256 value) external returns (bool);
        function approve(address spender, uint256 value) external returns (bool);
        function balanceOf(address holder) external view returns (uint256);
    }

    /// Constant-product `Pair` (and `GatedPair`).
    interface IPair {
        function swap(uint256 amount0Out, uint256 amount1Out, address to) external;
        function getReserves() external view returns (uint112, uint112, uint32);
    }

    /// Stateless `Router`.
    interface IRouter {
        function quote(address pair, address tokenIn, uint256 amountIn) external view returns (uint256);
        function swapExactTokensForTokens(
            address pair,
            address tokenIn,
            uint256 amountIn,
            uint256 amountOutMin,
            address to
        ) external returns (uint256 amountOut);
    }

    /// `CredentialRegistry`.
    interface IRegistry {
        function setIssuer(address issuer, uint256 claimMask, bool active) external;
        function issue(address subject, uint8 claim, uint64 expiresAt) external;
        function revoke(address subject, uint8 claim) external;
        function setPoolPolicy(address pool, uint256 requiredClaims) external;
        function setSelfAttestation(address issuer, bool allowed) external;
        function setPoolOptions(address pool, uint256 options) external;
        function setRouter(address router, bool approved) external;
        function issuers(address issuer) external view returns (uint256 claimMask, bool active, bool selfAttest);
    }

    /// `Batch`: several calls in one transaction.
    interface IBatch {
        function run(address[] targets, bytes[] data) external;
    }

    /// `Forwarder` (the implementation behind `Proxy`, and EIP-7702 delegate code).
    interface IForwarder {
        function forward(address target, bytes data) external payable returns (bytes);
    }
}

/// A compiled contract of `testdata/contracts/build`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// ERC-20 token.
    Token,
    /// Constant-product pool.
    Pair,
    /// The pool declaring its credential registry.
    GatedPair,
    /// Swap router.
    Router,
    /// Credential registry.
    CredentialRegistry,
    /// Call forwarder.
    Forwarder,
    /// Delegating proxy.
    Proxy,
    /// Contract whose constructor makes a call.
    CallOnDeploy,
    /// Several calls in one transaction.
    Batch,
}

impl Artifact {
    fn json(self) -> &'static str {
        macro_rules! build {
            ($name:literal) => {
                include_str!(concat!("../../../testdata/contracts/build/", $name, ".json"))
            };
        }
        match self {
            Self::Token => build!("Token"),
            Self::Pair => build!("Pair"),
            Self::GatedPair => build!("GatedPair"),
            Self::Router => build!("Router"),
            Self::CredentialRegistry => build!("CredentialRegistry"),
            Self::Forwarder => build!("Forwarder"),
            Self::Proxy => build!("Proxy"),
            Self::CallOnDeploy => build!("CallOnDeploy"),
            Self::Batch => build!("Batch"),
        }
    }

    fn field(self, field: &str) -> Bytes {
        let artifact: serde_json::Value =
            serde_json::from_str(self.json()).expect("committed artifacts are valid JSON");
        artifact[field]
            .as_str()
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("committed artifact {self:?} has no {field}"))
    }

    /// The runtime bytecode (what a pre-state holds).
    pub fn runtime(self) -> Bytes {
        self.field("deployedBytecode")
    }

    /// The creation bytecode (constructor arguments are appended ABI-encoded).
    pub fn creation(self) -> Bytes {
        self.field("bytecode")
    }
}

/// The slot of `mapping[key]` for a mapping at `slot` (Solidity layout).
pub fn mapping_slot(key: Address, slot: U256) -> U256 {
    let mut preimage = [0u8; 64];
    preimage[12..32].copy_from_slice(key.as_slice());
    preimage[32..].copy_from_slice(&slot.to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(preimage).0)
}

/// `Token` slot of `balanceOf[holder]`.
pub fn balance_slot(holder: Address) -> U256 {
    mapping_slot(holder, U256::from(1))
}

/// `Token` slot of `allowance[owner][spender]`.
pub fn allowance_slot(owner: Address, spender: Address) -> U256 {
    mapping_slot(spender, mapping_slot(owner, U256::from(2)))
}

/// `Pair` storage: tokens and reserves (reserve0 in bits 0-111, reserve1 in 112-223).
pub fn pair_storage(
    token0: Address,
    token1: Address,
    reserve0: u128,
    reserve1: u128,
) -> Vec<(U256, U256)> {
    let reserves = U256::from(reserve0) | (U256::from(reserve1) << 112);
    vec![
        (U256::ZERO, U256::from_be_slice(token0.as_slice())),
        (U256::from(1), U256::from_be_slice(token1.as_slice())),
        (U256::from(2), reserves),
    ]
}

/// `GatedPair` storage: as [`pair_storage`], plus the registry in slot 3.
pub fn gated_pair_storage(
    token0: Address,
    token1: Address,
    reserve0: u128,
    reserve1: u128,
    registry: Address,
) -> Vec<(U256, U256)> {
    let mut slots = pair_storage(token0, token1, reserve0, reserve1);
    slots.push((U256::from(3), U256::from_be_slice(registry.as_slice())));
    slots
}

/// Output of a constant-product swap with the 0.3 % fee (what `Router.getAmountOut` computes).
pub fn amount_out(amount_in: U256, reserve_in: U256, reserve_out: U256) -> U256 {
    let with_fee = amount_in * U256::from(997);
    with_fee * reserve_out / (reserve_in * U256::from(1000) + with_fee)
}

/// The EIP-7702 delegation designator pointing at `target` (`0xef0100 || target`).
pub fn delegation_designator(target: Address) -> Bytes {
    let mut code = vec![0xef, 0x01, 0x00];
    code.extend_from_slice(target.as_slice());
    code.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_artifact_has_code() {
        for artifact in [
            Artifact::Token,
            Artifact::Pair,
            Artifact::GatedPair,
            Artifact::Router,
            Artifact::CredentialRegistry,
            Artifact::Forwarder,
            Artifact::Proxy,
            Artifact::CallOnDeploy,
            Artifact::Batch,
        ] {
            assert!(artifact.runtime().len() > 20, "{artifact:?}");
            assert!(artifact.creation().len() > artifact.runtime().len(), "{artifact:?}");
        }
    }
}
