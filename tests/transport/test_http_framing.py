"""HTTP/1.1 framing and pooling over real loopback sockets, on both clients
(``transport.http_client``: native = transport/http1.py, and aiohttp as the reference): chunked,
read-until-close, 1xx, 204, gzip, cookies, malformed answers, keep-alive rules, the pool's limit,
cancellation, and many concurrent calls whose answers must never be crossed."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import random
from typing import AsyncIterator, Awaitable, Callable

import orjson
import pytest

from gym_rollouts.config.schema import TransportConfig
from gym_rollouts.errors import TransportError
from gym_rollouts.transport.client import HttpTransport
from gym_rollouts.transport import http1

# handler(head, body, n-th request on this connection) -> bytes to send, None to close, or
# (bytes, CLOSE) to send and then close
CLOSE = "close"
Handler = Callable[[bytes, bytes, int], Awaitable["bytes | None | tuple[bytes, str]"]]


@pytest.fixture(params=["native", "aiohttp"])
def client(request) -> str:
    return request.param


def make(client: str, concurrency: int = 4, extra: int = 16, api_key: str | None = None, **kw) -> HttpTransport:
    cfg = TransportConfig(**{"http_client": client, "connect_timeout_s": 2.0, "read_timeout_s": 10.0, **kw})
    return HttpTransport(cfg, concurrency=concurrency, extra_connections=extra, api_key=api_key)


@contextlib.asynccontextmanager
async def peer(handler: Handler) -> AsyncIterator[dict]:
    """A raw HTTP/1.1 server; yields {"url", "connections", "open", "max_open", "requests"}."""
    info: dict = {"connections": 0, "open": 0, "max_open": 0, "requests": []}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info["connections"] += 1
        info["open"] += 1
        info["max_open"] = max(info["max_open"], info["open"])
        n = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                n += 1
                info["requests"].append(head)
                answer = await handler(head, body, n)
                if answer is None:
                    break
                then_close = isinstance(answer, tuple)
                writer.write(answer[0] if then_close else answer)
                await writer.drain()
                if then_close:
                    break
        except ConnectionError:
            pass
        finally:
            info["open"] -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    info["url"] = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield info


def answer(body: bytes, *headers: str, status: str = "200 OK", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{version} {status}", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def fixed(data: bytes) -> Handler:
    async def handler(head: bytes, body: bytes, n: int) -> bytes | None:
        return data
    return handler


async def echo(head: bytes, body: bytes, n: int) -> bytes:
    """The request body's sha256 and length, so a crossed answer is seen."""
    return answer(orjson.dumps({"sha": hashlib.sha256(body).hexdigest(), "len": len(body), "n": n}))


async def test_chunked_answer_with_extensions_and_trailers_then_reuse(client: str) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4;ext=1\r\n{\"a\"\r\n7\r\n: [1, 2\r\n2\r\n]}\r\n0\r\nX-Trailer: yes\r\n\r\n")
    async with peer(fixed(chunked)) as srv, make(client) as http:
        assert await http.post_json(srv["url"] + "/x", {}) == {"a": [1, 2]}
        assert await http.post_json(srv["url"] + "/x", {}) == {"a": [1, 2]}
        assert srv["connections"] == 1


async def test_an_answer_without_length_is_read_until_close_and_not_reused(client: str) -> None:
    async def until_close(head: bytes, body: bytes, n: int) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"whole\": true}", CLOSE
    async with peer(until_close) as srv, make(client) as http:
        # the peer closes after writing: the answer ends with the connection
        for _ in range(3):
            assert await http.post_json(srv["url"] + "/x", {}) == {"whole": True}
        assert srv["connections"] == 3


@pytest.mark.parametrize("headers, version, reused", [
    (("Connection: close",), "HTTP/1.1", False),
    ((), "HTTP/1.0", False),
    (("Connection: keep-alive",), "HTTP/1.0", True),
    (("Connection: Keep-Alive",), "HTTP/1.1", True),
])
async def test_keep_alive_rules(client: str, headers: tuple[str, ...], version: str, reused: bool) -> None:
    async with peer(fixed(answer(b"{}", *headers, version=version))) as srv, make(client) as http:
        for _ in range(3):
            assert await http.post_json(srv["url"] + "/x", {}) == {}
        assert srv["connections"] == (1 if reused else 3)


async def test_informational_answer_is_skipped(client: str) -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b'{"after": 100}')
    async with peer(fixed(data)) as srv, make(client) as http:
        assert await http.post_json(srv["url"] + "/x", {}) == {"after": 100}


async def test_no_content_answer_has_an_empty_body_and_keeps_the_connection(client: str) -> None:
    async with peer(fixed(b"HTTP/1.1 204 No Content\r\n\r\n")) as srv, make(client) as http:
        assert await http.get(srv["url"] + "/x") == (204, b"")
        assert await http.get(srv["url"] + "/x") == (204, b"")
        assert srv["connections"] == 1


async def test_gzip_body_is_decoded(client: str) -> None:
    packed = gzip.compress(b'{"zipped": "yes"}')
    async with peer(fixed(answer(packed, "Content-Encoding: gzip"))) as srv, make(client) as http:
        assert await http.post_json(srv["url"] + "/x", {}) == {"zipped": "yes"}


async def test_cookies_set_by_an_answer(client: str) -> None:
    data = answer(b"{}", "Set-Cookie: session=abc123; Path=/; HttpOnly", "Set-Cookie: other=2")
    async with peer(fixed(data)) as srv, make(client) as http:
        got = await http.post(srv["url"] + "/x", b"{}")
        assert got.status == 200 and got.cookies == {"session": "abc123", "other": "2"}
        assert got.retry_after is None


async def test_request_headers_key_per_call_headers_and_url_credentials(client: str) -> None:
    async with peer(fixed(answer(b"{}"))) as srv, make(client, api_key="sk-test") as http:
        await http.post(srv["url"] + "/v1/x?y=1", b'{"q": 1}', headers={"Cookie": "session=abc"})
        await http.get(srv["url"] + "/health")
    async with peer(fixed(answer(b"{}"))) as srv2, make(client) as http:
        await http.get(srv2["url"].replace("http://", "http://ann:pw@") + "/models")
    post, get = srv["requests"]
    assert post.startswith(b"POST /v1/x?y=1 HTTP/1.1\r\n")
    lower = post.lower()
    assert b"\r\nauthorization: bearer sk-test\r\n" in lower and b"\r\ncookie: session=abc\r\n" in lower
    assert b"\r\ncontent-type: application/json\r\n" in lower and b"\r\ncontent-length: 8\r\n" in lower
    assert b"\r\nhost: 127.0.0.1:" in lower
    assert get.startswith(b"GET /health HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Basic YW5uOnB3\r\n" in srv2["requests"][0]  # base64("ann:pw")


@pytest.mark.parametrize("bad", [
    b"HTTX/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n{}",
])
async def test_malformed_answers_are_a_lost_connection(client: str, bad: bytes) -> None:
    async with peer(fixed(bad)) as srv, make(client) as http:
        with pytest.raises(TransportError) as info:
            await http.post_json(srv["url"] + "/x", {})
        assert info.value.kind == "disconnected" and info.value.retryable


async def test_a_connection_closed_mid_body_is_lost_not_truncated(client: str) -> None:
    async def truncated(head: bytes, body: bytes, n: int) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"partial\"", CLOSE
    async with peer(truncated) as srv, make(client) as http:
        with pytest.raises(TransportError) as info:
            await http.post_json(srv["url"] + "/x", {})
        assert info.value.kind == "disconnected"


async def test_an_idle_connection_older_than_keepalive_is_not_reused(client: str) -> None:
    async with peer(echo) as srv, make(client, keepalive_s=0.2) as http:
        await http.post_json(srv["url"] + "/x", {})
        await http.post_json(srv["url"] + "/x", {})
        assert srv["connections"] == 1
        await asyncio.sleep(0.5)
        await http.post_json(srv["url"] + "/x", {})
        assert srv["connections"] == 2 and http.stale_socket_retries == 0  # dropped, not tried and failed
        await asyncio.sleep(0.6)  # the idle one is closed by the client even if nobody asks again
        assert srv["open"] <= 1 if client == "aiohttp" else srv["open"] == 0


async def test_the_pool_limit_bounds_open_connections_and_every_call_completes(client: str) -> None:
    async def slow(head: bytes, body: bytes, n: int) -> bytes:
        await asyncio.sleep(0.05)
        return await echo(head, body, n)
    async with peer(slow) as srv, make(client, concurrency=0, extra=0) as http:  # 8 connections at most
        bodies = [orjson.dumps({"i": i}) for i in range(40)]
        got = await asyncio.gather(*(http.post(srv["url"] + "/x", b) for b in bodies))
        assert [orjson.loads(g.body)["sha"] for g in got] == [hashlib.sha256(b).hexdigest() for b in bodies]
        assert srv["max_open"] <= 8 and srv["connections"] <= 8


async def test_a_cancelled_call_never_hands_its_answer_to_the_next_call(client: str) -> None:
    async def late(head: bytes, body: bytes, n: int) -> bytes:
        if b'"slow"' in body:
            await asyncio.sleep(0.4)
        return await echo(head, body, n)
    async with peer(late) as srv, make(client, concurrency=0, extra=0) as http:
        slow = asyncio.create_task(http.post(srv["url"] + "/x", b'{"slow": 1}'))
        await asyncio.sleep(0.1)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        for i in range(10):  # reuse whatever the pool kept: each answer is its own
            body = orjson.dumps({"fast": i})
            got = orjson.loads((await http.post(srv["url"] + "/x", body)).body)
            assert got["sha"] == hashlib.sha256(body).hexdigest()
        await asyncio.sleep(0.5)  # the slow answer arrives now on a closed connection, or nowhere


async def test_many_concurrent_calls_of_random_sizes_get_their_own_answers(client: str) -> None:
    rng = random.Random(7)
    async with peer(echo) as srv, make(client, concurrency=16, extra=0) as http:
        bodies = [orjson.dumps({"pad": "x" * rng.choice([0, 10, 3000, 70000, 600000])}) for _ in range(120)]
        got = await asyncio.gather(*(http.post(srv["url"] + "/x", b) for b in bodies))
        for body, reply in zip(bodies, got):
            data = orjson.loads(reply.body)
            assert data["sha"] == hashlib.sha256(body).hexdigest() and data["len"] == len(body)


async def test_a_large_answer_in_many_pieces(client: str) -> None:
    big = orjson.dumps({"text": "y" * 3_000_000})

    async def pieces(head: bytes, body: bytes, n: int) -> bytes:
        return answer(big)
    async with peer(pieces) as srv, make(client) as http:
        for _ in range(2):
            assert (await http.post_json(srv["url"] + "/x", {}))["text"] == "y" * 3_000_000
        assert srv["connections"] == 1


async def test_a_chunked_answer_dripping_within_the_body_timeout_completes(client: str) -> None:
    parts = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"3\r\n[1,\r\n", b"2\r\n2]\r\n", b"0\r\n\r\n"]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.1)
        await reader.read()  # until the client closes
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
    async with server, make(client, body_timeout_s=2.0) as http:
        assert await http.get(url) == (200, b"[1,2]")


async def test_unsolicited_bytes_close_the_connection() -> None:
    # native only: after a complete answer, the peer sends another one nobody asked for
    async def chatty(head: bytes, body: bytes, n: int) -> bytes:
        return answer(orjson.dumps({"n": n})) + answer(b'{"n": "extra"}')
    async with peer(chatty) as srv, make("native") as http:
        for _ in range(3):
            assert await http.post_json(srv["url"] + "/x", {}) == {"n": 1}
        assert srv["connections"] == 3


async def test_closing_the_pool_fails_waiting_calls_instead_of_hanging() -> None:
    async def hang(head: bytes, body: bytes, n: int) -> bytes:
        await asyncio.sleep(30)
        return answer(b"{}")
    async with peer(hang) as srv:
        http = make("native", concurrency=0, extra=0)
        await http.__aenter__()
        calls = [asyncio.create_task(http.post(srv["url"] + "/x", b"{}")) for _ in range(10)]
        await asyncio.sleep(0.2)  # 8 in flight, 2 waiting for a connection
        await http.__aexit__(None, None, None)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        assert all(isinstance(r, TransportError) and r.kind == "disconnected" for r in results), results


def test_target_parsing() -> None:
    t = http1.parse_target("https://Example.com/v1/chat?x=a b")
    assert t.key == ("example.com", 443, True) and t.host_header == b"example.com" and t.path == b"/v1/chat?x=a%20b"
    t = http1.parse_target("http://[::1]:8000")
    assert t.key == ("::1", 8000, False) and t.host_header == b"[::1]:8000" and t.path == b"/"
    assert http1.parse_target("http://u:p%40@h:1/").basic_auth == b"Basic dTpwQA=="
    with pytest.raises(ValueError, match="not an http"):
        http1.parse_target("ftp://h/x")


def test_head_parsing() -> None:
    status, keep, headers, cookies = http1.parse_head(
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nX-A: 1\r\nx-a: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2")
    assert (status, keep) == (429, True) and headers == {"retry-after": "7", "x-a": "1, 2"}
    assert cookies == ["a=1", "b=2"]
    for bad in (b"HTTP/1.1 200 OK\r\n folded", b"HTTP/1.1 200 OK\r\nNoColon", b"HTTP/2 200 OK",
                b"HTTP/1.1 200 OK\r\nBad Name : x"):
        with pytest.raises(http1.MalformedAnswer):
            http1.parse_head(bad)
    assert http1.content_length("5, 5") == 5
    with pytest.raises(http1.MalformedAnswer):
        http1.content_length("5, 6")


async def test_a_hung_answer_on_a_reused_connection_still_times_out_on_time(client: str) -> None:
    # the native client keeps one timer per connection across calls: a later call must still be
    # bounded by its own read timeout, measured from its own send
    async def hang_later(head: bytes, body: bytes, n: int) -> bytes:
        if n >= 3:
            await asyncio.sleep(30)
        return answer(b"{}")
    async with peer(hang_later) as srv, make(client, read_timeout_s=0.6) as http:
        await http.post_json(srv["url"] + "/x", {})
        await asyncio.sleep(0.4)  # the first call's timer (if kept) is due 0.2 s into the next call
        await http.post_json(srv["url"] + "/x", {})
        started = asyncio.get_running_loop().time()
        with pytest.raises(TransportError) as info:
            await http.post_json(srv["url"] + "/x", {})
        elapsed = asyncio.get_running_loop().time() - started
        assert info.value.kind == "timeout" and 0.55 < elapsed < 1.5, elapsed
        assert srv["connections"] == 1
