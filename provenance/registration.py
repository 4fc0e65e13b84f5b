"""Register works: decode, fingerprint, sign, append to the ledger, checkpoint."""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterator

from eth_account.signers.local import LocalAccount

from ._parallel import imap
from .errors import ImageError, UsageError
from .fingerprints import ORB, PDQ, PDQEQ, PHASH, FingerprintSet, fingerprint_decoded
from .imaging import decode, read_bytes
from .index import open_index
from .ledger import Appended, Ledger, commitment_of
from .matching import PDQ_MIN_QUALITY, find_matches
from .previews import make_preview, store_preview
from .signing import sign_registration
from .sources import collect_files, display


@dataclass(frozen=True)
class RegisterResult:
    """The outcome for one file: registered (created), already registered, or an error."""

    item: str
    work_id: int | None = None
    created: bool = False
    title: str | None = None
    error: str | None = None
    prior_claims: list[dict] = field(default_factory=list)
    low_detail: bool = False  # a blank image: copies will be recognised by exact bytes only
    commitment: str | None = None  # --private: the salted commitment recorded instead of the registration
    commit_seq: int | None = None  # --private: its ledger entry


@dataclass
class Batch:
    """A batch in progress: `total` items, results as they complete (iterate `results`)."""

    total: int
    results: Iterator
    run_id: int | None = None  # a scan's run in the scan record (None: not recorded, or a registration)


@dataclass(frozen=True)
class _Fingerprinted:
    path: Path
    fps: FingerprintSet | None
    error: str | None
    mtime: float | None
    preview: bytes | None = None  # a small JPEG for reports (previews), made from the same decoded image


def _fingerprint_file(path: Path) -> _Fingerprinted:
    try:
        data = read_bytes(path)
        mtime = path.stat().st_mtime
        decoded = decode(data)
        # Variants are needed to find prior claims on flipped or rotated versions of the same work.
        fps = fingerprint_decoded(data, decoded, variants=True)
        return _Fingerprinted(path, fps, None, mtime, make_preview(decoded.image))
    except ImageError as e:
        return _Fingerprinted(path, None, e.message, None)
    except Exception as e:  # never let one file end the batch
        return _Fingerprinted(path, None, f"unexpected error: {type(e).__name__}: {e}", None)


def title_from_filename(path: Path) -> str:
    """'sunset_hills-02.jpg' -> 'Sunset Hills 02'."""
    words = re.sub(r"[_\-.]+", " ", display(path.stem)).split()
    return " ".join(w[:1].upper() + w[1:] for w in words) or display(path.name)


def register(ledger: Ledger, paths: list[str | Path], account: LocalAccount, *, artist: str,
             license: str = "All rights reserved", title: str | None = None, pretty_titles: bool = False,
             created: str | None = None, workers: int | None = None, private: bool = False,
             private_dir: str | Path | None = None) -> Batch:
    """Register every image under `paths`, signed by `account`.

    Idempotent per (bytes, registrant). Each work is committed on its own, so an interrupted batch keeps every
    completed work and a re-run finishes the rest. A work that perceptually matches a work registered earlier by
    another key is registered with a `prior_claims` note. Ends with a ledger checkpoint signed by `account`.

    `private`: record only a salted commitment per work (a `commit` entry); the record, fingerprints, local
    features and salt stay in `private_dir` (default DATA_DIR/private) until `reveal()` publishes them.
    """
    files, source_errors = collect_files(paths)
    if title is not None and len(files) > 1:
        raise UsageError(f"--title names one work, but {len(files)} files were given",
                         hint="use --title-from-filename for several files")

    def run() -> Iterator[RegisterResult]:
        for e in source_errors:
            yield RegisterResult(e.item, error=e.error)
        index = None if private else open_index(ledger)  # brought up to date with the ledger, not rebuilt
        try:
            for fp in imap(_fingerprint_file, files, workers):
                item = display(fp.path)
                if fp.error:
                    yield RegisterResult(item, error=fp.error)
                    continue
                name = title or (title_from_filename(fp.path) if pretty_titles else display(fp.path.name))
                claims = [] if private else _prior_claims(ledger, index, fp.fps, account.address)
                record = _record(fp, account.address, name, artist, license, created)
                try:
                    signature = sign_registration(account, record, ledger.chain_id)
                except Exception as e:  # one unsignable record must not end the batch
                    yield RegisterResult(item, error=f"cannot sign the registration: {type(e).__name__}: {e}")
                    continue
                if private:
                    try:
                        commitment, seq = _commit(ledger, account, record, signature, list(fp.fps.stored()),
                                                  {ORB: fp.fps.local_features}, private_dir, fp.preview)
                    except OSError as e:
                        yield RegisterResult(item, error=f"cannot keep the private record: {e}")
                        continue
                    yield RegisterResult(item, None, True, name, commitment=commitment, commit_seq=seq)
                    continue
                appended = ledger.append_work(record, signature, list(fp.fps.stored()), claims,
                                              {ORB: fp.fps.local_features})
                if fp.preview is not None:
                    store_preview(ledger, appended.work_id, fp.preview)
                yield RegisterResult(item, appended.work_id, appended.created, name,
                                     prior_claims=claims if appended.created else [],
                                     low_detail=max(fp.fps.pdq.quality or 0,
                                                    fp.fps.get(PDQEQ).quality or 0) < PDQ_MIN_QUALITY)
        finally:
            ledger.checkpoint(signer=account)

    return Batch(len(files) + len(source_errors), run())


def _prior_claims(ledger: Ledger, index, fps: FingerprintSet, registrant: str) -> list[dict]:
    """Matches to works registered by someone else. The index has no local features, so find_matches decides
    each work on its own hashes: dropping the registrant's own works afterwards is the same as leaving them out."""
    matches = find_matches(fps, index)
    owners = ledger.registrants([m.work_id for m in matches]) if matches else {}
    return [{"work_id": m.work_id, "signal": m.signal, "distance": m.distance, "transform": m.transform}
            for m in matches if owners[m.work_id].lower() != registrant.lower()]


def _record(fp: _Fingerprinted, registrant: str, title: str, artist: str, license: str,
            created: str | None) -> dict:
    fps = fp.fps
    return {
        "sha256": fps.sha256,
        "pdq": fps.get(PDQ).value,
        "phash": fps.get(PHASH).value,
        "title": title,
        "artist": artist,
        "license": license,
        "created": created or date.fromtimestamp(fp.mtime).isoformat(),
        "registeredAt": int(time.time()),
        "width": fps.width,
        "height": fps.height,
        "registrant": registrant,
    }



# -- commit-reveal -----------------------------------------------------------------------------------------------
def _private_dir(private_dir: str | Path | None) -> Path:
    from . import config

    return Path(private_dir) if private_dir is not None else config.data_dir() / "private"


def _commit(ledger: Ledger, account: LocalAccount, record: dict, signature: str, fingerprints: list[dict],
            blobs: dict[str, bytes], private_dir: str | Path | None, preview: bytes | None = None) -> tuple[str, int]:
    """Keep the registration in a private file (mode 0600), then append only its salted commitment. The preview
    waits in that file too: stored in the ledger file now, it would show the unpublished work."""
    salt = secrets.token_hex(32)
    commitment = commitment_of(record, fingerprints, salt)
    folder = _private_dir(private_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = {"commitment": commitment, "salt": salt, "record": record, "signature": signature,
              "chain_id": ledger.chain_id, "fingerprints": fingerprints, "ledger_id": ledger.ledger_id,
              "blobs": {alg: None if data is None else base64.b64encode(data).decode() for alg, data in blobs.items()},
              "preview": None if preview is None else base64.b64encode(preview).decode()}
    path = folder / f"{commitment}.json"
    tmp = folder / f".{commitment}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(secret, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # written before the ledger entry: a commitment is never left without its opening
    return commitment, ledger.append_commit(commitment, account, record["registeredAt"])


@dataclass(frozen=True)
class RevealResult:
    work_id: int
    created: bool
    commit_seq: int
    commitment: str
    title: str


def reveal(ledger: Ledger, commitment_or_seq: str | int, account: LocalAccount,
           private_dir: str | Path | None = None) -> RevealResult:
    """Publish a private registration: append its signed `register` entry with the salt that opens the earlier
    `commit` entry (given by its commitment, or its ledger entry number). Ends with a ledger checkpoint signed by
    `account` (the record itself was signed when it was committed)."""
    key = str(commitment_or_seq).strip().lower().removeprefix("0x")
    if key.isdigit():
        row = ledger.conn.execute("SELECT kind, payload FROM entries WHERE seq = ?", (int(key),)).fetchone()
        if row is None or row[0] != "commit":
            raise UsageError(f"ledger entry {key} is not a commitment",
                             hint="give the commitment printed by register --private, or its entry number")
        commitment = json.loads(row[1])["commit"]["commitment"]
    else:
        commitment = key
    path = _private_dir(private_dir) / f"{commitment}.json"
    if not path.exists():
        raise UsageError(f"no private record for commitment {commitment[:16]}… in {path.parent}",
                         hint="reveal on the machine (PROVENANCE_HOME) that registered it")
    secret = json.loads(path.read_text())
    seq = ledger.commit_seq(commitment)
    if seq is None:
        raise UsageError(f"commitment {commitment[:16]}… is not in this ledger ({ledger.location})")
    blobs = {alg: None if data is None else base64.b64decode(data) for alg, data in secret.get("blobs", {}).items()}
    appended: Appended = ledger.append_work(secret["record"], secret["signature"], secret["fingerprints"], [], blobs,
                                            reveals={"commit_seq": seq, "salt": secret["salt"]})
    if secret.get("preview"):  # private files written before previews have none: reports show a sketch
        store_preview(ledger, appended.work_id, base64.b64decode(secret["preview"]))
    ledger.checkpoint(signer=account)
    return RevealResult(appended.work_id, appended.created, seq, commitment, secret["record"]["title"])
