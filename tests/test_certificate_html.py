"""The certificate as a web page: escaped free text, the QR code, the verdict, and a thumbnail of the right file only."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import provenance
from cli.main import cli
from provenance.certificate_html import certificate_page, render_html, thumbnail
from provenance.certificates import issue_certificate, verify_certificate
from provenance.errors import UsageError

ASSETS = Path(__file__).parent / "assets" / "certificates"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WORK = EXAMPLES / "works" / "brush-abstract.jpg"
HOSTILE = '<script>alert("mine")</script> & Co'


@pytest.fixture
def hostile_cert(ledger, account):
    [r] = provenance.register(ledger, [WORK], account, artist="<b>Aigerim</b>", title=HOSTILE, workers=1).results
    return issue_certificate(ledger, r.work_id)


def test_page_escapes_the_registrant_free_text(hostile_cert):
    page = render_html(hostile_cert, verify_certificate(hostile_cert))

    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;mine&quot;)&lt;/script&gt; &amp; Co" in page
    assert "&lt;b&gt;Aigerim&lt;/b&gt;" in page and "<b>Aigerim" not in page
    assert "<title>Certificate of ownership: &lt;script&gt;" in page


def test_page_of_an_anchored_certificate():
    cert = json.loads((ASSETS / "good.json").read_text())
    page = render_html(cert, verify_certificate(cert))

    assert re.search(r'<svg width="\d+" height="\d+" class="segno">', page)  # the QR code, inline
    assert cert["certificate_hash"] in page
    assert "<b>Verified</b>" in page and "existed no later than" in page
    a = cert["anchor"]
    assert a["tx_hash"] in page and a["contract"] in page and f"{a['block_number']} (" in page
    for f in cert["entry"]["payload"]["fingerprints"]:
        assert f"<code>{f['algorithm']}</code></td><td class=\"hex\">{f['value']}" in page
    assert "receipt consistent: root" in page  # the verdict's reasons, level by level
    assert "image not included" in page  # no image given: a placeholder
    assert "http://" not in page and "https://" not in page  # self-contained


def test_page_of_an_unanchored_certificate_says_so(hostile_cert):
    page = render_html(hostile_cert, verify_certificate(hostile_cert))
    assert "Verified, not anchored" in page and "Not anchored when this certificate was issued" in page


def test_page_shows_the_transfer_history_the_owner_and_the_checkpoint_signer(hostile_cert, ledger, account,
                                                                            other_account):
    page = render_html(hostile_cert, verify_certificate(hostile_cert))
    assert "No transfers up to ledger entry 1: the owner is the registrant" in page
    assert f"key <span class=\"hex\">{account.address}</span> signed this root" in page

    ledger.append_transfer(1, other_account.address, account)
    cert = issue_certificate(ledger, 1)
    page = render_html(cert, verify_certificate(cert))
    assert f"<tr><th>Owner</th><td>{other_account.address} (after 1 transfer)</td></tr>" in page
    assert (f"<tr><td>2</td><td class=\"hex\">{account.address}</td><td class=\"hex\">{other_account.address}</td>"
            in page)
    assert "<h2>Commitment</h2>" not in page


def test_page_of_a_revealed_work_shows_its_commitment(ledger, account, tmp_path):
    [c] = provenance.register(ledger, [WORK], account, artist="Aigerim", private=True, workers=1,
                              private_dir=tmp_path / "private").results
    out = provenance.reveal(ledger, c.commitment, account, private_dir=tmp_path / "private")
    cert = issue_certificate(ledger, out.work_id)
    page = render_html(cert, verify_certificate(cert))
    assert "<h2>Commitment</h2>" in page and c.commitment in page
    assert "<tr><th>Committed no later than</th><td>the signed checkpoint of 1 entry" in page
    assert "<b>Verified, not anchored</b>" in page


def test_page_of_a_tampered_certificate_says_not_verified():
    cert = json.loads((ASSETS / "bad-proof-step.json").read_text())
    page = render_html(cert, verify_certificate(cert))
    assert "<b>Not verified</b>" in page and "the inclusion proof does not lead" in page


def test_thumbnail_of_the_registered_file_only(hostile_cert):
    page = certificate_page(hostile_cert, WORK.read_bytes())
    [data] = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    thumb = Image.open(io.BytesIO(base64.b64decode(data)))
    assert thumb.format == "JPEG" and max(thumb.size) <= 320
    assert "The image is this work" in page and "identical file bytes" in page

    other = (EXAMPLES / "feed" / "post_04.jpg").read_bytes()  # the same work, flipped: still not the file
    with pytest.raises(UsageError, match=r"the image is not the registered file of work #1: its SHA-256 is"
                                         f" {hashlib.sha256(other).hexdigest()[:16]}…"):
        thumbnail(hostile_cert, other)


def test_cli_certificate_html(home, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    assert runner.invoke(cli, ["register", str(WORK), "--title", HOSTILE, "--workers", "1"]).exit_code == 0
    page, out = tmp_path / "cert.html", tmp_path / "cert.json"

    r = runner.invoke(cli, ["certificate", "1", "-o", str(out), "--html", str(page), "--image", str(WORK)])

    assert r.exit_code == 0, r.output
    assert f"wrote certificate of work #1 to {out} and {page}" in r.stdout
    cert = json.loads(out.read_text())
    html = page.read_text()
    assert cert["certificate_hash"] in html and "data:image/jpeg;base64," in html and "<script" not in html


def test_cli_certificate_refuses_another_image_and_writes_nothing(home, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    assert runner.invoke(cli, ["register", str(WORK), "--workers", "1"]).exit_code == 0
    page, out = tmp_path / "cert.html", tmp_path / "cert.json"

    r = runner.invoke(cli, ["certificate", "1", "-o", str(out), "--html", str(page),
                            "--image", str(EXAMPLES / "feed" / "post_04.jpg")])

    assert r.exit_code == 2
    assert "error: the image is not the registered file of work #1" in r.stderr and "Traceback" not in r.output
    assert not page.exists() and not out.exists()
    r = runner.invoke(cli, ["certificate", "1"])
    assert r.exit_code == 2 and "nowhere to write the certificate" in r.stderr
    r = runner.invoke(cli, ["certificate", "1", "-o", str(out), "--image", str(WORK)])
    assert r.exit_code == 2 and "--image only adds a thumbnail to the --html page" in r.stderr
