// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Pair} from "./Pair.sol";

interface IERC20From {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// Swaps through one `Pair`, as users do through a router: quote, pull the input from the
/// caller into the pair, then swap. Stateless.
contract Router {
    function getAmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut)
        public
        pure
        returns (uint256)
    {
        uint256 withFee = amountIn * 997;
        return (withFee * reserveOut) / (reserveIn * 1000 + withFee);
    }

    /// A price quote, safe to call with STATICCALL.
    function quote(address pair, address tokenIn, uint256 amountIn) public view returns (uint256) {
        (uint112 r0, uint112 r1,) = Pair(pair).getReserves();
        bool zeroForOne = tokenIn == Pair(pair).token0();
        return getAmountOut(amountIn, zeroForOne ? r0 : r1, zeroForOne ? r1 : r0);
    }

    function swapExactTokensForTokens(
        address pair,
        address tokenIn,
        uint256 amountIn,
        uint256 amountOutMin,
        address to
    ) external returns (uint256 amountOut) {
        amountOut = quote(pair, tokenIn, amountIn);
        require(amountOut >= amountOutMin, "slippage");
        IERC20From(tokenIn).transferFrom(msg.sender, pair, amountIn);
        bool zeroForOne = tokenIn == Pair(pair).token0();
        Pair(pair).swap(zeroForOne ? 0 : amountOut, zeroForOne ? amountOut : 0, to);
    }
}
