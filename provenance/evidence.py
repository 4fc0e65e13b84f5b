"""Evidence packets: what an artist sends with a takedown request, and what anyone can check.

`make_evidence(ledger, match_id, out_dir)` writes, for one recorded match (format `provenance-evidence/1`, see
docs/evidence.md):

  <sha256>.<ext>     the found copy's bytes, as the scan fetched or read them (from the scan record)
  match.json         why it matched (explanation, signal, distance, transform, geometry, score), where it was found
                     (image URL or file, page URL, source, HTTP status and response headers, fetch time) and the
                     work (id, title, artist, registrant, owner, SHA-256)
  certificate.json   the work's ownership certificate (certificates.issue_certificate)
  notice.txt         a plain-text DMCA-style takedown notice draft filled in from the above; [EDIT ME] marks what
                     only the artist knows (contact details, signature)
  manifest.json      each of those files with its SHA-256 and size, as canonical JSON: the packet hash is the
                     SHA-256 of this file's bytes
  timestamp.json     not in the manifest (it proves the manifest): the `evidence` ledger entry holding the packet
                     hash, its RFC 6962 inclusion proof to the newest checkpoint or to the anchor covering it, and
                     that anchor's receipt

The packet hash is appended to the ledger as an `evidence` entry (unsigned: a timestamp, not a claim) and a
checkpoint is recorded, so the next `provenance anchor` publishes it. Making the packet again for the same match
gives the same bytes and the same hash (the certificate of the first packet is kept, in the unsigned table
`evidence_packets`, while the work's ledger entries are unchanged) and so reuses the entry; only timestamp.json
is refreshed, with the anchor once there is one.

An allowed match (an allow rule covers it: a licensed use or the artist's own repost) is refused unless
`force_allowed`; the notice then opens with a warning naming the rule.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from . import anchoring, merkle
from .certificates import VerificationError, certificate_hash, issue_certificate, verify_certificate
from .errors import LedgerError, UsageError
from .ledger import Ledger, canonical_json, entry_hash, utc_now
from .report import explain_record, geometry_words, is_web_url
from .scanlog import MatchRecord, ScanLog

FORMAT = "provenance-evidence/1"
TIMESTAMP_FORMAT = "provenance-evidence-timestamp/1"
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
               "MPO": ".jpg", "AVIF": ".avif", "HEIF": ".heic"}
_TABLE = """CREATE TABLE IF NOT EXISTS evidence_packets (packet_sha256 TEXT PRIMARY KEY, match_id INTEGER,
            entry_seq INTEGER, certificate TEXT, created_at TEXT)"""
EDIT = "[EDIT ME"


@dataclass(frozen=True)
class EvidencePacket:
    """A written packet: its folder, its files (name -> SHA-256, as in the manifest) and its ledger timestamp."""

    match_id: int
    work_id: int
    out_dir: Path
    files: dict[str, str]
    packet_sha256: str
    entry_seq: int
    entry_hash: str
    created: bool  # False: the ledger already held this packet hash (an earlier run made the same packet)
    anchor: dict | None  # the receipt of the anchor covering the entry; None until `provenance anchor`
    allowed_by: int | None  # the allow rule covering the match (only with force_allowed)


def _extension(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _EXTENSIONS.get(im.format or "", ".bin")
    except (UnidentifiedImageError, OSError, ValueError):
        return ".bin"


def _dump(value) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _entry(ledger: Ledger, seq: int) -> dict:
    row = ledger.conn.execute("SELECT seq, kind, work_id, recorded_at, payload, prev_hash, entry_hash FROM entries"
                              " WHERE seq = ?", (seq,)).fetchone()
    return {"seq": row[0], "kind": row[1], "work_id": row[2], "recorded_at": row[3], "payload": json.loads(row[4]),
            "prev_hash": row[5], "entry_hash": row[6]}


def _ensure_table(ledger: Ledger) -> None:
    if not ledger.conn.has_table("evidence_packets"):
        with ledger.transaction() as c:
            c.create([_TABLE])


def _certificate(ledger: Ledger, match_id: int, work_id: int) -> dict:
    """The work's certificate; the one of this match's last packet while it still describes the same entries,
    so that making the packet again gives the same bytes."""
    fresh = issue_certificate(ledger, work_id)  # verifies the ledger first: a tampered ledger gives no evidence
    row = ledger.conn.execute("SELECT certificate FROM evidence_packets WHERE match_id = ? ORDER BY entry_seq DESC"
                              " LIMIT 1", (match_id,)).fetchone()
    if row:
        kept = json.loads(row[0])
        same = (kept.get("ledger_id") == fresh["ledger_id"] and kept.get("entry") == fresh["entry"]
                and [t["entry"] for t in kept.get("transfers", [])] == [t["entry"] for t in fresh["transfers"]]
                and kept.get("certificate_hash") == certificate_hash(kept))
        if same:
            return kept
    return fresh


def _match_json(ledger: Ledger, m: MatchRecord, found_name: str, size: int, cert: dict, rule,
                post: tuple) -> dict:
    work = ledger.work(m.work_id)
    return {
        "format": FORMAT,
        "match": {"id": m.id, "run_id": m.run_id, "explanation": explain_record(m), "signal": m.signal,
                  "distance": m.distance, "transform": m.transform, "geometry": m.geometry,
                  "geometry_words": geometry_words(m.geometry), "score": m.score, "confidence": m.confidence,
                  "sha256_exact": m.sha256_exact, "found_at": m.found_at,
                  "allowed_by": None if rule is None else {"rule_id": rule.id, "pattern": rule.pattern,
                                                           "note": rule.note, "work_id": rule.work_id}},
        "found": {"file": found_name, "sha256": m.sha256, "bytes": size, "item": m.item, "url": m.url,
                  "page_url": m.page_url, "source": m.source, "post_title": post[0], "post_published": post[1],
                  "http_status": m.http_status, "headers": m.headers, "fetched_at": m.fetched_at},
        "work": {"id": work.id, "title": work.title, "artist": work.artist, "license": work.license,
                 "registrant": work.registrant, "owner": ledger.owner(work.id), "sha256": work.sha256,
                 "registered_at": work.registered_at, "entry_seq": work.entry_seq,
                 "certificate_hash": cert["certificate_hash"]},
        "ledger": {"ledger_id": ledger.ledger_id, "chain_id": ledger.chain_id},
    }


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def notice_text(facts: dict, cert: dict) -> str:
    """A DMCA-style (17 U.S.C. § 512(c)(3)) takedown notice draft from match.json facts and the certificate."""
    m, found, work, led = facts["match"], facts["found"], facts["work"], facts["ledger"]
    anchor = cert.get("anchor")
    where = found["url"] if is_web_url(found["url"]) else None
    lines = []
    if m["allowed_by"]:
        r = m["allowed_by"]
        rule = f"{r['pattern']}: {r['note']}" if r["note"] else r["pattern"]
        lines += [f"!! WARNING: your allow rule #{r['rule_id']} ({rule})",
                  "!! covers this copy: it is listed as an ALLOWED use (a licence or your own repost), not as an",
                  "!! infringement. Do not send this notice unless the rule is wrong.", ""]
    lines += [
        "NOTICE OF COPYRIGHT INFRINGEMENT (draft: edit every [EDIT ME] before sending; delete this line)",
        "",
        f"To:   {EDIT}: the site's designated copyright agent or abuse contact]",
        f"Date: {EDIT}: the date you send this]",
        "",
        "I am the owner of the copyright in the original work described below. Material on your service",
        "reproduces it without my authorisation. I ask you to remove it or to disable access to it.",
        "",
        "1. The original work",
        f"   Title:       {work['title']}",
        f"   Artist:      {work['artist']}",
        f"   Registered:  {work['registered_at']} (the registrant's signed clock), as work #{work['id']} of",
        f"                provenance ledger {led['ledger_id']} (entry {work['entry_seq']}),",
        f"                signed by the key {work['registrant']}",
    ]
    if work["owner"].lower() != work["registrant"].lower():
        lines.append(f"   Owner now:   {work['owner']} (by a signed transfer recorded in the ledger)")
    if anchor:
        lines += [f"   Anchored:    the ledger root holding this registration was published on chain"
                  f" {anchor['chain_id']}",
                  f"                in block {anchor['block_number']} ({_utc(anchor['block_timestamp'])}),"
                  f" transaction {anchor['tx_hash']}"]
    else:
        lines.append("   Anchored:    not yet on a public chain when this packet was made")
    lines += [
        f"   File SHA-256: {work['sha256']}",
        "   Certificate: certificate.json, which anyone can check with `provenance verify certificate.json`",
        f"                (certificate hash {cert['certificate_hash']})",
        "",
        "2. The infringing material",
        f"   Image URL:   {where or EDIT + ': the URL where this copy is published]'}",
    ]
    if not where:
        lines.append(f"                (found as {found['item']})")
    lines += [
        f"   On page:     {found['page_url'] if is_web_url(found['page_url']) else EDIT + ': the page showing it]'}",
        f"   Found:       {found['fetched_at'] or m['found_at']}",
        f"   Copy SHA-256: {found['sha256']}",
        "                (the attached file of that name: the copy's bytes as found)",
        f"   Why it is a copy of the work: {m['explanation']}",
    ]
    if m["geometry_words"] and m["geometry"]:
        lines.append(f"   Where the work sits in it: {m['geometry_words']}")
    if found["post_title"]:
        lines.append(f"   Post title:  {found['post_title']}")
    lines += [
        "",
        "3. Statements",
        "   I have a good faith belief that use of the material in the manner complained of is not authorised",
        "   by the copyright owner, its agent, or the law.",
        "   The information in this notification is accurate, and under penalty of perjury, I am the owner, or",
        "   am authorised to act on behalf of the owner, of an exclusive right that is allegedly infringed.",
        "",
        "4. Contact",
        f"   Name:        {work['artist']}  {EDIT}: your full legal name, if different]",
        f"   Address:     {EDIT}: postal address]",
        f"   Email:       {EDIT}: email address]",
        f"   Phone:       {EDIT}: phone number]",
        f"   Key address: {work['owner']} (the key that owns the registration)",
        "",
        f"Signature: {EDIT}: your physical or electronic signature, e.g. /Your Name/]",
        "",
        "Attached: an evidence packet (manifest.json lists every file with its SHA-256; timestamp.json proves",
        "when the packet existed; docs/evidence.md of the provenance project says how to check it).",
    ]
    return "\n".join(lines) + "\n"


def _timestamp(ledger: Ledger, packet_sha256: str, seq: int, work_seq: int) -> dict:
    """The evidence entry, proven to the earliest anchor covering it, else to the newest checkpoint."""
    covering = [a for a in anchoring.anchors(ledger) if a.size >= seq]
    receipt = None
    if covering:
        a = min(covering, key=lambda x: (x.block_timestamp, x.size))
        size, root = a.size, a.root.removeprefix("0x")
        receipt = {"chain_id": a.chain_id, "contract": a.contract, "tx_hash": a.tx_hash,
                   "block_number": a.block_number, "block_timestamp": a.block_timestamp, "root": root, "size": a.size}
    else:
        cp = ledger.checkpoints()[-1]
        size, root = cp.size, cp.root
    leaves = ledger.entry_hashes()[:size]
    if merkle.root(leaves).hex() != root:
        raise LedgerError(f"the first {size} ledger entries no longer have the root {root[:16]}…",
                          hint="run: provenance ledger verify")
    note = ("Anchored: the packet existed no later than the anchor's block." if receipt else
            "Not anchored yet: run `provenance anchor`, then `provenance evidence MATCH_ID -o DIR` again to add the"
            " anchor receipt to this file (the packet and its hash stay the same).")
    return {
        "format": TIMESTAMP_FORMAT,
        "packet_sha256": packet_sha256,
        "ledger_id": ledger.ledger_id,
        "entry": _entry(ledger, seq),
        "inclusion": {"leaf_index": seq - 1, "tree_size": size, "root": root,
                      "proof": [p.hex() for p in merkle.inclusion_proof(leaves, seq - 1)]},
        # The work's registration entry under the same root: the work was registered before the packet.
        "work_inclusion": {"leaf_index": work_seq - 1,
                           "proof": [p.hex() for p in merkle.inclusion_proof(leaves, work_seq - 1)]},
        "anchor": receipt,
        "note": note,
    }


def make_evidence(ledger: Ledger, match_id: int, out_dir: str | Path, *,
                  force_allowed: bool = False) -> EvidencePacket:
    """Write the evidence packet of recorded match `match_id` into `out_dir` and timestamp it in the ledger.

    Raises UsageError for an unknown match, a match whose copy's bytes were not kept, or an allowed match (unless
    `force_allowed`). Idempotent: the same match with unchanged facts gives the same packet and ledger entry.
    """
    out = Path(out_dir)
    log = ScanLog(ledger)
    try:
        m = log.match(match_id)
        rule = next((r for r in log.allow_rules() if r.id == m.allowed_by), None)
        if m.allowed_by is not None and not force_allowed:
            what = f"rule #{m.allowed_by}" + (f" ({rule.pattern}{': ' + rule.note if rule.note else ''})"
                                              if rule else " (since removed)")
            raise UsageError(f"match {match_id} is an allowed use, not a copy: {what} covers it",
                             hint=f"if the rule is wrong, remove it (provenance allow --remove {m.allowed_by}); or"
                                  " give --force to write the packet anyway (its notice then opens with a warning)")
        data = log.found_bytes(m.sha256)
        post = log.post(m.item_id)
    finally:
        log.close()
    if data is None:
        raise UsageError(f"the scan did not keep the bytes of the copy in match {match_id} ({m.item})",
                         hint="scan it again: matched copies are kept from now on")
    if hashlib.sha256(data).hexdigest() != m.sha256:
        raise LedgerError(f"the kept bytes of the copy in match {match_id} no longer have its SHA-256"
                          f" {m.sha256[:16]}… (the scan record was edited)")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", hint="give -o a new or existing folder")
    _ensure_table(ledger)
    cert = _certificate(ledger, match_id, m.work_id)
    found_name = m.sha256 + _extension(data)
    facts = _match_json(ledger, m, found_name, len(data), cert, rule if m.allowed_by is not None else None, post)
    contents = {found_name: data, "match.json": _dump(facts), "certificate.json": _dump(cert),
                "notice.txt": notice_text(facts, cert).encode()}
    manifest = {"format": FORMAT, "match_id": match_id, "work_id": m.work_id, "ledger_id": ledger.ledger_id,
                "files": [{"name": name, "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
                          for name, body in sorted(contents.items())]}
    manifest_bytes = canonical_json(manifest).encode()
    packet = hashlib.sha256(manifest_bytes).hexdigest()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, body in {**contents, "manifest.json": manifest_bytes}.items():
            (out / name).write_bytes(body)
    except OSError as e:
        raise UsageError(f"cannot write the evidence packet into {out}: {e.strerror or e}") from None
    seq, created = ledger.append_evidence(packet, match_id, m.work_id)
    ledger.checkpoint()
    with ledger.transaction() as c:
        c.execute("INSERT INTO evidence_packets VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                  (packet, match_id, seq, canonical_json(cert), utc_now()))
    stamp = _timestamp(ledger, packet, seq, cert["entry"]["seq"])
    try:
        (out / "timestamp.json").write_bytes(_dump(stamp))
    except OSError as e:
        raise UsageError(f"cannot write {out / 'timestamp.json'}: {e.strerror or e}") from None
    return EvidencePacket(match_id, m.work_id, out, {f["name"]: f["sha256"] for f in manifest["files"]}, packet,
                          seq, stamp["entry"]["entry_hash"], created, stamp["anchor"], m.allowed_by)


# -- checking --------------------------------------------------------------------------------------------------
def verify_evidence(folder: str | Path) -> list[str]:
    """Check a packet offline, as a third party would (docs/evidence.md): every file against the manifest, the
    packet hash in the timestamp's ledger entry, that entry's hash and inclusion proof, the anchor receipt's root,
    and the certificate. Returns what was checked, one line each; raises VerificationError at the first failure."""
    folder = Path(folder)
    done = []
    try:
        manifest_bytes = (folder / "manifest.json").read_bytes()
        manifest = json.loads(manifest_bytes)
        stamp = json.loads((folder / "timestamp.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise VerificationError(f"not a readable evidence packet: {e}") from None
    if manifest.get("format") != FORMAT or stamp.get("format") != TIMESTAMP_FORMAT:
        raise VerificationError(f"manifest.json is not {FORMAT} or timestamp.json not {TIMESTAMP_FORMAT}")
    for f in manifest["files"]:
        try:
            body = (folder / f["name"]).read_bytes()
        except OSError:
            raise VerificationError(f"{f['name']} is listed in the manifest but missing") from None
        if hashlib.sha256(body).hexdigest() != f["sha256"] or len(body) != f["bytes"]:
            raise VerificationError(f"{f['name']} was changed: its SHA-256 is not the manifest's")
    done.append(f"files     {len(manifest['files'])} files match manifest.json")
    packet = hashlib.sha256(manifest_bytes).hexdigest()
    e, inc = stamp["entry"], stamp["inclusion"]
    if e.get("kind") != "evidence" or e["payload"].get("packet_sha256") != packet:
        raise VerificationError("timestamp.json's ledger entry does not hold this packet's hash (SHA-256 of"
                                " manifest.json)")
    if entry_hash(e["seq"], e["kind"], e.get("work_id"), e["recorded_at"], canonical_json(e["payload"]),
                  e["prev_hash"]) != e["entry_hash"]:
        raise VerificationError("timestamp.json's ledger entry was edited: its fields do not give its entry_hash")
    if not merkle.verify_inclusion(bytes.fromhex(e["entry_hash"]), inc["leaf_index"], inc["tree_size"],
                                   [bytes.fromhex(p) for p in inc["proof"]], bytes.fromhex(inc["root"])):
        raise VerificationError("the inclusion proof does not lead from the evidence entry to the root")
    cert = json.loads((folder / "certificate.json").read_text(encoding="utf-8"))
    work_inc = stamp.get("work_inclusion") or {}
    if not merkle.verify_inclusion(bytes.fromhex(cert["entry"]["entry_hash"]), work_inc.get("leaf_index", -1),
                                   inc["tree_size"], [bytes.fromhex(p) for p in work_inc.get("proof", [])],
                                   bytes.fromhex(inc["root"])):
        raise VerificationError("the work's register entry (certificate.json) is not proven under the same root")
    done.append(f"timestamp packet {packet[:16]}… is entry {e['seq']}, leaf {inc['leaf_index'] + 1} of"
                f" {inc['tree_size']} under root {inc['root'][:16]}…")
    a = stamp.get("anchor")
    if a:
        if a["root"] != inc["root"] or a["size"] != inc["tree_size"]:
            raise VerificationError("the anchor receipt is for another root than the inclusion proof's")
        done.append(f"anchored  root anchored in block {a['block_number']} ({_utc(a['block_timestamp'])}) of chain"
                    f" {a['chain_id']}, tx {a['tx_hash'][:18]}…; re-read it on chain to be sure")
    result = verify_certificate(cert)
    if not result.ok:
        raise VerificationError(f"certificate.json does not verify: {result.failures()[0].reason}")
    done.append(f"certificate work #{result.work_id} {result.title!r} by {result.registrant}: level {result.level}")
    return done
