"""Why a contract refused a call: the revert data out of the errors web3 and the in-process EVM raise, decoded
against the contract's ABI into "ErrorName(arg=value, ...)"."""
from __future__ import annotations

import ast
import re

from eth_abi import decode as abi_decode
from eth_utils import keccak
from eth_utils.abi import abi_to_signature, get_abi_input_types
from web3.exceptions import ContractCustomError, ContractLogicError


def revert_data(e: Exception) -> bytes | None:
    """The raw revert data of a refused call, from a node's error or from the in-process EVM's message."""
    data = getattr(e, "data", None)
    if isinstance(data, str) and re.fullmatch(r"0x(?:[0-9a-fA-F]{2})*", data):
        return bytes.fromhex(data[2:])
    m = re.fullmatch(r"""execution reverted: (b(['"]).*\2)""", str(e), re.S)  # eth-tester: the bytes' repr
    if m:
        try:
            return ast.literal_eval(m.group(1))
        except (SyntaxError, ValueError):
            return None
    return None


def decode_error(abi: list, data: bytes) -> tuple[str, str] | None:
    """(name, "Name(arg=value, ...)") of the custom error in `abi` that `data` encodes."""
    for item in abi:
        if item.get("type") == "error" and keccak(text=abi_to_signature(item))[:4] == data[:4]:
            try:
                values = abi_decode(get_abi_input_types(item), data[4:])
            except Exception:  # malformed arguments: the error's name alone still says what happened
                values = ()
            args = ", ".join(f"{i['name'] or '_'}={v}" for i, v in zip(item["inputs"], values))
            return item["name"], f"{item['name']}({args})"
    return None


def revert_reason(e: Exception, abi: list) -> tuple[str | None, str] | None:
    """(custom error name or None, reason text) if `e` is the contract refusing the call; None for any other error."""
    data = revert_data(e)
    decoded = decode_error(abi, data) if data else None
    if decoded:
        return decoded
    if isinstance(e, (ContractCustomError, ContractLogicError)) or str(e).startswith("execution reverted"):
        return None, str(e)[:300]
    return None
