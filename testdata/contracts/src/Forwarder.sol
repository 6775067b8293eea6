// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// Calls `target` with `data` and bubbles up a revert: the implementation behind `Proxy`
/// and the code an EIP-7702 account delegates to in parevm's compliance tests.
contract Forwarder {
    function forward(address target, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory result) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(result, 32), mload(result))
            }
        }
        return result;
    }
}
