"""EIP-712 typed-data signatures over registration, transfer, commitment and checkpoint records.

Typed data (rather than a hash blob) means a wallet shows the artist exactly what they sign, and the domain's
chain id keeps a signature made for one chain from being replayed on another. A registration is signed before any
registry contract exists, so its domain cannot name one; the checkpoint signed when a root is anchored names the
registry (`verifyingContract`), binding every entry under that root to that contract.
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


TRANSFER_TYPE = [
    {"name": "workId", "type": "uint256"},
    {"name": "sha256", "type": "bytes32"},
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "transferredAt", "type": "uint64"},
]

COMMITMENT_TYPE = [
    {"name": "commitment", "type": "bytes32"},
    {"name": "registrant", "type": "address"},
    {"name": "committedAt", "type": "uint64"},
]

CHECKPOINT_TYPE = [
    {"name": "ledgerId", "type": "string"},
    {"name": "size", "type": "uint64"},
    {"name": "root", "type": "bytes32"},
]
_VERIFYING_CONTRACT = {"name": "verifyingContract", "type": "address"}

# primary type -> (fields, the fields given as hex strings that EIP-712 wants 0x-prefixed)
_TYPES = {
    "Registration": (REGISTRATION_TYPE, ("sha256", "pdq", "phash")),
    "Transfer": (TRANSFER_TYPE, ("sha256",)),
    "Commitment": (COMMITMENT_TYPE, ("commitment",)),
    "Checkpoint": (CHECKPOINT_TYPE, ("root",)),
}


def _typed(primary: str, record: dict[str, Any], chain_id: int, contract: str | None = None) -> dict[str, Any]:
    fields, hex_fields = _TYPES[primary]
    message = {f["name"]: record[f["name"]] for f in fields}
    for name in hex_fields:
        message[name] = "0x" + str(message[name]).removeprefix("0x")
    domain: dict[str, Any] = {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id}
    domain_type = _DOMAIN_TYPE
    if contract is not None:
        domain["verifyingContract"] = contract
        domain_type = [*_DOMAIN_TYPE, _VERIFYING_CONTRACT]
    return {
        "types": {"EIP712Domain": domain_type, primary: fields},
        "primaryType": primary,
        "domain": domain,
        "message": message,
    }


def _sign(account: LocalAccount, typed: dict[str, Any]) -> str:
    signed = account.sign_message(encode_typed_data(full_message=typed))
    return "0x" + signed.signature.hex().removeprefix("0x")


def _recover(primary: str, record: dict[str, Any], signature: str, chain_id: int,
             contract: str | None = None) -> str | None:
    try:
        return Account.recover_message(encode_typed_data(full_message=_typed(primary, record, chain_id, contract)),
                                       signature=signature)
    except Exception:  # eth_account raises several unrelated types for garbage records and signatures
        return None


def typed_registration(record: dict[str, Any], chain_id: int) -> dict[str, Any]:
    """The full EIP-712 message for a registration record (field names as in REGISTRATION_TYPE)."""
    return _typed("Registration", record, chain_id)


def sign_registration(account: LocalAccount, record: dict[str, Any], chain_id: int) -> str:
    """Sign `record` with `account`; returns the 65-byte signature as 0x-hex."""
    return _sign(account, _typed("Registration", record, chain_id))


def recover_registrant(record: dict[str, Any], signature: str, chain_id: int) -> str | None:
    """The address that signed `record`, or None when the signature is malformed."""
    return _recover("Registration", record, signature, chain_id)


def typed_transfer(record: dict[str, Any], chain_id: int) -> dict[str, Any]:
    """The full EIP-712 message for a transfer record (field names as in TRANSFER_TYPE), same domain."""
    return _typed("Transfer", record, chain_id)


def sign_transfer(account: LocalAccount, record: dict[str, Any], chain_id: int) -> str:
    """Sign a transfer record with `account` (the current owner); returns the 65-byte signature as 0x-hex."""
    return _sign(account, _typed("Transfer", record, chain_id))


def recover_transfer_signer(record: dict[str, Any], signature: str, chain_id: int) -> str | None:
    """The address that signed the transfer `record`, or None when the record or signature is malformed."""
    return _recover("Transfer", record, signature, chain_id)


def typed_commitment(record: dict[str, Any], chain_id: int) -> dict[str, Any]:
    """The full EIP-712 message for a commitment record (field names as in COMMITMENT_TYPE), same domain."""
    return _typed("Commitment", record, chain_id)


def sign_commitment(account: LocalAccount, record: dict[str, Any], chain_id: int) -> str:
    """Sign a commitment record with `account` (the registrant); returns the 65-byte signature as 0x-hex."""
    return _sign(account, _typed("Commitment", record, chain_id))


def recover_commitment_signer(record: dict[str, Any], signature: str, chain_id: int) -> str | None:
    """The address that signed the commitment `record`, or None when the record or signature is malformed."""
    return _recover("Commitment", record, signature, chain_id)


def typed_checkpoint(record: dict[str, Any], chain_id: int, contract: str | None = None) -> dict[str, Any]:
    """The full EIP-712 message for a checkpoint {ledgerId, size, root}; with `contract` (the registry that
    anchored the root), the domain's `verifyingContract`."""
    return _typed("Checkpoint", record, chain_id, contract)


def sign_checkpoint(account: LocalAccount, record: dict[str, Any], chain_id: int, contract: str | None = None) -> str:
    """Sign a checkpoint record with `account` (the ledger keeper, or the key that anchored its root)."""
    return _sign(account, _typed("Checkpoint", record, chain_id, contract))


def recover_checkpoint_signer(record: dict[str, Any], signature: str, chain_id: int,
                              contract: str | None = None) -> str | None:
    """The address that signed the checkpoint `record`, or None when the record or signature is malformed."""
    return _recover("Checkpoint", record, signature, chain_id, contract)
