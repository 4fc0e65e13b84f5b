"""The managed local chain: an Anvil process started for one command and stopped after it.

Anvil loads `--state FILE` at start and writes it back when it exits on SIGTERM or SIGINT (checked with anvil
1.7.1), so the chain survives between commands although each command starts and stops its own node. Three
things keep that state safe:

- a lock file held for the node's lifetime, so two commands never run two nodes over one state file (the
  second waits);
- the node runs in its own session, so Ctrl-C in the terminal reaches only Python, which then stops the node
  itself once the command has finished with it;
- PR_SET_PDEATHSIG: if Python is killed outright, the kernel sends the node SIGTERM and it still saves.

A SIGKILL of the node itself loses what happened since it started; the ledger never records an anchor before
it is mined, so the next `anchor` sees the root missing and anchors it again.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from .errors import ProvenanceError, UsageError

ANVIL_ENV = "PROVENANCE_ANVIL"
#: The managed chain's id: Anvil's default, and the default of `provenance init`.
CHAIN_ID = 31337
_REPO_ANVIL = Path(__file__).resolve().parent.parent / "node_modules" / ".bin" / "anvil"
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 30.0


class NodeStartError(ProvenanceError):
    """The managed local chain did not start."""


def find_anvil() -> Path:
    """$PROVENANCE_ANVIL, else the repository's node_modules/.bin/anvil, else `anvil` on PATH."""
    if os.environ.get(ANVIL_ENV):
        path = Path(os.environ[ANVIL_ENV]).expanduser()
        if not os.access(path, os.X_OK):
            raise UsageError(f"{ANVIL_ENV} is {path}, which is not an executable",
                             hint="point it at an anvil binary, or unset it to use the one `make install` puts in"
                                  " node_modules/.bin/")
        return path
    if os.access(_REPO_ANVIL, os.X_OK):
        return _REPO_ANVIL
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise UsageError("the local chain (anvil) is not installed",
                     hint=f"run `make install` (it runs `npm ci`, which installs anvil into node_modules/.bin/), set"
                          f" {ANVIL_ENV}, or use another node with --rpc-url")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the node may outlive a killed parent, nothing worse
        pass


def rpc(url: str, method: str, params: list | None = None, timeout: float = 5.0):
    """One JSON-RPC call over HTTP with the standard library (used before web3 is worth setting up)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())["result"]


class ManagedNode:
    """An Anvil node over `state_dir`/anvil-state.json on a free loopback port. Use as a context manager.

    `args` are further anvil options (tests start a node that does not mine with `--no-mining`).
    """

    def __init__(self, state_dir: Path | str, *, chain_id: int = CHAIN_ID, anvil: Path | None = None,
                 args: tuple[str, ...] = ()):
        self.state_dir = Path(state_dir)
        self.state_file = self.state_dir / "anvil-state.json"
        self.chain_id = chain_id
        self.anvil = anvil
        self.args = tuple(args)
        self.url: str | None = None
        self.instance: str | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = None

    def __enter__(self) -> "ManagedNode":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> str:
        """Start the node and wait until it answers; returns its RPC URL."""
        anvil = self.anvil or find_anvil()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.state_dir / "anvil.lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # another command using the node: wait for it to save
        try:
            self.instance = self._instance()
            for _ in range(3):  # the free port can be taken between probing and binding
                if self._spawn(anvil):
                    return self.url
            raise NodeStartError(f"the local chain did not start: {self._log_tail()}",
                                 hint=f"see {self.state_dir / 'anvil.log'}; delete {self.state_file} to start a"
                                      " fresh chain if the state file is damaged")
        except BaseException:
            self.stop()
            raise

    def _instance(self) -> str:
        """The id of the chain in the state file: new with every new state file (see chain.py for why)."""
        marker = self.state_dir / "instance"
        if self.state_file.exists() and marker.exists():
            return marker.read_text().strip()
        instance = f"anvil:{uuid.uuid4()}"
        marker.write_text(instance + "\n")
        return instance

    def _spawn(self, anvil: Path) -> bool:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.state_dir / "anvil.log", "wb")
        self._proc = subprocess.Popen(
            [str(anvil), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(self.chain_id),
             "--state", str(self.state_file), "--silent", *self.args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            try:
                rpc(self.url, "eth_chainId", timeout=1.0)
                return True
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                time.sleep(0.02)
        self._terminate()
        return False

    def _log_tail(self) -> str:
        try:
            text = (self.state_dir / "anvil.log").read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text.splitlines()[-1] if text else "no output"

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # anvil writes --state on SIGTERM
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stop the node, letting it write its state, then release the lock."""
        try:
            self._terminate()
        finally:
            if self._lock is not None:
                self._lock.close()  # closing releases the flock
                self._lock = None
