"""EIP-712 typed-data signatures over registration records.

Typed data (rather than a hash blob) means a wallet shows the artist exactly what they sign, and the domain's
chain id keeps a signature made for one chain from being replayed on another.
"""
from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

DOMAIN_NAME = "provenance"
DOMAIN_VERSION = "1"
#: The embedded local chain's id (Anvil/Hardhat default); a ledger records the chain id it was made for.
DEFAULT_CHAIN_ID = 31337

REGISTRATION_TYPE = [
    {"name": "sha256", "type": "bytes32"},
    {"name": "pdq", "type": "bytes32"},
    {"name": "phash", "type": "bytes8"},
    {"name": "title", "type": "string"},
    {"name": "artist", "type": "string"},
    {"name": "license", "type": "string"},
    {"name": "created", "type": "string"},
    {"name": "registeredAt", "type": "uint64"},
    {"name": "width", "type": "uint32"},
    {"name": "height", "type": "uint32"},
    {"name": "registrant", "type": "address"},
]
_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
]


def typed_registration(record: dict[str, Any], chain_id: int) -> dict[str, Any]:
    """The full EIP-712 message for a registration record (field names as in REGISTRATION_TYPE)."""
    message = {f["name"]: record[f["name"]] for f in REGISTRATION_TYPE}
    for name in ("sha256", "pdq", "phash"):
        message[name] = "0x" + message[name].removeprefix("0x")
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, "Registration": REGISTRATION_TYPE},
        "primaryType": "Registration",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        "message": message,
    }


def sign_registration(account: LocalAccount, record: dict[str, Any], chain_id: int) -> str:
    """Sign `record` with `account`; returns the 65-byte signature as 0x-hex."""
    signed = account.sign_message(encode_typed_data(full_message=typed_registration(record, chain_id)))
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_registrant(record: dict[str, Any], signature: str, chain_id: int) -> str | None:
    """The address that signed `record`, or None when the signature is malformed."""
    try:
        return Account.recover_message(
            encode_typed_data(full_message=typed_registration(record, chain_id)), signature=signature)
    except Exception:  # eth_account raises several unrelated types for garbage signatures
        return None


TRANSFER_TYPE = [
    {"name": "workId", "type": "uint256"},
    {"name": "sha256", "type": "bytes32"},
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "transferredAt", "type": "uint64"},
]


def typed_transfer(record: dict[str, Any], chain_id: int) -> dict[str, Any]:
    """The full EIP-712 message for a transfer record (field names as in TRANSFER_TYPE), same domain."""
    message = {f["name"]: record[f["name"]] for f in TRANSFER_TYPE}
    message["sha256"] = "0x" + str(message["sha256"]).removeprefix("0x")
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, "Transfer": TRANSFER_TYPE},
        "primaryType": "Transfer",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        "message": message,
    }


def sign_transfer(account: LocalAccount, record: dict[str, Any], chain_id: int) -> str:
    """Sign a transfer record with `account` (the current owner); returns the 65-byte signature as 0x-hex."""
    signed = account.sign_message(encode_typed_data(full_message=typed_transfer(record, chain_id)))
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_transfer_signer(record: dict[str, Any], signature: str, chain_id: int) -> str | None:
    """The address that signed the transfer `record`, or None when the record or signature is malformed."""
    try:
        return Account.recover_message(
            encode_typed_data(full_message=typed_transfer(record, chain_id)), signature=signature)
    except Exception:  # eth_account raises several unrelated types for garbage
        return None


COMMITMENT_TYPE = [
    {"name": "commitment", "type": "bytes32"},
    {"name": "registrant", "type": "address"},
    {"name": "committedAt", "type": "uint64"},
]


def typed_commitment(record: dict[str, Any], chain_id: int) -> dict[str, Any]:
    """The full EIP-712 message for a commitment record (field names as in COMMITMENT_TYPE), same domain."""
    message = {f["name"]: record[f["name"]] for f in COMMITMENT_TYPE}
    message["commitment"] = "0x" + str(message["commitment"]).removeprefix("0x")
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, "Commitment": COMMITMENT_TYPE},
        "primaryType": "Commitment",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        "message": message,
    }


def sign_commitment(account: LocalAccount, record: dict[str, Any], chain_id: int) -> str:
    """Sign a commitment record with `account` (the registrant); returns the 65-byte signature as 0x-hex."""
    signed = account.sign_message(encode_typed_data(full_message=typed_commitment(record, chain_id)))
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_commitment_signer(record: dict[str, Any], signature: str, chain_id: int) -> str | None:
    """The address that signed the commitment `record`, or None when the record or signature is malformed."""
    try:
        return Account.recover_message(
            encode_typed_data(full_message=typed_commitment(record, chain_id)), signature=signature)
    except Exception:  # eth_account raises several unrelated types for garbage
        return None
