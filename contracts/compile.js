#!/usr/bin/env node
// Compiles the contracts with the pinned solc-js and writes deterministic artifacts to
// contracts/build/, which are committed so that Python can deploy and call the contracts
// without Node.
//
//   node contracts/compile.js           write contracts/build/<Name>.json
//   node contracts/compile.js --check   exit 1 if the artifacts on disk differ from a fresh compile
//
// Everything is offline: imports resolve from node_modules, and solc-js is never asked to fetch
// another compiler version.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..");
const BUILD_DIR = path.join(__dirname, "build");
const NODE_MODULES = path.join(ROOT, "node_modules");
const CONTRACTS = ["ProvenanceRegistry", "ProvenanceNFT"];

// Prague is the pinned compiler's default and mainnet's rules since May 2025; naming it keeps the
// bytecode unchanged if a later compiler moves the default on.
const SETTINGS = {
  evmVersion: "prague",
  optimizer: { enabled: true, runs: 200 },
};

function sha256(text) {
  return crypto.createHash("sha256").update(text, "utf8").digest("hex");
}

function sourceUnitName(name) {
  return `contracts/${name}.sol`;
}

// Only package imports ("@openzeppelin/...") reach here; our own files are passed as content.
function findImports(importPath) {
  const file = path.resolve(NODE_MODULES, importPath);
  if (!file.startsWith(NODE_MODULES + path.sep)) {
    return { error: `import ${importPath} is outside node_modules` };
  }
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch {
    return { error: `import ${importPath} not found in node_modules (run \`npm ci\`)` };
  }
}

// Key-sorted, two-space JSON with a final newline: byte-identical for identical inputs.
function stableStringify(value) {
  const sortKeys = (v) => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v && typeof v === "object") {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
    }
    return v;
  };
  return JSON.stringify(sortKeys(value), null, 2) + "\n";
}

function compile() {
  let solc;
  try {
    solc = require("solc");
  } catch {
    throw new Error("solc is not installed: run `npm ci` in the repository root");
  }
  const sources = {};
  for (const name of CONTRACTS) {
    sources[sourceUnitName(name)] = {
      content: fs.readFileSync(path.join(ROOT, sourceUnitName(name)), "utf8"),
    };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      ...SETTINGS,
      // Only our contracts: bytecode for every imported library would just cost time.
      outputSelection: Object.fromEntries(
        CONTRACTS.map((name) => [
          sourceUnitName(name),
          { [name]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"] },
        ]),
      ),
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const problems = output.errors || [];
  for (const p of problems) process.stderr.write(p.formattedMessage || p.message);
  if (problems.some((p) => p.severity === "error")) {
    throw new Error("compilation failed");
  }

  const artifacts = {};
  for (const name of CONTRACTS) {
    const contract = output.contracts[sourceUnitName(name)][name];
    const metadata = JSON.parse(contract.metadata);
    // The metadata lists exactly the sources this contract was built from, imports included.
    const used = {};
    for (const unit of Object.keys(metadata.sources).sort()) {
      const content = unit in sources ? sources[unit].content : findImports(unit).contents;
      used[unit] = sha256(content);
    }
    artifacts[name] = {
      contractName: name,
      abi: contract.abi,
      bytecode: "0x" + contract.evm.bytecode.object,
      deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
      compiler: { version: metadata.compiler.version, settings: SETTINGS },
      // sha256 over "<sha256 of file>  <source unit>\n" lines, sorted by unit (sha256sum format).
      sourceHash: sha256(Object.entries(used).map(([u, h]) => `${h}  ${u}\n`).join("")),
      sources: used,
    };
  }
  return artifacts;
}

function main(argv) {
  const check = argv.includes("--check");
  const started = process.hrtime.bigint();
  const artifacts = compile();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  const stale = [];
  for (const [name, artifact] of Object.entries(artifacts)) {
    const file = path.join(BUILD_DIR, `${name}.json`);
    const relative = path.relative(ROOT, file);
    const text = stableStringify(artifact);
    if (check) {
      const current = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : null;
      if (current === null) stale.push(`${relative}: missing`);
      else if (current !== text) stale.push(`${relative}: differs from a fresh compile`);
    } else {
      fs.mkdirSync(BUILD_DIR, { recursive: true });
      fs.writeFileSync(file, text);
      console.log(`wrote ${relative} (${Buffer.byteLength(text)} bytes)`);
    }
  }
  console.log(`compiled ${CONTRACTS.length} contracts in ${seconds.toFixed(2)} s`);
  if (stale.length) {
    console.log("stale artifacts (rebuild with `node contracts/compile.js` and commit them):");
    for (const line of stale) console.log(`  ${line}`);
    return 1;
  }
  if (check) console.log("artifacts are up to date");
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  console.error(`error: ${err.message}`);
  process.exitCode = 2;
}
