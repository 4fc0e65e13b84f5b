"""A certificate as a page a person reads: the work, its owner, its fingerprints, the verdict, the proofs.

`render_html(cert, result, thumbnail_jpeg)` is a pure function of the certificate and its verification result:
one self-contained HTML file (inline CSS, the QR code as inline SVG, the thumbnail as a data URI; no script, no
network). Every value from the certificate is escaped: titles and artists are the registrant's free text.
The page only shows; the JSON certificate is the proof, and `provenance verify` checks it.
"""
from __future__ import annotations

import base64
import hashlib
import io
from datetime import datetime, timezone
from html import escape

import segno

from .certificates import FAILED, FORMAT, PASSED, SIGNED_FINGERPRINTS, VerificationResult, verify_certificate
from .errors import UsageError
from .imaging import decode

#: Longest side of the embedded thumbnail, in pixels.
THUMBNAIL_SIDE = 320

_LEVEL_TITLES = {
    "format": "Well-formed certificate",
    "signed": "Signed by the registrant's key",
    "included": "Recorded in the append-only ledger",
    "anchored": "Anchored on a public chain",
    "image": "The image is this work",
}
_LEVEL_MEANING = {
    "format": f"The file is a {FORMAT} and its hash matches its content.",
    "signed": "The registrant's key signed this record: title, artist, licence, dates, size and fingerprints. "
              "The registration time inside it is the signer's own claim.",
    "included": "The record is an entry of a hash-chained ledger, proven by a Merkle path to a root that the"
                " ledger keeper signed.",
    "anchored": "That root was published on a blockchain, so the registration existed no later than that block;"
                " the root's signature names the registry contract.",
    "image": "The image shown is the registered file, byte for byte.",
}
_STATUS = {PASSED: ("passed", "✓"), FAILED: ("failed", "✗"), "skipped": ("skipped", "–")}


def certificate_page(cert: dict, image_bytes: bytes | None = None) -> str:
    """Verify `cert` offline and render it; with `image_bytes` (the registered file only) as a thumbnail."""
    thumb = thumbnail(cert, image_bytes) if image_bytes is not None else None
    return render_html(cert, verify_certificate(cert, image_bytes=image_bytes), thumb)


def thumbnail(cert: dict, image_bytes: bytes, side: int = THUMBNAIL_SIDE) -> bytes:
    """A small JPEG of the registered image. Refuses any other file: the page must not show a look-alike."""
    signed = str(cert["entry"]["payload"]["record"]["sha256"]).removeprefix("0x").lower()
    actual = hashlib.sha256(image_bytes).hexdigest()
    if actual != signed:
        raise UsageError(f"the image is not the registered file of work #{cert['work_id']}: its SHA-256 is"
                         f" {actual[:16]}…, the certificate's is {signed[:16]}…",
                         hint="give the exact file that was registered, or leave out --image for a placeholder")
    out = io.BytesIO()
    decode(image_bytes, work_side=side).image.save(out, format="JPEG", quality=82)
    return out.getvalue()


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _qr_svg(text: str) -> str:
    return segno.make(text, error="m").svg_inline(scale=4, dark="#111", light="#fff")


def _verdict(cert: dict, result: VerificationResult) -> tuple[str, str, str]:
    """(css class, headline, sentence) in plain language."""
    if not result.ok:
        first = result.failures()[0]
        return "bad", "Not verified", f"{_LEVEL_TITLES[first.level]}: this check failed. {first.reason}"
    record, anchor = cert["entry"]["payload"]["record"], cert.get("anchor")
    who = f"registered by the key {record['registrant']}"
    if result.level in ("anchored", "image") and anchor:
        return "good", "Verified", (f"This work was {who} and the record existed no later than"
                                    f" {_utc(anchor['block_timestamp'])} (block {anchor['block_number']} of chain"
                                    f" {anchor['chain_id']}).")
    if result.level == "included":
        return "partial", "Verified, not anchored", (f"This work was {who} and is in the ledger, but the ledger was"
                                                     " not anchored on a chain when this certificate was issued: its"
                                                     " date rests on the ledger keeper's word.")
    return "partial", "Verified", f"This work was {who}; level reached: {result.level or 'none'}."


def _commit_html(cert: dict, e) -> str:
    """The commitment section of a work registered privately and revealed later (else nothing)."""
    if "commit" not in cert:
        return ""
    c, inc, a = cert["commit"]["entry"], cert["commit"]["inclusion"], cert["commit"].get("anchor")
    when = (f"{_utc(a['block_timestamp'])} (block {a['block_number']} of chain {a['chain_id']}, anchored)" if a else
            f"the signed checkpoint of {inc['tree_size']} entr{'y' if inc['tree_size'] == 1 else 'ies'}, recorded {inc.get('checkpoint_recorded_at')}"
            " (not anchored: the keeper's word)")
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in [
        ("Committed no later than", when), ("Commitment", c["payload"]["commit"]["commitment"]),
        ("Committed (signer's clock)", _utc(c["payload"]["commit"]["committedAt"])), ("Ledger entry", c["seq"]),
        ("Checkpoint signed by", (cert["commit"].get("checkpoint") or {}).get("signer", "no signature"))])
    return ("<h2>Commitment</h2><p>The work was first recorded privately, as a signed salted commitment with no title"
            " or fingerprint; the published registration opens it, so the work dates from the commitment.</p>"
            f"<table class=\"kv\">{rows}</table>\n")


def render_html(cert: dict, result: VerificationResult, thumbnail_jpeg: bytes | None = None) -> str:
    """The page of a certificate whose format check passed (as every issued certificate's does)."""
    if result.certificate_hash is None:
        raise UsageError("a malformed certificate cannot be shown as a page: " + result.checks[0].reason)
    e = lambda value: escape(str(value), quote=True)  # noqa: E731
    entry, inc, anchor = cert["entry"], cert["inclusion"], cert.get("anchor")
    record = entry["payload"]["record"]
    css, headline, sentence = _verdict(cert, result)

    if thumbnail_jpeg:
        picture = (f'<img class="thumb" alt="{e(record["title"])}" src="data:image/jpeg;base64,'
                   f'{base64.b64encode(thumbnail_jpeg).decode()}">')
    else:
        picture = ('<div class="thumb placeholder">image not included<br><small>check a file with<br>'
                   '<code>provenance verify cert.json --image FILE</code></small></div>')

    facts = [("Title", record["title"]), ("Artist", record["artist"]), ("Registrant", record["registrant"]),
             ("Registered (signer's clock)", _utc(record["registeredAt"])), ("Created", record["created"]),
             ("License", record["license"]), ("Size", f"{record['width']} × {record['height']} px"),
             ("Work", f"#{cert['work_id']} of ledger {cert['ledger_id']}"), ("Certificate issued", cert["issued_at"])]
    if anchor:
        facts.insert(4, ("Existed no later than", f"{_utc(anchor['block_timestamp'])} (anchored)"))
    transfers = cert.get("transfers", [])
    if transfers:
        owner = result.owner or transfers[-1]["entry"]["payload"]["transfer"]["to"]
        facts.insert(3, ("Owner", f"{owner} (after {len(transfers)} transfer{'s' if len(transfers) > 1 else ''})"))
    fact_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)

    signed_algorithms = set(SIGNED_FINGERPRINTS.values())
    fp_rows = "".join(
        f"<tr><td><code>{e(f['algorithm'])}</code></td><td class=\"hex\">{e(f['value'])}</td>"
        f"<td>{e(f['quality']) if f.get('quality') is not None else ''}</td>"
        f"<td>{'signed' if f['algorithm'] in signed_algorithms else 'in entry hash'}</td></tr>"
        for f in sorted(entry["payload"]["fingerprints"], key=lambda f: (f["algorithm"] not in signed_algorithms,
                                                                          f["algorithm"])))

    check_rows = "".join(
        f'<tr class="{_STATUS[c.status][0]}"><td class="mark">{_STATUS[c.status][1]}</td>'
        f"<td><b>{e(_LEVEL_TITLES[c.level])}</b><br><small>{e(_LEVEL_MEANING[c.level])}</small></td>"
        f"<td>{e(c.reason)}</td></tr>" for c in result.checks)

    if anchor:
        anchor_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in [
            ("Chain id", anchor["chain_id"]), ("Registry contract", anchor["contract"]),
            ("Block", f"{anchor['block_number']} ({_utc(anchor['block_timestamp'])})"),
            ("Transaction", anchor["tx_hash"]), ("Root", anchor["root"]), ("Entries covered", anchor["size"])])
        anchor_html = f"<table class=\"kv\">{anchor_rows}</table>"
    else:
        anchor_html = ("<p>Not anchored when this certificate was issued. Anchor the ledger"
                       " (<code>provenance anchor</code>) and issue the certificate again.</p>")

    if transfers:
        transfer_rows = "".join(
            f"<tr><td>{e(t['entry']['seq'])}</td><td class=\"hex\">{e(t['entry']['payload']['transfer']['from'])}</td>"
            f"<td class=\"hex\">{e(t['entry']['payload']['transfer']['to'])}</td>"
            f"<td>{e(_utc(t['entry']['payload']['transfer']['transferredAt']))}</td></tr>" for t in transfers)
        ownership_html = ("<p>Each transfer is signed by the owner at that point and proven into the ledger like the"
                          " registration.</p><table><tr><th>Ledger entry</th><th>From</th><th>To</th>"
                          f"<th>Transferred (signer's clock)</th></tr>{transfer_rows}</table>")
    else:
        ownership_html = (f"<p>No transfers up to ledger entry {e(inc['tree_size'])}: the owner is the registrant"
                          f" <span class=\"hex\">{e(record['registrant'])}</span>.</p>")
    commit_html = _commit_html(cert, e)

    cp = cert["checkpoint"]
    registry = cp["domain"].get("verifyingContract")
    signed_by = (f"<p>The ledger keeper's key <span class=\"hex\">{e(cp['signer'])}</span> signed this root and size"
                 " (an EIP-712 Checkpoint)" + (f", naming the registry <span class=\"hex\">{e(registry)}</span>"
                                                if registry else "") + ".</p>")
    steps = "".join(f"<li class=\"hex\">{e(p)}</li>" for p in inc["proof"])
    proof_html = (f"<p>Entry {e(entry['seq'])} (hash <span class=\"hex\">{e(entry['entry_hash'])}</span>) is leaf"
                  f" {e(inc['leaf_index'] + 1)} of {e(inc['tree_size'])} in an RFC 6962 Merkle tree; a path of"
                  f" {len(inc['proof'])} sibling hashes leads from it to the root"
                  f" <span class=\"hex\">{e(inc['root'])}</span>.</p>"
                  + signed_by
                  + (f"<details><summary>Proof steps</summary><ol>{steps}</ol></details>" if steps else ""))

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>Certificate of ownership: {e(record['title'])}</title>
<style>
body {{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; background: #f4f3ef;
       margin: 0; padding: 32px 16px; }}
main {{ max-width: 900px; margin: 0 auto; background: #fff; border: 1px solid #d8d5cc; border-radius: 8px;
       padding: 32px 40px; }}
h1 {{ font-size: 28px; margin: 0 0 4px; overflow-wrap: anywhere; }}
h2 {{ font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #e4e1d8; padding-bottom: 4px; }}
.sub {{ color: #666; margin: 0 0 20px; }}
.top {{ display: flex; gap: 28px; align-items: flex-start; flex-wrap: wrap; }}
.top .facts {{ flex: 1 1 360px; }}
.thumb {{ width: 240px; max-height: 320px; object-fit: contain; border: 1px solid #ddd; border-radius: 4px; }}
.placeholder {{ height: 200px; display: flex; align-items: center; justify-content: center; text-align: center;
               flex-direction: column; background: repeating-linear-gradient(45deg, #f2f2f2 0 10px, #e9e9e9 10px 20px);
               color: #555; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid #eee; }}
.kv th {{ width: 34%; color: #555; font-weight: 600; }}
td {{ overflow-wrap: anywhere; }}
.hex, code {{ font: 12.5px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }}
.verdict {{ border-radius: 6px; padding: 14px 18px; margin: 24px 0 8px; }}
.verdict b {{ font-size: 20px; display: block; margin-bottom: 4px; }}
.verdict.good {{ background: #e6f4ea; border: 1px solid #8cc79b; }}
.verdict.partial {{ background: #fff6e0; border: 1px solid #e2c06d; }}
.verdict.bad {{ background: #fde8e8; border: 1px solid #e39a9a; }}
.checks td.mark {{ font-size: 18px; width: 24px; text-align: center; }}
.checks tr.passed td.mark {{ color: #1e7b34; }}
.checks tr.failed td.mark {{ color: #b3261e; }}
.checks tr.skipped {{ color: #777; }}
.checks small {{ color: #666; }}
.qr {{ display: flex; gap: 20px; align-items: center; }}
.qr svg {{ flex: none; }}
footer {{ margin-top: 28px; color: #666; font-size: 13px; }}
@media print {{ body {{ background: #fff; padding: 0; }} main {{ border: none; }} }}
</style>
</head>
<body>
<main>
<h1>{e(record['title'])}</h1>
<p class="sub">Certificate of ownership · {e(record['artist'])} · {e(cert['format'])}</p>
<div class="top">
  <div>{picture}</div>
  <div class="facts"><table class="kv">{fact_rows}</table></div>
</div>
<div class="verdict {css}"><b>{e(headline)}</b>{e(sentence)}</div>
<h2>Checks (offline, when this page was made)</h2>
<table class="checks">{check_rows}</table>
<h2>Fingerprints</h2>
<table><tr><th>Algorithm</th><th>Value</th><th>Quality</th><th>Covered by</th></tr>{fp_rows}</table>
<h2>Ownership</h2>
{ownership_html}
{commit_html}<h2>Anchor</h2>
{anchor_html}
<h2>Merkle proof</h2>
{proof_html}
<h2>Certificate hash</h2>
<div class="qr">{_qr_svg(cert['certificate_hash'])}
<p>SHA-256 of the certificate's canonical JSON:<br><span class="hex">{e(cert['certificate_hash'])}</span><br>
<small>The QR code holds this hash. Check the JSON certificate with <code>provenance verify cert.json</code>
(add <code>--rpc-url URL</code> to re-read the anchor on chain).</small></p></div>
<footer>This page shows a certificate; it is not the proof. The JSON certificate is, and anyone can verify it
without trusting its issuer: docs/certificate.md describes the format and the algorithm.</footer>
</main>
</body>
</html>
"""
