// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// Makes several calls in one transaction, in order, failing if any fails: in parevm's
/// compliance tests, a contract issuer that credentials its caller and then swaps for it,
/// so that the check must see the transaction's own registry writes.
contract Batch {
    function run(address[] calldata targets, bytes[] calldata data) external {
        require(targets.length == data.length, "length");
        for (uint256 i = 0; i < targets.length; i++) {
            (bool ok, bytes memory result) = targets[i].call(data[i]);
            if (!ok) {
                assembly {
                    revert(add(result, 32), mload(result))
                }
            }
        }
    }
}
