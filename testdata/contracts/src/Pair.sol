// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

interface IERC20Balance {
    function transfer(address to, uint256 value) external returns (bool);
    function balanceOf(address holder) external view returns (uint256);
}

/// A constant-product pool of two tokens (Uniswap-V2 style: 0.3 % fee, optimistic
/// transfers out, input measured from balances). Liquidity is written into the pre-state by
/// workloads; there is no mint or burn.
///
/// Storage layout: slot 0 `token0`; slot 1 `token1`; slot 2 `reserve0` (bits 0-111),
/// `reserve1` (bits 112-223), `blockTimestampLast` (bits 224-255).
contract Pair {
    address public token0;
    address public token1;
    uint112 private reserve0;
    uint112 private reserve1;
    uint32 private blockTimestampLast;

    event Swap(
        address indexed sender,
        uint256 amount0In,
        uint256 amount1In,
        uint256 amount0Out,
        uint256 amount1Out,
        address indexed to
    );
    event Sync(uint112 reserve0, uint112 reserve1);

    function getReserves() public view returns (uint112, uint112, uint32) {
        return (reserve0, reserve1, blockTimestampLast);
    }

    function swap(uint256 amount0Out, uint256 amount1Out, address to) external {
        require(amount0Out > 0 || amount1Out > 0, "output");
        (uint112 r0, uint112 r1) = (reserve0, reserve1);
        require(amount0Out < r0 && amount1Out < r1, "liquidity");
        if (amount0Out > 0) IERC20Balance(token0).transfer(to, amount0Out);
        if (amount1Out > 0) IERC20Balance(token1).transfer(to, amount1Out);
        uint256 b0 = IERC20Balance(token0).balanceOf(address(this));
        uint256 b1 = IERC20Balance(token1).balanceOf(address(this));
        uint256 in0 = b0 > r0 - amount0Out ? b0 - (r0 - amount0Out) : 0;
        uint256 in1 = b1 > r1 - amount1Out ? b1 - (r1 - amount1Out) : 0;
        require(in0 > 0 || in1 > 0, "input");
        require((b0 * 1000 - in0 * 3) * (b1 * 1000 - in1 * 3) >= uint256(r0) * r1 * 1_000_000, "k");
        require(b0 <= type(uint112).max && b1 <= type(uint112).max, "overflow");
        reserve0 = uint112(b0);
        reserve1 = uint112(b1);
        blockTimestampLast = uint32(block.timestamp);
        emit Sync(reserve0, reserve1);
        emit Swap(msg.sender, in0, in1, amount0Out, amount1Out, to);
    }
}
