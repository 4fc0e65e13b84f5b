"""provenance.fetch against a real HTTP server on 127.0.0.1, hostile handlers included. Nothing leaves loopback."""
from __future__ import annotations

import re
import time

import pytest
from httpserver import JPEG, loopback_is_public, no_outside_network, server  # noqa: F401

from provenance import _http
from provenance.errors import FetchError, ProvenanceError, UsageError
from provenance.fetch import CONTACT_ENV, Fetcher, FetchPolicy, Response, check_url

LOCAL = FetchPolicy(allow_private=True, per_host_interval=0.0)  # as a user testing with --allow-private


@pytest.fixture
def fetcher():
    with Fetcher(LOCAL) as f:
        yield f


def refused(url: str, pattern: str, policy: FetchPolicy = FetchPolicy(per_host_interval=0.0),
            kind: str = "image") -> FetchError:
    with pytest.raises(FetchError) as e:
        Fetcher(policy).get(url, kind=kind)
    assert re.search(pattern, e.value.message), e.value.message
    assert e.value.message.startswith(url + ": ") and "\n" not in e.value.message
    return e.value


def test_fetches_an_image(server, fetcher):
    r = fetcher.get(server.url("/feed/post_02.jpg"))
    assert isinstance(r, Response) and r.status == 200 and not r.not_modified
    assert r.body == JPEG and r.url == r.requested_url == server.url("/feed/post_02.jpg")
    assert r.content_type == "image/jpeg" and r.header("content-length") == str(len(JPEG))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r.fetched_at)
    sent = server.hits("/feed/post_02.jpg")[-1].headers
    assert sent["User-Agent"].startswith("provenance/") and "copy detection for artists" in sent["User-Agent"]
    assert sent["Host"] == f"127.0.0.1:{server.port}"


def test_the_user_agent_names_the_operators_contact_when_one_is_set(server, monkeypatch):
    monkeypatch.delenv(CONTACT_ENV, raising=False)
    assert re.fullmatch(r"provenance/\S+ \(copy detection for artists\)", FetchPolicy().user_agent)
    monkeypatch.setenv(CONTACT_ENV, "  mailto:scans@registry.example\r\n ")
    with Fetcher(FetchPolicy(allow_private=True, per_host_interval=0.0)) as f:
        f.get(server.url("/feed/post_01.jpg"))
    sent = server.hits("/feed/post_01.jpg")[-1].headers["User-Agent"]
    assert re.fullmatch(r"provenance/\S+ \(\+mailto:scans@registry\.example; copy detection for artists\)", sent)


@pytest.mark.parametrize("contact", ["scans@régistre.example", "ops\x7f@example.org"])
def test_a_contact_that_cannot_go_in_a_header_is_refused_by_name(monkeypatch, contact):
    monkeypatch.setenv(CONTACT_ENV, contact)
    with pytest.raises(UsageError, match=f"^{CONTACT_ENV}=.* cannot go in an HTTP header$"):
        FetchPolicy()


def test_fetch_error_is_a_provenance_error_with_url_and_reason(server, fetcher):
    with pytest.raises(ProvenanceError) as e:
        fetcher.get(server.url("/hostile/not-found"))
    assert isinstance(e.value, FetchError)
    assert e.value.url == server.url("/hostile/not-found") and e.value.reason == "HTTP 404 Not Found"


@pytest.mark.parametrize("path, pattern", [
    ("/hostile/huge", r"is 10,737,418,240 bytes, over the 52,428,800-byte image limit"),
    ("/hostile/html-as-image", r"not an image \(content type text/html\)"),
    ("/hostile/not-an-image", r"not an image \(its content starts with '<html>"),
    ("/hostile/loop", r"redirect loop \(back to .*/hostile/loop\)"),
    ("/hostile/hops-6", r"too many redirects \(more than 5\)"),
    ("/hostile/gzip", r"Content-Encoding gzip"),
    ("/hostile/to-file", r"redirected to file:///etc/passwd: refused: only http and https"),
])
def test_hostile_answers_are_one_line_errors(server, fetcher, path, pattern):
    refused(server.url(path), pattern, LOCAL)


def test_endless_body_is_cut_at_the_image_cap(server):
    refused(server.url("/hostile/endless"), r"more than 1,048,576 bytes, over the image limit",
            FetchPolicy(allow_private=True, max_image_bytes=2**20))


def test_page_cap_applies_to_pages(server):
    refused(server.url("/feeds/page.html"), r"over the 100-byte page limit",
            FetchPolicy(allow_private=True, max_page_bytes=100), kind="page")


def test_redirects_within_the_limit_are_followed(server, fetcher):
    r = fetcher.get(server.url("/hostile/hops-3"))
    assert r.url == server.url("/hostile/hops-0") and r.requested_url == server.url("/hostile/hops-3")
    assert r.body == JPEG


@pytest.mark.parametrize("path", ["/hostile/slow-body", "/hostile/slow-headers"])
def test_slow_loris_is_cut_at_the_deadline(server, path):
    policy = FetchPolicy(allow_private=True, deadline=2.0, read_timeout=10.0)
    started = time.monotonic()
    refused(server.url(path), r"no complete answer within the 2 s deadline", policy)
    assert 1.9 < time.monotonic() - started < 3.5


def test_image_bomb_bytes_pass_through_to_the_decoder(server, fetcher):
    from provenance.errors import ImageError
    from provenance.imaging import decode

    r = fetcher.get(server.url("/assets/bomb.png"))
    with pytest.raises(ImageError, match="pixels|bomb"):
        decode(r.body)


def test_conditional_requests_report_not_modified(server, fetcher):
    url = server.url("/etag/post_02.jpg")
    first = fetcher.get(url)
    assert first.etag == '"v1"' and first.last_modified
    again = fetcher.get(url, etag=first.etag)
    assert again.status == 304 and again.not_modified and again.body == b""
    assert server.hits("/etag/")[-1].headers["If-None-Match"] == '"v1"'
    by_date = fetcher.get(url, last_modified=first.last_modified)
    assert by_date.not_modified and server.hits("/etag/")[-1].headers["If-Modified-Since"] == first.last_modified


def test_robots_disallow_is_respected_and_can_be_overridden(server):
    refused(server.url("/blocked/post.jpg"), r"disallowed by the site's robots.txt", LOCAL)
    assert not server.hits("/blocked/")  # refused before the request, not after
    r = Fetcher(FetchPolicy(allow_private=True, respect_robots=False)).get(server.url("/blocked/post.jpg"))
    assert r.body == JPEG


@pytest.mark.parametrize("status, allowed", [(404, True), (403, True), (500, False), (503, False)])
def test_robots_txt_unavailable_allows_but_unreachable_refuses(server, monkeypatch, status, allowed):
    monkeypatch.setattr(server, "robots_status", status)  # RFC 9309: 4xx allows everything, 5xx nothing
    if allowed:
        assert Fetcher(LOCAL).get(server.url("/blocked/post.jpg")).body == JPEG
    else:
        refused(server.url("/feed/post_01.jpg"), rf"robots.txt could not be read \(HTTP {status} .*\), so nothing", LOCAL)


def test_robots_txt_is_fetched_once_per_site(server):
    before = len(server.hits("/robots.txt"))
    with Fetcher(LOCAL) as f:
        for _ in range(3):
            f.get(server.url("/feed/post_01.jpg"))
    assert len(server.hits("/robots.txt")) == before + 1


def test_per_host_rate_limit_spaces_requests(server):
    policy = FetchPolicy(allow_private=True, per_host_interval=0.3, concurrency=4, per_host_concurrency=4)
    urls = [server.url(f"/feed/post_0{i}.jpg?rate") for i in range(1, 6)]
    results = dict(Fetcher(policy).map(urls))
    assert set(results) == set(urls) and all(isinstance(r, Response) for r in results.values())
    times = sorted(r.at for r in server.requests if r.path.endswith("?rate"))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 5 and min(gaps) > 0.27, gaps


def test_map_returns_errors_in_place_and_can_keep_order(server, fetcher):
    urls = [server.url("/feed/post_01.jpg"), server.url("/hostile/not-found"), server.url("/feed/post_03.jpg")]
    results = list(fetcher.map(urls, ordered=True))
    assert [u for u, _ in results] == urls
    assert isinstance(results[1][1], FetchError) and isinstance(results[2][1], Response)


def test_map_sends_per_url_validators(server, fetcher):
    url = server.url("/etag/post_02.jpg")
    [(u, r)] = fetcher.map([url], validators={url: ('"v1"', None)})
    assert u == url and r.not_modified


def test_connection_refused_is_one_line(fetcher):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    refused(f"http://127.0.0.1:{port}/x.jpg", r"connection refused", LOCAL)


def test_unknown_host_is_one_line():
    refused("http://no-such-host.invalid/x.jpg", r"cannot resolve host name no-such-host.invalid")


# -- the address guard: refusals happen before any connection ---------------------------------------------------

@pytest.mark.parametrize("url, why", [
    ("http://10.0.0.1/a.jpg", "private"),
    ("http://192.168.1.1/a.jpg", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://127.0.0.1:8080/a.jpg", "loopback"),
    ("http://[::1]/a.jpg", "loopback"),
    ("http://[fd00::1]/a.jpg", "private"),
    ("http://[fe80::1]/a.jpg", "link-local"),
    ("http://[::ffff:10.0.0.1]/a.jpg", "private"),
    ("http://[::ffff:127.0.0.1]/a.jpg", "loopback"),
    ("http://[2002:7f00:1::]/a.jpg", "loopback"),  # 6to4 wrapping 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/a.jpg", "link-local"),  # NAT64 wrapping 169.254.169.254
    ("http://0.0.0.0/a.jpg", "unspecified"),
    ("http://[::]/a.jpg", "unspecified"),
    ("http://224.0.0.1/a.jpg", "multicast"),
    ("http://240.0.0.1/a.jpg", "reserved"),
    ("http://100.64.0.1/a.jpg", "non-public"),  # carrier-grade NAT
    ("http://2130706433/a.jpg", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://0x7f.1/a.jpg", "loopback"),
    ("http://localhost/a.jpg", "loopback"),
    ("http://evil.example/a.jpg", "private"),
    ("http://metadata.example/a.jpg", "link-local"),
    ("http://ula.example/a.jpg", "private"),
    ("http://mapped.example/a.jpg", "loopback"),
    ("http://mixed.example/a.jpg", "private"),
])
def test_guard_refuses_private_addresses_without_connecting(url, why, no_outside_network):
    with pytest.raises(FetchError, match=f"refused: .* {why} address"):
        check_url(url)
    e = refused(url, f"refused: .* {why} address")
    assert "--allow-private" in e.hint
    assert no_outside_network == []


@pytest.mark.parametrize("url, pattern", [
    ("file:///etc/passwd", "only http and https URLs are fetched \\(this one is file\\)"),
    ("ftp://example.org/a.jpg", "this one is ftp"),
    ("data:image/png;base64,AAAA", "this one is data"),
    ("javascript:alert(1)", "this one is javascript"),
    ("//example.org/a.jpg", "no scheme"),
    ("http:///a.jpg", "no host name"),
    ("http://example.org:99999/a.jpg", "invalid port"),
])
def test_guard_refuses_other_schemes_and_broken_urls(url, pattern, no_outside_network):
    refused(url, pattern)
    assert no_outside_network == []


def test_public_addresses_pass_the_guard(no_outside_network):
    check_url("http://public.example/a.jpg")
    check_url("https://93.184.215.14/a.jpg")
    check_url("http://[2606:4700::1111]/a.jpg")
    assert no_outside_network == []


def test_allow_private_lets_loopback_through_but_not_file():
    check_url("http://localhost/a.jpg", allow_private=True)
    check_url("http://10.0.0.1/a.jpg", allow_private=True)
    with pytest.raises(FetchError, match="only http and https"):
        check_url("file:///etc/passwd", allow_private=True)


def test_loopback_server_is_refused_without_allow_private(server, no_outside_network):
    refused(server.url("/feed/post_02.jpg?never"), r"refused: 127.0.0.1 is a loopback address")
    assert no_outside_network == [] and not server.hits("/feed/post_02.jpg?never")


def test_redirect_targets_are_checked_again(server, loopback_is_public, no_outside_network):
    # The server stands in for a public site; its redirects to private places are refused before connecting.
    for path, pattern in [("/hostile/to-metadata", r"redirected to http://169.254.169.254/.*link-local"),
                          ("/hostile/to-private-name", r"redirected to http://evil.example/a.jpg: refused: "
                                                       r"evil.example resolves to 10.0.0.1, which is a private"),
                          ("/hostile/to-file", r"redirected to file:///etc/passwd")]:
        refused(server.url(path), pattern, FetchPolicy(per_host_interval=0.0))
    assert {a[0] for a in no_outside_network} == {"127.0.0.1"}


def test_connection_goes_to_the_checked_address_not_a_second_lookup(server, monkeypatch, no_outside_network,
                                                                     loopback_is_public):
    # DNS rebinding: the first answer is "public", any later one would be private. Only one lookup may happen,
    # and the connection must go to the address that was checked, with the name in the Host header.
    import socket
    answers = iter(["127.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.1"])
    lookups = []
    real = socket.getaddrinfo

    def rebinding(host, port, *a, **kw):
        if host == "rebind.example":
            lookups.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, port, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://rebind.example:{server.port}/feed/post_02.jpg?rebind"
    r = Fetcher(FetchPolicy(per_host_interval=0.0, respect_robots=False)).get(url)
    assert r.body == JPEG and lookups == ["rebind.example"]
    assert no_outside_network == [("127.0.0.1", server.port)]
    assert server.hits("/feed/post_02.jpg?rebind")[-1].headers["Host"] == f"rebind.example:{server.port}"


def test_https_connection_sends_the_name_for_sni(monkeypatch):
    # No TLS server here; check that the pinned connection is built for the IP with the name as SNI.
    t = _http.Target("https://public.example/a.jpg", "https", "public.example", 443, "/a.jpg", ("93.184.215.14",))
    built = {}

    class Stop(Exception):
        pass

    def fake_request(self, *a, **kw):
        built.update(host=self.host, sni=self.server_hostname, headers=kw["headers"])
        raise Stop

    monkeypatch.setattr(_http._PinnedHTTPS, "request", fake_request)
    with pytest.raises(Stop):
        with _http.Exchange(t, {}, connect_timeout=1, read_timeout=1, deadline_at=time.monotonic() + 5):
            pass
    assert built == {"host": "93.184.215.14", "sni": "public.example", "headers": {"Host": "public.example"}}


def test_ipv6_loopback_server(tmp_path):
    import socket
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class V6(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    (tmp_path / "robots.txt").write_text("")
    (tmp_path / "a.jpg").write_bytes(JPEG)
    handler = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    try:
        httpd = V6(("::1", 0), lambda *a: handler(*a, directory=str(tmp_path)))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://[::1]:{httpd.server_address[1]}/a.jpg"
        refused(url, r"refused: ::1 is a loopback address")
        assert Fetcher(LOCAL).get(url).body == JPEG
    finally:
        httpd.shutdown()
        httpd.server_close()
