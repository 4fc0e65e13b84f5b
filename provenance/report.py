"""The scan report: one self-contained HTML page showing, for each recorded match, the work beside the found copy.

`render_report(ledger, run_id=...)` reads the scan record (scanlog) and returns the page: images as data: URIs
(the work's preview, see previews; the found copy re-encoded small from the bytes the scan kept), inline CSS and a
few lines of inline JavaScript to sort and filter the cards by work and by source and to show or hide the
allowed uses. No external resource is loaded: it works offline and from a mail attachment.

Everything on the page that a feed, a page or a registrant wrote (titles, URLs, headers, notes) is escaped, and
only http(s) URLs become links: a hostile feed controls those strings.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ImageError, UsageError
from .imaging import decode
from .ledger import Ledger, Work
from .matching import Match, explain
from .previews import PREVIEW_SIDE, picture
from .scanlog import AllowRule, MatchRecord, ScanLog


@dataclass(frozen=True)
class ReportSummary:
    """What a written report shows: its file, the run (None: every run), and how many matches it holds."""

    path: Path
    run_id: int | None
    matches: int
    allowed: int
    works: int


# -- words for a match (shared with the evidence packet) ---------------------------------------------------------
def explain_record(m: MatchRecord) -> str:
    """matching.explain for a recorded match: one sentence saying why the copy matched."""
    return explain(Match(m.work_id, m.signal, m.distance, m.transform, m.score, m.sha256_exact, m.confidence,
                         m.geometry))


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def geometry_words(geometry: dict | None) -> str:
    """Where the work sits in the copy, in words: crop box, placement, rotation, scale, mirror ("" if unknown)."""
    if not geometry:
        return ""
    parts = []
    if geometry.get("flip"):
        parts.append("mirrored left-right")
    angle = geometry.get("angle")
    if angle is not None and abs(angle) >= 0.5:
        parts.append(f"rotated {abs(angle):.0f}° {'clockwise' if angle > 0 else 'counter-clockwise'}")
    crop = geometry.get("crop")
    if crop and (crop[2] - crop[0]) * (crop[3] - crop[1]) < 0.995:
        x0, y0, x1, y1 = crop
        parts.append(f"shows {_pct(x1 - x0)} × {_pct(y1 - y0)} of the work (from {_pct(x0)}–{_pct(x1)} across,"
                     f" {_pct(y0)}–{_pct(y1)} down)")
    placed = geometry.get("placed")
    if placed and (placed[2] - placed[0]) * (placed[3] - placed[1]) < 0.995:
        x0, y0, x1, y1 = placed
        parts.append(f"the work fills {_pct((x1 - x0) * (y1 - y0))} of the copy ({_pct(x0)}–{_pct(x1)} across,"
                     f" {_pct(y0)}–{_pct(y1)} down)")
    scale = geometry.get("scale")
    if scale is not None and abs(scale - 1) >= 0.05:
        parts.append(f"scaled {scale:.2f}×")
    if geometry.get("coverage") is not None and "crop" not in geometry:
        parts.append(f"{_pct(geometry['coverage'])} of the work present")
    for edge, fraction in geometry.get("bands") or ():
        parts.append(f"a flat band over the {edge} {_pct(fraction)} of the copy (a caption bar?) was not compared")
    return "; ".join(parts) or "the whole work, upright, same proportions"


def is_web_url(url: str | None) -> bool:
    """An http(s) URL with a host: the only kind the report turns into a link."""
    if not url:
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


# -- selecting ---------------------------------------------------------------------------------------------------
def recorded_matches(ledger: Ledger, *, run_id: int | None = None, work_id: int | None = None) -> list[MatchRecord]:
    """The recorded matches (every run, or one), oldest first, allowed ones included."""
    if work_id is not None:
        ledger.work(work_id)  # a UsageError naming an unknown work
    log = ScanLog(ledger)
    try:
        if run_id is not None and log.run(run_id) is None:
            raise UsageError(f"no scan run {run_id}", hint="scan runs are numbered from 1; see: provenance matches")
        return log.matches(run_id=run_id, work_id=work_id)
    finally:
        log.close()


def _selection(log: ScanLog, run_id: int | None, all_runs: bool,
               matches: list[MatchRecord] | None) -> tuple[list[MatchRecord], dict | None]:
    if matches is not None:
        return list(matches), None
    if all_runs:
        return log.matches(), None
    if run_id is None:
        run_id = log.last_run()
        if run_id is None:
            raise UsageError("no scan is recorded in this ledger yet", hint="run: provenance scan DIR")
    run = log.run(run_id)
    if run is None:
        raise UsageError(f"no scan run {run_id}", hint=f"the last run is {log.last_run()}; or give --all")
    return log.matches(run_id=run_id), run


# -- rendering ---------------------------------------------------------------------------------------------------
def _e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _found_jpeg(data: bytes | None) -> bytes | None:
    """The found copy, small, re-encoded: the page stays light and shows only what Pillow could decode."""
    if not data:
        return None
    try:
        im = decode(data, work_side=PREVIEW_SIDE).image
    except ImageError:
        return None
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=80)
    return out.getvalue()


def _time(iso: str | None) -> str:
    """'2026-12-01T18:45:17Z' -> '2026-12-01 18:45:17 UTC' (anything else as it is)."""
    if iso and len(iso) == 20 and iso[10] == "T" and iso.endswith("Z"):
        return f"{iso[:10]} {iso[11:19]} UTC"
    return iso or ""


def _link(url: str | None) -> str:
    if not url:
        return '<span class="none">—</span>'
    if is_web_url(url):
        return f'<a href="{_e(url.strip())}" rel="noopener noreferrer nofollow" target="_blank">{_e(url)}</a>'
    return f'<span class="url">{_e(url)}</span>'


def _figure(uri: str | None, caption: str, missing: str, css: str = "") -> str:
    img = (f'<img src="{uri}" alt="{_e(caption)}" loading="lazy">' if uri
           else f'<div class="placeholder">{_e(missing)}</div>')
    return f'<figure class="{css}">{img}<figcaption>{_e(caption)}</figcaption></figure>'


def _card(m: MatchRecord, work: Work | None, work_uri: tuple[str, str] | None, found_uri: str | None,
          rule: AllowRule | None, post: tuple[str | None, str | None]) -> str:
    title = work.title if work else f"(unknown work {m.work_id})"
    allowed = m.allowed_by is not None
    geometry = geometry_words(m.geometry)
    rows = [
        ("Why", _e(explain_record(m))),
        ("Transform", _e(m.transform)),
        ("Geometry", _e(geometry) if geometry else '<span class="none">—</span>'),
        ("Signal", f"<code>{_e(m.signal)}</code>" + (f" · distance {m.distance}" if m.distance is not None else "")
         + f" · score {m.score:.2f} ({_e(m.confidence)})"),
        ("Image", _link(m.url or m.item)),
        ("Page", _link(m.page_url)),
        ("Source", _link(m.source)),
        ("Found", _e(_time(m.found_at)) + (f" · fetched {_e(_time(m.fetched_at))}" if m.fetched_at else "")
         + (f" · HTTP {_e(m.http_status)}" if m.http_status else "")),
    ]
    if post[0] or post[1]:
        rows.append(("Post", _e(" · ".join(p for p in post if p))))
    if allowed:
        what = (f"rule #{rule.id} <code>{_e(rule.pattern)}</code>" + (f" — {_e(rule.note)}" if rule.note else "")
                if rule else f"rule #{_e(m.allowed_by)} (since removed)")
        rows.append(("Allowed by", what))
    else:
        rows.append(("Evidence", f"<code>provenance evidence {m.id} -o evidence-{m.id}</code>"))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    work_label = "registered work" if not work_uri or work_uri[1] == "preview" else "registered work (grey sketch)"
    badge = ('<span class="badge allowed">allowed</span>' if allowed
             else f'<span class="badge {_e(m.confidence)}">{_e(m.confidence)}</span>')
    attrs = (f'data-work="{m.work_id}" data-title="{_e(title.lower())}" data-source="{_e(m.source or "")}"'
             f' data-found="{_e(m.found_at)}" data-score="{m.score:.3f}"'
             f' data-allowed="{int(allowed)}" data-id="{m.id}"')
    return f"""<article class="card{' is-allowed' if allowed else ''}" {attrs}>
<header><h2><span class="wid">#{m.work_id}</span> {_e(title)}</h2>{badge}<span class="mid">match {m.id}</span></header>
<div class="body">
<div class="pair">{_figure(work_uri[0] if work_uri else None, work_label, "no preview stored for this work")}
{_figure(found_uri, "found copy", "the copy's bytes were not kept", "found")}</div>
<table class="kv">{table}</table>
</div>
</article>"""


def render_report(ledger: Ledger, *, run_id: int | None = None, all_runs: bool = False,
                  matches: list[MatchRecord] | None = None) -> str:
    """The report page of one scan run (`run_id`; None: the latest), of every run (`all_runs`), or of exactly
    `matches`. Allowed matches are included, marked, and hidden until the reader ticks "show allowed"."""
    log = ScanLog(ledger)
    try:
        records, run = _selection(log, run_id, all_runs, matches)
        rules = {r.id: r for r in log.allow_rules()}
        works = {w.id: w for w in ledger.works()}
        pictures, found, cards = {}, {}, []
        for m in records:
            if m.work_id not in pictures:
                p = picture(ledger, m.work_id)
                pictures[m.work_id] = (_data_uri(p.mime, p.data), p.kind) if p else None
            if m.sha256 not in found:
                jpeg = _found_jpeg(log.found_bytes(m.sha256))
                found[m.sha256] = _data_uri("image/jpeg", jpeg) if jpeg else None
            cards.append(_card(m, works.get(m.work_id), pictures[m.work_id], found[m.sha256],
                               rules.get(m.allowed_by) if m.allowed_by is not None else None, log.post(m.item_id)))
    finally:
        log.close()
    n_allowed = sum(m.allowed_by is not None for m in records)
    if run:
        heading = f"Scan run {run['id']}"
        counts = run["counts"] or {}
        scanned = sum(counts.values()) if counts else None
        finished = (f", finished {_time(run['finished_at'])}" if run["finished_at"]
                    else " (still running or interrupted)")
        sub = (f"started {_time(run['started_at'])}" + finished
               + (f" · {scanned} items scanned" if scanned is not None else "")
               + " · sources: " + ", ".join(run["sources"]))
    else:
        heading, sub = "All recorded matches", f"from {_n(len({m.run_id for m in records}), 'scan run', 'scan runs')}"
    work_ids = sorted({m.work_id for m in records})
    work_opts = "".join(f'<option value="{w}">#{w} {_e(works[w].title if w in works else "?")}</option>'
                        for w in work_ids)
    source_opts = "".join(f'<option value="{_e(s)}">{_e(s)}</option>'
                          for s in sorted({m.source or "" for m in records}) if s)
    copies = [m for m in records if m.allowed_by is None]
    summary = (f"{_n(len(copies), 'copy', 'copies')} of {_n(len({m.work_id for m in copies}), 'work', 'works')}"
               f" · {_n(n_allowed, 'allowed use', 'allowed uses')}")
    empty = "" if records else '<p class="empty">No copies were found.</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>provenance report: {_e(heading)}</title>
<style>
* {{ box-sizing: border-box; }}
body {{ font: 14.5px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; background: #f4f3ef;
       margin: 0; padding: 24px 16px 48px; }}
main {{ max-width: 1180px; margin: 0 auto; }}
h1 {{ font-size: 26px; margin: 0 0 2px; }}
.sub {{ color: #666; margin: 0 0 4px; overflow-wrap: anywhere; }}
.summary {{ font-size: 16px; margin: 6px 0 16px; }}
.toolbar {{ position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; gap: 10px 18px; align-items: center;
           background: #fff; border: 1px solid #d8d5cc; border-radius: 8px; padding: 10px 14px; margin-bottom: 16px; }}
.toolbar label {{ color: #555; font-size: 13px; display: flex; gap: 6px; align-items: center; }}
.toolbar select {{ font: inherit; padding: 3px 6px; max-width: 260px; }}
.toolbar .count {{ margin-left: auto; color: #666; font-size: 13px; }}
.card {{ background: #fff; border: 1px solid #d8d5cc; border-radius: 8px; margin: 0 0 14px; overflow: hidden; }}
.card.is-allowed {{ border-left: 6px solid #4a9b63; background: #fbfdfb; }}
.card header {{ display: flex; align-items: center; gap: 10px; padding: 10px 16px; border-bottom: 1px solid #eee; }}
.card h2 {{ font-size: 17px; margin: 0; overflow-wrap: anywhere; flex: 1; }}
.wid {{ color: #888; font-weight: 500; }}
.mid {{ color: #888; font-size: 12.5px; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }}
.badge {{ font-size: 12px; border-radius: 10px; padding: 1px 9px; border: 1px solid; }}
.badge.exact, .badge.high {{ color: #8a1c13; border-color: #e3a49c; background: #fdecea; }}
.badge.medium {{ color: #7a5200; border-color: #e2c06d; background: #fff6e0; }}
.badge.allowed {{ color: #1e6b34; border-color: #8cc79b; background: #e6f4ea; }}
.body {{ display: flex; flex-wrap: wrap; gap: 16px; padding: 14px 16px; }}
.pair {{ display: flex; gap: 10px; flex: none; }}
figure {{ margin: 0; width: 220px; }}
figure img, .placeholder {{ width: 220px; height: 220px; object-fit: contain; background: #f1f0ec;
                            border: 1px solid #e2e0d9; border-radius: 4px; display: block; }}
figure.found img {{ background: #f6efee; }}
.placeholder {{ display: flex; align-items: center; justify-content: center; text-align: center; padding: 12px;
               color: #777; font-size: 13px;
               background: repeating-linear-gradient(45deg, #f2f2f2 0 10px, #e9e9e9 10px 20px); }}
figcaption {{ font-size: 12px; color: #666; text-align: center; margin-top: 4px; }}
table.kv {{ border-collapse: collapse; flex: 1 1 420px; min-width: 0; align-self: flex-start; }}
.kv th, .kv td {{ text-align: left; vertical-align: top; padding: 3px 8px; border-bottom: 1px solid #f0efea; }}
.kv th {{ width: 96px; white-space: nowrap; color: #666; font-weight: 600; font-size: 13px; }}
.kv td {{ overflow-wrap: anywhere; }}
a {{ color: #1f5fa8; }}
code, .url {{ font: 12.5px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }}
.none {{ color: #aaa; }}
.empty {{ background: #fff; border: 1px solid #d8d5cc; border-radius: 8px; padding: 24px; text-align: center; }}
footer {{ color: #777; font-size: 12.5px; margin-top: 24px; }}
@media print {{ .toolbar {{ display: none; }} body {{ background: #fff; }} .card {{ break-inside: avoid; }} }}
</style>
</head>
<body>
<main>
<h1>Copies found · {_e(heading)}</h1>
<p class="sub">{_e(sub)}</p>
<p class="summary">{_e(summary)}</p>
<div class="toolbar" id="toolbar">
<label>Work <select id="f-work"><option value="">all works</option>{work_opts}</select></label>
<label>Source <select id="f-source"><option value="">all sources</option>{source_opts}</select></label>
<label>Sort <select id="f-sort"><option value="found">newest found</option><option value="score">best score</option>
<option value="work">work</option><option value="source">source</option><option value="id">match id</option>
</select></label>
<label><input type="checkbox" id="f-allowed"> show allowed ({n_allowed})</label>
<span class="count" id="count">{len(records)} matches</span>
</div>
<div id="cards">
{empty}{"".join(cards)}
</div>
<footer>Made by provenance from the scan record in {_e(ledger.name)}. Pictures are small copies for looking;
the evidence is the packet written by <code>provenance evidence MATCH_ID -o DIR</code> (the found bytes, their
SHA-256, the work's certificate and a timestamp in the ledger).</footer>
</main>
<script>
(function () {{
  var list = document.getElementById("cards");
  var cards = Array.prototype.slice.call(list.querySelectorAll(".card"));
  var work = document.getElementById("f-work"), source = document.getElementById("f-source");
  var sort = document.getElementById("f-sort"), allowed = document.getElementById("f-allowed");
  var count = document.getElementById("count");
  function cmp(a, b) {{
    var x = a.dataset, y = b.dataset, k = sort.value;
    if (x.allowed !== y.allowed) return x.allowed < y.allowed ? -1 : 1;  // allowed uses after the copies
    if (k === "score" && x.score !== y.score) return parseFloat(y.score) - parseFloat(x.score);
    if (k === "work" && x.work !== y.work) return parseInt(x.work, 10) - parseInt(y.work, 10);
    if (k === "source" && x.source !== y.source) return x.source < y.source ? -1 : 1;
    if (k === "found" && x.found !== y.found) return x.found < y.found ? 1 : -1;
    var byId = parseInt(x.id, 10) - parseInt(y.id, 10);
    return k === "found" ? -byId : byId;
  }}
  function apply() {{
    var shown = 0;
    cards.slice().sort(cmp).forEach(function (c) {{
      var d = c.dataset;
      var ok = (!work.value || d.work === work.value) && (!source.value || d.source === source.value)
        && (allowed.checked || d.allowed === "0");
      c.hidden = !ok;
      if (ok) shown++;
      list.appendChild(c);
    }});
    count.textContent = shown + " of " + cards.length + " shown";
  }}
  if (location.hash === "#allowed") allowed.checked = true;
  [work, source, sort, allowed].forEach(function (el) {{ el.addEventListener("change", apply); }});
  apply();
}})();
</script>
</body>
</html>
"""


def write_report(ledger: Ledger, path: str | Path, run_id: int | None = None, *, all_runs: bool = False,
                 matches: list[MatchRecord] | None = None) -> ReportSummary:
    """render_report, written to `path` (UTF-8). `scan --report FILE` calls this with the run it just did."""
    path = Path(path)
    log = ScanLog(ledger)
    try:
        records, run = _selection(log, run_id, all_runs, matches)
    finally:
        log.close()
    page = render_report(ledger, matches=records) if run is None else render_report(ledger, run_id=run["id"])
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write the report to {path}: {e.strerror or e}") from None
    return ReportSummary(path, run["id"] if run else None, len(records),
                         sum(m.allowed_by is not None for m in records), len({m.work_id for m in records}))
