"""Crash safety and concurrent writers, with real `provenance register` processes on a real ledger file, and on a
real PostgreSQL schema (the same tests, through the `backend` fixture).

The subprocesses get this test's environment (the `home` fixture's PROVENANCE_HOME and PROVENANCE_PASSPHRASE)."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from provenance import keys, storage
from provenance.fingerprints import fingerprint
from provenance.ledger import Ledger

from conftest import EXAMPLES, PASSPHRASE, ROOT

GOLDEN = ROOT / "provenance" / "golden"
N_IMAGES = 60
SUMMARY = re.compile(r"(\d+) registered, (\d+) already registered, (\d+) failed")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """60 distinct real images: rotations, crops and resizes of the example works and golden images, as PNG.

    Split over three folders part0..part2 of 20 each, so overlapping batches can be built from them.
    """
    out = tmp_path_factory.mktemp("images")
    sources = sorted((EXAMPLES / "works").iterdir()) + sorted(p for p in GOLDEN.iterdir() if p.suffix != ".json")
    paths = []
    for k in range(N_IMAGES):
        src = sources[k % len(sources)]
        variant = k // len(sources)
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((360, 360))
            w, h = im.size
            im = im.rotate(11 + 17 * variant, expand=True, resample=Image.Resampling.BICUBIC, fillcolor=(k, 40, 90))
            inset = 2 + 3 * variant
            im = im.crop((inset, inset, im.width - inset, im.height - inset))
        path = out / f"part{k % 3}" / f"{src.stem}-v{variant}.png"
        path.parent.mkdir(exist_ok=True)
        im.save(path)
        paths.append(path)
    assert len({sha256(p) for p in paths}) == N_IMAGES
    return paths


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance_cmd(ledger: Path | str, *args: str) -> list[str]:
    return [sys.executable, "-c", "from cli.main import main; main()", "--db", str(ledger), *args]


def start(ledger: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(provenance_cmd(ledger, *args), cwd=ROOT, env=dict(os.environ), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, int, int]:
    """Wait for a register process; returns (registered, already, failed) from its summary line."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    [summary] = SUMMARY.findall(err)
    return tuple(int(n) for n in summary)


def count_works(path: Path | str) -> int:
    conn = storage.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM works").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def ledger_path(backend) -> Path | str:
    Ledger.create(backend).close()
    return backend


def test_kill_mid_register_then_rerun(home, images, ledger_path):
    folder = images[0].parent.parent
    proc = start(ledger_path, "register", str(folder), "--workers", "1")
    deadline = time.monotonic() + 60
    while count_works(ledger_path) < 5:
        assert proc.poll() is None, "register finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    by_sha = {sha256(p): p for p in images}
    with Ledger.open(ledger_path) as led:
        report = led.verify()
        committed = led.works()
    assert 5 <= len(committed) < N_IMAGES, "the kill landed after the batch was done"
    assert report.works == report.entries == len(committed)
    assert report.checkpoints == 0  # the batch never reached its checkpoint
    for w in committed:  # every committed work is whole: its row and fingerprints are those of its file
        fresh = fingerprint(by_sha[w.sha256].read_bytes())
        assert {a: f.value for a, f in w.fingerprints.items()} == {f.algorithm: f.value for f in fresh.fingerprints}
        assert w.title == by_sha[w.sha256].name

    registered, already, failed = finish(start(ledger_path, "register", str(folder), "--workers", "1"))

    assert (registered, already, failed) == (N_IMAGES - len(committed), len(committed), 0)
    with Ledger.open(ledger_path) as led:
        report = led.verify()
        works = led.works()
    assert len(works) == report.entries == N_IMAGES
    assert {w.sha256 for w in works} == set(by_sha)
    assert works[: len(committed)] == committed  # the survivors were kept as they were
    assert report.checkpoints == 1


def test_two_processes_same_key_overlapping_folders(home, images, ledger_path):
    part0, part1, part2 = (images[0].parent.parent / f"part{i}" for i in range(3))
    procs = [start(ledger_path, "register", str(part0), str(part1), "--workers", "1"),
             start(ledger_path, "register", str(part1), str(part2), "--workers", "1")]
    summaries = [finish(p) for p in procs]

    # Each of the 60 images was registered by exactly one process; the 20 shared ones were "already" for the other.
    assert sum(s[0] for s in summaries) == N_IMAGES
    assert sum(s[1] for s in summaries) == 20
    with Ledger.open(ledger_path) as led:
        report = led.verify()
        works = led.works()
    assert len(works) == report.works == N_IMAGES
    assert sorted(w.sha256 for w in works) == sorted(sha256(p) for p in images)
    assert [w.id for w in works] == list(range(1, N_IMAGES + 1))
    assert len({w.registrant for w in works}) == 1


def test_two_processes_different_keys(home, images, ledger_path):
    bolat = keys.new_key(home / "keys", "Bolat", PASSPHRASE)
    aigerim = keys.find_key(home / "keys", "Aigerim")
    part0, part1, part2 = (images[0].parent.parent / f"part{i}" for i in range(3))
    procs = [start(ledger_path, "register", "--key", "Aigerim", str(part0), str(part1), "--workers", "1"),
             start(ledger_path, "register", "--key", "Bolat", str(part1), str(part2), "--workers", "1")]
    summaries = [finish(p) for p in procs]

    assert summaries == [(40, 0, 0), (40, 0, 0)]
    with Ledger.open(ledger_path) as led:
        report = led.verify()
        works = led.works()
    assert report.works == len(works) == 80
    expected = {aigerim.address: {sha256(p) for p in images if p.parent.name in ("part0", "part1")},
                bolat.address: {sha256(p) for p in images if p.parent.name in ("part1", "part2")}}
    for address, shas in expected.items():
        mine = [w for w in works if w.registrant == address]
        assert len(mine) == 40 and {w.sha256 for w in mine} == shas
    assert {w.artist for w in works} == {"Aigerim", "Bolat"}
