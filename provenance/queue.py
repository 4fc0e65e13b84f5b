"""A shared queue of scan jobs: `provenance scan --enqueue` fills it, `provenance worker`s on any number of
machines drain it, each job done once.

Table `scan_jobs` (in the ledger's database, created on first use): id, source (what `scan` takes: a feed, page,
URL list or folder), state (`queued`, `running`, `done`, `parked`), attempts, worker, lease_until (the database
server's clock, Unix seconds: one clock for every machine), enqueued/started/finished times, error, and the
counts of the scan that did it.

Claiming is one short transaction that takes the oldest claimable job - queued, or running with an expired
lease - and marks it running under this worker with a lease. On PostgreSQL the pick is `SELECT ... FOR UPDATE
SKIP LOCKED`: two workers claiming at the same moment get different jobs, neither waits for the other. On SQLite
`BEGIN IMMEDIATE` serialises the claimers, which is enough for workers sharing one machine.

While it scans, a worker renews its lease every third of the lease from a thread with its own connection, so only
a dead worker (SIGKILL, power cut, lost network) loses a job: its lease runs out and the next claimer takes the
job again. A job that failed, or whose worker died, `max_attempts` times is parked with its error for a person to
look at. complete() and fail() only change a row that still names this worker, so a worker that lost its lease
cannot overwrite another's result. A job taken over after a crash does not fetch again the remote images the dead
worker already recorded, nor checks again the files of a folder it recorded: each run of a job is linked to it
(`scan_job_runs`), and a later attempt skips every item an earlier one recorded, other than failures (so an item is
checked twice only if its worker died between checking it and recording it).
"""
from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import storage
from .errors import ProvenanceError, UsageError
from .ledger import Ledger, canonical_json, utc_now

STATES = ("queued", "running", "done", "parked")
_TABLES = [
    """CREATE TABLE IF NOT EXISTS scan_jobs (id INTEGER PRIMARY KEY, source TEXT NOT NULL, state TEXT NOT NULL,
       attempts INTEGER NOT NULL DEFAULT 0, worker TEXT, lease_until REAL, enqueued_at TEXT, started_at TEXT,
       finished_at TEXT, error TEXT, counts TEXT)""",
    "CREATE INDEX IF NOT EXISTS scan_jobs_state ON scan_jobs (state, id)",
    "CREATE TABLE IF NOT EXISTS scan_job_runs (job_id INTEGER NOT NULL, run_id INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS scan_job_runs_job ON scan_job_runs (job_id)",
]
_COLUMNS = "id, source, state, attempts, worker, error, counts"


@dataclass(frozen=True)
class Job:
    id: int
    source: str
    state: str
    attempts: int
    worker: str | None = None
    error: str | None = None
    counts: dict | None = None


def _job(row) -> Job:
    return Job(*row[:6], json.loads(row[6]) if row[6] else None)


def worker_name() -> str:
    """host:pid - unique among live workers, and says where to look when one stops."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Queue:
    """The scan jobs of one ledger (`target`: its file or URL), on a connection of its own."""

    def __init__(self, target: Path | str):
        self.target = target
        self.db = storage.connect(target)
        if not self.db.has_table("scan_job_runs"):  # (queues made before it have scan_jobs alone)
            with self.db.transaction() as c:  # serial: workers starting together create the tables once
                if not c.has_table("scan_job_runs"):
                    c.create(_TABLES)

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def enqueue(self, sources: list[str]) -> list[int]:
        """Queue one job per source; returns their ids."""
        if not sources:
            raise UsageError("nothing to enqueue", hint="name feeds, pages, URL lists or folders")
        now = utc_now()
        with self.db.transaction(serial=False) as c:
            return [c.execute("INSERT INTO scan_jobs (source, state, enqueued_at) VALUES (?, 'queued', ?)"
                              " RETURNING id", (str(s), now)).fetchone()[0] for s in sources]

    def claim(self, worker: str, lease: float = 300, max_attempts: int = 3) -> Job | None:
        """Take the oldest claimable job for `lease` seconds, or None when there is none."""
        now = self.db.now_epoch()
        with self.db.transaction(serial=False) as c:
            c.execute(f"UPDATE scan_jobs SET state = 'parked', finished_at = ?, error = COALESCE(error, 'its worker"
                      f" stopped (lease expired) on attempt ' || attempts || ', last ' || worker) WHERE state ="
                      f" 'running' AND lease_until < {now} AND attempts >= ?", (utc_now(), max_attempts))
            row = c.execute(f"SELECT id FROM scan_jobs WHERE state = 'queued' OR (state = 'running' AND lease_until"
                            f" < {now}) ORDER BY id LIMIT 1{c.skip_locked}").fetchone()
            if row is None:
                return None
            row = c.execute(f"UPDATE scan_jobs SET state = 'running', worker = ?, attempts = attempts + 1,"
                            f" lease_until = {now} + ?, started_at = ? WHERE id = ? RETURNING {_COLUMNS}",
                            (worker, float(lease), utc_now(), row[0])).fetchone()
            return _job(row)

    def renew(self, job_id: int, worker: str, lease: float) -> bool:
        """Extend the lease; False when the job is no longer this worker's."""
        with self.db.transaction(serial=False) as c:
            return c.execute(f"UPDATE scan_jobs SET lease_until = {self.db.now_epoch()} + ? WHERE id = ? AND"
                             " worker = ? AND state = 'running'", (float(lease), job_id, worker)).rowcount == 1

    def complete(self, job_id: int, worker: str, counts: dict) -> bool:
        """Mark the job done with its scan's counts; False when it is no longer this worker's."""
        with self.db.transaction(serial=False) as c:
            return c.execute("UPDATE scan_jobs SET state = 'done', finished_at = ?, error = NULL, counts = ?"
                             " WHERE id = ? AND worker = ? AND state = 'running'",
                             (utc_now(), canonical_json(counts), job_id, worker)).rowcount == 1

    def fail(self, job_id: int, worker: str, error: str, max_attempts: int = 3) -> str | None:
        """Queue the job again, or park it after `max_attempts`. Returns its new state (None: not ours)."""
        with self.db.transaction(serial=False) as c:
            row = c.execute("UPDATE scan_jobs SET state = CASE WHEN attempts >= ? THEN 'parked' ELSE 'queued' END,"
                            " error = ?, finished_at = ?, lease_until = NULL WHERE id = ? AND worker = ? AND"
                            " state = 'running' RETURNING state",
                            (max_attempts, error, utc_now(), job_id, worker)).fetchone()
            return row[0] if row else None

    def attach_run(self, job_id: int, run_id: int) -> None:
        """Link a scan run (the scan record's) to the job it is an attempt of."""
        with self.db.transaction(serial=False) as c:
            c.execute("INSERT INTO scan_job_runs (job_id, run_id) VALUES (?, ?)", (job_id, run_id))

    def checked_items(self, job_id: int) -> set[str]:
        """The items (paths, URLs) earlier attempts of the job recorded as checked: everything but failures."""
        if not self.db.has_table("scan_items"):
            return set()
        return {r[0] for r in self.db.execute("SELECT item FROM scan_items WHERE status <> 'failed' AND run_id IN"
                                              " (SELECT run_id FROM scan_job_runs WHERE job_id = ?)", (job_id,))}

    def jobs(self, state: str | None = None) -> list[Job]:
        return [_job(r) for r in self.db.execute(f"SELECT {_COLUMNS} FROM scan_jobs WHERE state ="
                                                 " COALESCE(?, state) ORDER BY id", (state,))]


@dataclass(frozen=True)
class WorkerReport:
    done: int
    failed: int


def _renewing(target, job: Job, worker: str, lease: float) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()

    def beat():
        with Queue(target) as q:
            while not stop.wait(lease / 3):
                if not q.renew(job.id, worker, lease):
                    return

    t = threading.Thread(target=beat, name=f"lease-{job.id}", daemon=True)
    t.start()
    return stop, t


def work(target: Path | str, *, worker: str | None = None, lease: float = 300, max_attempts: int = 3,
         once: bool = False, poll: float = 5.0, scan_options: dict | None = None,
         on_job: Callable[[Job, str, dict | None], None] | None = None) -> WorkerReport:
    """Process jobs from the queue of the ledger at `target` until it is empty (`once`), else forever, waiting
    `poll` seconds between looks. Each job is `provenance.scan(ledger, [job.source], **scan_options)`.
    `on_job(job, outcome, counts)` is told of each job finished (outcome: 'done', 'queued', 'parked', 'lost')."""
    from .scanning import STATUSES, scan

    worker = worker or worker_name()
    done = failed = 0
    with Queue(target) as q, Ledger.open(target) as ledger:
        while True:
            job = q.claim(worker, lease, max_attempts)
            if job is None:
                if once:
                    return WorkerReport(done, failed)
                threading.Event().wait(poll)
                continue
            stop, beat = _renewing(target, job, worker, lease)
            counts, error = dict.fromkeys(STATUSES, 0), None
            try:
                skip = q.checked_items(job.id) if job.attempts > 1 else set()
                batch = scan(ledger, [job.source], skip=skip, **(scan_options or {}))
                if batch.run_id is not None:  # before any item is recorded: a later attempt finds them
                    q.attach_run(job.id, batch.run_id)
                for r in batch.results:
                    counts[r.status] += 1
            except ProvenanceError as e:
                error = e.diagnostics()
            except Exception as e:  # a bug must not stop the other jobs; the job says what happened
                error = f"{type(e).__name__}: {e}"
            finally:
                stop.set()
                beat.join()
            if error is None:
                outcome = "done" if q.complete(job.id, worker, counts) else "lost"
                done += outcome == "done"
            else:
                outcome = q.fail(job.id, worker, error, max_attempts) or "lost"
                failed += 1
            if on_job:
                on_job(job, outcome, counts if error is None else None)

