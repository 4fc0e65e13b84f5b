"""Bad input: every unusable file is one clear error naming it, the rest of the batch goes on, exit codes hold.

Committed assets in tests/assets/bad-input/ (checked against their sources by test_assets_are_what_they_claim):
  truncated.jpg     the first half of provenance/golden/photo.jpg
  truncated.png     the first half of provenance/golden/gradient.png
  bomb.png          a valid 1x1 PNG whose IHDR (and CRC) were rewritten to claim 20000x20000 pixels
  not-an-image.jpg  a line of text
"""
from __future__ import annotations

import errno
import io
import json
import os
import pathlib
import shutil
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner
from PIL import Image

import provenance
from cli.main import cli
from provenance import imaging
from provenance.errors import ImageError
from provenance.fingerprints import sha256_bytes
from provenance.imaging import decode
from provenance.selftest import GOLDEN

ASSETS = Path(__file__).parent / "assets" / "bad-input"
GOOD = GOLDEN / "photo.jpg"  # small and quick: the file that must still be processed next to each bad one
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TRUNCATED = "corrupt image: truncated or incomplete image data"
NOT_AN_IMAGE = "not an image (unrecognised content)"


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height, CRC fixed so decoders believe it."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_assets_are_what_they_claim():
    for name, source in [("truncated.jpg", "photo.jpg"), ("truncated.png", "gradient.png")]:
        whole = (GOLDEN / source).read_bytes()
        assert (ASSETS / name).read_bytes() == whole[: len(whole) // 2], name
    bomb = (ASSETS / "bomb.png").read_bytes()
    assert bomb == png_claiming(20000, 20000)
    assert struct.unpack(">II", bomb[16:24]) == (20000, 20000) and 20000 * 20000 > imaging.MAX_PIXELS
    assert zlib.crc32(bomb[12:29]) == struct.unpack(">I", bomb[29:33])[0]  # a consistent header, not a corrupt one
    assert (ASSETS / "not-an-image.jpg").read_bytes().isascii()


# --- the bad cases ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    filename: str
    make: Callable[[Path, pytest.MonkeyPatch], str]  # writes the file into a folder, returns the expected reason


def _asset(name: str, reason: str):
    def make(path: Path, monkeypatch) -> str:
        shutil.copy(ASSETS / name, path)
        return reason
    return make


def _bytes(data: bytes, reason: str):
    def make(path: Path, monkeypatch) -> str:
        path.write_bytes(data)
        return reason
    return make


def _over_max_pixels(path: Path, monkeypatch) -> str:
    Image.new("RGB", (1000, 500), (200, 120, 40)).save(path, "JPEG")  # few bytes, many pixels; GOOD is 320x240
    monkeypatch.setattr(imaging, "MAX_PIXELS", 100_000)
    return "image is 1000x500 = 500,000 pixels, over the 100,000 pixel limit (possible decompression bomb)"


def _over_max_bytes(path: Path, monkeypatch) -> str:
    shutil.copy(GOLDEN / "exif-rotated.jpg", path)  # 30 KB; GOOD is 7 KB
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 20_000)
    return f"file is {path.stat().st_size:,} bytes, over the 20,000 byte limit"


def _permission_denied_simulated(path: Path, monkeypatch) -> str:
    # Tests often run as root, where chmod 000 does not stop a read (see test_unreadable_file_*); this makes the
    # OS answer EACCES for this one file so the mapping and the batch's recovery are still tested everywhere.
    shutil.copy(GOOD, path)
    real = pathlib.Path.read_bytes

    def read_bytes(self):
        if self.name == path.name:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    return "permission denied"


CASES = [
    Case("zero-byte", "empty.jpg", _bytes(b"", "empty file (0 bytes)")),
    Case("truncated-jpeg", "truncated.jpg", _asset("truncated.jpg", TRUNCATED)),
    Case("truncated-png", "truncated.png", _asset("truncated.png", TRUNCATED)),
    Case("text-file", "notes.txt", _bytes(b"meeting notes\n", NOT_AN_IMAGE)),
    Case("text-named-jpg", "not-an-image.jpg", _asset("not-an-image.jpg", NOT_AN_IMAGE)),
    Case("pillow-bomb-limit", "bomb.png", _asset("bomb.png", "over Pillow's decompression-bomb limit")),
    Case("max-pixels", "huge.jpg", _over_max_pixels),
    Case("max-file-bytes", "large.jpg", _over_max_bytes),
    Case("permission-denied", "locked.jpg", _permission_denied_simulated),
]


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def bad_folder(request, tmp_path, monkeypatch) -> tuple[Path, Path, str]:
    """(folder, bad file, expected reason): a folder holding the bad file and one good image."""
    case = request.param
    folder = tmp_path / "posts"
    folder.mkdir()
    shutil.copy(GOOD, folder / "good.jpg")
    bad = folder / case.filename
    reason = case.make(bad, monkeypatch)
    return folder, bad, reason


def test_decode_raises_image_error_with_the_reason(bad_folder):
    folder, bad, reason = bad_folder
    with pytest.raises(ImageError) as err:
        imaging.load(bad)
    assert err.value.message == reason


# --- library ------------------------------------------------------------------------------------------------------

def test_library_register_reports_the_bad_file_and_registers_the_rest(bad_folder, ledger, account):
    folder, bad, reason = bad_folder
    batch = provenance.register(ledger, [folder], account, artist="Aigerim")
    results = {Path(r.item).name: r for r in batch.results}
    assert batch.total == len(results) == 2
    failed = results.pop(bad.name)
    assert (failed.item, failed.error, failed.work_id, failed.created) == (str(bad), reason, None, False)
    [good] = results.values()
    assert good.error is None and good.created
    assert [w.sha256 for w in ledger.works()] == [sha256_bytes(GOOD.read_bytes())]
    ledger.verify()


def test_library_scan_reports_the_bad_file_and_scans_the_rest(bad_folder, ledger, account):
    folder, bad, reason = bad_folder
    list(provenance.register(ledger, [GOOD], account, artist="Aigerim").results)
    [work] = ledger.works()
    batch = provenance.scan(ledger, [folder])
    results = {Path(r.item).name: r for r in batch.results}
    assert batch.total == len(results) == 2
    failed = results.pop(bad.name)
    assert (failed.item, failed.error, failed.matches) == (str(bad), reason, [])
    [good] = results.values()
    assert good.error is None
    assert [(m.work_id, m.sha256_exact) for m in good.matches] == [(work.id, True)]


# --- CLI ----------------------------------------------------------------------------------------------------------

def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    assert result.exc_info is None or result.exc_info[0] is SystemExit, result.exc_info
    return result


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def every_bad_file(tmp_path, monkeypatch) -> tuple[Path, dict[Path, str]]:
    """A folder holding every bad case next to two good images, and the expected reason per bad file."""
    folder = tmp_path / "posts"
    folder.mkdir()
    shutil.copy(GOOD, folder / "good.jpg")
    shutil.copy(GOLDEN / "gradient.png", folder / "good-too.png")
    return folder, {folder / c.filename: c.make(folder / c.filename, monkeypatch) for c in CASES}


# One register and one scan over every case at once (each CLI register unlocks the scrypt keystore, ~0.5 s);
# "1" runs in this process, "2" on worker processes (the pool path of provenance._parallel).
@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_each_bad_file_is_one_error_line_the_rest_done_exit_1(every_bad_file, home, workers):
    folder, expected = every_bad_file
    errors = [f"error: {path}: {reason}" for path, reason in sorted(expected.items())]
    n_bad, n_good = len(expected), 2
    assert invoke("init").exit_code == 0

    reg = invoke("register", "--workers", workers, str(folder))
    assert reg.exit_code == 1
    assert reg.stderr.splitlines() == errors + [
        f"{n_good} registered, 0 already registered, {n_bad} failed, 0 possible prior claims"]
    assert reg.stdout == (f"registered #1 'good-too.png'  {folder / 'good-too.png'}\n"
                          f"registered #2 'good.jpg'  {folder / 'good.jpg'}\n")

    verify = invoke("ledger", "verify")
    assert verify.exit_code == 0
    assert verify.stdout.startswith("ledger OK: ") and f", {n_good} works, " in verify.stdout

    again = invoke("register", "--workers", workers, str(folder))  # idempotent: the good ones are already there
    assert again.exit_code == 1
    assert again.stderr.splitlines() == errors + [
        f"0 registered, {n_good} already registered, {n_bad} failed, 0 possible prior claims"]

    scan = invoke("scan", "--workers", workers, str(folder))
    assert scan.exit_code == 1
    assert scan.stderr.splitlines() == errors + [
        f"scanned {n_bad + n_good} items: {n_good} with copies, 0 without, {n_bad} failed"]
    assert [line.split("  ->  ")[0] for line in scan.stdout.splitlines()] == [
        str(folder / "good-too.png"), str(folder / "good.jpg")]
    assert all("identical file bytes" in line for line in scan.stdout.splitlines())


def test_cli_all_good_exits_0(home, works_dir, feed_dir):
    assert invoke("init").exit_code == 0
    reg = invoke("register", str(works_dir))
    assert reg.exit_code == 0
    assert reg.stderr == "6 registered, 0 already registered, 0 failed, 0 possible prior claims\n"
    scan = invoke("scan", str(feed_dir))
    assert scan.exit_code == 0
    assert error_lines(scan.stderr) == []
    assert scan.stderr.endswith(", 0 failed\n") and scan.stderr.startswith("scanned 17 items: ")
    assert f"{feed_dir / 'post_02.jpg'}  ->  " in scan.stdout  # the exact copy, at least


# --- wrong or missing extensions: recognised by content, so they succeed -----------------------------------------

DISGUISED = {  # name in the folder: (source, format detected from the bytes)
    "gradient.jpg": (GOLDEN / "gradient.png", "PNG"),
    "photo.txt": (GOLDEN / "photo.jpg", "JPEG"),
    "palette": (GOLDEN / "palette.gif", "GIF"),
    "post.png": (EXAMPLES / "feed" / "post_14.webp", "WEBP"),
}


@pytest.fixture
def disguised(tmp_path) -> Path:
    folder = tmp_path / "disguised"
    folder.mkdir()
    for name, (source, _) in DISGUISED.items():
        shutil.copy(source, folder / name)
    return folder


def test_format_is_detected_from_content(disguised):
    for name, (_, fmt) in DISGUISED.items():
        assert imaging.load(disguised / name).format == fmt, name


def test_library_registers_and_scans_files_with_wrong_extensions(disguised, ledger, account):
    registered = list(provenance.register(ledger, [disguised], account, artist="Aigerim").results)
    assert [r.error for r in registered] == [None] * len(DISGUISED)
    ids = {Path(r.item).name: r.work_id for r in registered}
    for r in provenance.scan(ledger, [disguised]).results:
        assert r.error is None
        assert (r.matches[0].work_id, r.matches[0].sha256_exact) == (ids[Path(r.item).name], True)


def test_cli_files_with_wrong_extensions_exit_0(disguised, home):
    assert invoke("init").exit_code == 0
    reg = invoke("register", str(disguised))
    assert reg.exit_code == 0
    assert reg.stderr == f"{len(DISGUISED)} registered, 0 already registered, 0 failed, 0 possible prior claims\n"
    scan = invoke("scan", str(disguised))
    assert scan.exit_code == 0
    assert scan.stderr == f"scanned {len(DISGUISED)} items: {len(DISGUISED)} with copies, 0 without, 0 failed\n"


# --- paths that are not there, or cannot be read ---------------------------------------------------------------

def test_cli_path_that_does_not_exist(home, tmp_path):
    missing = tmp_path / "no-such-folder"
    assert invoke("init").exit_code == 0
    reg = invoke("register", str(missing), str(GOOD))
    assert reg.exit_code == 1
    assert error_lines(reg.stderr) == [f"error: {missing}: no such file or folder"]
    assert "registered #1 'photo.jpg'" in reg.stdout
    scan = invoke("scan", str(missing), str(GOOD))
    assert scan.exit_code == 1
    assert scan.stderr.splitlines() == [f"error: {missing}: no such file or folder",
                                        "scanned 2 items: 1 with copies, 0 without, 1 failed"]


def test_cli_json_output_still_reports_failures_and_exits_1(home, tmp_path):
    folder = tmp_path / "posts"
    folder.mkdir()
    shutil.copy(GOOD, folder / "good.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    line = f"error: {folder / 'empty.jpg'}: empty file (0 bytes)"
    assert invoke("init").exit_code == 0

    reg = invoke("register", "--json", str(folder))
    assert reg.exit_code == 1
    rows = {Path(r["item"]).name: r for r in map(json.loads, reg.stdout.splitlines())}
    assert rows["good.jpg"]["error"] is None and rows["good.jpg"]["created"]
    assert rows["empty.jpg"]["error"] == "empty file (0 bytes)" or line in reg.stderr.splitlines()

    scan = invoke("scan", "--json", str(folder))
    assert scan.exit_code == 1
    assert error_lines(scan.stderr) == [line]
    [match] = map(json.loads, scan.stdout.splitlines())
    assert (match["item"], match["sha256_exact"]) == (str(folder / "good.jpg"), True)


root_reads_anything = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod 000 does not stop root from reading, so there is nothing to test "
           "(test_*[permission-denied] covers the same error path by simulating EACCES)")


@root_reads_anything
def test_unreadable_file_is_reported_and_the_rest_registered(tmp_path, ledger, account):
    folder = tmp_path / "posts"
    folder.mkdir()
    shutil.copy(GOOD, folder / "good.jpg")
    locked = folder / "locked.png"
    shutil.copy(GOLDEN / "gradient.png", locked)
    locked.chmod(0)
    try:
        results = {Path(r.item).name: r for r in provenance.register(ledger, [folder], account, artist="A").results}
    finally:
        locked.chmod(0o644)
    assert results["locked.png"].error == "permission denied"
    assert results["good.jpg"].created


@root_reads_anything
def test_unreadable_folder_is_reported_and_the_rest_scanned(tmp_path, ledger):
    folder = tmp_path / "posts"
    (folder / "private").mkdir(parents=True)
    shutil.copy(GOOD, folder / "good.jpg")
    (folder / "private").chmod(0)
    try:
        results = list(provenance.scan(ledger, [folder]).results)
    finally:
        (folder / "private").chmod(0o755)
    assert [(r.item, r.error) for r in results if r.error] == [
        (str(folder / "private"), "cannot list folder: Permission denied")]
    assert [Path(r.item).name for r in results if not r.error] == ["good.jpg"]


def test_named_pipe_in_a_folder_does_not_hang_the_batch(tmp_path, ledger):
    folder = tmp_path / "posts"
    folder.mkdir()
    shutil.copy(GOOD, folder / "good.jpg")
    pipe = folder / "pipe.jpg"
    os.mkfifo(pipe)
    results = []
    worker = threading.Thread(target=lambda: results.extend(provenance.scan(ledger, [folder]).results), daemon=True)
    worker.start()
    worker.join(timeout=2)  # two small files take well under 0.1 s
    hung = worker.is_alive()
    if hung:  # let the blocked open() return (it then reads an empty file) so no thread is left behind
        for _ in range(50):
            try:
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
                break
            except OSError:
                worker.join(timeout=0.1)
        worker.join(timeout=5)
    assert not hung, "scanning a folder holding a FIFO blocked for more than 2 s"
    errors = {r.item: r.error for r in results if r.error}
    assert list(errors) == [str(pipe)]
    assert [Path(r.item).name for r in results if not r.error] == ["good.jpg"]


# --- huge dimensions ----------------------------------------------------------------------------------------------

def test_header_claiming_more_than_max_pixels_is_refused_before_decoding():
    for width, height in [(20000, 20000), (2**31 - 1, 2**31 - 1), (150_000_001, 1)]:
        with pytest.raises(ImageError, match="decompression.bomb"):
            decode(png_claiming(width, height))


def test_own_pixel_limit_reports_the_size(monkeypatch):
    monkeypatch.setattr(imaging, "MAX_PIXELS", 50_000)
    with pytest.raises(ImageError) as err:
        decode(GOOD.read_bytes())
    assert err.value.message == ("image is 320x240 = 76,800 pixels, over the 50,000 pixel limit"
                                 " (possible decompression bomb)")


def test_image_under_max_pixels_is_not_refused_as_a_bomb():
    width, height = 11648, 8736  # a 102-megapixel camera's full-size frame, under MAX_PIXELS
    assert width * height < imaging.MAX_PIXELS
    with pytest.raises(ImageError) as err:
        decode(png_claiming(width, height))  # the header is believed, then the pixel data runs out
    assert err.value.message == TRUNCATED


# --- usage errors: exit 2 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["register", "{folder}"], ["scan", "{folder}"], ["works", "list"],
                                  ["works", "show", "1"], ["ledger", "verify"]], ids=" ".join)
def test_missing_ledger_exits_2_with_hint_to_init(home, tmp_path, args):
    result = invoke(*[a.format(folder=tmp_path) for a in args])
    assert result.exit_code == 2
    assert result.stderr == (f"error: no ledger at {home / 'ledger.db'}\n"
                             "  hint: create one with: provenance init\n")
    assert result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["scan", "--bogus", "."], "No such option '--bogus'"),
    (["register"], "Missing argument 'PATHS...'"),
    (["works", "show", "abc"], "'abc' is not a valid integer"),
    (["frobnicate"], "No such command 'frobnicate'"),
])
def test_command_line_mistakes_exit_2(home, args, message):
    assert invoke("init").exit_code == 0
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_works_show_missing_id_exits_2_with_hint(home):
    assert invoke("init").exit_code == 0
    result = invoke("works", "show", "999")
    assert result.exit_code == 2
    assert result.stderr == "error: no work with id 999\n  hint: list works with: provenance works list\n"


def test_init_twice_exits_2(home):
    assert invoke("init").exit_code == 0
    result = invoke("init")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: a ledger already exists at {home / 'ledger.db'}\n  hint: ")


def test_file_that_is_not_a_ledger_is_a_clear_error(home, tmp_path):
    impostor = tmp_path / "notes.db"
    impostor.write_text("not a database\n")
    result = invoke("--ledger", str(impostor), "works", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot open ledger {impostor}: ")
