"""The `provenance` command: parse, call one library function, format the result. No logic lives here."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict

import click
from tqdm import tqdm

import provenance
from provenance import (anchoring, certificate_html, certificates, chain as chain_mod, config,
                        evidence as evidence_mod, keys, nft, report as report_mod, selftest as selftest_mod)
from provenance.errors import KeystoreError, ProvenanceError, UsageError
from provenance.imaging import read_bytes
from provenance.ledger import Ledger
from provenance.matching import explain

PASSPHRASE_ENV = "PROVENANCE_PASSPHRASE"


class ProvenanceGroup(click.Group):
    """Turns every ProvenanceError into its diagnostics and exit code, in this one place."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ProvenanceError as e:
            click.echo(f"error: {e.diagnostics()}", err=True)
            ctx.exit(e.exit_code)


def _target(ctx: click.Context):
    return config.ledger_target(ctx.obj["db"], ctx.obj["ledger"])


def _ledger(ctx: click.Context) -> Ledger:
    return Ledger.open(_target(ctx))


def _passphrase(confirm: bool = False) -> str:
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise KeystoreError("a passphrase is needed to use the key", hint=f"set {PASSPHRASE_ENV} or run in a terminal")
    return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)


def _progress(batch, label: str):
    """A progress bar on stderr when it is a terminal; plain results otherwise."""
    return tqdm(batch.results, total=batch.total, desc=label, unit="img", leave=False,
                disable=not sys.stderr.isatty(), file=sys.stderr)


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


@click.group(cls=ProvenanceGroup)
@click.version_option(provenance.__version__, prog_name="provenance")
@click.option("--ledger", type=click.Path(dir_okay=False),
              help="Ledger file (default: $PROVENANCE_LEDGER, else $PROVENANCE_HOME or the XDG data dir, /ledger.db).")
@click.option("--db", metavar="URL",
              help="The ledger's database: postgresql://user@host/db[?schema=NAME] for a shared registry, or a"
                   " file (default: $PROVENANCE_DB, else the --ledger file).")
@click.pass_context
def cli(ctx, ledger, db):
    """Register artworks, find their reposted copies, prove who made them first."""
    ctx.obj = {"ledger": ledger, "db": db}


@cli.command()
@click.option("--chain-id", type=int, default=31337, show_default=True,
              help="Chain id that registration signatures are bound to.")
@click.pass_context
def init(ctx, chain_id):
    """Create a new, empty ledger."""
    ledger = Ledger.create(_target(ctx), chain_id=chain_id)
    click.echo(f"created ledger {ledger.location} (id {ledger.ledger_id}, chain id {ledger.chain_id})")


# -- keys ------------------------------------------------------------------------------------------------------
@cli.group()
def key():
    """Manage signing keys (encrypted keystore files)."""


@key.command("new")
@click.option("--name", required=True, help="Your name as the artist; also names the key.")
def key_new(name):
    """Create a new Ethereum key, stored encrypted with a passphrase."""
    info = keys.new_key(config.keys_dir(), name, _passphrase(confirm=True))
    click.echo(f"created key {info.name!r}  address {info.address}\n  stored encrypted in {info.path}")


@key.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
def key_list(as_json):
    """List signing keys."""
    for k in keys.list_keys(config.keys_dir()):
        if as_json:
            _emit_json({"name": k.name, "address": k.address, "path": str(k.path)})
        else:
            click.echo(f"{k.name:20}  {k.address}  {k.path}")


KEYSTORE_PASSPHRASE_ENV = "PROVENANCE_KEYSTORE_PASSPHRASE"


def _secret(prompt: str) -> str:
    """A secret from a hidden prompt on a terminal, else the first line of stdin: never from argv."""
    if sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True)
    return sys.stdin.readline().strip()


@key.command("import")
@click.option("--name", required=True, help="Your name as the artist; also names the key.")
@click.option("--keystore", "keystore_file", type=click.Path(exists=True, dir_okay=False),
              help="Import this keystore v3 file (its passphrase: a prompt or $PROVENANCE_KEYSTORE_PASSPHRASE).")
def key_import(name, keystore_file):
    """Import an existing key: its private key (hex) from stdin or a hidden prompt, or a keystore file.

    The key is stored encrypted with the provenance passphrase, like a new one.
    """
    if keystore_file:
        source = os.environ.get(KEYSTORE_PASSPHRASE_ENV)
        if source is None:
            if not sys.stdin.isatty():
                raise KeystoreError("the keystore file's passphrase is needed",
                                    hint=f"set {KEYSTORE_PASSPHRASE_ENV} or run in a terminal")
            source = click.prompt("Passphrase of the keystore file", hide_input=True)
        info = keys.import_key(config.keys_dir(), name, _passphrase(confirm=True), keystore=keystore_file,
                               keystore_passphrase=source)
    else:
        private_key = _secret("Private key (hex)")
        info = keys.import_key(config.keys_dir(), name, _passphrase(confirm=True), private_key=private_key)
    click.echo(f"imported key {info.name!r}  address {info.address}\n  stored encrypted in {info.path}")


@key.command("export-public")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def key_export_public(name, as_json):
    """Show what may be shared of key NAME (default: the only key): its name and address, never the secret."""
    public = keys.export_public(config.keys_dir(), name)
    if as_json:
        _emit_json(public)
    else:
        click.echo(f"{public['name']}  {public['address']}")


# -- register --------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--key", "key_name", help="Signing key name (default: the only key).")
@click.option("--artist", help="Artist name (default: the key's name).")
@click.option("--license", "license_", default="All rights reserved", show_default=True)
@click.option("--title", help="Title (only when registering one file).")
@click.option("--title-from-filename", is_flag=True, help="Title from the file name: 'sunset_hills.jpg' -> 'Sunset Hills'.")
@click.option("--created", help="Creation date of the work(s), e.g. 2024-05-01 (default: the file's date).")
@click.option("--workers", type=int, help="Worker processes (default: all cores).")
@click.option("--private", is_flag=True,
              help="Unpublished work: record only a salted commitment (no title, no fingerprints); publish it later"
                   " with: provenance reveal COMMITMENT.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output, one object per file.")
@click.pass_context
def register(ctx, paths, key_name, artist, license_, title, title_from_filename, created, workers, private, as_json):
    """Register every image under PATHS (files or folders, recursively)."""
    ledger = _ledger(ctx)
    info = keys.find_key(config.keys_dir(), key_name)
    account = keys.unlock(info, _passphrase())
    batch = provenance.register(ledger, list(paths), account, artist=artist or info.name, license=license_,
                                title=title, pretty_titles=title_from_filename, created=created, workers=workers,
                                private=private)
    counts = {"registered": 0, "already": 0, "failed": 0, "prior_claims": 0}
    for r in _progress(batch, "registering"):
        counts["failed" if r.error else "registered" if r.created else "already"] += 1
        counts["prior_claims"] += bool(r.prior_claims)
        if as_json:
            _emit_json(asdict(r))
        elif r.error:
            tqdm.write(f"error: {r.item}: {r.error}", file=sys.stderr)
        elif r.commitment:
            click.echo(f"committed {r.title!r} privately as entry {r.commit_seq}, commitment {r.commitment}  {r.item}")
        else:
            verb = "registered" if r.created else "already registered as"
            click.echo(f"{verb} #{r.work_id} {r.title!r}  {r.item}")
            if r.low_detail:
                click.echo("  note: this image has very little detail; only exact copies of its bytes will be found")
            for c in r.prior_claims:
                click.echo(f"  possible prior claim: looks like work #{c['work_id']} registered earlier by another"
                           f" key ({c['signal']} distance {c['distance']}, {c['transform']})")
    click.echo(f"{counts['registered']} registered, {counts['already']} already registered, "
               f"{counts['failed']} failed, {counts['prior_claims']} possible prior claims", err=True)
    ctx.exit(1 if counts["failed"] else 0)


@cli.command()
@click.argument("commitment")
@click.option("--key", "key_name", help="Key that signs the new ledger checkpoint (default: the only key).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def reveal(ctx, commitment, key_name, as_json):
    """Publish a work registered with --private: COMMITMENT is its commitment or its commit entry number."""
    account = keys.unlock(keys.find_key(config.keys_dir(), key_name), _passphrase())
    r = provenance.reveal(_ledger(ctx), commitment, account)
    if as_json:
        _emit_json(asdict(r))
    else:
        verb = "revealed" if r.created else "already registered as"
        click.echo(f"{verb} #{r.work_id} {r.title!r}, committed in ledger entry {r.commit_seq}")


# -- works -----------------------------------------------------------------------------------------------------
@cli.group()
def works():
    """List and show registered works."""


def _work_dict(w) -> dict:
    d = asdict(w)
    d["fingerprints"] = {alg: asdict(f) for alg, f in w.fingerprints.items()}
    return d


@works.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
@click.pass_context
def works_list(ctx, as_json):
    """List registered works."""
    for w in _ledger(ctx).works():
        if as_json:
            _emit_json(_work_dict(w))
        else:
            flag = "  (possible prior claim)" if w.prior_claims else ""
            click.echo(f"#{w.id:<4} {w.title[:40]:40}  {w.artist[:20]:20}  {w.width}x{w.height}  {w.registered_at}{flag}")


@works.command("show")
@click.argument("work_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def works_show(ctx, work_id, as_json):
    """Show one work with its fingerprints and signature."""
    ledger = _ledger(ctx)
    w = ledger.work(work_id)
    owner, history = ledger.owner(work_id), ledger.history(work_id)
    if as_json:
        _emit_json({**_work_dict(w), "owner": owner, "transfers": [asdict(t) for t in history]})
        return
    for label, value in [("work", f"#{w.id}"), ("title", w.title), ("artist", w.artist), ("license", w.license),
                         ("size", f"{w.width}x{w.height}"), ("created", w.created),
                         ("registered", w.registered_at), ("registrant", w.registrant),
                         ("signature", w.signature), ("ledger entry", w.entry_seq)]:
        click.echo(f"{label:>14}: {value}")
    for alg, f in sorted(w.fingerprints.items()):
        quality = f"  (quality {f.quality})" if f.quality is not None else ""
        click.echo(f"{alg:>14}: {f.value}{quality}")
    for c in w.prior_claims:
        click.echo(f"{'prior claim':>14}: work #{c['work_id']} ({c['signal']} distance {c['distance']})")
    click.echo(f"{'owner':>14}: {owner}")
    for t in history:
        click.echo(f"{'transfer':>14}: {t.from_address} -> {t.to_address} at {t.recorded_at}"
                   f" (ledger entry {t.entry_seq})")


@cli.command()
@click.argument("work_id", type=int)
@click.option("--to", "to_address", required=True, help="The new owner's Ethereum address.")
@click.option("--key", "key_name", help="Signing key name of the current owner (default: the only key).")
@click.pass_context
def transfer(ctx, work_id, to_address, key_name):
    """Transfer work WORK_ID to a new owner: a record signed by the current owner's key, appended to the ledger."""
    ledger = _ledger(ctx)
    account = keys.unlock(keys.find_key(config.keys_dir(), key_name), _passphrase())
    t = ledger.append_transfer(work_id, to_address, account)
    click.echo(f"transferred work #{work_id} from {t.from_address} to {t.to_address} (ledger entry {t.entry_seq})")


# -- scan ------------------------------------------------------------------------------------------------------
SOURCE_TYPES = ("folder", "image", "list", "rss", "atom", "jsonfeed", "html", "sitemap")


@cli.command()
@click.argument("sources", nargs=-1, type=click.Path())
@click.option("--sources", "sources_file", type=click.Path(exists=True, dir_okay=False),
              help="A file of sources, one per line ('#' comments).")
@click.option("--type", "source_type", type=click.Choice(SOURCE_TYPES),
              help="What the sources are (default: detected from their content).")
@click.option("--full", is_flag=True, help="Check again what earlier scans of remote sources already checked.")
@click.option("--allow-private", is_flag=True,
              help="Let remote sources reach loopback and private addresses (for testing on your own network).")
@click.option("--no-robots", is_flag=True, help="Do not honour robots.txt (only for sites you are allowed to scan).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Deadline per HTTP request, seconds.")
@click.option("--workers", type=int, help="Worker processes (default: all cores).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Also write a web page of this scan's matches (self-contained HTML).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object per match.")
@click.option("--enqueue", is_flag=True,
              help="Do not scan here: queue one job per source for `provenance worker`s (on any machine).")
@click.pass_context
def scan(ctx, sources, sources_file, source_type, full, allow_private, no_robots, timeout, workers, report_path,
         as_json, enqueue):
    """Scan folders, images, URL lists, RSS/Atom/JSON feeds, web pages and sitemaps for copies of registered works.

    SOURCES are paths or http(s) URLs. Remote images checked by an earlier scan are skipped (--full checks
    them again). Every item and match is kept in the scan record; match ids are what `provenance evidence` takes.
    """
    from provenance.fetch import FetchPolicy

    sources = list(sources)
    if sources_file:
        from provenance.feeds import read_sources_file
        sources += read_sources_file(sources_file)
    if not sources:
        raise UsageError("nothing to scan", hint="name folders, files or URLs, or give --sources FILE")
    if enqueue:
        from provenance.queue import Queue

        _ledger(ctx).close()  # the ledger must exist
        with Queue(_target(ctx)) as q:
            ids = q.enqueue(sources)
        click.echo(f"queued {len(ids)} scan jobs (ids {ids[0]}-{ids[-1]}); run: provenance worker")
        return
    ledger = _ledger(ctx)
    titles = {w.id: w.title for w in ledger.works()}
    policy = FetchPolicy(deadline=timeout, respect_robots=not no_robots, allow_private=allow_private)
    batch = provenance.scan(ledger, sources, workers=workers, type=source_type, full=full, policy=policy)
    counts = dict.fromkeys(("matched", "allowed", "clean", "failed", "skipped"), 0)
    fetched = 0
    bar = _progress(batch, "scanning")
    for r in bar:
        counts[r.status] += 1
        fetched += r.fetched_at is not None
        bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in {"fetched": fetched, **counts}.items() if v),
                            refresh=False)
        if r.error:
            tqdm.write(f"error: {r.item}: {r.error}", file=sys.stderr)
            continue
        for m, match_id in zip(r.matches, r.match_ids or [None] * len(r.matches)):
            rule = r.allowed.get(m.work_id)
            if as_json:
                _emit_json({"item": r.item, "work_title": titles.get(m.work_id), **m.to_dict(), "match_id": match_id,
                            "source": r.source, "url": r.url, "page_url": r.page_url,
                            "allowed": rule is not None, "allow_rule": rule})
            else:
                where = f"  (on {r.page_url})" if r.page_url else ""
                verdict = f"  allowed by rule {rule}" if rule is not None else ""
                click.echo(f"{r.item}  ->  #{m.work_id} {titles.get(m.work_id)!r}  {explain(m)}"
                           f"  score {m.score:.2f} ({m.confidence})  [match {match_id}]{verdict}{where}")
    n = sum(counts.values())
    with_copies = counts["matched"] + counts["allowed"]
    summary = (f"scanned {n} items: {with_copies} with copies, {counts['clean']} without, {counts['failed']} failed")
    if counts["allowed"]:
        summary += f", {counts['allowed']} allowed"
    if counts["skipped"]:
        summary += f", {counts['skipped']} skipped (checked by an earlier scan; --full checks them again)"
    click.echo(summary, err=True)
    if report_path:
        r = report_mod.write_report(ledger, report_path)
        click.echo(f"wrote {r.path}: {r.matches - r.allowed} copies of {r.works} works, {r.allowed} allowed", err=True)
    ctx.exit(1 if counts["failed"] else 0)


@cli.command()
@click.option("--once", is_flag=True, help="Exit when no job is left (default: wait for new ones).")
@click.option("--lease", type=float, default=300, show_default=True,
              help="Seconds a job stays this worker's without a renewal; a dead worker's job is retried after it.")
@click.option("--max-attempts", type=int, default=3, show_default=True, help="Park a job after this many tries.")
@click.option("--poll", type=float, default=5, show_default=True, help="Seconds between looks at an empty queue.")
@click.option("--workers", type=int, help="Processes per scan (default: all cores).")
@click.option("--allow-private", is_flag=True, help="Let remote sources reach loopback and private addresses.")
@click.pass_context
def worker(ctx, once, lease, max_attempts, poll, workers, allow_private):
    """Process the queue of scan jobs (filled by `scan --enqueue`); run one per core or machine."""
    from provenance.fetch import FetchPolicy
    from provenance.queue import work

    def tell(job, outcome, counts):
        what = ", ".join(f"{k} {v}" for k, v in (counts or {}).items() if v) or job.error or ""
        click.echo(f"job {job.id} {job.source}: {outcome} {what}".rstrip(), err=True)

    options = {"workers": workers, "policy": FetchPolicy(allow_private=allow_private)}
    r = work(_target(ctx), lease=lease, max_attempts=max_attempts, once=once, poll=poll, scan_options=options,
             on_job=tell)
    click.echo(f"worker done: {r.done} jobs done, {r.failed} failed")


@cli.command()
@click.option("--from", "source", required=True, metavar="FILE|URL", help="The ledger to copy (a file or a URL).")
@click.option("--to", "target", required=True, metavar="FILE|URL",
              help="Where to copy it: postgresql://user@host/db[?schema=NAME], or a new file. Must be empty.")
def migrate(source, target):
    """Move a registry between SQLite and PostgreSQL, row for row: nothing re-signed, verified on both sides."""
    from provenance.migrate import migrate as migrate_

    r = migrate_(source if source.startswith("postgres") else os.path.expanduser(source),
                 target if target.startswith("postgres") else os.path.expanduser(target))
    click.echo(f"copied {sum(r.rows.values())} rows of {len(r.rows)} tables; both verify: {r.target.entries}"
               f" entries, {r.target.works} works, {r.target.checkpoints} checkpoints, root {r.target.root}")


@cli.command()
@click.option("--state", type=click.Choice(("queued", "running", "done", "parked")), help="Only jobs in this state.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object per job.")
@click.pass_context
def jobs(ctx, state, as_json):
    """List the scan jobs of the queue."""
    from provenance.queue import Queue

    with Queue(_target(ctx)) as q:
        for j in q.jobs(state):
            if as_json:
                _emit_json(asdict(j))
            else:
                click.echo(f"{j.id:5}  {j.state:8} tries {j.attempts}  {j.source}  {j.worker or ''}"
                           f"  {j.error or ''}".rstrip())


@cli.command()
@click.argument("work_id", required=False, type=int)
@click.option("--source", "pattern", help="URL pattern of the allowed use, e.g. 'https://www.instagram.com/me/*'.")
@click.option("--note", default="", help="Why it is allowed, e.g. 'licensed to X until 2027-01'.")
@click.option("--all-works", is_flag=True, help="The rule covers every work (your own accounts, say).")
@click.option("--list", "list_rules", is_flag=True, help="List the allow rules.")
@click.option("--remove", "remove_id", type=int, help="Remove the allow rule with this id.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def allow(ctx, work_id, pattern, note, all_works, list_rules, remove_id, as_json):
    """Allow copies of WORK_ID found at URLs matching --source: scans report them as allowed, not as copies.

    Patterns are shell-style (* and ?) and are matched against the image URL, the page URL and the source.
    """
    from provenance.scanlog import ScanLog

    log = ScanLog(_ledger(ctx))
    if remove_id is not None:
        log.disallow(remove_id)
        click.echo(f"removed allow rule {remove_id}")
        return
    if not list_rules:
        if (work_id is None) == (not all_works) or not pattern:
            raise UsageError("give WORK_ID (or --all-works) and --source PATTERN", hint="provenance allow --help")
        rule = log.allow(None if all_works else work_id, pattern, note)
        rules = [rule]
    else:
        rules = log.allow_rules()
    for r in rules:
        if as_json:
            _emit_json(asdict(r))
        else:
            what = "every work" if r.work_id is None else f"work #{r.work_id}"
            click.echo(f"allow rule {r.id}: {what} at {r.pattern}" + (f"  ({r.note})" if r.note else ""))


# -- what a match gives the artist: listing, report, evidence ----------------------------------------------------
@cli.command("matches")
@click.option("--run", "run_id", type=int, help="Only this scan run (default: every run).")
@click.option("--work", "work_id", type=int, help="Only copies of this work.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object per match.")
@click.pass_context
def matches_cmd(ctx, run_id, work_id, as_json):
    """List the recorded matches with their ids (for `provenance evidence MATCH_ID`)."""
    ledger = _ledger(ctx)
    records = report_mod.recorded_matches(ledger, run_id=run_id, work_id=work_id)
    titles = {w.id: w.title for w in ledger.works()}
    for m in records:
        if as_json:
            _emit_json({**asdict(m), "work_title": titles.get(m.work_id), "explanation": report_mod.explain_record(m)})
        else:
            allowed = f"  allowed (rule {m.allowed_by})" if m.allowed_by is not None else ""
            click.echo(f"{m.id:>5}  run {m.run_id}  #{m.work_id} {titles.get(m.work_id)!r}  {m.url or m.item}"
                       f"  {report_mod.explain_record(m)}  score {m.score:.2f}{allowed}")
    if not as_json:
        click.echo(f"{len(records)} matches", err=True)


@cli.command("report")
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the page (self-contained HTML).")
@click.option("--run", "run_id", type=int, help="The scan run to show (default: the latest).")
@click.option("--all", "all_runs", is_flag=True, help="Every recorded match, of every run.")
@click.pass_context
def report_cmd(ctx, output, run_id, all_runs):
    """Write a web page of the matches of a scan: each work beside its found copy, sortable and filterable."""
    if run_id is not None and all_runs:
        raise UsageError("give --run N or --all, not both")
    r = report_mod.write_report(_ledger(ctx), output, run_id, all_runs=all_runs)
    what = f"scan run {r.run_id}" if r.run_id is not None else "every scan run"
    click.echo(f"wrote {r.path}: {what}, {r.matches - r.allowed} copies of {r.works} works, {r.allowed} allowed")


@cli.command("evidence")
@click.argument("match_id", type=int)
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write the packet into (created if needed).")
@click.option("--force", is_flag=True, help="Write the packet even for a match an allow rule covers.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def evidence_cmd(ctx, match_id, out_dir, force, as_json):
    """Write the evidence packet of MATCH_ID (found bytes, facts, certificate, notice draft) and timestamp it."""
    p = evidence_mod.make_evidence(_ledger(ctx), match_id, out_dir, force_allowed=force)
    if as_json:
        _emit_json({**asdict(p), "out_dir": str(p.out_dir)})
        return
    if p.allowed_by is not None:
        click.echo(f"warning: match {match_id} is covered by allow rule {p.allowed_by}; the notice says so", err=True)
    how = "appended as" if p.created else "already in the ledger as"
    click.echo(f"wrote evidence packet of match {match_id} (work #{p.work_id}) to {p.out_dir}: {len(p.files)} files"
               f" + manifest.json + timestamp.json\n  packet hash {p.packet_sha256}, {how} ledger entry {p.entry_seq}")
    if p.anchor:
        click.echo(f"  anchored in block {p.anchor['block_number']} on chain {p.anchor['chain_id']}")
    else:
        click.echo("  not anchored yet: run `provenance anchor`, then this command again to add the anchor")
    click.echo(f"  edit {p.out_dir}/notice.txt (every [EDIT ME]) before sending it")


# -- ledger ----------------------------------------------------------------------------------------------------
@cli.group("ledger")
def ledger_group():
    """Inspect and verify the ledger."""


@ledger_group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def ledger_verify(ctx, as_json):
    """Recompute the hash chain, Merkle checkpoints and signatures; exit 1 on any tampering."""
    report = _ledger(ctx).verify()
    if as_json:
        _emit_json({"ok": True, **asdict(report)})
    else:
        click.echo(f"ledger OK: {report.entries} entries, {report.works} works, {report.checkpoints} checkpoints,"
                   f" root {report.root}")


@ledger_group.command("checkpoint")
@click.option("--key", "key_name", help="Signing key name (default: the only key).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def ledger_checkpoint(ctx, key_name, as_json):
    """Record and sign a checkpoint of every entry (or sign the latest one, if unsigned). Every command that
    appends entries does this itself; it is needed only for ledgers written before checkpoints were signed."""
    account = keys.unlock(keys.find_key(config.keys_dir(), key_name), _passphrase())
    cp = _ledger(ctx).checkpoint(signer=account)
    if as_json:
        _emit_json({"signed": cp is not None, "checkpoint": asdict(cp) if cp else None})
    elif cp:
        click.echo(f"signed checkpoint of {cp.size} entries, root {cp.root}, by {cp.signer}")
    else:
        click.echo("nothing to sign: the ledger is empty, or its latest checkpoint covers every entry and is signed")


# -- chain -----------------------------------------------------------------------------------------------------
def chain_options(f):
    f = click.option("--key", "key_name", help="Signing key name (default: the only key).")(f)
    f = click.option("--mainnet", is_flag=True, help="Allow Ethereum mainnet (chain id 1): real money.")(f)
    return click.option("--rpc-url", envvar=chain_mod.RPC_URL_ENV,
                        help="JSON-RPC URL of any EVM node (default: the managed local chain).")(f)


def _chain(ctx: click.Context, ledger: Ledger, rpc_url, mainnet, key_name, unlock: bool):
    """Connect as the CLI always does: the key from the keystore (unlocked only when something is sent)."""
    info = keys.find_key(config.keys_dir(), key_name) if (unlock or key_name or keys.list_keys(config.keys_dir())) \
        else None
    account = keys.unlock(info, _passphrase()) if unlock else None
    return chain_mod.open_chain(ledger, rpc_url=rpc_url, mainnet=mainnet, account=account,
                                address=info.address if info else None)


def _cost(cost) -> str:
    return (f"{cost.gas:,} gas, about {chain_mod.format_eth(cost.expected_wei)}"
            f" (at most {chain_mod.format_eth(cost.max_wei)})")


@cli.command()
@chain_options
@click.option("--dry-run", is_flag=True, help="Show the root, entry count and gas estimate; send nothing.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def anchor(ctx, rpc_url, mainnet, key_name, dry_run, as_json):
    """Anchor every entry not yet anchored: one transaction with the ledger's Merkle root."""
    ledger = _ledger(ctx)
    with _chain(ctx, ledger, rpc_url, mainnet, key_name, unlock=not dry_run) as chain:
        def show(plan):
            if not as_json:
                click.echo(f"anchoring root {plan.root} ({plan.size} entries, {plan.new_entries} new) on {chain.name}:"
                           f" {_cost(plan.cost)}")
        r = anchoring.anchor(ledger, chain, dry_run=dry_run, before_send=show)
    if as_json:
        _emit_json({"root": r.root, "size": r.size, "new_entries": r.new_entries, "sent": r.sent,
                    "recovered": r.recovered, "gas": r.cost.gas if r.cost else None,
                    "deploy_gas": r.deploy_cost.gas if r.deploy_cost else None,
                    "max_wei": r.total_cost.max_wei if r.cost else None, "gas_note": r.cost_note,
                    "pending": list(r.pending), "anchor": asdict(r.anchor) if r.anchor else None})
    elif dry_run and not r.nothing_new:
        click.echo(f"would anchor root {r.root}: {r.size} entries ({r.new_entries} new) on {chain.name}")
        if r.deploy_cost:
            click.echo(f"  first deploy the registry: {_cost(r.deploy_cost)}")
        click.echo(f"  the anchor: {_cost(r.cost)}" + (f"\n    ({r.cost_note})" if r.cost_note else ""))
        if r.deploy_cost:
            click.echo(f"  total: {_cost(r.total_cost)}")
        for tx in r.pending:
            click.echo(f"  sent by an earlier run and not yet recorded: tx {tx} (settled first by the next anchor)")
    elif r.nothing_new:
        click.echo(f"nothing new to anchor: root {r.root} ({r.size} entries) is anchored in block"
                   f" {r.anchor.block_number}, tx {r.anchor.tx_hash}")
    else:
        how = "recorded the anchor sent by an earlier run" if r.recovered else "anchored"
        click.echo(f"{how}: root {r.root} ({r.size} entries, {r.new_entries} new) in block {r.anchor.block_number},"
                   f" tx {r.anchor.tx_hash}")


@cli.group("anchors")
def anchors_group():
    """Anchors recorded in the ledger."""


@anchors_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
@click.pass_context
def anchors_list(ctx, as_json):
    """List every mined anchor: chain, entries covered, block, transaction."""
    for a in anchoring.anchors(_ledger(ctx)):
        if as_json:
            _emit_json(asdict(a))
        else:
            click.echo(f"chain {a.chain_id}  entries {a.first_entry}-{a.size}  root {a.root[:18]}…  block"
                       f" {a.block_number}  tx {a.tx_hash}")


@cli.group("chain")
def chain_group():
    """The chain the ledger is anchored on."""


@chain_group.command("status")
@chain_options
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def chain_status(ctx, rpc_url, mainnet, key_name, as_json):
    """Which chain, block height, contracts, balance, and whether each anchor is still on chain."""
    ledger = _ledger(ctx)
    with _chain(ctx, ledger, rpc_url, mainnet, key_name, unlock=False) as chain:
        s = anchoring.chain_status(ledger, chain)
    if as_json:
        _emit_json(_status_dict(s))
        return
    click.echo(f"{s.name}, block {s.block_number}, instance {s.instance[:24]}…")
    if s.address:
        click.echo(f"account {s.address}  balance {chain_mod.format_eth(s.balance)}")
    for d, present in s.contracts:
        click.echo(f"{d.name:>20}: {d.address}" + ("" if present else "  (no code: redeployed on next use)"))
    if not s.contracts:
        click.echo("contracts: not deployed yet (deployed on the first anchor or mint)")
    for st in s.anchors:
        a = st.anchor
        click.echo(f"anchor entries {a.first_entry}-{a.size}  block {a.block_number}  {st.reason}")
    for p in s.pending:
        by = {"anchor": "anchor", "mint": f"mint {p.detail.get('work_id')}"}.get(p.kind, "anchor or mint")
        click.echo(f"pending {p.kind} tx {p.tx.tx_hash} sent {p.sent_at}: settled by the next `provenance {by}`")


def _status_dict(s: anchoring.ChainStatus) -> dict:
    """`chain status --json`: one object; lists of flat objects, amounts in wei (never rounded)."""
    return {"name": s.name, "chain_id": s.chain_id, "instance": s.instance, "block_number": s.block_number,
            "address": s.address, "balance_wei": s.balance,
            "contracts": [{**asdict(d), "code_present": present} for d, present in s.contracts],
            "anchors": [{**asdict(st.anchor), "found": st.found, "reason": st.reason} for st in s.anchors],
            "pending": [{"tx_hash": p.tx.tx_hash, "kind": p.kind, "contract": p.contract or None, **p.detail,
                         "nonce": p.tx.nonce, "sent_at": p.sent_at} for p in s.pending]}


@cli.command()
@click.argument("work_id", type=int)
@click.option("--royalty", default="5%", show_default=True, help="EIP-2981 royalty on resales, e.g. 5% or 250bps.")
@chain_options
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def mint(ctx, work_id, royalty, rpc_url, mainnet, key_name, as_json):
    """Mint work WORK_ID as an ERC-721 token whose metadata carries its fingerprints and ledger entry."""
    ledger = _ledger(ctx)
    bps = nft.parse_royalty(royalty)
    with _chain(ctx, ledger, rpc_url, mainnet, key_name, unlock=True) as chain:
        r = nft.mint(ledger, chain, work_id, royalty_bps=bps)
    if as_json:
        _emit_json(asdict(r))
    else:
        how = "recorded the mint sent by an earlier run:" if r.recovered else "minted"
        click.echo(f"{how} work #{work_id} as token {r.token_id} of {r.contract}  royalty {r.royalty_bps / 100:g}% to"
                   f" {r.owner}\n  token URI {r.token_uri}\n  tx {r.tx_hash} (block {r.block_number})")


# -- certificates ----------------------------------------------------------------------------------------------
@cli.command()
@click.argument("work_id", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Where to write the certificate (JSON).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True),
              help="Where to write the certificate as a web page (self-contained HTML with a QR code).")
@click.option("--image", type=click.Path(exists=True, dir_okay=False),
              help="The registered file, shown as a thumbnail on the --html page (any other file is refused).")
@click.pass_context
def certificate(ctx, work_id, output, html_path, image):
    """Write the ownership certificate of WORK_ID: a file anyone can check with `provenance verify`."""
    if not output and not html_path:
        raise UsageError("nowhere to write the certificate", hint="give -o cert.json, --html cert.html, or both")
    if image and not html_path:
        raise UsageError("--image only adds a thumbnail to the --html page", hint="add --html cert.html")
    cert = certificates.issue_certificate(_ledger(ctx), work_id)
    page = certificate_html.certificate_page(cert, read_bytes(image) if image else None) if html_path else None
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(json.dumps(cert, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    if page is not None:
        with open(html_path, "w", encoding="utf-8") as f:
            f.write(page)
    anchored = (f"anchored in block {cert['anchor']['block_number']} on chain {cert['anchor']['chain_id']}"
                if cert["anchor"] else "not anchored yet (run `provenance anchor`, then issue it again)")
    where = " and ".join(p for p in (output, html_path) if p)
    click.echo(f"wrote certificate of work #{work_id} to {where}: hash {cert['certificate_hash']}, {anchored}")


_MARK = {"passed": "ok  ", "failed": "FAIL", "skipped": "--  "}


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="Also check that this image is the work.")
@click.option("--rpc-url", help="Also re-read the anchor on chain from this JSON-RPC node (and no other).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def verify(path, image, rpc_url, as_json):
    """Verify a certificate: signature, ledger inclusion, anchor, and optionally an image. Needs no ledger.

    Exit code 0 only if every requested check passed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            cert = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not a readable JSON certificate ({e})") from None
    image_bytes = read_bytes(image) if image else None
    r = certificates.verify_certificate(cert, image_bytes=image_bytes, rpc_url=rpc_url)
    if as_json:
        _emit_json({"ok": r.ok, "level": r.level, "certificate_hash": r.certificate_hash, "work_id": r.work_id,
                    "title": r.title, "registrant": r.registrant, "owner": r.owner,
                    "checks": [asdict(c) for c in r.checks]})
    else:
        if r.work_id is not None:
            click.echo(f"certificate of work #{r.work_id} {r.title!r}, registrant {r.registrant}")
            if r.owner and r.owner.lower() != str(r.registrant).lower():
                click.echo(f"owner (after the certificate's transfers): {r.owner}")
        for c in r.checks:
            click.echo(f"{_MARK[c.status]} {c.level:<9} {c.reason}")
        click.echo(f"{'verified' if r.ok else 'NOT verified'}: level reached: {r.level or 'none'}")
    ctx = click.get_current_context()
    ctx.exit(0 if r.ok else 1)


@cli.command()
def selftest():
    """Check every fingerprint algorithm against its golden vectors."""
    checks = selftest_mod.run()
    click.echo(f"selftest OK: {len(checks)} golden vectors over {len({c.image for c in checks})} images")


def main():
    cli(prog_name="provenance")
