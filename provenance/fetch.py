"""Fetching images and pages from the web for a scan, safely and politely.

Every URL passes the address guard (`check_url`) before any connection, and so does every redirect target:
only http(s), and never this machine or a private network unless the user allows it for testing. Each request has
connect and read timeouts and one total deadline, byte caps, content checks, and waits its turn per host; robots.txt
is honoured by default. Every failure is a FetchError whose message is one line, "URL: reason".
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Iterable, Iterator, Mapping
from urllib.parse import urljoin, urldefrag

from protego import Protego

from . import _http
from .errors import FetchError, UsageError

try:
    __version__ = version("provenance")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0"

#: A contact for the owners of the sites a scan fetches from (a URL or an e-mail address), added to the User-Agent:
#: a registry or platform scanning at volume should set it, so that a site owner can reach it instead of blocking it.
CONTACT_ENV = "PROVENANCE_CONTACT"
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: crawlers must parse at least 500 KiB
MAX_CRAWL_DELAY = 10.0  # a robots.txt Crawl-delay is honoured up to this many seconds
KINDS = ("image", "page", "any")
_REDIRECTS = (301, 302, 303, 307, 308)
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
                b"\x00\x00\x01\x00", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")
_OCTET = ("application/octet-stream", "binary/octet-stream")


def is_image_bytes(data: bytes) -> bool:
    """True if `data` starts like an image format Pillow decodes (JPEG, PNG, GIF, WebP, BMP, TIFF, ICO, JPEG 2000,
    AVIF/HEIF). Cheap: looks at the first 16 bytes only."""
    if data.startswith(_IMAGE_MAGIC):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _media_type(headers: Mapping[str, str]) -> str | None:
    ct = _header(headers, "Content-Type")
    return (ct.split(";")[0].strip().lower() or None) if ct else None


def _is_page_type(ct: str) -> bool:
    return (ct.startswith("text/") or ct in ("application/xml", "application/json")
            or ct.endswith(("+xml", "+json")))


def user_agent(contact: str | None = None) -> str:
    """provenance/VERSION (copy detection for artists), with `contact` (default: $PROVENANCE_CONTACT) after a +."""
    contact = " ".join((os.environ.get(CONTACT_ENV, "") if contact is None else contact).split())
    if not contact.isascii() or not contact.isprintable():
        raise UsageError(f"{CONTACT_ENV}={contact!r} cannot go in an HTTP header",
                         hint="use printable ASCII: a URL or an e-mail address")
    return f"provenance/{__version__} ({f'+{contact}; ' if contact else ''}copy detection for artists)"


@dataclass(frozen=True)
class FetchPolicy:
    """How politely and defensively to fetch. Times in seconds; deadline is the total per request."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    deadline: float = 30.0
    max_image_bytes: int = 50 * 2**20
    max_page_bytes: int = 10 * 2**20
    max_redirects: int = 5
    per_host_interval: float = 0.5  # seconds between the starts of two requests to one host
    concurrency: int = 8
    per_host_concurrency: int = 2
    user_agent: str = field(default_factory=user_agent)
    respect_robots: bool = True
    allow_private: bool = False


@dataclass(frozen=True)
class Response:
    """A successful fetch: 200 with a body that passed the checks, or 304 (not modified, empty body)."""

    url: str  # final URL after redirects
    requested_url: str
    status: int  # 200 or 304
    headers: dict[str, str] = field(repr=False)  # as received, for evidence packets
    body: bytes = field(repr=False)
    fetched_at: str  # UTC, ISO 8601 to the second, "Z"

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def header(self, name: str) -> str | None:
        """A response header by case-insensitive name."""
        return _header(self.headers, name)

    @property
    def content_type(self) -> str | None:
        """The media type without parameters, lower-cased ("image/jpeg"), or None."""
        return _media_type(self.headers)

    @property
    def etag(self) -> str | None:
        return self.header("ETag")

    @property
    def last_modified(self) -> str | None:
        return self.header("Last-Modified")


def check_url(url: str, *, allow_private: bool = False) -> None:
    """Raise FetchError unless `url` is http(s) and every address its host resolves to may be reached.

    Loopback, private, link-local (incl. the cloud metadata address 169.254.169.254), multicast, reserved and
    unspecified addresses are refused, in IPv4, IPv6 and IPv4 embedded in IPv6, unless `allow_private`.
    No connection is made.
    """
    _http.resolve(url, allow_private=allow_private)


class _Hosts:
    """Per-host turn-taking: at most n requests at once to one host, starts spaced by an interval."""

    def __init__(self, concurrency: int, interval: float):
        self._concurrency = max(1, concurrency)
        self._interval = interval
        self._lock = threading.Lock()
        self._sems: dict[str, threading.Semaphore] = {}
        self._next: dict[str, float] = {}
        self._delay: dict[str, float] = {}

    def set_delay(self, host: str, seconds: float) -> None:
        with self._lock:
            self._delay[host] = max(self._interval, seconds)

    @contextmanager
    def turn(self, host: str):
        """Wait for `host`'s turn; yields the seconds spent waiting."""
        started = time.monotonic()
        with self._lock:
            sem = self._sems.setdefault(host, threading.Semaphore(self._concurrency))
        with sem:
            with self._lock:
                now = time.monotonic()
                slot = max(now, self._next.get(host, now))
                self._next[host] = slot + self._delay.get(host, self._interval)
            time.sleep(max(0.0, slot - now))
            yield time.monotonic() - started


class Fetcher:
    """Fetches URLs under one FetchPolicy. Thread-safe; share one per scan (robots.txt and host turns are shared)."""

    def __init__(self, policy: FetchPolicy | None = None):
        self.policy = policy = policy or FetchPolicy()
        self._hosts = _Hosts(policy.per_host_concurrency, policy.per_host_interval)
        self._slots = threading.BoundedSemaphore(max(1, policy.concurrency))
        self._robots: dict[str, Protego | str | None] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Forget cached robots.txt rules. Connections are never kept open between requests."""
        with self._lock:
            self._robots.clear()

    def get(self, url: str, *, kind: str = "image", etag: str | None = None,
            last_modified: str | None = None) -> Response:
        """Fetch `url`, following redirects, and check what came back; raise FetchError otherwise.

        kind "image": the image byte cap, Content-Type image/* or application/octet-stream (or none) and image
        magic bytes. kind "page": the page cap, a text, XML or JSON Content-Type (or none). kind "any": either,
        capped by what it turns out to be. With `etag` / `last_modified` the request is conditional, and a 304
        answer comes back as a Response whose `not_modified` is True.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        with self._slots:
            try:
                return self._get(url, kind, etag, last_modified, robots=self.policy.respect_robots)
            except FetchError:
                raise
            except Exception as e:  # a bug or an exotic failure must still end as one line for this URL
                raise FetchError(url, f"unexpected error: {type(e).__name__}: {e}") from e

    def map(self, urls: Iterable[str], *, ordered: bool = False,
            validators: Mapping[str, tuple[str | None, str | None]] | None = None,
            **kw) -> Iterator[tuple[str, Response | FetchError]]:
        """Fetch many URLs on `concurrency` threads, each host in its turn. Yields (url, Response or FetchError).

        Results come as they complete, or in input order with ordered=True. `validators` maps a URL to its
        (etag, last_modified) for a conditional request; other keywords go to `get`. At most twice `concurrency`
        URLs are in flight, so bodies do not pile up in memory.
        """
        validators = validators or {}
        window = 2 * max(1, self.policy.concurrency)

        def one(u: str) -> Response | FetchError:
            etag, modified = validators.get(u, (None, None))
            try:
                return self.get(u, etag=etag, last_modified=modified, **kw)
            except FetchError as e:
                return e

        pool = ThreadPoolExecutor(max_workers=max(1, self.policy.concurrency), thread_name_prefix="provenance-fetch")
        pending: deque[tuple[str, Future]] = deque()
        try:
            it = iter(urls)
            exhausted = False
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        u = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append((u, pool.submit(one, u)))
                if not pending:
                    return
                if ordered:
                    u, f = pending.popleft()
                    yield u, f.result()
                else:
                    done, _ = wait([f for _, f in pending], return_when=FIRST_COMPLETED)
                    for u, f in [p for p in pending if p[1] in done]:
                        pending.remove((u, f))
                        yield u, f.result()
        finally:
            for _, f in pending:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    # -- internals -------------------------------------------------------------------------------------------

    def _get(self, url: str, kind: str, etag: str | None, last_modified: str | None, *, robots: bool,
             cap: int | None = None) -> Response:
        p = self.policy
        budget = p.deadline  # network time left; waiting for a host's turn does not count
        current, seen, hops = url, {urldefrag(url).url}, 0
        headers = {"User-Agent": p.user_agent, "Accept-Encoding": "identity", "Accept": _ACCEPT[kind]}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        while True:
            started = time.monotonic()
            try:
                target = _http.resolve(current, allow_private=p.allow_private,
                                       timeout=min(p.connect_timeout, budget))
            except FetchError as e:
                if hops:  # name the URL the caller asked for, and where it was sent
                    raise FetchError(url, f"redirected to {e.message}", e.hint) from None
                raise
            budget -= time.monotonic() - started
            if robots:
                self._check_robots(target)
            with self._hosts.turn(target.host):
                started = time.monotonic()
                deadline_at = started + max(budget, 0.0)
                try:
                    with _http.Exchange(target, headers, connect_timeout=p.connect_timeout,
                                        read_timeout=p.read_timeout, deadline_at=deadline_at) as ex:
                        fetched_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                        if ex.status in _REDIRECTS:
                            location = _header(ex.headers, "Location")
                        elif ex.status == 304 and (etag or last_modified):
                            return Response(ex.target.url, url, 304, ex.headers, b"", fetched_at)
                        elif ex.status == 200:
                            body = self._read_body(current, ex, kind, cap)
                            return Response(current, url, 200, ex.headers, body, fetched_at)
                        else:
                            raise FetchError(current, f"HTTP {ex.status} {ex.reason}".rstrip())
                except _http.NETWORK_ERRORS as e:
                    if time.monotonic() >= deadline_at:
                        raise FetchError(current, f"no complete answer within the {p.deadline:g} s deadline") from None
                    raise FetchError(current, _http.describe(e)) from None
                budget -= time.monotonic() - started
            if not location:
                raise FetchError(current, f"redirect (HTTP {ex.status}) without a Location header")
            nxt = urldefrag(urljoin(current, location.strip())).url
            if nxt in seen:
                raise FetchError(url, f"redirect loop (back to {nxt})")
            hops += 1
            if hops > p.max_redirects:
                raise FetchError(url, f"too many redirects (more than {p.max_redirects})")
            seen.add(nxt)
            current = nxt

    def _read_body(self, url: str, ex: _http.Exchange, kind: str, cap: int | None) -> bytes:
        p = self.policy
        ct = _media_type(ex.headers)
        encoding = (_header(ex.headers, "Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise FetchError(url, f"compressed answer (Content-Encoding {encoding}) although identity was asked")
        image_type = ct is not None and (ct.startswith("image/") or ct in _OCTET)
        if kind == "image" and ct is not None and not image_type:
            raise FetchError(url, f"not an image (content type {ct})")
        if kind == "page" and ct is not None and not _is_page_type(ct):
            raise FetchError(url, f"not a page, feed or list (content type {ct})")
        if kind == "any" and ct is not None and not (image_type or _is_page_type(ct)):
            raise FetchError(url, f"neither an image nor a page (content type {ct})")
        as_image = kind == "image" or (kind == "any" and image_type)
        what = "image" if as_image else "page"
        if cap is None:
            cap = p.max_image_bytes if as_image else p.max_page_bytes
        length = _header(ex.headers, "Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > cap:
            raise FetchError(url, f"is {int(length):,} bytes, over the {cap:,}-byte {what} limit")
        parts, total, checked = [], 0, not as_image
        for chunk in ex.chunks():
            total += len(chunk)
            if total > cap:
                raise FetchError(url, f"more than {cap:,} bytes, over the {what} limit")
            parts.append(chunk)
            if not checked and total >= 16:
                self._check_magic(url, b"".join(parts))
                checked = True
        if ex.timed_out:  # the watchdog's shutdown can look like a clean end of a body without a length
            raise FetchError(url, f"no complete answer within the {p.deadline:g} s deadline")
        body = b"".join(parts)
        if not checked:
            self._check_magic(url, body)
        return body

    @staticmethod
    def _check_magic(url: str, data: bytes) -> None:
        if not is_image_bytes(data):
            start = data[:16].decode("latin-1").encode("unicode_escape").decode("ascii")
            raise FetchError(url, f"not an image (its content starts with {start!r})" if data else
                             "not an image (empty body)")

    def _check_robots(self, target: _http.Target) -> None:
        origin = target.origin
        with self._lock:
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:  # one robots.txt fetch per origin, however many threads ask
            with self._lock:
                known = origin in self._robots
                rules = self._robots.get(origin)
            if not known:
                rules = self._load_robots(target)
                with self._lock:
                    self._robots[origin] = rules
        if isinstance(rules, str):
            raise FetchError(target.url, rules, "the site asks robots to stay away; respect_robots=False overrides")
        if rules is not None and not rules.can_fetch(target.url, self.policy.user_agent):
            raise FetchError(target.url, "disallowed by the site's robots.txt",
                             "the site asks robots to stay away; respect_robots=False overrides")

    def _load_robots(self, target: _http.Target) -> Protego | str | None:
        """The origin's robots.txt rules; None to allow all; a string to refuse all (with the reason)."""
        robots_url = target.origin + "/robots.txt"
        try:
            r = self._get(robots_url, "page", None, None, robots=False, cap=ROBOTS_MAX_BYTES)
        except FetchError as e:
            status = e.reason.split()[1] if e.reason.startswith("HTTP ") else ""
            if status.startswith("4"):  # RFC 9309: an unavailable robots.txt allows everything
                return None
            if "content type" in e.reason:  # an HTML error page where robots.txt should be
                return None
            return f"robots.txt could not be read ({e.reason}), so nothing is fetched from this site"
        rules = Protego.parse(r.body.decode("utf-8", "replace"))
        delay = rules.crawl_delay(self.policy.user_agent)
        if delay:
            self._hosts.set_delay(target.host, min(delay, MAX_CRAWL_DELAY))
        return rules


_ACCEPT = {
    "image": "image/*, */*;q=0.5",
    "page": "application/rss+xml, application/atom+xml, application/feed+json, application/json, text/html, "
            "application/xml, text/xml, text/plain;q=0.9, */*;q=0.1",
    "any": "*/*",
}
