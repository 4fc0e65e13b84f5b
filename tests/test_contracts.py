"""Tests for the committed contract artifacts in contracts/build/: fresh, pinned, and with the expected ABI."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
BUILD = CONTRACTS / "build"
NAMES = ["ProvenanceRegistry", "ProvenanceNFT"]

needs_solc = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "solc").is_dir(),
    reason="node or node_modules/solc missing: run `npm ci` in the repository root to check the artifacts "
    "against a fresh compile",
)


def load(name: str) -> dict:
    return json.loads((BUILD / f"{name}.json").read_text())


def signature(entry: dict) -> str:
    return f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"


def abi_entries(name: str, kind: str) -> dict[str, dict]:
    return {signature(e): e for e in load(name)["abi"] if e["type"] == kind}


def run_check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["node", str(root / "contracts" / "compile.js"), "--check"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )


# --- freshness ------------------------------------------------------------------------------------------

@needs_solc
def test_artifacts_match_a_fresh_compile():
    result = run_check(ROOT)
    assert result.returncode == 0, (
        "contracts/build/ is stale: run `node contracts/compile.js` and commit the result\n"
        + result.stdout + result.stderr
    )


@needs_solc
def test_check_names_the_stale_artifact(tmp_path):
    shutil.copytree(CONTRACTS, tmp_path / "contracts")
    os.symlink(ROOT / "node_modules", tmp_path / "node_modules")
    source = tmp_path / "contracts" / "ProvenanceRegistry.sol"
    source.write_text(source.read_text() + "// edited without rebuilding\n")

    result = run_check(tmp_path)

    assert result.returncode == 1
    assert "contracts/build/ProvenanceRegistry.json: differs from a fresh compile" in result.stdout
    assert "ProvenanceNFT.json" not in result.stdout


@pytest.mark.parametrize("name", NAMES)
def test_artifacts_record_the_current_sources(name):
    # Runs without Node, so an edited .sol with forgotten artifacts fails even where solc is absent.
    artifact = load(name)
    own = {unit: digest for unit, digest in artifact["sources"].items() if unit.startswith("contracts/")}
    assert own == {f"contracts/{name}.sol": hashlib.sha256((CONTRACTS / f"{name}.sol").read_bytes()).hexdigest()}
    lines = "".join(f"{digest}  {unit}\n" for unit, digest in sorted(artifact["sources"].items()))
    assert artifact["sourceHash"] == hashlib.sha256(lines.encode()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_artifacts_pin_the_compiler_and_carry_bytecode(name):
    artifact = load(name)
    assert artifact["contractName"] == name
    assert artifact["compiler"]["version"].startswith("0.8.37+commit.")
    assert artifact["compiler"]["settings"] == {"evmVersion": "prague", "optimizer": {"enabled": True, "runs": 200}}
    for key in ("bytecode", "deployedBytecode"):
        code = artifact[key]
        assert code.startswith("0x") and len(code) > 2
        bytes.fromhex(code[2:])


@pytest.mark.parametrize("name", NAMES)
def test_artifacts_are_stably_formatted(name):
    text = (BUILD / f"{name}.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


# --- ABI ------------------------------------------------------------------------------------------------

def test_registry_abi():
    functions = abi_entries("ProvenanceRegistry", "function")
    assert set(functions) == {"anchor(bytes32,uint64,bytes16)", "anchoredAt(bytes32)"}
    assert functions["anchor(bytes32,uint64,bytes16)"]["stateMutability"] == "nonpayable"
    assert functions["anchor(bytes32,uint64,bytes16)"]["outputs"] == []
    assert functions["anchoredAt(bytes32)"]["stateMutability"] == "view"
    assert [o["type"] for o in functions["anchoredAt(bytes32)"]["outputs"]] == ["uint64"]

    event = abi_entries("ProvenanceRegistry", "event")["Anchored(bytes32,uint64,bytes16,address)"]
    assert [(i["name"], i["indexed"]) for i in event["inputs"]] == [
        ("root", True), ("size", False), ("ledgerId", True), ("by", True),
    ]
    assert set(abi_entries("ProvenanceRegistry", "error")) == {"AlreadyAnchored(bytes32)"}


def test_nft_abi():
    functions = abi_entries("ProvenanceNFT", "function")
    mint = functions["mint(address,string,uint96)"]
    assert mint["stateMutability"] == "nonpayable"
    assert [o["type"] for o in mint["outputs"]] == ["uint256"]
    for expected in (
        "name()", "symbol()", "tokenURI(uint256)", "ownerOf(uint256)", "balanceOf(address)",
        "royaltyInfo(uint256,uint256)", "supportsInterface(bytes4)",
        "safeTransferFrom(address,address,uint256)", "transferFrom(address,address,uint256)",
    ):
        assert expected in functions, expected
    # Open minting: no owner, so nothing that an owner could call.
    assert not {"owner()", "transferOwnership(address)"} & set(functions)

    events = abi_entries("ProvenanceNFT", "event")
    for expected in ("Transfer(address,address,uint256)", "MetadataUpdate(uint256)"):
        assert expected in events, expected
    errors = abi_entries("ProvenanceNFT", "error")
    for expected in ("ERC721InvalidReceiver(address)", "ERC2981InvalidTokenRoyalty(uint256,uint256,uint256)"):
        assert expected in errors, expected
