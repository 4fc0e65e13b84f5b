"""The shared queue of scan jobs (provenance.queue), on both backends: the library's claim/lease/retry rules, then
real `provenance worker` processes racing on one queue, and one killed mid-job."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import provenance
from provenance import storage
from provenance.ledger import Ledger
from provenance.queue import Queue

from conftest import EXAMPLES, ROOT


@pytest.fixture
def target(backend, account, works_dir):
    """A ledger on each backend with the example works registered."""
    with Ledger.create(backend) as led:
        list(provenance.register(led, [works_dir], account, artist="Aigerim", workers=1).results)
    return backend


def test_claim_complete_and_nothing_left(target):
    with Queue(target) as q:
        ids = q.enqueue(["a", "b"])
        first, second = q.claim("w1"), q.claim("w2")
        assert (first.id, first.source, first.attempts) == (ids[0], "a", 1)
        assert (second.id, second.source) == (ids[1], "b")
        assert q.claim("w3") is None  # both leased
        assert not q.complete(first.id, "w2", {})  # not w2's job
        assert q.complete(first.id, "w1", {"clean": 3})
        assert [(j.state, j.worker, j.counts) for j in q.jobs("done")] == [("done", "w1", {"clean": 3})]


def test_a_later_attempt_skips_what_earlier_attempts_of_its_job_recorded_but_failures(target, tmp_path):
    folder = tmp_path / "posts"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(EXAMPLES / "feed" / "post_01.jpg", folder / name)
    (folder / "broken.jpg").write_bytes(b"not an image")
    with Queue(target) as q, Ledger.open(target) as led:
        job, other = q.enqueue([str(folder), str(folder)])
        first = provenance.scan(led, [folder], workers=1)
        q.attach_run(job, first.run_id)
        assert [r.status for r in first.results] == ["matched", "matched", "failed"]
        assert q.checked_items(job) == {str(folder / "a.jpg"), str(folder / "b.jpg")}  # a failure is tried again
        assert q.checked_items(other) == set()  # another job's runs are not its own
        again = provenance.scan(led, [folder], workers=1, skip=q.checked_items(job))
        assert [(Path(r.item).name, r.status) for r in again.results] == [
            ("a.jpg", "skipped"), ("b.jpg", "skipped"), ("broken.jpg", "failed")]


def test_an_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(target):
    with Queue(target) as q:
        [job_id] = q.enqueue(["a"])
        assert q.claim("dead", lease=0.2).id == job_id
        time.sleep(0.4)
        taken = q.claim("alive", lease=60)
        assert (taken.id, taken.attempts, taken.worker) == (job_id, 2, "alive")
        assert not q.renew(job_id, "dead", 60) and not q.complete(job_id, "dead", {})
        assert q.complete(job_id, "alive", {})


def test_a_failing_job_is_retried_then_parked_with_its_error(target):
    with Queue(target) as q:
        [job_id] = q.enqueue(["a"])
        for attempt in (1, 2):
            assert q.claim("w", max_attempts=2).attempts == attempt
            assert q.fail(job_id, "w", f"boom {attempt}", max_attempts=2) == ("queued" if attempt == 1 else "parked")
        assert q.claim("w", max_attempts=2) is None
        [parked] = q.jobs("parked")
        assert (parked.attempts, parked.error) == (2, "boom 2")


def test_a_job_whose_worker_keeps_dying_is_parked(target):
    with Queue(target) as q:
        [job_id] = q.enqueue(["a"])
        q.claim("w1", lease=0.1, max_attempts=1)
        time.sleep(0.3)
        assert q.claim("w2", max_attempts=1) is None
        [parked] = q.jobs("parked")
        assert parked.id == job_id and "lease expired" in parked.error and "w1" in parked.error


# -- real worker processes -----------------------------------------------------------------------------------------

def worker(target, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from cli.main import main; main()", "--db", str(target), "worker", "--workers", "1",
           *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return out + err


def scan_items(target) -> list[str]:
    db = storage.connect(target)
    try:
        if not db.has_table("scan_items"):
            return []
        return [r[0] for r in db.execute("SELECT item FROM scan_items ORDER BY id")]
    finally:
        db.close()


def test_two_workers_racing_do_every_job_exactly_once(target):
    feed = sorted((EXAMPLES / "feed").glob("*.jpg"))
    with Queue(target) as q:
        q.enqueue([str(p) for p in feed])

    outs = [finish(p) for p in [worker(target, "--once"), worker(target, "--once")]]

    with Queue(target) as q:
        jobs = q.jobs()
    assert [j.state for j in jobs] == ["done"] * len(feed)
    assert all(j.attempts == 1 for j in jobs)  # nobody took a job another was doing
    assert sorted(scan_items(target)) == sorted(map(str, feed))  # each image checked once, none lost
    assert sum(o.count(": done") for o in outs) == len(feed)
    matched = sum(j.counts["matched"] + j.counts["allowed"] for j in jobs)
    assert matched > 0


def test_a_worker_killed_mid_job_loses_nothing(target, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    feed = sorted((EXAMPLES / "feed").glob("*.jpg"))
    for k in range(3):  # enough images that the kill lands mid-scan
        for p in feed:
            shutil.copy(p, folder / f"{k}-{p.name}")
    with Queue(target) as q:
        [job_id] = q.enqueue([str(folder)])

    victim = worker(target, "--once", "--lease", "3")
    deadline = time.monotonic() + 120
    while len(scan_items(target)) < 3:
        assert victim.poll() is None, "the worker finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)
    with Queue(target) as q:
        [job] = q.jobs()
    assert job.state == "running" and job.attempts == 1
    before = scan_items(target)
    assert 3 <= len(before) < 3 * len(feed)

    time.sleep(3.5)  # the dead worker's lease runs out
    finish(worker(target, "--once"))

    with Queue(target) as q:
        [job] = q.jobs()
    assert (job.id, job.state, job.attempts) == (job_id, "done", 2)
    assert job.worker != f"{job.worker.split(':')[0]}:{victim.pid}"
    assert sum(job.counts.values()) == 3 * len(feed)
    # The second attempt checked only what the first had not recorded: every image once, none lost.
    assert job.counts["skipped"] == len(before)
    assert sorted(scan_items(target)) == sorted(str(p) for p in folder.iterdir())
    with Ledger.open(target) as led:
        led.verify()
