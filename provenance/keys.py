"""The artist's Ethereum keys, kept only as encrypted Web3 Secret Storage (keystore v3, scrypt) files.

The private key never touches disk in plain text; the passphrase is passed in by the caller (the CLI reads it
from a prompt or PROVENANCE_PASSPHRASE, never from a command-line argument that would show in `ps`).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from .errors import KeystoreError

_NAME = re.compile(r"^[\w .@-]{1,64}$")


@dataclass(frozen=True)
class KeyInfo:
    name: str
    address: str
    path: Path


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name.strip()).strip("-").lower() or "key"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise KeystoreError(f"cannot read keystore {path}: {e}") from None


def list_keys(keys_dir: Path) -> list[KeyInfo]:
    """Every keystore in `keys_dir`, sorted by name."""
    out = []
    for path in sorted(Path(keys_dir).glob("*.json")):
        ks = _read(path)
        address = "0x" + ks.get("address", "").removeprefix("0x")
        out.append(KeyInfo(name=ks.get("provenance_name", path.stem), address=_checksum(address), path=path))
    return out


def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


def new_key(keys_dir: Path, name: str, passphrase: str) -> KeyInfo:
    """Create a key named `name` and store it encrypted with `passphrase`."""
    if not _NAME.match(name):
        raise KeystoreError(f"invalid key name {name!r}", hint="use letters, digits, spaces, '.', '@' or '-'")
    if not passphrase:
        raise KeystoreError("an empty passphrase would leave the key unprotected",
                            hint="set PROVENANCE_PASSPHRASE or type a passphrase at the prompt")
    keys_dir = Path(keys_dir)
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = keys_dir / f"{_slug(name)}.json"
    if path.exists() or any(k.name == name for k in list_keys(keys_dir)):
        raise KeystoreError(f"a key named {name!r} already exists ({path})")
    account = Account.create()
    keystore = Account.encrypt(account.key, passphrase, kdf="scrypt")
    keystore["provenance_name"] = name
    # Write-then-rename with 0600 from the start: no window where the file is readable by others or half written;
    # mkstemp is 0600 and unique, so a temp file left by a killed attempt never blocks the next one.
    fd, tmp = tempfile.mkstemp(dir=keys_dir, prefix=".new-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(keystore, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return KeyInfo(name=name, address=account.address, path=path)


def find_key(keys_dir: Path, name: str | None = None) -> KeyInfo:
    """The key called `name`, or the only key when `name` is None."""
    keys = list_keys(keys_dir)
    if not keys:
        raise KeystoreError("no signing key yet", hint='create one with: provenance key new --name "Your Name"')
    if name is None:
        if len(keys) > 1:
            names = ", ".join(k.name for k in keys)
            raise KeystoreError(f"several keys exist ({names})", hint="choose one with --key NAME")
        return keys[0]
    for k in keys:
        if name in (k.name, k.path.stem) or name.lower() == k.address.lower():
            return k
    raise KeystoreError(f"no key named {name!r}", hint="list keys with: provenance key list")


def unlock(info: KeyInfo, passphrase: str) -> LocalAccount:
    """Decrypt a keystore. A wrong passphrase is a KeystoreError, not a traceback."""
    try:
        return Account.from_key(Account.decrypt(_read(info.path), passphrase))
    except ValueError:
        raise KeystoreError(f"wrong passphrase for key {info.name!r}") from None
