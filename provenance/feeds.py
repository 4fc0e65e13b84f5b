"""Where to look for copies: the image URLs in feeds, pages, sitemaps and lists, and the files in folders.

`expand` turns the sources a user names into ImageRefs; `parse` reads one fetched or local document. Parsing is
pure: nothing here opens a file or a URL that a document mentions. A remote document may only point at http(s)
URLs (a file://, data:, ftp: or javascript: URL in it is dropped with an error line), and the fetcher's address
guard decides later whether each of those may be reached. Only sources the user gave on this machine may name
local paths.
"""
from __future__ import annotations

import calendar
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.request import url2pathname
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree
import feedparser

from .errors import FeedError, FetchError, UsageError
from .fetch import Fetcher, Response, is_image_bytes
from .sources import SourceError, collect_files, display

SOURCE_TYPES = ("folder", "list", "rss", "atom", "jsonfeed", "html", "sitemap", "image")
#: A sitemap index is followed one level deep, to at most this many sitemaps.
MAX_CHILD_SITEMAPS = 50
#: At most this many images are taken from one source; the rest are reported and skipped.
MAX_IMAGES_PER_SOURCE = 10_000
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class ImageRef:
    """One image to check: where it is, and where it was seen."""

    url: str  # absolute http(s) URL, or a local path (only from local sources)
    page_url: str | None  # the entry/item link or the HTML page the image was on
    source: str  # the source the user gave (feed URL, page URL, list file, folder)
    title: str | None = None
    published: str | None = None  # ISO 8601 if the feed says
    #: When the source URL itself was the image, the response `expand` already fetched, so it is not fetched twice.
    response: Response | None = field(default=None, compare=False, repr=False)


# -- detection --------------------------------------------------------------------------------------------------

_XML_ROOT = re.compile(r"(?:\s|<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^\[>]|\[.*?\])*>)*<([A-Za-z_][\w.:-]*)", re.S | re.I)
_HTML_HINT = re.compile(r"<!doctype\s+html|<html|<head|<body|<img\b|<meta\b", re.I)
_BY_ROOT = {"rss": "rss", "rdf": "rss", "feed": "atom", "urlset": "sitemap", "sitemapindex": "sitemap", "html": "html"}
_BY_CONTENT_TYPE = {"application/rss+xml": "rss", "application/rdf+xml": "rss", "application/atom+xml": "atom",
                    "application/feed+json": "jsonfeed", "application/json": "jsonfeed", "text/html": "html",
                    "application/xhtml+xml": "html", "text/plain": "list", "text/uri-list": "list"}


def _text(body: bytes) -> str:
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom):].decode(codec, "replace")
    return body.decode("utf-8", "replace")


def detect_type(body: bytes, content_type: str | None, url: str) -> str:
    """Which of SOURCE_TYPES (except "folder") `body` is, by its content first and its Content-Type second."""
    if is_image_bytes(body[:16]):
        return "image"
    ct = content_type.split(";")[0].strip().lower() if content_type else None
    if ct and ct.startswith("image/"):
        return "image"
    head = _text(body[:_SNIFF_BYTES])
    m = _XML_ROOT.match(head)
    if m:
        kind = _BY_ROOT.get(m.group(1).rsplit(":", 1)[-1].lower())
        if kind:
            return kind
    if head.lstrip().startswith("{"):
        return "jsonfeed"
    if _HTML_HINT.search(head[:4096]):
        return "html"
    if ct in _BY_CONTENT_TYPE:
        return _BY_CONTENT_TYPE[ct]
    lines = [ln.strip() for ln in head.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if all(len(ln.split()) == 1 for ln in lines) and "<" not in head:
        return "list"
    raise FeedError(url, "cannot tell what kind of source this is", f"name its type: one of {', '.join(SOURCE_TYPES)}")


# -- one document -----------------------------------------------------------------------------------------------

def _is_http(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


def _iso(value) -> str | None:
    """ISO 8601 (UTC, "Z") from a feed's date: a time.struct_time in UTC or an RFC 3339 / W3C date string."""
    if value is None:
        return None
    if not isinstance(value, str):
        return datetime.fromtimestamp(calendar.timegm(value), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        return text
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."


class _Collector:
    """Resolves, filters and dedupes the image URLs found in one document."""

    def __init__(self, base_url: str, source: str):
        self.local = not _is_http(base_url)
        self.base = base_url if not self.local or base_url.startswith("file:") else _file_uri(base_url)
        self.source = source
        self.refs: list[ImageRef] = []
        self.errors: list[SourceError] = []
        self._seen: set[str] = set()

    def resolve(self, raw: str | None, base: str | None = None) -> str | None:
        """An absolute http(s) URL or (for a local source) a local path; None, with an error line, otherwise."""
        raw = (raw or "").strip()
        if not raw:
            return None
        try:
            url = urldefrag(urljoin(base or self.base, raw)).url
            scheme = urlsplit(url).scheme.lower()
        except ValueError:
            self.errors.append(SourceError(_shown(raw), f"skipped: not a valid URL (in {self.source})"))
            return None
        if scheme in ("http", "https"):
            return url
        if scheme == "file" and self.local:
            return url2pathname(urlsplit(url).path)
        why = ("a feed from the network may not point at local files" if scheme == "file"
               else f"{scheme or 'scheme-less'}: URLs are never read")
        self.errors.append(SourceError(_shown(raw), f"skipped: {why} (in {self.source})"))
        return None

    def page(self, raw: str | None) -> str | None:
        raw = (raw or "").strip()
        if not raw:
            return None
        try:
            url = urljoin(self.base, raw)
        except ValueError:
            return None
        if _is_http(url):
            return url
        return url2pathname(urlsplit(url).path) if self.local and url.startswith("file:") else None

    def add(self, raw: str | None, page_url: str | None = None, title: str | None = None,
            published: str | None = None, *, base: str | None = None) -> None:
        url = self.resolve(raw, base)
        if url is None or url in self._seen:
            return
        self._seen.add(url)
        if len(self.refs) == MAX_IMAGES_PER_SOURCE:
            self.errors.append(SourceError(self.source, f"more than {MAX_IMAGES_PER_SOURCE:,} images; the rest "
                                                        "are skipped"))
        if len(self.refs) >= MAX_IMAGES_PER_SOURCE:
            return
        self.refs.append(ImageRef(url, page_url, self.source, title or None, published))


def _file_uri(path: str) -> str:
    return Path(os.path.abspath(path)).as_uri()


def _srcset_largest(value: str) -> str | None:
    """The candidate URL with the largest width (w) or density (x) descriptor, per the HTML srcset grammar."""
    best, best_key, pos, n = None, None, 0, len(value)
    while pos < n:
        while pos < n and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        start = pos
        while pos < n and not value[pos].isspace():
            pos += 1
        url, descriptor = value[start:pos], ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start, depth = pos, 0
            while pos < n and not (value[pos] == "," and depth == 0):
                depth += {"(": 1, ")": -1}.get(value[pos], 0)
                pos += 1
            descriptor = value[start:pos].strip().lower()
        if not url:
            continue
        key = (0, 1.0)  # no descriptor means 1x
        for d in descriptor.split():
            try:
                if d.endswith("w"):
                    key = (1, float(d[:-1]))
                elif d.endswith("x"):
                    key = (0, float(d[:-1]))
            except ValueError:
                pass
        if best_key is None or key > best_key:
            best, best_key = url, key
    return best


_OG_IMAGE = {"og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"}


class _ImageFinder(HTMLParser):
    """Image URLs in HTML, in document order: <img> (srcset's largest, else src; lazy data- variants too),
    <picture><source srcset>, og:image / twitter:image <meta>, <link rel=image_src>; and the <base href>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag, attrs):
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and self.base is None and a.get("href"):
            self.base = a["href"]
        elif tag == "img":
            srcset = a.get("srcset") or a.get("data-srcset")
            url = (_srcset_largest(srcset) if srcset else None) or a.get("src") or a.get("data-src")
            if url:
                self.urls.append(url)
        elif tag == "source" and (a.get("srcset") or a.get("data-srcset")):
            url = _srcset_largest(a.get("srcset") or a.get("data-srcset"))
            if url:
                self.urls.append(url)
        elif tag == "meta" and (a.get("property") or a.get("name") or "").lower() in _OG_IMAGE:
            if a.get("content"):
                self.urls.append(a["content"])
        elif tag == "link" and "image_src" in a.get("rel", "").lower().split() and a.get("href"):
            self.urls.append(a["href"])

    handle_startendtag = handle_starttag


def _html_images(html: str) -> tuple[list[str], str | None]:
    finder = _ImageFinder()
    finder.feed(html)
    finder.close()
    return finder.urls, finder.base


def _checked_xml(body: bytes, source: str) -> Element:
    """The parsed XML, refusing entity declarations (billion laughs), external entities and malformed XML."""
    try:
        return defusedxml.ElementTree.fromstring(body, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.EntitiesForbidden:
        raise FeedError(source, "refused: the XML declares entities (a possible XML bomb)") from None
    except defusedxml.DefusedXmlException as e:
        raise FeedError(source, f"refused: the XML uses {type(e).__name__.removesuffix('Forbidden').lower()} "
                                "references") from None
    except ParseError as e:
        raise FeedError(source, f"malformed XML: {e}") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_feed(body: bytes, c: _Collector) -> None:
    _checked_xml(body, c.source)  # feedparser would accept what is not XML; we want a bomb or a typo refused
    # A file-like object, never bytes or str: feedparser would take a str for a URL or a file name and open it.
    d = feedparser.parse(io.BytesIO(body), resolve_relative_uris=False, sanitize_html=False)
    for e in d.entries:
        page = c.page(e.get("link"))
        title = e.get("title")
        published = _iso(e.get("published_parsed") or e.get("updated_parsed"))
        found: list[str] = []
        for enc in e.get("enclosures", []):
            if (enc.get("type") or "image/").lower().startswith("image/"):
                found.append(enc.get("href"))
        for m in e.get("media_content", []):
            medium, mtype = (m.get("medium") or "").lower(), (m.get("type") or "").lower()
            if medium == "image" or mtype.startswith("image/") or not (medium or mtype):
                found.append(m.get("url"))
        found += [t.get("url") for t in e.get("media_thumbnail", [])]
        for html in [x.get("value", "") for x in e.get("content", [])] + [e.get("summary", "")]:
            if html and "<" in html:
                urls, base = _html_images(html)
                found += [urljoin(base, u) if base else u for u in urls]
        for raw in found:
            c.add(raw, page, title, published)


def _parse_jsonfeed(body: bytes, c: _Collector) -> None:
    try:
        data = json.loads(_text(body))
    except (ValueError, RecursionError) as e:
        raise FeedError(c.source, f"malformed JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise FeedError(c.source, "not a JSON Feed (its \"version\" is not https://jsonfeed.org/version/...)")
    items = data.get("items")
    if not isinstance(items, list):
        raise FeedError(c.source, "not a JSON Feed (no \"items\" list)")
    for item in items:
        if not isinstance(item, dict):
            continue
        s = lambda k: item.get(k) if isinstance(item.get(k), str) else None  # noqa: E731 - a field, if text
        page, title, published = c.page(s("url") or s("external_url")), s("title"), _iso(s("date_published"))
        found = [s("image"), s("banner_image")]
        for att in item.get("attachments") or []:
            if isinstance(att, dict) and str(att.get("mime_type", "")).lower().startswith("image/"):
                found.append(att.get("url") if isinstance(att.get("url"), str) else None)
        if s("content_html"):
            urls, base = _html_images(s("content_html"))
            found += [urljoin(base, u) if base else u for u in urls]
        for raw in found:
            c.add(raw, page, title, published)


def _parse_html(body: bytes, c: _Collector) -> None:
    urls, base = _html_images(_text(body))
    # A <base href> applies as written: one naming a local folder makes every relative URL local, and so refused.
    base_url = urljoin(c.base, base.strip()) if base else None
    page = c.page(c.base)
    for raw in urls:
        c.add(raw, page, base=base_url)


def _parse_sitemap(body: bytes, c: _Collector) -> None:
    root = _checked_xml(body, c.source)
    if _local(root.tag) == "sitemapindex":
        return  # lists other sitemaps, no images; expand() follows them
    if _local(root.tag) != "urlset":
        raise FeedError(c.source, f"not a sitemap (its root element is <{_local(root.tag)}>)")
    for url in root:
        if _local(url.tag) != "url":
            continue
        fields = {_local(ch.tag): ch for ch in url}
        page = c.page((fields["loc"].text if "loc" in fields else None))
        published = _iso(fields["lastmod"].text) if "lastmod" in fields and fields["lastmod"].text else None
        for image in (ch for ch in url if _local(ch.tag) == "image"):
            parts = {_local(x.tag): (x.text or "").strip() for x in image}
            c.add(parts.get("loc"), page, parts.get("title") or parts.get("caption"), published)


def _parse_list(body: bytes, c: _Collector) -> None:
    for line in _text(body).splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if c.local and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", entry):
            # A path, relative to the list's own folder, taken as written (no %-decoding, spaces allowed).
            folder = os.path.dirname(url2pathname(urlsplit(c.base).path))
            c.add(Path(os.path.join(folder, entry)).as_uri() if not os.path.isabs(entry) else Path(entry).as_uri())
        else:
            c.add(entry)


_PARSERS = {"rss": _parse_feed, "atom": _parse_feed, "jsonfeed": _parse_jsonfeed, "html": _parse_html,
            "sitemap": _parse_sitemap, "list": _parse_list}


def _parse(body: bytes, base_url: str, type: str, source: str | None) -> tuple[list[ImageRef], list[SourceError]]:
    if type not in _PARSERS:
        raise ValueError(f"type must be one of {tuple(_PARSERS)}, not {type!r}")
    c = _Collector(base_url, source or base_url)
    _PARSERS[type](body, c)
    return c.refs, c.errors


def parse(body: bytes, base_url: str, type: str, *, source: str | None = None,
          errors: list[SourceError] | None = None) -> list[ImageRef]:
    """The images one document points at, in document order, each once (the first mention wins).

    `base_url` is where the document came from (an http(s) URL, or a local path for a local source); relative
    URLs resolve against it. For srcset the largest candidate is taken. URLs that may not be read from this
    source (file:// in a remote document, data:, javascript:, ...) are skipped and, if `errors` is a list, each
    is reported there. Raises FeedError if the document is malformed or refused (an XML bomb).
    """
    refs, errs = _parse(body, base_url, type, source)
    if errors is not None:
        errors.extend(errs)
    return refs


def _sitemap_children(body: bytes, base_url: str, source: str) -> tuple[list[str], list[SourceError]]:
    """The sitemaps a sitemap index lists (none for a sitemap that is not an index), and the skipped ones."""
    root = _checked_xml(body, source)
    if _local(root.tag) != "sitemapindex":
        return [], []
    c = _Collector(base_url, source)
    out = []
    for sm in root:
        url = c.resolve(next((ch.text for ch in sm if _local(ch.tag) == "loc"), None))
        if url and url not in out:
            out.append(url)
    return out, c.errors


# -- many sources -----------------------------------------------------------------------------------------------

def read_sources_file(path: str | Path) -> list[str]:
    """The sources listed in a --sources file: one a line; blank lines and lines starting with '#' are skipped.

    Relative paths in it are taken relative to the file's own folder, like entries of a list file.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read sources file {display(p)}: {getattr(e, 'strerror', None) or e}") from None
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", s) and not os.path.isabs(s):
            s = os.path.join(p.parent, s)
        out.append(s)
    return out


def expand(sources: list[str], fetcher: Fetcher, *, type: str | None = None
           ) -> tuple[list[ImageRef], list[SourceError]]:
    """Every image the `sources` point at, and one error line per source (or skipped URL) that failed.

    A source is a local folder (every file in it, as sources.collect_files), a local file (a list of URLs or
    paths, a feed, page or sitemap, or an image itself) or an http(s) URL (fetched; if it is an image it becomes
    one ImageRef). `type` forces one of SOURCE_TYPES for all of them; otherwise each is detected. Images are
    deduplicated within a source, not across sources.
    """
    if type is not None and type not in SOURCE_TYPES:
        raise UsageError(f"unknown source type {type!r}", f"use one of {', '.join(SOURCE_TYPES)}")
    refs: list[ImageRef] = []
    errors: list[SourceError] = []
    for src in sources:
        try:
            found, errs = _expand_one(src, fetcher, type)
        except FetchError as e:
            found, errs = [], [SourceError(src, e.reason if e.url == src else e.message)]
        except FeedError as e:
            found, errs = [], [SourceError(src, e.reason if e.source == src else e.message)]
        seen: set[str] = set()
        for r in found:
            if r.url not in seen:
                seen.add(r.url)
                refs.append(r)
        errors += errs
    return refs, errors


def _expand_one(src: str, fetcher: Fetcher, type: str | None) -> tuple[list[ImageRef], list[SourceError]]:
    scheme = urlsplit(src).scheme.lower() if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", src) else ""
    if scheme in ("http", "https"):
        return _expand_remote(src, fetcher, type)
    if scheme == "file":
        return _expand_local(src, url2pathname(urlsplit(src).path), fetcher, type)
    if scheme and len(scheme) > 1:  # "C:" is a drive, not a scheme
        return [], [SourceError(src, f"cannot scan {scheme}: sources (only http(s) URLs, files and folders)")]
    return _expand_local(src, src, fetcher, type)


def _expand_remote(src: str, fetcher: Fetcher, type: str | None) -> tuple[list[ImageRef], list[SourceError]]:
    if type == "image":
        return [ImageRef(src, None, src)], []
    if type == "folder":
        return [], [SourceError(src, "a URL is not a folder (drop --type folder)")]
    r = fetcher.get(src, kind="any" if type is None else "page")
    t = type or detect_type(r.body, r.content_type, r.url)
    if t == "image":
        return [ImageRef(src, None, src, response=r)], []
    return _parse_document(r.body, r.url, t, src, fetcher)


def _expand_local(src: str, path: str, fetcher: Fetcher, type: str | None
                  ) -> tuple[list[ImageRef], list[SourceError]]:
    p = Path(path)
    if p.is_dir():
        if type not in (None, "folder"):
            return [], [SourceError(display(p), f"is a folder, not a {type} source")]
        files, errs = collect_files([p])
        return [ImageRef(os.fsdecode(f), None, src) for f in files], errs
    if type == "folder":
        return [], [SourceError(display(p), "not a folder")]
    if not p.exists():
        return [], [SourceError(display(p), "no such file or folder")]
    if not p.is_file():
        return [], [SourceError(display(p), "not a regular file or folder")]
    try:
        with p.open("rb") as f:
            head = f.read(16)
            if type == "image" or (type is None and is_image_bytes(head)):
                return [ImageRef(os.fsdecode(p), None, src)], []
            cap = fetcher.policy.max_page_bytes
            body = head + f.read(cap + 1 - len(head))
    except OSError as e:
        return [], [SourceError(display(p), f"cannot read: {e.strerror or e}")]
    if len(body) > cap:
        return [], [SourceError(display(p), f"over the {cap:,}-byte page limit")]
    t = type or detect_type(body, None, display(p))
    if t == "image":
        return [ImageRef(os.fsdecode(p), None, src)], []
    return _parse_document(body, os.fsdecode(p), t, src, fetcher)


def _parse_document(body: bytes, base_url: str, t: str, src: str, fetcher: Fetcher
                    ) -> tuple[list[ImageRef], list[SourceError]]:
    refs, errors = _parse(body, base_url, t, src)
    if t != "sitemap":
        return refs, errors
    children, skipped = _sitemap_children(body, base_url, src)
    errors += skipped
    if len(children) > MAX_CHILD_SITEMAPS:
        errors.append(SourceError(src, f"the sitemap index lists {len(children)} sitemaps; only the first "
                                       f"{MAX_CHILD_SITEMAPS} are read"))
    for child in children[:MAX_CHILD_SITEMAPS]:
        try:
            if _is_http(child):
                r = fetcher.get(child, kind="page")
                child_body, child_base = r.body, r.url
            else:
                with open(child, "rb") as f:
                    child_body, child_base = f.read(fetcher.policy.max_page_bytes + 1), child
                if len(child_body) > fetcher.policy.max_page_bytes:
                    raise FeedError(child, f"over the {fetcher.policy.max_page_bytes:,}-byte page limit")
            if _sitemap_children(child_body, child_base, child)[0]:
                errors.append(SourceError(child, "a sitemap index inside a sitemap index is not followed"))
                continue
            found, errs = _parse(child_body, child_base, "sitemap", src)
        except (FetchError, FeedError) as e:
            errors.append(SourceError(child, e.reason))
            continue
        except OSError as e:
            errors.append(SourceError(display(child), f"cannot read: {e.strerror or e}"))
            continue
        refs += found
        errors += errs
    return refs, errors
