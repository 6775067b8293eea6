// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// A minimal delegating proxy: every call runs the implementation's code (DELEGATECALL) in
/// the proxy's context.
///
/// Storage layout: slot 0 `implementation`.
contract Proxy {
    address public implementation;

    constructor(address implementation_) {
        implementation = implementation_;
    }

    fallback() external payable {
        address target = implementation;
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), target, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }
}
