// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Pair} from "./Pair.sol";
import {CredentialRegistry} from "./CredentialRegistry.sol";

/// The permissioned variant of `Pair`: the same pool, declaring the registry whose policy
/// gates it. Enforcement is parevm's (the compliance hook checks every transaction that
/// enters the pool against the registry); `requiredClaims` lets wallets and UIs show what a
/// user needs before sending.
///
/// Storage layout: as `Pair` (slots 0-2), then slot 3 `registry`.
contract GatedPair is Pair {
    CredentialRegistry public registry;

    function requiredClaims() external view returns (uint256) {
        return registry.poolPolicy(address(this));
    }
}
