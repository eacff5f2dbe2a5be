"""A lean HTTP/1.1 client for the run's calls: a keep-alive connection pool over asyncio protocols.

Why not aiohttp's ``ClientSession`` on the hot path: a rollout makes a few small JSON calls, each
read whole into memory, and the session's generality (tracing signals, cookie jar, URL objects,
multidict headers, stream readers, one timer per timeout) cost ~2.5x the CPU of this module per
call (scripts/bench_p1.py; docs/engine.md "Client cost (P1)"). aiohttp stays selectable
(``transport.http_client: aiohttp``); transport/client.py maps either one's failures to our errors.

What it does, and no more:
- Requests: ``GET`` or ``POST`` with a bytes body (``Content-Length``), ``Host`` and the pool's
  headers (``User-Agent``, ``Accept``, ``Content-Type``, ``Authorization``), plus per-call headers
  (a per-call header replaces a pool header of the same name). No ``Accept-Encoding`` is sent;
  a ``gzip``/``deflate`` body is decoded anyway; any other encoding is a ``MalformedAnswer``.
  ``http://`` and ``https://`` (the default TLS context, SNI = host); credentials in the URL
  become Basic auth unless an ``Authorization`` header is set. No proxies (aiohttp's session did
  not read them either), no redirects (a 3xx is an answer like any other).
- Answers: status line and headers (1xx skipped), then the body by ``Content-Length``, chunked
  transfer coding (trailers read and dropped), or until the server closes (no length given).
  Headers over 64 KiB, a bad status line, a bad header line, a bad chunk size or conflicting
  lengths are a ``MalformedAnswer``; bytes nobody asked for close the connection.
- Pool: at most ``limit`` connections open in all (idle, busy or connecting), over every host;
  a caller waits (first come, first served) when all are busy; an idle connection of another
  host is closed to make room. Idle connections are reused most recent first while younger than
  ``keepalive_s`` (older ones are closed; a sweep closes those nobody asked for). A connection
  is reused only after a complete answer that allowed it (``Connection: close``, HTTP/1.0
  without keep-alive and read-until-close answers end it); a call cancelled or failed mid-way
  closes its connection.
- Timeouts: ``connect_timeout_s`` bounds resolving + connecting; ``read_timeout_s`` (optional)
  bounds each wait for bytes of the answer (reset by every byte that arrives); ``body_timeout_s``
  bounds the rest of the body once the headers are in (in total). One timer per connection: when
  it fires it checks the call in flight (if any) and re-arms for its real due time, so a call
  whose answer comes before an earlier call's due time sets no timer at all. A total bound for a call is the caller's (``asyncio.timeout``
  around ``request``; ``Progress`` tells whether the headers were in).
- Failures: ``ConnectFailed`` (``timed_out``, ``dns``, ``os_error``), ``StaleConnection`` (a
  *reused* connection closed before any byte of the answer: the request may be sent again),
  ``ConnectionLost``, ``MalformedAnswer`` (a ``ConnectionLost``), ``AnswerTimeout`` (``in_body``).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import quote, unquote, urlsplit

MAX_HEAD_BYTES = 64 * 1024
_TARGET_CACHE_MAX = 4096
_HEAD_END = b"\r\n\r\n"

_WAIT_HEAD, _BY_LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)


class HttpFailure(Exception):
    """Base of this module's failures (never seen outside transport/)."""


class ConnectFailed(HttpFailure):
    def __init__(self, message: str, *, os_error: OSError | None = None, timed_out: bool = False,
                 dns: bool = False) -> None:
        super().__init__(message)
        self.os_error = os_error
        self.timed_out = timed_out
        self.dns = dns


class ConnectionLost(HttpFailure):
    """The connection ended (or broke) before the whole answer was in."""


class StaleConnection(ConnectionLost):
    """A reused keep-alive connection the server had closed: nothing of the answer came."""


class MalformedAnswer(ConnectionLost):
    """Bytes that are not an HTTP/1.x answer."""


class AnswerTimeout(HttpFailure):
    """``which``: "read" (no byte for ``read_timeout``) or "body" (the body not in ``body_timeout``
    after the headers)."""

    def __init__(self, which: str, *, in_body: bool) -> None:
        super().__init__(f"{which} timeout")
        self.which = which
        self.in_body = in_body


@dataclass(slots=True)
class RawAnswer:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", " (Set-Cookie apart)
    set_cookies: list[str]
    body: bytes


class Progress:
    """Filled in while a call runs: did the answer's headers come in (for a caller's total bound)?"""

    __slots__ = ("headers_in",)

    def __init__(self) -> None:
        self.headers_in = False


@dataclass(frozen=True, slots=True)
class _Target:
    key: tuple[str, int, bool]  # host, port, TLS
    path: bytes
    host_header: bytes
    basic_auth: bytes | None


class _Connection(asyncio.Protocol):
    """One socket and the call on it (at most one at a time: no pipelining)."""

    def __init__(self, pool: "Http1Pool", key: tuple[str, int, bool]) -> None:
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.answers = 0  # complete answers on this connection (> 0: it is a reused one)
        self.idle_since = 0.0
        self.reusable = False
        self._loop = pool.loop
        self._waiter: asyncio.Future[RawAnswer] | None = None
        self._progress: Progress | None = None
        self._buf = bytearray()
        self._phase = _WAIT_HEAD
        self._scan = 0
        self._got_bytes = False
        self._last_data = 0.0
        self._read_timeout: float | None = None
        self._body_timeout = 0.0
        self._body_deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._status = 0
        self._headers: dict[str, str] = {}
        self._set_cookies: list[str] = []
        self._keep_alive = False
        self._remaining = 0
        self._chunks: list[bytes] = []

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: this connection can no longer be trusted
            return
        self._got_bytes = True
        if self._read_timeout is not None:
            self._last_data = self._loop.time()
        self._buf += data
        try:
            self._advance()
        except MalformedAnswer as exc:
            self._fail(exc)
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_closed()
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._phase == _UNTIL_CLOSE and exc is None:
            self._keep_alive = False
            self._complete(bytes(self._buf))
        elif not self._got_bytes and self.answers:
            self._fail(StaleConnection(f"the server had closed this kept-alive connection ({_reason(exc)})"))
        else:
            where = "in the middle of the answer" if self._got_bytes else "before answering"
            self._fail(ConnectionLost(f"the server closed the connection {where} ({_reason(exc)})"))

    # -- one call ----------------------------------------------------------------------------
    def send(self, data: bytes, read_timeout: float | None, body_timeout: float,
             progress: Progress | None) -> asyncio.Future[RawAnswer]:
        waiter = self._loop.create_future()
        self._waiter, self._progress = waiter, progress
        self._phase, self._scan, self._got_bytes = _WAIT_HEAD, 0, False
        self._read_timeout, self._body_timeout, self._body_deadline = read_timeout, body_timeout, 0.0
        self.reusable = False
        if self.closed or self.transport is None or self.transport.is_closing():
            stale = StaleConnection("the server had closed this kept-alive connection")
            waiter.set_exception(stale if self.answers else ConnectionLost("the connection closed before use"))
            return waiter
        self.transport.write(data)
        if read_timeout is not None:
            self._last_data = now = self._loop.time()
            due = now + read_timeout
            timer = self._timer  # an earlier call's timer is kept: when it fires it re-arms for this call
            if timer is None or timer.when() > due:
                if timer is not None:
                    timer.cancel()
                self._timer = self._loop.call_at(due, self._on_timer)
        return waiter

    def close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.closed:
            self.transport.close()  # connection_lost follows on the next loop turn
        self._mark_closed()

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self._pool._forget(self)

    def _advance(self) -> None:
        """Parse what is buffered; completes the call once the whole answer is in."""
        buf = self._buf
        while True:
            phase = self._phase
            if phase == _WAIT_HEAD:
                end = buf.find(_HEAD_END, self._scan)
                if end > MAX_HEAD_BYTES or (end < 0 and len(buf) > MAX_HEAD_BYTES):
                    raise MalformedAnswer(f"answer headers longer than {MAX_HEAD_BYTES} bytes")
                if end < 0:
                    self._scan = max(0, len(buf) - 3)
                    return
                head = bytes(buf[:end])
                del buf[:end + 4]
                self._scan = 0
                self._start_body(head)
                continue  # a 1xx answer leaves the phase at _WAIT_HEAD: the real one follows
            if phase == _BY_LENGTH:
                if len(buf) >= self._remaining:
                    body = bytes(buf[:self._remaining])
                    if len(buf) > self._remaining:
                        self._keep_alive = False  # bytes beyond the answer: do not reuse
                    self._complete(body)
                return
            if phase == _CHUNKED:
                self._advance_chunks()
            return  # _UNTIL_CLOSE: connection_lost completes it

    def _start_body(self, head: bytes) -> None:
        """Take a complete head: choose how the body is framed (and arm its deadline if it is
        not all in yet)."""
        status, keep_alive, headers, cookies = parse_head(head)
        if 100 <= status < 200:
            return  # informational: the real answer follows
        self._status, self._keep_alive, self._headers, self._set_cookies = status, keep_alive, headers, cookies
        if self._progress is not None:
            self._progress.headers_in = True
        encoding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if status in (204, 304):
            self._phase, self._remaining = _BY_LENGTH, 0
        elif encoding is not None:
            if encoding.rsplit(",", 1)[-1].strip().lower() != "chunked":
                raise MalformedAnswer(f"unsupported Transfer-Encoding {encoding!r}")
            self._phase, self._chunks = _CHUNKED, []
        elif length is not None:
            self._phase, self._remaining = _BY_LENGTH, content_length(length)
        else:
            self._phase, self._keep_alive = _UNTIL_CLOSE, False
        if self._phase != _BY_LENGTH or len(self._buf) < self._remaining:
            self._arm_body_deadline()  # not all in with the headers (the common case needs no timer)

    def _advance_chunks(self) -> None:
        buf = self._buf
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise MalformedAnswer("chunk size line too long")
                return
            size_text = bytes(buf[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise MalformedAnswer(f"bad chunk size {size_text[:40]!r}") from None
            if size < 0:
                raise MalformedAnswer(f"bad chunk size {size_text[:40]!r}")
            if size == 0:  # last chunk, then trailers up to an empty line
                rest = line_end + 2
                if buf[rest:rest + 2] == b"\r\n":
                    end = rest + 2
                else:
                    found = buf.find(_HEAD_END, rest)
                    if found < 0:
                        return
                    end = found + 4
                if len(buf) > end:
                    self._keep_alive = False
                self._complete(b"".join(self._chunks))
                return
            start, stop = line_end + 2, line_end + 2 + size
            if len(buf) < stop + 2:
                return
            if buf[stop:stop + 2] != b"\r\n":
                raise MalformedAnswer("chunk not followed by CRLF")
            self._chunks.append(bytes(buf[start:stop]))
            del buf[:stop + 2]

    def _arm_body_deadline(self) -> None:
        self._body_deadline = deadline = self._loop.time() + self._body_timeout
        if self._timer is None or self._timer.when() > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        now = self._loop.time()
        if self._body_deadline and now >= self._body_deadline:
            self._fail(AnswerTimeout("body", in_body=True))
            self.close()
            return
        due = [self._body_deadline] if self._body_deadline else []
        if self._read_timeout is not None:
            read_due = self._last_data + self._read_timeout
            if now >= read_due:
                self._fail(AnswerTimeout("read", in_body=self._phase != _WAIT_HEAD))
                self.close()
                return
            due.append(read_due)
        if due:
            self._timer = self._loop.call_at(min(due), self._on_timer)

    def _complete(self, body: bytes) -> None:
        # the timer stays: it lapses when it fires between calls, or re-arms for the next call
        # (one timer per connection and read timeout, not one per call)
        waiter = self._waiter
        self.reusable = self._keep_alive and not self.closed
        self.answers += 1
        self._buf.clear()
        self._phase = _WAIT_HEAD
        if waiter is not None and not waiter.done():
            waiter.set_result(RawAnswer(self._status, self._headers, self._set_cookies, body))

    def _fail(self, exc: HttpFailure) -> None:
        self._cancel_timer()
        self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Http1Pool:
    """The pool (see the module docstring). Use inside a running loop; ``close`` at the end."""

    def __init__(self, *, limit: int, keepalive_s: float, connect_timeout_s: float,
                 headers: Mapping[str, str]) -> None:
        self.loop = asyncio.get_running_loop()
        self._limit = max(1, limit)
        self._keepalive_s = keepalive_s
        self._connect_timeout_s = connect_timeout_s
        self._headers = {name.lower(): (name, value) for name, value in headers.items()}
        self._static_headers = _encode_headers(headers)
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._open = 0  # connections counted against the limit: idle, busy or connecting
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._tls: ssl.SSLContext | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._connections: set[_Connection] = set()
        self._closing = False

    async def request(self, method: str, url: str, body: bytes | None, *, headers: Mapping[str, str] | None = None,
                      read_timeout: float | None, body_timeout: float, progress: Progress | None = None
                      ) -> RawAnswer:
        """One call on one connection. A ``StaleConnection`` may be retried by the caller: the
        failed socket has left the pool."""
        target = self._target(url)
        data = self._request_bytes(method, target, body, headers)
        conn = await self._acquire(target.key)
        done = False
        try:
            answer = await conn.send(data, read_timeout, body_timeout, progress)
            done = True
        finally:
            if done and conn.reusable and not conn.closed:
                self._release(conn)
            else:
                conn.close()
        return _decoded(answer)

    async def close(self) -> None:
        self._closing = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._connections):
            conn.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionLost("the HTTP client closed"))
        self._waiters.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost

    # -- requests ----------------------------------------------------------------------------
    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _TARGET_CACHE_MAX:
                self._targets.clear()
            target = self._targets[url] = parse_target(url)
        return target

    def _request_bytes(self, method: str, target: _Target, body: bytes | None,
                       headers: Mapping[str, str] | None) -> bytes:
        static = self._static_headers
        if headers or target.basic_auth:
            merged = dict(self._headers)
            if target.basic_auth and "authorization" not in merged:
                merged["authorization"] = ("Authorization", target.basic_auth.decode("ascii"))
            for name, value in (headers or {}).items():
                merged[name.lower()] = (name, value)
            static = _encode_headers(dict(merged.values()))
        length = b"" if body is None else b"Content-Length: %d\r\n" % len(body)
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n" % (method.encode("ascii"), target.path,
                                                           target.host_header, static, length)
        return head + body if body else head

    # -- the pool ----------------------------------------------------------------------------
    async def _acquire(self, key: tuple[str, int, bool]) -> _Connection:
        while True:
            if self._closing:
                raise ConnectionLost("the HTTP client closed")
            conn = self._take_idle(key)
            if conn is not None:
                return conn
            if self._open < self._limit or self._close_idle_elsewhere():
                self._open += 1
                try:
                    return await self._connect(key)
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # we were woken but leave: pass the turn on
                raise

    def _take_idle(self, key: tuple[str, int, bool]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_ok = self.loop.time() - self._keepalive_s
        while idle:
            conn = idle.pop()  # most recently used first
            if conn.closed:
                continue
            if conn.idle_since < oldest_ok:
                conn.close()
                continue
            return conn
        return None

    def _close_idle_elsewhere(self) -> bool:
        """Close one idle connection (any host) to make room; True if one was closed."""
        for idle in self._idle.values():
            while idle:
                conn = idle.pop(0)  # the one idle longest
                if not conn.closed:
                    conn.close()  # _forget lowered _open
                    return True
        return False

    def _release(self, conn: _Connection) -> None:
        if self._closing:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self._keepalive_s, self._sweep_idle)
        self._wake()

    def _forget(self, conn: _Connection) -> None:
        """A connection closed (by us or the peer): it leaves the pool and frees its slot."""
        if conn in self._connections:
            self._connections.discard(conn)
            self._open -= 1
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep_idle(self) -> None:
        self._sweep = None
        oldest_ok = self.loop.time() - self._keepalive_s
        left = False
        for idle in self._idle.values():
            for conn in [c for c in idle if c.closed or c.idle_since < oldest_ok]:
                idle.remove(conn)
                conn.close()
            left = left or bool(idle)
        if left and not self._closing:
            self._sweep = self.loop.call_later(self._keepalive_s, self._sweep_idle)

    async def _connect(self, key: tuple[str, int, bool]) -> _Connection:
        host, port, tls = key
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                addresses = await self._resolve(host, port)
                last: OSError | None = None
                for family, address in addresses:
                    try:
                        _, conn = await self.loop.create_connection(
                            lambda: _Connection(self, key), address[0], address[1], family=family,
                            ssl=self._tls_context() if tls else None, server_hostname=host if tls else None)
                    except OSError as exc:
                        last = exc
                        continue
                    self._connections.add(conn)
                    return conn
        except TimeoutError:
            raise ConnectFailed(f"timed out ({self._connect_timeout_s:g}s)", timed_out=True) from None
        assert last is not None
        raise ConnectFailed(str(last), os_error=last) from None

    async def _resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (host, port))]
        try:
            infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectFailed(f"cannot resolve {host!r}: {exc}", os_error=exc, dns=True) from None
        return [(family, address) for family, _, _, _, address in infos]

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


def parse_target(url: str) -> _Target:
    """Split an ``http(s)://`` URL into the pool key, the request target and the Host header."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    tls = scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    if not host.isascii():
        shown = host.encode("idna").decode("ascii")
    host_header = shown if parts.port is None else f"{shown}:{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = b"Basic " + base64.b64encode(pair.encode("utf-8"))
    return _Target((host, port, tls), path.encode("ascii"), host_header.encode("ascii"), auth)


def parse_head(head: bytes) -> tuple[int, bool, dict[str, str], list[str]]:
    """Status line + header lines -> (status, keep-alive, headers, Set-Cookie values)."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit() \
            or rest[3:4] not in (b"", b" "):
        raise MalformedAnswer(f"bad status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise MalformedAnswer(f"bad header line {line[:80]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key == "set-cookie":
            cookies.append(text)
        elif key in headers:
            headers[key] += ", " + text
        else:
            headers[key] = text
    connection = headers.get("connection")
    if connection is None:
        keep_alive = version == b"HTTP/1.1"
    else:
        tokens = [token.strip().lower() for token in connection.split(",")]
        keep_alive = "keep-alive" in tokens if version == b"HTTP/1.0" else "close" not in tokens
    return int(code), keep_alive, headers, cookies


def content_length(text: str) -> int:
    """A Content-Length value (repeated equal values allowed, as RFC 9110 permits)."""
    values = {value.strip() for value in text.split(",")}
    if len(values) != 1:
        raise MalformedAnswer(f"conflicting Content-Length {text!r}")
    value = values.pop()
    if not value.isdigit():
        raise MalformedAnswer(f"bad Content-Length {text!r}")
    return int(value)


def _decoded(answer: RawAnswer) -> RawAnswer:
    encoding = answer.headers.get("content-encoding")
    if encoding is None or not answer.body:
        return answer
    name = encoding.strip().lower()
    if name == "identity":
        return answer
    try:
        if name in ("gzip", "x-gzip"):
            answer.body = zlib.decompress(answer.body, 16 + zlib.MAX_WBITS)
        elif name == "deflate":
            try:
                answer.body = zlib.decompress(answer.body)
            except zlib.error:
                answer.body = zlib.decompress(answer.body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
        else:
            raise MalformedAnswer(f"unsupported Content-Encoding {encoding!r} (none was asked for)")
    except zlib.error as exc:
        raise MalformedAnswer(f"body does not decode as {name}: {exc}") from None
    return answer


def _encode_headers(headers: Mapping[str, str]) -> bytes:
    out = []
    for name, value in headers.items():
        if any(c in name for c in "\r\n:") or "\r" in value or "\n" in value:
            raise ValueError(f"HTTP header {name!r} has a line break or a colon in its name or value")
        out.append(f"{name}: {value}\r\n".encode("latin-1"))
    return b"".join(out)


def _reason(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}" if exc is not None else "end of stream"
