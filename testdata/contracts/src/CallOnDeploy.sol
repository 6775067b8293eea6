// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// A contract whose constructor calls `target` with `data` (and fails if the call does):
/// a pool entered from a constructor, in parevm's compliance tests.
contract CallOnDeploy {
    constructor(address target, bytes memory data) {
        (bool ok,) = target.call(data);
        require(ok, "call failed");
    }
}
