"""`scan` over HTTP: feeds and pages served by a real server on 127.0.0.1, the scan record, incremental and
resumed scans, and bad items that each fail on their own line. Nothing leaves loopback (httpserver guards).
The scan record is on both backends (`registered_ledger`)."""
from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from httpserver import EXAMPLES, loopback_is_public, no_outside_network, server  # noqa: F401

import provenance
from cli.main import cli
from provenance.fetch import FetchPolicy
from provenance.scanlog import ScanLog

import dbhelp
from dbhelp import db_args

FAST = FetchPolicy(allow_private=True, per_host_interval=0)
TRUTH = json.loads((EXAMPLES / "truth.json").read_text())


@pytest.fixture
def ledger(registered_ledger):
    return registered_ledger


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _expected_work(ledger, name: str) -> str | None:
    work = TRUTH[name]["work"]
    return None if work is None else work.rsplit(".", 1)[0].replace("-", " ").title()


@pytest.mark.parametrize("sample", ["rss.xml", "atom.xml", "feed.json", "page.html", "sitemap.xml", "urls.txt"])
def test_every_sample_feed_over_http_finds_the_copies_it_holds(ledger, server, sample):
    titles = {w.id: w.title for w in ledger.works()}
    results = list(provenance.scan(ledger, [server.url(f"/feeds/{sample}")], policy=FAST).results)

    assert results and all(r.error is None for r in results), [r.error for r in results if r.error]
    for r in results:
        assert r.url == r.item and r.url.startswith(server.base + "/feed/") and r.source.endswith(sample)
        expected = _expected_work(ledger, _name(r.url))
        if expected is None:
            assert not r.matches, r.url  # a distractor
        elif TRUTH[_name(r.url)]["attack"] not in ("heavy_crop_30pct",):
            assert expected in {titles[m.work_id] for m in r.matches}, r.url
    log = ScanLog(ledger)
    for m in log.matches(run_id=log.last_run()):
        assert m.http_status == 200 and m.fetched_at.endswith("Z")
        assert {k.lower() for k in m.headers} >= {"content-type", "content-length"}
        assert m.url.startswith(server.base) and (sample in ("urls.txt",) or m.page_url.startswith(server.base))


def test_a_rescan_fetches_only_what_is_new_and_full_checks_everything_again(ledger, server):
    feed = server.url("/feeds/rss.xml")
    first = list(provenance.scan(ledger, [feed], policy=FAST).results)
    hits = len(server.hits("/feed/"))

    again = list(provenance.scan(ledger, [feed], policy=FAST).results)
    assert [r.status for r in again] == ["skipped"] * len(first)
    assert len(server.hits("/feed/")) == hits  # not one image fetched again

    full = list(provenance.scan(ledger, [feed], policy=FAST, full=True).results)
    assert {r.item: r.status for r in full} == {r.item: r.status for r in first}
    assert len(server.hits("/feed/")) == hits + len(first)


def test_an_interrupted_scan_resumes_where_it_stopped(ledger, server):
    feed = server.url("/feeds/urls.txt")
    batch = provenance.scan(ledger, [feed], policy=FAST, workers=1)
    done = []
    for r in batch.results:
        done.append(r.item)
        if len(done) == 5:
            break  # the user pressed Ctrl-C
    batch.results.close()

    rest = list(provenance.scan(ledger, [feed], policy=FAST, workers=1).results)
    assert len(rest) == 17
    assert {r.item for r in rest if r.status == "skipped"} == set(done)
    assert all(r.status in ("matched", "clean") for r in rest if r.item not in done)


@dbhelp.sqlite_only("registered_ledger", "about fetching: the record of failures is covered on both by test_scanlog")
def test_bad_items_each_fail_on_their_own_line_and_the_rest_goes_on(ledger, server, no_outside_network,
                                                                   loopback_is_public):
    # Private addresses refused; the test server counts as public. A short deadline for the slow-loris item.
    policy = FetchPolicy(per_host_interval=0, deadline=3)
    started = time.monotonic()
    results = list(provenance.scan(ledger, [server.url("/assets/scan-mixed.rss")], policy=policy).results)
    assert time.monotonic() - started < 30  # nothing hangs past its deadline

    by_name = {_name(r.item): r for r in results}
    assert by_name["post_02.jpg"].status == "matched" and by_name["post_02.jpg"].matches[0].sha256_exact
    assert by_name["post_04.jpg"].status == "matched"
    assert by_name["post_03.jpg"].status == "clean"
    errors = {r.item.replace(server.base, ""): r.error for r in results if r.status == "failed"}
    assert errors == {
        "/hostile/not-found": "HTTP 404 Not Found",
        "/hostile/not-an-image": "not an image (its content starts with '<html><body>I am')",
        "/hostile/huge": "is 10,737,418,240 bytes, over the 52,428,800-byte image limit",
        "/blocked/a.jpg": "disallowed by the site's robots.txt",
        "http://10.0.0.1/a.jpg": "refused: 10.0.0.1 is a private address",
        "/hostile/endless": "more than 52,428,800 bytes, over the image limit",
        "/hostile/loop": f"redirect loop (back to {server.url('/hostile/loop')})",
        "/hostile/html-as-image": "not an image (content type text/html)",
        "/hostile/slow-body": "no complete answer within the 3 s deadline",
        "/assets/bomb.png": "over Pillow's decompression-bomb limit",
        "file:///etc/passwd": "skipped: a feed from the network may not point at local files (in"
                              f" {server.url('/assets/scan-mixed.rss')})",
    }, errors
    assert all(not str(a[0]).startswith("10.") for a in no_outside_network)  # refused before any connection
    log = ScanLog(ledger)
    statuses = dict(log.conn.execute("SELECT item, status FROM scan_items WHERE run_id = ?", (log.last_run(),)))
    assert sum(s == "failed" for s in statuses.values()) == len(errors)  # each failure is a row too

    again = {_name(r.item): r.status for r in provenance.scan(ledger, [server.url("/assets/scan-mixed.rss")],
                                                                policy=policy).results}
    assert again["post_02.jpg"] == "skipped" and again["not-found"] == "failed"  # failures are tried again


def test_cli_scans_several_sources_and_a_sources_file(home, ledger, server, tmp_path):
    sources = tmp_path / "sources.txt"
    sources.write_text(f"# my watch list\n{server.url('/feeds/atom.xml')}\n\n{EXAMPLES / 'feed' / 'post_02.jpg'}\n")
    runner = CliRunner()
    r = runner.invoke(cli, [*db_args(ledger), "scan", "--allow-private", "--json", "--sources",
                            str(sources), server.url("/feeds/feed.json")])
    assert r.exit_code == 0, r.output
    found = [json.loads(line) for line in r.stdout.splitlines()]
    assert {m["source"] for m in found} == {server.url("/feeds/atom.xml"), server.url("/feeds/feed.json"),
                                            str(EXAMPLES / "feed" / "post_02.jpg")}
    for m in found:
        assert {"match_id", "source", "url", "page_url", "allowed"} <= set(m)
        if m["url"]:
            assert m["url"] == m["item"] and m["page_url"].startswith(server.base + "/feeds/posts/")
    assert r.stderr.startswith("scanned 8 items: ")

    r = runner.invoke(cli, [*db_args(ledger), "scan", server.url("/feeds/atom.xml")])
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == (f"error: {server.url('/feeds/atom.xml')}: refused: 127.0.0.1 is a"
                                        " loopback address (use --allow-private to allow it)") or \
        "loopback" in r.stderr.splitlines()[0]
