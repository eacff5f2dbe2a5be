"""HttpTransport over real loopback sockets: keep-alive reuse after a server-side close, timeouts,
error mapping. Small raw asyncio servers play the misbehaving peers; the embedded server plays vLLM.
Every test runs on both HTTP clients (``transport.http_client``: native and aiohttp)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import AsyncIterator, Callable

import orjson
import pytest

from gym_rollouts.config.schema import TransportConfig
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer
from gym_rollouts.errors import ProtocolError, ServerStatusError, TransportError
from gym_rollouts.transport.client import HttpTransport

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
CHAT = {"model": "gym-tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hello"}]}

# per connection: (request number on this connection) -> bytes to answer, or None to close silently
Script = Callable[[int], bytes | None]


async def _read_request(reader: asyncio.StreamReader) -> bool:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return True


@contextlib.asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[dict]:
    """A tiny HTTP/1.1 peer driven by ``script``; yields {"url", "connections"}."""
    info: dict = {"connections": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info["connections"] += 1
        n = 0
        try:
            while await _read_request(reader):
                n += 1
                answer = script(n)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    info["url"] = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    async with server:
        yield info


CLIENT = {"name": "native"}


@pytest.fixture(params=["native", "aiohttp"], autouse=True)
def http_client(request):
    CLIENT["name"] = request.param
    yield request.param
    CLIENT["name"] = "native"


def config(**kw) -> TransportConfig:
    return TransportConfig(**{"http_client": CLIENT["name"], **kw})


def transport(**kw) -> HttpTransport:
    return HttpTransport(config(**{"connect_timeout_s": 2.0, "read_timeout_s": 10.0, **kw}), concurrency=4)


async def test_reused_socket_closed_by_the_server_is_retried_once_transparently() -> None:
    # Every connection answers its first request, then closes when asked a second time on it
    # (what uvicorn's keep-alive timeout does when it races our reuse).
    async with raw_server(lambda n: OK if n == 1 else None) as srv, transport(keepalive_s=30.0) as http:
        for _ in range(5):
            assert await http.post_json(srv["url"] + "/x", {"a": 1}) == {"ok": True}
        assert http.stale_socket_retries == 4
        assert srv["connections"] == 5


async def test_several_stale_pooled_sockets_in_a_row_never_fail_a_request() -> None:
    # Three sockets pooled at once, all closed by the server on their next use (idle sockets
    # opened together expire together): one request meets each of them, then a fresh connection.
    async with raw_server(lambda n: OK if n == 1 else None) as srv, transport(keepalive_s=30.0) as http:
        await asyncio.gather(*(http.post_json(srv["url"] + "/x", {"a": i}) for i in range(3)))
        assert srv["connections"] == 3
        assert await http.post_json(srv["url"] + "/x", {"a": 1}) == {"ok": True}
        assert http.stale_socket_retries == 3 and srv["connections"] == 4


async def test_a_fresh_connection_that_drops_is_reported_not_retried() -> None:
    async with raw_server(lambda n: None) as srv, transport() as http:
        with pytest.raises(TransportError) as info:
            await http.post_json(srv["url"] + "/x", {"a": 1})
        assert info.value.kind == "disconnected" and info.value.retryable
        assert http.stale_socket_retries == 0 and srv["connections"] == 1


async def test_keepalive_reuse_after_server_side_close_never_fails_a_request() -> None:
    # The server's keep-alive (0.3 s) is shorter than ours (30 s): each pause below lands near the
    # moment the server drops the idle socket.
    async with EmbeddedServer(EmbeddedConfig(keepalive_timeout=0.3)) as srv, transport(keepalive_s=30.0) as http:
        for pause in [0.1, 0.25, 0.3, 0.35, 0.5] * 3:
            reply = await asyncio.gather(*(http.post_json(srv.base_url + "/chat/completions", CHAT) for _ in range(3)))
            assert all(r["choices"][0]["message"]["content"] for r in reply)
            await asyncio.sleep(pause)


async def test_client_keepalive_below_the_server_one_reuses_connections() -> None:
    async with raw_server(lambda n: OK) as srv, transport(keepalive_s=4.0) as http:
        for _ in range(10):
            await http.post_json(srv["url"] + "/x", {})
        assert srv["connections"] == 1 and http.stale_socket_retries == 0


async def test_read_timeout_bounds_a_hung_server() -> None:
    async with EmbeddedServer(EmbeddedConfig(fault_rate=1.0, fault_kinds=("hang",))) as srv, \
            transport(read_timeout_s=0.5) as http:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await http.post_json(srv.base_url + "/chat/completions", CHAT)
        assert info.value.kind == "timeout" and "0.5s" in str(info.value)
        assert time.monotonic() - started < 5.0


async def test_per_call_total_timeout() -> None:
    async with EmbeddedServer(EmbeddedConfig(latency_ms=3000.0)) as srv, transport() as http:
        with pytest.raises(TransportError) as info:
            await http.post_json(srv.base_url + "/chat/completions", CHAT, timeout_s=0.3)
        assert info.value.kind == "timeout"


async def test_connect_refused_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once this socket closes
    async with transport() as http:
        with pytest.raises(TransportError) as info:
            await http.post_json(f"http://127.0.0.1:{port}/v1/chat/completions", CHAT)
    assert info.value.kind == "connect" and info.value.reason == "refused"


async def test_status_errors_carry_status_body_and_vllm_message() -> None:
    async with EmbeddedServer(EmbeddedConfig(max_model_len=32)) as srv, transport() as http:
        with pytest.raises(ServerStatusError) as info:
            await http.post_json(srv.base_url + "/chat/completions",
                                 {**CHAT, "messages": [{"role": "user", "content": "word " * 100}]})
        err = info.value
        assert err.status == 400 and not err.retryable
        assert err.server_message.startswith("This model's maximum context length is 32 tokens")
        assert '"code":400' in err.body.replace(" ", "")
        srv.set_faults(1.0, ["503"])
        with pytest.raises(ServerStatusError) as info:
            await http.post_json(srv.base_url + "/chat/completions", CHAT)
        assert info.value.status == 503 and info.value.retryable


async def test_non_json_2xx_is_a_protocol_error() -> None:
    page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>"
    async with raw_server(lambda n: page) as srv, transport() as http:
        with pytest.raises(ProtocolError, match="not JSON"):
            await http.post_json(srv["url"] + "/x", {})


async def test_get_returns_status_and_body() -> None:
    async with EmbeddedServer(EmbeddedConfig(fail_health=True)) as srv, transport() as http:
        assert (await http.get(srv.root_url + "/health", timeout_s=2.0))[0] == 503
        status, raw = await http.get(srv.root_url + "/version")
        assert status == 200 and b"version" in raw


def test_keepalive_at_or_above_vllm_server_keepalive_is_warned(caplog) -> None:
    HttpTransport(TransportConfig(keepalive_s=6.0), concurrency=1)
    assert "not below vLLM's 5.0s server keep-alive" in caplog.text
    caplog.clear()
    HttpTransport(TransportConfig(keepalive_s=4.0), concurrency=1)
    assert not caplog.text


async def test_used_outside_its_context_raises() -> None:
    http = transport()
    with pytest.raises(RuntimeError, match="outside"):
        await http.get("http://127.0.0.1:1/")



async def test_control_requests_do_not_queue_behind_a_full_data_pool() -> None:
    cfg = config(connect_timeout_s=2.0, read_timeout_s=30.0)
    async with EmbeddedServer(EmbeddedConfig(fault_rate=1.0, fault_kinds=("hang",))) as srv, \
            HttpTransport(cfg, concurrency=0, extra_connections=0) as http:
        hung = [asyncio.create_task(http.post_json(srv.base_url + "/chat/completions", CHAT)) for _ in range(8)]
        try:
            await asyncio.sleep(0.3)  # all 8 pooled connections are now taken by hung calls
            with pytest.raises(TransportError, match="within 0.5s"):
                await http.get(srv.root_url + "/health", timeout_s=0.5)  # queued behind them
            status, _ = await http.get(srv.root_url + "/health", timeout_s=2.0, control=True)
            assert status == 200
        finally:
            for task in hung:
                task.cancel()
            await asyncio.gather(*hung, return_exceptions=True)


async def test_a_dripping_body_is_cut_off_by_the_body_timeout() -> None:
    # headers at once, then one body byte per 0.2 s: each read succeeds, so no per-read timeout fires
    async with EmbeddedServer(EmbeddedConfig(fault_rate=1.0, fault_kinds=("drip",))) as srv, \
            transport(read_timeout_s=30.0, body_timeout_s=0.6) as http:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await http.post_json(srv.base_url + "/chat/completions", CHAT)
        elapsed = time.monotonic() - started
    assert info.value.kind == "timeout" and info.value.retryable
    assert "headers but not the whole body within 0.6s" in str(info.value)
    assert 0.5 < elapsed < 3.0, elapsed


async def test_the_body_timeout_starts_only_when_the_headers_are_in() -> None:
    # a 1 s generation (before the headers) with a 0.1 s body timeout: a long generation is not cut
    async with EmbeddedServer(EmbeddedConfig(latency_ms=1000.0)) as srv, transport(body_timeout_s=0.1) as http:
        reply = await http.post_json(srv.base_url + "/chat/completions", CHAT)
    assert reply["choices"][0]["message"]["content"]


@pytest.mark.parametrize("kind", ["429", "503"])
async def test_retry_after_of_an_error_answer_is_kept(kind: str) -> None:
    async with EmbeddedServer(EmbeddedConfig(fault_rate=1.0, fault_kinds=(kind,), fault_retry_after="7")) as srv, \
            transport() as http:
        with pytest.raises(ServerStatusError) as info:
            await http.post_json(srv.base_url + "/chat/completions", CHAT)
        assert info.value.status == int(kind) and info.value.retry_after == "7"
        answer = await http.post(srv.base_url + "/chat/completions", b"{}")
        assert answer.status == int(kind) and answer.retry_after == "7"
        srv.set_faults(0.0)
        answer = await http.post(srv.base_url + "/chat/completions", orjson.dumps(CHAT))
        assert answer.status == 200 and answer.retry_after is None
