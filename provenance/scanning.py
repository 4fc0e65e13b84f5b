"""Scan sources for copies of registered works: folders and files, URL lists, feeds and web pages.

Flow: sources -> image references (feeds.expand: folders, lists, RSS/Atom/JSON Feed, HTML, sitemaps) -> skip what
an earlier scan already checked (remote URLs; `full` rescans) -> fetch (threads, guarded: fetch.Fetcher) ->
decode + fingerprint + match (processes, both cores) -> allow-list -> scan record (scanlog), one item at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterator

from ._parallel import imap
from .errors import ImageError
from . import localindex
from .fingerprints import fingerprint_decoded
from .imaging import decode, read_bytes
from .index import Index, open_index
from .ledger import Ledger
from .matching import Match, find_matches
from .registration import Batch
from .scanlog import ScanLog, allowed_by
from .sources import collect_files, display

#: What became of one item. `skipped`: a remote URL an earlier scan already checked (not fetched again), or an item
#: an earlier attempt of the same queued job checked (`skip`).
STATUSES = ("matched", "allowed", "clean", "failed", "skipped")


@dataclass(frozen=True)
class ScanResult:
    """One scanned item: its matches (possibly none), or the error that kept it from being checked."""

    item: str  # the file path or the image URL, as shown to the user
    sha256: str | None = None
    matches: list[Match] = field(default_factory=list)
    error: str | None = None
    status: str = "clean"
    source: str | None = None  # the source the user named (folder, feed URL, page URL, list file)
    url: str | None = None  # the image URL, for remote items
    page_url: str | None = None  # the page or feed entry the image was on
    fetched_at: str | None = None
    match_ids: list[int] = field(default_factory=list)  # ids in the scan record, in the order of `matches`
    allowed: dict[int, int] = field(default_factory=dict)  # work id -> the allow rule that covers it


@dataclass(frozen=True)
class _Job:
    """One image to check: a local path (read in the worker) or fetched bytes."""

    item: str
    path: Path | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class _Checked:
    item: str
    sha256: str | None = None
    matches: list[Match] = field(default_factory=list)
    error: str | None = None


_index: Index | None = None  # per worker process, set by _init (workers are forked: the mapped files are shared)


def _init(index: Index) -> None:
    global _index
    _index = index


def _check(job: _Job) -> _Checked:
    try:
        data = job.data if job.data is not None else read_bytes(job.path)
        decoded = decode(data)
        fps = fingerprint_decoded(data, decoded, variants=True, local_features=False)
        return _Checked(job.item, fps.sha256, find_matches(fps, _index, decoded.image))
    except ImageError as e:
        return _Checked(job.item, error=e.message)
    except Exception as e:  # never let one file end the batch
        return _Checked(job.item, error=f"unexpected error: {type(e).__name__}: {e}")


def _is_remote(source: str) -> bool:
    return source.split(":", 1)[0].lower() in ("http", "https")


LISTING_TYPES = ("list", "rss", "atom", "jsonfeed", "html", "sitemap")


def _split(sources: list[str | Path], type: str | None) -> tuple[list, list, list]:
    """Folders and image files (read straight from disk), local listings (URL lists, feeds, pages), and URLs."""
    folders, listed, remote = [], [], []
    for s in sources:
        if isinstance(s, str) and _is_remote(s):
            remote.append(s)
        elif Path(s).is_file() and (type in LISTING_TYPES or (type is None and _is_listing(Path(s)))):
            listed.append(str(s))
        else:
            folders.append(s)  # a folder, an image, or something collect_files/decode reports clearly
    return folders, listed, remote


def _is_listing(path: Path) -> bool:
    """Text that is markup, JSON or lines of URLs/paths: a listing. Anything else is taken for an image, so a
    broken image is reported as one, never read as an empty list."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        text = head.decode("utf-8-sig").lstrip()
    except (OSError, UnicodeDecodeError):
        return False
    if not text:
        return False
    if text[0] in "<{[":
        return True
    first = text.splitlines()[0].strip()
    return first.startswith("#") or "://" in first or first.startswith(("/", "./", "../"))


def scan(ledger: Ledger, sources: list[str | Path], *, workers: int | None = None, type: str | None = None,
         full: bool = False, policy=None, record: bool = True, skip: Collection[str] = ()) -> Batch:
    """Check every image the `sources` hold against every registered work. Local items come in input order,
    then remote ones as their downloads complete.

    Sources: folders and image files (as before), and lists of image URLs, RSS/Atom/JSON feeds, HTML pages and
    sitemaps, local or over HTTP(S) (`type` forces one kind). Remote images an earlier scan checked are skipped
    unless `full`. `policy` (fetch.FetchPolicy) sets timeouts, byte caps, politeness and `allow_private`.
    Every item is written to the scan record (unless `record` is false) as soon as it is checked. Items named in
    `skip` (as the scan record names them: the path or URL) are not checked: a queued job taken over after its worker
    died passes what the dead worker recorded (`queue.work`).
    """
    folders, listed, remote = _split(sources, type)
    files: list[tuple[Path, str]] = []  # (file, the source it came from)
    source_errors = []
    for s in folders:
        found, errors = collect_files([s])
        files += [(p, display(s)) for p in found]
        source_errors += errors
    index = open_index(ledger)
    localindex.attach(index, ledger)  # exact in memory, or the bounded index on disk (PROVENANCE_LOCAL_INDEX)
    log = ScanLog(ledger) if record else None
    rules = log.allow_rules() if log else []
    refs, fetcher = [], None
    if listed or remote:
        from . import feeds
        from .fetch import FetchPolicy, Fetcher

        fetcher = Fetcher(policy or FetchPolicy())
        found, errors = feeds.expand(listed + remote, fetcher, type=type)
        source_errors += errors
        unique = {}
        for r in found:  # one check per image, even when several sources point at it
            unique.setdefault(r.url, r)
        refs = list(unique.values())
    skipped, todo = [], []
    for ref in refs:
        seen = ref.url in skip or (log and not full and _is_remote(ref.url) and log.seen(ref.url))
        (skipped if seen else todo).append(ref)
    done_files, pending = [], []
    for p, source in files:
        (done_files if display(p) in skip else pending).append((p, source))
    files = pending
    run_id = log.start_run([display(s) for s in sources], full) if log else None
    check = dict(workers=workers, initializer=_init, initargs=(index,))

    def finish(result: ScanResult, data: bytes | None = None, *, http_status=None, headers=None, etag=None,
               last_modified=None, title=None, published=None) -> ScanResult:
        """Apply the allow-list, record the item, and give the result its status and match ids."""
        allowed = {}
        for m in result.matches:
            rule = allowed_by(rules, m.work_id, (result.url, result.page_url, result.source, result.item))
            if rule is not None:
                allowed[m.work_id] = rule
        status = result.status
        if result.error:
            status = "failed"
        elif result.matches:
            status = "allowed" if len(allowed) == len(result.matches) else "matched"
        ids = []
        if log and status != "skipped":
            ids = log.record(run_id, source=result.source, item=result.item, url=result.url,
                             page_url=result.page_url, title=title, published=published, status=status,
                             error=result.error, sha256=result.sha256, http_status=http_status, headers=headers,
                             fetched_at=result.fetched_at, matches=result.matches, allowed=allowed, data=data,
                             etag=etag, last_modified=last_modified)
        return ScanResult(result.item, result.sha256, result.matches, result.error, status, result.source,
                          result.url, result.page_url, result.fetched_at, ids, allowed)

    def matched_bytes(c: _Checked, path: Path) -> bytes | None:
        """The bytes of a matched local copy, for the scan record (evidence outlives the file)."""
        if not (c.matches and log):
            return None
        try:
            return read_bytes(path)
        except ImageError:
            return None

    def local_results() -> Iterator[ScanResult]:
        for path, source in done_files:
            yield ScanResult(display(path), status="skipped", source=source)
        for c, (path, source) in zip(imap(_check, [_Job(display(p), path=p) for p, _ in files], **check), files):
            yield finish(ScanResult(c.item, c.sha256, c.matches, c.error, source=source), matched_bytes(c, path))
        listed_files = [r for r in todo if not _is_remote(r.url)]
        for c, ref in zip(imap(_check, [_Job(r.url, path=Path(r.url)) for r in listed_files], **check),
                          listed_files):
            yield finish(ScanResult(c.item, c.sha256, c.matches, c.error, source=ref.source, page_url=ref.page_url),
                         matched_bytes(c, Path(ref.url)), title=ref.title, published=ref.published)

    def remote_results() -> Iterator[ScanResult]:
        for ref in skipped:
            yield ScanResult(ref.url, status="skipped", source=ref.source, url=ref.url, page_url=ref.page_url)
        wanted = [r for r in todo if _is_remote(r.url)]
        by_url = {r.url: r for r in wanted}
        if not wanted:
            return
        fetched: dict[str, object] = {}

        def responses():
            yield from ((r.url, r.response) for r in wanted if r.response is not None)  # a source that was an image
            yield from fetcher.map([r.url for r in wanted if r.response is None], kind="image")

        def jobs() -> Iterator[_Job]:
            for url, response in responses():
                fetched[url] = response
                # A failed fetch still goes through the pool (as an empty job) to keep results in one stream.
                yield _Job(url, data=b"" if isinstance(response, Exception) else response.body)

        for c in imap(_check, jobs(), count=len(wanted), **check):
            ref, response = by_url[c.item], fetched.pop(c.item)
            common = dict(source=ref.source, url=ref.url, page_url=ref.page_url)
            if isinstance(response, Exception):
                yield finish(ScanResult(ref.url, error=response.reason, **common),
                             title=ref.title, published=ref.published)
                continue
            yield finish(ScanResult(ref.url, c.sha256, c.matches, c.error, fetched_at=response.fetched_at, **common),
                         response.body, http_status=response.status, headers=response.headers,
                         etag=response.etag, last_modified=response.last_modified,
                         title=ref.title, published=ref.published)

    def run() -> Iterator[ScanResult]:
        counts = {s: 0 for s in STATUSES}
        try:
            for e in source_errors:
                counts["failed"] += 1
                yield finish(ScanResult(e.item, error=e.error, source=e.item))
            for r in local_results():
                counts[r.status] += 1
                yield r
            for r in remote_results():
                counts[r.status] += 1
                yield r
        finally:
            if log:
                log.finish_run(run_id, counts)
                log.close()
            if fetcher:
                fetcher.close()

    return Batch(len(files) + len(done_files) + len(source_errors) + len(refs), run(), run_id)
