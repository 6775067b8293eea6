#!/usr/bin/env bash
# Recompiles the project's Solidity contracts with solc 0.8.28 from the npm registry (installed
# into a temporary folder) and rewrites testdata/contracts/build/. Commit the result: builds
# and CI never need the compiler.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm install --silent --no-audit --no-fund solc@0.8.28 >/dev/null)
SOLC_MODULE_DIR="$tmp/node_modules" node "$here/compile-contracts.mjs"
