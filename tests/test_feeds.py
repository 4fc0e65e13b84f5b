"""provenance.feeds: every sample feed of examples/feeds/, served by a real local HTTP server and read locally,
and the hostile documents of tests/assets/feeds/. Nothing leaves loopback."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from httpserver import ASSETS, EXAMPLES, no_outside_network, server  # noqa: F401

from provenance import feeds
from provenance.errors import FeedError, FetchError, UsageError
from provenance.feeds import ImageRef, detect_type, expand, parse, read_sources_file
from provenance.fetch import Fetcher, FetchPolicy
from provenance.sources import SourceError

SAMPLES = EXAMPLES / "feeds"
FEED_IMAGES = sorted(p.name for p in (EXAMPLES / "feed").iterdir())

# For each sample: its type, and (image file, page it was on) in document order. Pages are relative to feeds/.
EXPECTED = {
    "rss.xml": ("rss", [("post_01.jpg", "posts/1.html"), ("post_02.jpg", "posts/2.html"),
                        ("post_03.jpg", "posts/2.html"), ("post_04.jpg", "posts/3.html"),
                        ("post_05.jpg", "posts/4.html")]),
    "atom.xml": ("atom", [("post_06.jpg", "posts/6.html"), ("post_07.jpg", "posts/7.html"),
                          ("post_08.jpg", "posts/8.html")]),
    "feed.json": ("jsonfeed", [("post_09.jpg", "posts/9.html"), ("post_10.jpg", "posts/10.html"),
                               ("post_11.png", "posts/11.html"), ("post_12.jpg", "posts/12.html")]),
    "page.html": ("html", [("post_15.jpg", "page.html"), ("post_13.jpg", "page.html"),
                           ("post_14.webp", "page.html"), ("post_16.jpg", "page.html"),
                           ("post_01.jpg", "page.html")]),
    "sitemap.xml": ("sitemap", [("post_17.jpg", "posts/17.html"), ("post_02.jpg", "posts/2.html"),
                                ("post_08.jpg", "posts/2.html")]),
    "urls.txt": ("list", [(name, None) for name in FEED_IMAGES]),
}


@pytest.fixture
def fetcher():
    with Fetcher(FetchPolicy(allow_private=True, per_host_interval=0.0)) as f:  # as with --allow-private
        yield f


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_parses_to_its_images_and_pages(name):
    kind, expected = EXPECTED[name]
    body = (SAMPLES / name).read_bytes()
    assert detect_type(body, None, name) == kind
    base = "http://gallery.example/feeds/" + name
    refs = parse(body, base, kind)
    assert [(r.url, r.page_url) for r in refs] == [
        ("http://gallery.example/feed/" + img, page and "http://gallery.example/feeds/" + page)
        for img, page in expected]
    assert all(r.source == base for r in refs)


def test_samples_together_reach_every_feed_image():
    reached = {img for name, (_, expected) in EXPECTED.items() if name != "urls.txt" for img, _ in expected}
    assert reached == set(FEED_IMAGES) and len(FEED_IMAGES) == 17


def test_titles_and_dates_come_through():
    rss = parse((SAMPLES / "rss.xml").read_bytes(), "http://g.example/feeds/rss.xml", "rss")
    assert (rss[0].title, rss[0].published) == ("Portrait study", "2025-07-01T09:30:00Z")
    assert rss[1].published == "2025-07-02T10:00:00Z"  # +0200 converted to UTC
    atom = parse((SAMPLES / "atom.xml").read_bytes(), "http://g.example/feeds/atom.xml", "atom")
    assert atom[1].published == "2025-07-04T07:15:00Z"
    js = parse((SAMPLES / "feed.json").read_bytes(), "http://g.example/feeds/feed.json", "jsonfeed")
    assert (js[0].title, js[0].published) == ("Flow field, cropped", "2025-07-06T07:00:00Z")
    sm = parse((SAMPLES / "sitemap.xml").read_bytes(), "http://g.example/feeds/sitemap.xml", "sitemap")
    assert (sm[0].title, sm[0].published) == ("Sunset, squashed", "2025-07-07")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expand_fetches_each_sample_from_a_real_server(server, fetcher, name):
    url = server.url("/feeds/" + name)
    refs, errors = expand([url], fetcher)
    assert errors == []
    assert [r.url for r in refs] == [server.url("/feed/" + img) for img, _ in EXPECTED[name][1]]
    assert all(r.source == url for r in refs)


def test_expand_many_sources_and_every_image_url_fetches(server, fetcher):
    urls = [server.url("/feeds/" + n) for n in sorted(EXPECTED) if n != "urls.txt"]
    refs, errors = expand(urls, fetcher)
    assert errors == [] and {r.url.rsplit("/", 1)[1] for r in refs} == set(FEED_IMAGES)
    results = dict(fetcher.map({r.url for r in refs}))
    assert all(not isinstance(r, FetchError) for r in results.values()), results


def test_expand_reads_local_samples_as_local_paths(fetcher):
    refs, errors = expand([str(SAMPLES / "rss.xml"), str(SAMPLES / "urls.txt")], fetcher)
    assert errors == []
    assert all(Path(r.url).is_file() for r in refs)
    assert [Path(r.url).name for r in refs if r.source.endswith("urls.txt")] == FEED_IMAGES
    assert refs[0].page_url == str(SAMPLES / "posts" / "1.html")


def test_expand_folder_file_and_missing_source(fetcher):
    folder, image = EXAMPLES / "feed", EXAMPLES / "feed" / "post_01.jpg"
    refs, errors = expand([str(folder), str(image), "no/such/place"], fetcher)
    assert [Path(r.url).name for r in refs] == FEED_IMAGES + ["post_01.jpg"]
    assert refs[-1] == ImageRef(str(image), None, str(image))
    assert errors == [SourceError("no/such/place", "no such file or folder")]


def test_a_direct_image_url_is_one_ref_fetched_once(server, fetcher):
    url = server.url("/feed/post_02.jpg?direct")
    [ref], errors = expand([url], fetcher)
    assert errors == [] and ref.url == url and ref.response.body == (EXAMPLES / "feed" / "post_02.jpg").read_bytes()
    assert len(server.hits("/feed/post_02.jpg?direct")) == 1


def test_bad_sources_each_give_one_error_and_the_rest_go_on(server, fetcher):
    bad = [server.url("/hostile/not-found"), server.url("/assets/malformed.rss"), "ftp://example.org/feed.xml"]
    refs, errors = expand(bad + [server.url("/feeds/atom.xml")], fetcher)
    assert len(refs) == 3
    assert [e.item for e in errors] == bad
    assert errors[0].error == "HTTP 404 Not Found"
    assert errors[1].error.startswith("malformed XML: mismatched tag: line 3")
    assert "only http(s) URLs, files and folders" in errors[2].error


@pytest.mark.parametrize("name, pattern", [
    ("billion-laughs.rss", "refused: the XML declares entities \\(a possible XML bomb\\)"),
    ("external-entity.rss", "refused: the XML declares entities"),
    ("malformed.rss", "malformed XML: mismatched tag: line 3, column"),
    ("broken.json", "malformed JSON: Expecting value"),
    ("not-a-jsonfeed.json", "not a JSON Feed"),
])
def test_hostile_documents_are_refused_quickly(name, pattern):
    body = (ASSETS / name).read_bytes()
    started = time.monotonic()
    with pytest.raises(FeedError, match=pattern) as e:
        parse(body, "http://g.example/" + name, detect_type(body, None, name))
    assert time.monotonic() - started < 1.0
    assert "\n" not in e.value.message and e.value.message.startswith("http://g.example/" + name + ": ")


def test_remote_feed_cannot_point_at_local_files_or_other_schemes(server, fetcher):
    url = server.url("/assets/hostile-items.rss")
    refs, errors = expand([url], fetcher)
    assert [(e.item, e.error.split(" (in ")[0]) for e in errors] == [
        ("file:///etc/passwd", "skipped: a feed from the network may not point at local files"),
        ("data:image/png;base64,iVBORw0KGgo=", "skipped: data: URLs are never read"),
        ("javascript:alert(1)", "skipped: javascript: URLs are never read"),
        ("ftp://example.org/a.jpg", "skipped: ftp: URLs are never read"),
    ]
    assert all(e.error.endswith(f"(in {url})") for e in errors)
    assert [r.url for r in refs][-1] == server.url("/feed/post_01.jpg")
    assert all(r.url.startswith("http") for r in refs)


def test_private_addresses_in_a_remote_feed_are_refused_without_connecting(server, fetcher, no_outside_network):
    refs, _ = expand([server.url("/assets/hostile-items.rss")], fetcher)
    private = [r.url for r in refs if not r.url.startswith(server.base)]
    assert len(private) == 8
    before = list(no_outside_network)
    with Fetcher(FetchPolicy()) as strict:  # allow_private=False, as for any real scan
        results = dict(strict.map(private))
    assert all(isinstance(r, FetchError) and "refused:" in r.reason for r in results.values()), results
    assert no_outside_network == before  # not one connection was attempted


def test_remote_page_base_href_cannot_reach_local_files(server, fetcher):
    refs, errors = expand([server.url("/assets/hostile.html")], fetcher)
    assert refs == []
    assert [(e.item, e.error.split(" (in ")[0]) for e in errors] == [
        ("passwd", "skipped: a feed from the network may not point at local files"),
        ("data:image/gif;base64,R0lGODlhAQABAAAAACw=", "skipped: data: URLs are never read")]


def test_a_local_feed_may_name_local_paths(fetcher):
    refs, errors = expand([str(ASSETS / "hostile-items.rss")], fetcher)
    assert refs[0].url == "/etc/passwd"  # the user's own file said so; scan reads it as an image, or reports
    assert [e.item for e in errors] == ["data:image/png;base64,iVBORw0KGgo=", "javascript:alert(1)",
                                        "ftp://example.org/a.jpg"]


def test_remote_sources_need_allow_private_to_reach_a_local_server(server):
    refs, errors = expand([server.url("/feeds/rss.xml")], Fetcher(FetchPolicy()))
    assert refs == [] and "refused: 127.0.0.1 is a loopback address" in errors[0].error


def test_sitemap_index_is_followed_one_level(server, fetcher):
    refs, errors = expand([server.url("/assets/index.xml")], fetcher)
    assert [r.url.rsplit("/", 1)[1] for r in refs] == ["post_17.jpg", "post_02.jpg", "post_08.jpg"]
    assert all(r.source == server.url("/assets/index.xml") for r in refs)
    assert [(e.item, e.error.split(" (in ")[0]) for e in errors] == [
        ("file:///etc/passwd", "skipped: a feed from the network may not point at local files"),
        (server.url("/assets/nested-index.xml"), "a sitemap index inside a sitemap index is not followed"),
        (server.url("/assets/missing.xml"), "HTTP 404 Not Found"),
    ]


def test_sitemap_index_cap(server, fetcher, monkeypatch):
    monkeypatch.setattr(feeds, "MAX_CHILD_SITEMAPS", 1)
    refs, errors = expand([server.url("/assets/index.xml")], fetcher)
    assert len(refs) == 3 and "lists 3 sitemaps; only the first 1 are read" in errors[-1].error


def test_forced_type(server, fetcher):
    refs, errors = expand([server.url("/feeds/page.html")], fetcher, type="html")
    assert len(refs) == 5 and errors == []
    [ref], _ = expand(["http://gallery.example/a.jpg"], fetcher, type="image")  # no fetch needed
    assert ref == ImageRef("http://gallery.example/a.jpg", None, "http://gallery.example/a.jpg")
    _, errors = expand([str(SAMPLES / "rss.xml")], fetcher, type="folder")
    assert errors[0].error == "not a folder"
    with pytest.raises(UsageError, match="unknown source type"):
        expand([], fetcher, type="podcast")


@pytest.mark.parametrize("body, content_type, kind", [
    (b"\xff\xd8\xff\xe0rest", None, "image"),
    (b"\x89PNG\r\n\x1a\n....", "text/plain", "image"),
    (b"RIFF\0\0\0\0WEBPVP8 ", None, "image"),
    (b"garbage", "image/jpeg", "image"),
    (b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- c -->\n<rss version="2.0"/>', None, "rss"),
    (b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="x"/>', None, "rss"),
    (b'<feed xmlns="http://www.w3.org/2005/Atom"/>', None, "atom"),
    (b'<?xml version="1.0"?><sitemapindex/>', None, "sitemap"),
    (b'<!DOCTYPE rss [<!ENTITY a "b">]><rss/>', None, "rss"),
    (b'  {"version": "https://jsonfeed.org/version/1.1"}', None, "jsonfeed"),
    (b"<!doctype html><title>x</title>", None, "html"),
    (b"<div><img src=a.jpg></div>", None, "html"),
    (b"# list\nhttps://a.example/1.jpg\n\nb/2.jpg\n", None, "list"),
    (b"just some words here", "text/plain", "list"),
])
def test_detect_type(body, content_type, kind):
    assert detect_type(body, content_type, "x") == kind


def test_detect_type_says_when_it_cannot_tell():
    with pytest.raises(FeedError, match="x: cannot tell what kind of source this is") as e:
        detect_type(b"two words\nand <three>", None, "x")
    assert "rss" in e.value.hint


@pytest.mark.parametrize("srcset, largest", [
    ("a.jpg 200w, b.jpg 800w, c.jpg 400w", "b.jpg"),
    ("a.jpg, b.jpg 2x, c.jpg 1.5x", "b.jpg"),
    ("https://cdn.example/w_100,h_100/a.jpg 100w, https://cdn.example/w_900,h_900/a.jpg 900w",
     "https://cdn.example/w_900,h_900/a.jpg"),
    ("a.jpg 1x,b.jpg 3x", "b.jpg"),
    ("a.jpg,b.jpg 3x", "a.jpg,b.jpg"),  # per the HTML grammar, a comma inside a URL does not split it
    ("  one.jpg  ", "one.jpg"),
    ("", None),
])
def test_srcset_takes_the_largest_candidate(srcset, largest):
    assert feeds._srcset_largest(srcset) == largest


def test_parse_dedupes_keeping_the_first_mention():
    html = b'<img src="a.jpg"><meta property="og:image" content="/a.jpg"><img src="b.jpg" data-x=1><img src=a.jpg>'
    refs = parse(html, "http://g.example/index.html", "html", source="my page")
    assert [r.url for r in refs] == ["http://g.example/a.jpg", "http://g.example/b.jpg"]
    assert refs[0].source == "my page" and refs[0].page_url == "http://g.example/index.html"


def test_read_sources_file(tmp_path):
    f = tmp_path / "sources.txt"
    f.write_text("# my feeds\nhttps://a.example/feed.xml\n\n  feed/  \n/abs/list.txt\nhttps://b.example/#top\n")
    assert read_sources_file(f) == ["https://a.example/feed.xml", os.path.join(tmp_path, "feed/"), "/abs/list.txt",
                                    "https://b.example/#top"]
    with pytest.raises(UsageError, match="cannot read sources file"):
        read_sources_file(tmp_path / "missing.txt")
