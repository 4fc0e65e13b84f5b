"""The scan report page: one card per match with both pictures, escaped feed text, filters; and work previews.
On both backends (`scanned`, `any_ledger`)."""
from __future__ import annotations

import base64
import io
import re

import pytest
from click.testing import CliRunner
from PIL import Image

import provenance
from cli.main import cli
from provenance.ledger import Ledger
from provenance.matching import Match
from provenance.previews import PREVIEW_SIDE, picture, preview
from provenance.report import geometry_words, is_web_url, render_report, write_report
from provenance.scanlog import ScanLog

from dbhelp import db_args

HOSTILE = '<script>alert("t")</script>'


def _cards(page: str) -> list[str]:
    return re.findall(r'<article class="card.*?</article>', page, re.S)


def _images(card: str) -> list[Image.Image]:
    out = []
    for mime, data in re.findall(r'src="data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)"', card):
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        im.load()
        out.append(im)
    return out


def _matches(led: Ledger, **kw):
    log = ScanLog(led)
    try:
        return log.matches(**kw)
    finally:
        log.close()


def test_one_card_per_match_with_the_work_and_the_copy_embedded(scanned):
    matches = _matches(scanned)
    page = render_report(scanned)
    cards = _cards(page)

    assert len(matches) == 13 and len(cards) == len(matches)
    for m, card in zip(matches, cards):  # in match order before the script sorts them
        assert f'data-id="{m.id}"' in card and f'data-work="{m.work_id}"' in card
        work, found = _images(card)
        assert max(work.size) == PREVIEW_SIDE or max(work.size) == max(scanned.work(m.work_id).width,
                                                                       scanned.work(m.work_id).height)
        assert max(found.size) <= PREVIEW_SIDE
        assert m.transform in card.replace("&#x27;", "'") and f"match {m.id}" in card
    assert "Scan run 1" in page and "17 items scanned" in page


def test_allowed_matches_are_marked_and_hidden_behind_a_toggle(scanned):
    page = render_report(scanned)
    allowed = [c for c in _cards(page) if 'data-allowed="1"' in c]

    assert len(allowed) == 1
    assert "is-allowed" in allowed[0] and "rule #1" in allowed[0] and "my own repost" in allowed[0]
    assert "provenance evidence" not in allowed[0]  # no evidence hint for an allowed use
    assert 'id="f-allowed"> show allowed (1)' in page
    assert "12 copies of 6 works · 1 allowed use" in page


def test_filters_for_work_source_and_sort_are_present(scanned, feed_dir):
    page = render_report(scanned)
    works = re.findall(r'<select id="f-work">(.*?)</select>', page, re.S)[0]

    assert len(re.findall(r"<option value=\"\d+\">#\d+ ", works)) == 6
    sources = re.findall(r'<select id="f-source">(.*?)</select>', page, re.S)[0]
    assert sources.count("<option") == 2  # "all sources" and the feed folder
    assert 'id="f-sort"' in page and 'addEventListener("change", apply)' in page


def test_the_page_is_self_contained(scanned):
    page = render_report(scanned)

    assert re.findall(r'\bsrc="(?!data:)', page) == []  # every image inline
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page


def test_hostile_titles_and_urls_are_escaped_and_only_http_links(any_ledger, account, works_dir):
    ledger = any_ledger
    [r] = provenance.register(ledger, [works_dir / "sunset-hills.jpg"], account, artist="A", title=HOSTILE,
                              workers=1).results
    log = ScanLog(ledger)
    run = log.start_run(["https://evil.example/feed"], False)
    m = Match(r.work_id, "pdq/1", 3, "none", 0.96, False, "high")
    log.record(run, source="https://evil.example/feed", item="javascript:alert(1)", url="javascript:alert(1)",
               page_url='https://evil.example/p?q="><script>alert(2)</script>', title=HOSTILE, status="matched",
               sha256="00" * 32, matches=[m])
    log.finish_run(run, {"matched": 1})
    log.close()
    page = render_report(ledger)

    assert page.count("<script") == 1  # the page's own
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;" in page  # the title, and the post title
    assert 'href="javascript' not in page and '<span class="url">javascript:alert(1)</span>' in page
    assert 'href="https://evil.example/p?q=&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"' in page
    assert "the copy&#x27;s bytes were not kept" in page  # no found bytes: a placeholder, not a broken image


def test_is_web_url():
    assert is_web_url("https://a.example/x") and is_web_url("HTTP://a.example")
    for bad in ("javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "https://", "/tmp/x", None, ""):
        assert not is_web_url(bad)


def test_geometry_in_words():
    g = {"angle": -5.2, "scale": 0.8, "crop": [0.15, 0.15, 0.85, 0.85], "placed": [0, 0, 1, 1], "flip": True,
         "ncc": 0.9, "coverage": 0.49, "inliers": 40}
    assert geometry_words(g) == ("mirrored left-right; rotated 5° counter-clockwise; shows 70% × 70% of the work"
                                 " (from 15%–85% across, 15%–85% down); scaled 0.80×")
    assert geometry_words({"placed": [0.29, 0, 0.71, 1]}).startswith("the work fills 42% of the copy")
    assert geometry_words(None) == ""


def test_select_a_run_or_every_run_or_given_matches(scanned, feed_dir, tmp_path):
    list(provenance.scan(scanned, [feed_dir / "post_02.jpg"], workers=1).results)

    assert len(_cards(render_report(scanned))) == 1  # the latest run
    assert len(_cards(render_report(scanned, run_id=1))) == 13
    assert len(_cards(render_report(scanned, all_runs=True))) == 14
    some = _matches(scanned, work_id=5)
    assert len(_cards(render_report(scanned, matches=some))) == len(some) == 4  # 3 in run 1, 1 in run 2
    summary = write_report(scanned, tmp_path / "r.html", 1)
    assert (summary.run_id, summary.matches, summary.allowed, summary.works) == (1, 13, 1, 6)
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_ledger_without_scans_says_so(any_ledger):
    ledger = any_ledger
    with pytest.raises(provenance.errors.UsageError, match="no scan is recorded"):
        render_report(ledger)


def test_registration_stores_a_preview_and_old_works_get_a_sketch(scanned):
    p = preview(scanned, 1)
    im = Image.open(io.BytesIO(p.data))
    assert p.mime == "image/jpeg" and im.format == "JPEG" and max(im.size) == PREVIEW_SIDE

    scanned.conn.execute("DROP TABLE previews")  # a ledger from before previews
    sketch = picture(scanned, 1)
    assert sketch.kind == "sketch" and Image.open(io.BytesIO(sketch.data)).mode == "L"
    assert "grey sketch" in render_report(scanned)
    scanned.verify()  # previews were never part of what verify checks


def test_cli_report(scanned, tmp_path):
    runner = CliRunner()
    out = tmp_path / "report.html"
    r = runner.invoke(cli, [*db_args(scanned), "report", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}: scan run 1, 12 copies of 6 works, 1 allowed" in r.output
    assert len(_cards(out.read_text(encoding="utf-8"))) == 13

    r = runner.invoke(cli, [*db_args(scanned), "report", "-o", str(out), "--run", "9"])
    assert r.exit_code == 2 and "error: no scan run 9" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, [*db_args(scanned), "report", "--run", "1", "--all"])
    assert r.exit_code == 2 and "not both" in r.output


def test_cli_matches_lists_ids(scanned):
    runner = CliRunner()
    r = runner.invoke(cli, [*db_args(scanned), "matches", "--work", "5"])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if "run 1" in line]
    assert len(lines) == 3 and all("#5 'Sunset Hills'" in line for line in lines)
    assert sum("allowed (rule 1)" in line for line in lines) == 1

    r = runner.invoke(cli, [*db_args(scanned), "matches", "--run", "1", "--json"])
    import json

    rows = [json.loads(line) for line in r.output.splitlines()]
    assert len(rows) == 13 and {"id", "work_id", "work_title", "explanation", "sha256", "allowed_by"} <= set(rows[0])
