"""The artist's Ethereum keys, kept only as encrypted Web3 Secret Storage (keystore v3, scrypt) files.

Keys are made here or imported (a private key, or another keystore v3 file) and always stored re-encrypted with
provenance's passphrase and scrypt. The private key never touches disk in plain text; the passphrase is passed in
by the caller (the CLI reads it from a prompt or PROVENANCE_PASSPHRASE, never from a command-line argument that
would show in `ps`).
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


def _check_new(keys_dir: Path, name: str, passphrase: str) -> Path:
    """The path a new key called `name` would take; refuses bad names, empty passphrases and duplicates."""
    if not _NAME.match(name):
        raise KeystoreError(f"invalid key name {name!r}", hint="use letters, digits, spaces, '.', '@' or '-'")
    if not passphrase:
        raise KeystoreError("an empty passphrase would leave the key unprotected",
                            hint="set PROVENANCE_PASSPHRASE or type a passphrase at the prompt")
    path = Path(keys_dir) / f"{_slug(name)}.json"
    if path.exists() or any(k.name == name for k in list_keys(keys_dir)):
        raise KeystoreError(f"a key named {name!r} already exists ({path})")
    return path


def _store(keys_dir: Path, path: Path, name: str, account: LocalAccount, passphrase: str) -> KeyInfo:
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
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


def new_key(keys_dir: Path, name: str, passphrase: str) -> KeyInfo:
    """Create a key named `name` and store it encrypted with `passphrase`."""
    keys_dir = Path(keys_dir)
    path = _check_new(keys_dir, name, passphrase)
    return _store(keys_dir, path, name, Account.create(), passphrase)


_PRIVATE_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def _from_private_hex(private_key: str) -> LocalAccount:
    # Messages here never quote the input: it is (nearly) a secret key.
    text = private_key.strip()
    if not _PRIVATE_HEX.match(text):
        raise KeystoreError("the private key is not 64 hex digits (optionally prefixed with 0x)")
    try:
        return Account.from_key(bytes.fromhex(text.removeprefix("0x")))
    except Exception:  # eth_keys refuses 0 and values past the curve order with several error types
        raise KeystoreError("the private key is outside the range of secp256k1 keys") from None


def _from_keystore(path: Path, keystore_passphrase: str) -> LocalAccount:
    keystore = _read(Path(path))
    if not isinstance(keystore, dict) or keystore.get("version") != 3 or "crypto" not in keystore:
        raise KeystoreError(f"{path} is not a keystore v3 (Web3 Secret Storage) file")
    try:
        return Account.from_key(Account.decrypt(keystore, keystore_passphrase))
    except ValueError:
        raise KeystoreError(f"wrong passphrase for the keystore file {path}") from None


def import_key(keys_dir: Path, name: str, passphrase: str, *, private_key: str | None = None,
               keystore: Path | None = None, keystore_passphrase: str = "") -> KeyInfo:
    """Store an existing key under `name`, encrypted with `passphrase` like a new one.

    The key is either `private_key` (hex) or a keystore v3 file `keystore` unlocked with `keystore_passphrase`
    (re-encrypted, so every stored key uses provenance's passphrase and scrypt). An address already stored under
    another name is refused: one key, one name.
    """
    if (private_key is None) == (keystore is None):
        raise KeystoreError("give either a private key or a keystore file to import")
    keys_dir = Path(keys_dir)
    path = _check_new(keys_dir, name, passphrase)
    account = _from_private_hex(private_key) if private_key is not None else _from_keystore(keystore,
                                                                                             keystore_passphrase)
    for k in list_keys(keys_dir):
        if k.address.lower() == account.address.lower():
            raise KeystoreError(f"this key ({account.address}) is already stored as {k.name!r} ({k.path})")
    return _store(keys_dir, path, name, account, passphrase)


def export_public(keys_dir: Path, name: str | None = None) -> dict:
    """What may be shared of a key: its name and address. Reads no secret and needs no passphrase."""
    info = find_key(keys_dir, name)
    return {"name": info.name, "address": info.address}


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
