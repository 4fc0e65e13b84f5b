"""HTTP plumbing for provenance.fetch: the address guard and one GET over one pinned connection.

The guard resolves a host name once, checks every address it resolves to, and the connection then goes to one of
those checked addresses (the Host header and TLS SNI carry the name). Nothing re-resolves the name later, so a
DNS answer that changes between check and connect (DNS rebinding) cannot move the request to another address.

A watchdog thread shuts the socket down at the request's deadline. Per-read timeouts alone cannot stop a server
that dribbles one byte per second; a shutdown socket makes every blocked read return at once.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection

from .errors import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PRIVATE_HINT = ("a feed from the network may not make provenance reach this machine or its private network; "
                 "use --allow-private (allow_private=True) only to test against a server of your own")


def address_refusal(ip: IPAddress) -> str | None:
    """Why provenance refuses to connect to `ip` on behalf of a remote source, or None if it is a public address."""
    if ip.version == 6:
        if ip.teredo:
            return "Teredo tunnel"
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            return address_refusal(embedded)
        if ip.is_site_local:
            return "site-local"
    for flag, name in (("is_unspecified", "unspecified"), ("is_loopback", "loopback"),
                       ("is_link_local", "link-local"), ("is_multicast", "multicast"), ("is_reserved", "reserved"),
                       ("is_private", "private")):
        if getattr(ip, flag):
            return name
    if not ip.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (addresses already vetted) and what to send."""

    url: str
    scheme: str  # "http" or "https"
    host: str  # ASCII (IDNA) host name or IP literal, no brackets
    port: int
    path: str  # request target: path and query, percent-encoded, never empty
    addresses: tuple[str, ...]  # resolved and checked; connect to these and nothing else

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def _split(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = scheme or "no scheme"
        raise FetchError(url, f"refused: only http and https URLs are fetched (this one is {shown})")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise FetchError(url, "invalid port") from None
    host = parts.hostname  # lower-cased, brackets and user:password removed
    if not host:
        raise FetchError(url, "no host name in URL")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = host.rstrip(".").encode("idna").decode("ascii")
        except UnicodeError:
            raise FetchError(url, f"invalid host name {parts.hostname!r}") from None
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return scheme, host, port, path


def _getaddrinfo(host: str, port: int, timeout: float) -> list[str]:
    """The addresses of `host`, looked up in a thread so a stuck resolver cannot outlast the deadline."""
    box: dict = {}

    def run() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            box["error"] = e

    t = threading.Thread(target=run, name="provenance-dns", daemon=True)
    t.start()
    t.join(max(timeout, 0.0))
    if t.is_alive():
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in box["infos"]:
        seen[sockaddr[0]] = None
    return list(seen)


def resolve(url: str, *, allow_private: bool = False, timeout: float = 5.0) -> Target:
    """Check `url` and the addresses its host resolves to; raise FetchError before any connection if refused."""
    scheme, host, port, path = _split(url)
    try:
        literal = ipaddress.ip_address(host)
        addresses = [str(literal)]
    except ValueError:
        try:
            addresses = _getaddrinfo(host, port, timeout)
        except TimeoutError:
            raise FetchError(url, f"looking up {host} timed out after {timeout:.0f} s") from None
        except socket.gaierror as e:
            raise FetchError(url, f"cannot resolve host name {host} ({e.strerror})") from None
        except (OSError, UnicodeError) as e:
            raise FetchError(url, f"cannot resolve host name {host} ({e})") from None
        if not addresses:
            raise FetchError(url, f"host name {host} has no address")
    if not allow_private:
        for a in addresses:
            why = address_refusal(ipaddress.ip_address(a.split("%")[0]))
            if why:
                shown = host if host == a else f"{host} resolves to {a}, which"
                raise FetchError(url, f"refused: {shown} is a {why} address", _PRIVATE_HINT)
    return Target(url, scheme, host, port, path, tuple(addresses))


class _Cut:
    """Shuts a request's sockets down when its deadline passes."""

    def __init__(self, deadline_at: float):
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline_at - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for s in self._sockets:
                _shutdown(s)

    def cancel(self) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected yet or already closed: connect has its own timeout


class _PinnedMixin:
    """Connects to the checked addresses only; urllib3's own resolution is never used."""

    def _new_conn(self) -> socket.socket:
        last: Exception = OSError("no address")
        for address in self._pinned:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            self._cut.watch(sock)
            sock.settimeout(max(0.001, min(self._connect_timeout, self._deadline_at - time.monotonic())))
            try:
                sock.connect((address, self.port))
            except OSError as e:
                sock.close()
                last = e
                continue
            sock.settimeout(self._read_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise last


class _PinnedHTTP(_PinnedMixin, HTTPConnection):
    pass


class _PinnedHTTPS(_PinnedMixin, HTTPSConnection):
    pass


class Exchange:
    """One GET on a fresh connection to a checked Target, cut at `deadline_at` (time.monotonic()).

    Use as a context manager: `status`, `reason` and `headers` are set on entry, `chunks()` streams the body.
    Network failures come out as OSError / urllib3 / http.client errors; `timed_out` tells a deadline cut apart.
    """

    def __init__(self, target: Target, headers: dict[str, str], *, connect_timeout: float, read_timeout: float,
                 deadline_at: float):
        self.target = target
        self._headers = {"Host": target.host_header, **headers}
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._deadline_at = deadline_at
        self._cut: _Cut | None = None
        self._conn = None
        self._response = None

    @property
    def timed_out(self) -> bool:
        return bool(self._cut and self._cut.fired) or time.monotonic() >= self._deadline_at

    def __enter__(self) -> Exchange:
        self._cut = _Cut(self._deadline_at)
        t = self.target
        if t.scheme == "https":
            conn = _PinnedHTTPS(t.addresses[0], t.port, server_hostname=t.host, timeout=self._read_timeout)
        else:
            conn = _PinnedHTTP(t.addresses[0], t.port, timeout=self._read_timeout)
        conn._pinned, conn._cut = t.addresses, self._cut
        conn._connect_timeout, conn._read_timeout, conn._deadline_at = (
            self._connect_timeout, self._read_timeout, self._deadline_at)
        self._conn = conn
        try:
            conn.request("GET", t.path, headers=self._headers, preload_content=False, decode_content=False)
            self._response = conn.getresponse()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.status = self._response.status
        self.reason = self._response.reason or http.client.responses.get(self.status, "")
        self.headers = dict(self._response.headers.itermerged())
        return self

    def chunks(self, size: int = 64 * 1024):
        while True:
            chunk = self._response.read(size, decode_content=False)
            if not chunk:
                return
            yield chunk

    def __exit__(self, *exc) -> None:
        if self._cut:
            self._cut.cancel()
        if self._response is not None:
            self._response.release_conn()
        if self._conn is not None:
            self._conn.close()


#: What a failed exchange can raise besides FetchError.
NETWORK_ERRORS = (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException, ValueError)


def describe(e: BaseException) -> str:
    """A one-line reason for a network failure."""
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (TimeoutError, socket.timeout, urllib3.exceptions.TimeoutError)):
        return "timed out waiting for the server"
    if isinstance(e, urllib3.exceptions.ProtocolError) and e.args:
        inner = e.args[-1]
        if isinstance(inner, BaseException):
            return describe(inner)
    if isinstance(e, http.client.IncompleteRead):
        return "the server closed the connection before the whole body arrived"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if "SSL" in type(e).__name__ or "CERTIFICATE" in str(e):
        return f"TLS error: {e}"
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__
