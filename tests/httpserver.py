"""A real HTTP server on 127.0.0.1 for fetch and feed tests, and guards that keep every test on loopback.

The server serves examples/ at /, the bad assets of tests/assets/feeds/ at /assets/, and hostile handlers under
/hostile/. It records every request (path, headers, arrival time) so tests can check what was sent and when.

`no_outside_network` (use it in every test module that fetches) replaces DNS with a fixed table and makes any
connection to a non-loopback address fail the test; `connections` lists every connect() attempted.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from provenance import _http

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ASSETS = ROOT / "tests" / "assets" / "feeds"
JPEG = (EXAMPLES / "feed" / "post_02.jpg").read_bytes()

#: Fake DNS: names a hostile feed might use, and what they "resolve" to. Nothing here is ever connected to.
FAKE_DNS = {
    "localhost": ["127.0.0.1"],
    "evil.example": ["10.0.0.1"],
    "router.example": ["192.168.1.1"],
    "metadata.example": ["169.254.169.254"],
    "ula.example": ["fd00::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "mixed.example": ["93.184.215.14", "10.0.0.1"],  # one public answer does not excuse a private one
    "public.example": ["93.184.215.14"],
}


@dataclass
class Seen:
    path: str
    headers: dict
    at: float


@dataclass
class Server:
    base: str  # "http://127.0.0.1:PORT"
    port: int
    requests: list[Seen] = field(default_factory=list)
    robots: str = "User-agent: *\nDisallow: /blocked/\n"
    robots_status: int = 200

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, prefix: str) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(prefix)]


class Handler(SimpleHTTPRequestHandler):
    server_state: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str, status: int = 302) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: C901 - one flat table of routes reads best
        state = self.server_state
        state.requests.append(Seen(self.path, dict(self.headers), time.monotonic()))
        path = self.path.split("?")[0]
        try:
            if path == "/robots.txt":
                return self._send(state.robots_status, state.robots.encode(), "text/plain")
            if path.startswith("/blocked/"):
                return self._send(200, JPEG, "image/jpeg")
            if path.startswith("/assets/"):
                f = ASSETS / path.removeprefix("/assets/")
                if f.is_file() and f.resolve().parent == ASSETS.resolve():
                    ctype = {".png": "image/png", ".xml": "application/xml", ".rss": "application/rss+xml",
                             ".json": "application/json", ".html": "text/html"}.get(f.suffix, "text/plain")
                    return self._send(200, f.read_bytes(), ctype)
                return self._send(404, b"not found", "text/plain")
            if path.startswith("/hostile/"):
                return self._hostile(path.removeprefix("/hostile/"))
            if path == "/etag/post_02.jpg":
                etag, modified = '"v1"', "Tue, 01 Jul 2025 00:00:00 GMT"
                if self.headers.get("If-None-Match") == etag or self.headers.get("If-Modified-Since") == modified:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                return self._send(200, JPEG, "image/jpeg", {"ETag": etag, "Last-Modified": modified})
            return super().do_GET()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _hostile(self, name: str) -> None:
        if name == "endless":  # an "image" that never ends
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(JPEG[:64])
            chunk = b"\0" * 65536
            while True:
                self.wfile.write(chunk)
        elif name == "huge":  # claims 10 GB
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(10 * 2**30))
            self.end_headers()
            self.wfile.write(JPEG[:1024])
        elif name == "loop":
            self._redirect("/hostile/loop-b")
        elif name == "loop-b":
            self._redirect("/hostile/loop")
        elif name.startswith("hops-"):  # hops-N redirects N more times, then serves an image
            n = int(name.removeprefix("hops-"))
            if n:
                self._redirect(f"/hostile/hops-{n - 1}", 301)
            else:
                self._send(200, JPEG, "image/jpeg")
        elif name == "html-as-image":
            self._send(200, b"<html><body>hello</body></html>", "text/html")
        elif name == "not-an-image":
            self._send(200, b"<html><body>I am not a JPEG</body></html>", "image/jpeg")
        elif name == "slow-body":  # slow loris: one byte per second, each read well inside the read timeout
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(JPEG)))
            self.end_headers()
            for b in JPEG:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(1)
        elif name == "slow-headers":
            for b in b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Padding: " + b"a" * 1000:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(1)
        elif name == "to-file":
            self._redirect("file:///etc/passwd")
        elif name == "to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif name == "to-private-name":
            self._redirect("http://evil.example/a.jpg")
        elif name == "not-found":
            self._send(404, b"no", "text/plain")
        elif name == "gzip":
            self._send(200, b"\x1f\x8b...", "image/jpeg", {"Content-Encoding": "gzip"})
        else:
            self._send(404, b"no such hostile route", "text/plain")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that gives up early (a deadline, a byte cap) resets the connection: expected, not news."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server():
    state = Server("", 0)
    handler = type("BoundHandler", (Handler,), {"server_state": state})
    httpd = _QuietServer(("127.0.0.1", 0), partial(handler, directory=str(EXAMPLES)))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    state.base = f"http://127.0.0.1:{state.port}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_outside_network(monkeypatch):
    """DNS answers come from FAKE_DNS only; a connect() to anything but loopback fails the test.

    Returns the list of every destination a connect was attempted to, for tests that assert there was none.
    """
    attempts: list[tuple] = []
    real_getaddrinfo, real_connect, real_connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex

    def fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name in FAKE_DNS:
            out = []
            for a in FAKE_DNS[name]:
                fam = socket.AF_INET6 if ":" in a else socket.AF_INET
                addr = (a, port, 0, 0) if fam == socket.AF_INET6 else (a, port)
                out.append((fam, socket.SOCK_STREAM, 6, "", addr))
            return out
        # IP literals only: AI_NUMERICHOST means no DNS query can leave the machine.
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    def guard(real):
        def connect(self, address):
            attempts.append(address)
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
                raise AssertionError(f"test tried to connect outside loopback: {address}")
            return real(self, address)
        return connect

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    return attempts


@pytest.fixture
def loopback_is_public(monkeypatch):
    """Treat 127.0.0.1 as if it were a public address, so a test server can stand in for a site on the internet
    while every other address (10/8, 169.254/16, ::1, ...) is judged as usual, with allow_private=False."""
    real = _http.address_refusal

    def refusal(ip):
        return None if str(ip) == "127.0.0.1" else real(ip)

    monkeypatch.setattr(_http, "address_refusal", refusal)
