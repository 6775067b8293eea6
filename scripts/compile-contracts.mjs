// Compiles testdata/contracts/src/*.sol with the `solc` package from the npm registry and
// writes testdata/contracts/build/<Contract>.json (ABI, creation and runtime bytecode,
// storage layout). Builds and CI use the committed output; run this only after changing a
// contract: `bash scripts/compile-contracts.sh`.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(process.env.SOLC_MODULE_DIR + "/");
const solc = require("solc");
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "testdata", "contracts");
const sources = {};
for (const file of readdirSync(join(root, "src")).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: readFileSync(join(root, "src", file), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: {
      "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "storageLayout"] },
    },
  },
};
const output = JSON.parse(
  solc.compile(JSON.stringify(input), {
    import: (path) => ({ contents: readFileSync(join(root, "src", path.replace(/^\.\//, "")), "utf8") }),
  }),
);
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);
mkdirSync(join(root, "build"), { recursive: true });
for (const [file, contracts] of Object.entries(output.contracts)) {
  for (const [name, c] of Object.entries(contracts)) {
    if (c.evm.deployedBytecode.object.length === 0) continue; // interfaces
    const artifact = {
      contract: name,
      source: `src/${file}`,
      compiler: solc.version(),
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      storageLayout: c.storageLayout.storage.map(({ label, slot, offset, type }) => ({ label, slot, offset, type })),
    };
    writeFileSync(join(root, "build", `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
    console.log(`${name}: ${c.evm.deployedBytecode.object.length / 2} bytes of runtime code`);
  }
}
