"""Wire tests: the subprocess launcher, the CLI, restart on the same port, and the config."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from gym_rollouts.embedded import (
    EmbeddedConfig,
    EmbeddedStartError,
    config_from_argv,
    config_to_argv,
    embedded_subprocess,
    launch_embedded,
)

CHAT = {"messages": [{"role": "user", "content": "What is 2+2?"}]}


async def _chat_status(base_url):
    async with aiohttp.ClientSession() as s:
        async with s.post(base_url + "/chat/completions", json=CHAT) as resp:
            return resp.status


async def test_kill_and_restart_on_the_same_port():
    async with launch_embedded(EmbeddedConfig(model_name="m1")) as proc:
        assert proc.base_url == f"http://127.0.0.1:{proc.port}/v1" and proc.port > 0
        first_pid, port = proc.pid, proc.port
        assert await _chat_status(proc.base_url) == 200
        await proc.kill()
        assert not proc.alive and proc.returncode == -signal.SIGKILL
        with pytest.raises(aiohttp.ClientConnectionError):
            await _chat_status(proc.base_url)
        await proc.restart()
        assert proc.port == port and proc.pid != first_pid and proc.alive
        assert await _chat_status(proc.base_url) == 200
        await proc.restart()  # restarting a live server kills it first
        assert proc.port == port and await _chat_status(proc.base_url) == 200
        await proc.terminate()
        assert proc.returncode == 0  # SIGTERM is a clean stop
    assert not proc.alive


async def test_restart_while_a_client_holds_a_keepalive_socket():
    async with launch_embedded() as proc, aiohttp.ClientSession() as s:
        async with s.post(proc.base_url + "/chat/completions", json=CHAT) as resp:
            assert resp.status == 200
        await proc.kill()
        await proc.restart()
        for attempt in range(2):  # the pooled socket is dead: one retry, as the transport does
            try:
                async with s.post(proc.base_url + "/chat/completions", json=CHAT) as resp:
                    assert resp.status == 200
                break
            except aiohttp.ClientConnectionError:
                assert attempt == 0


def test_sync_launcher_with_cli_args():
    args = ["--model-name", "foo", "--max-model-len", "512", "--no-tool-parser", "--fault-kinds", "503,drop"]
    with embedded_subprocess(args) as proc:
        async def check():
            async with aiohttp.ClientSession() as s:
                async with s.get(proc.base_url + "/models") as resp:
                    card = (await resp.json())["data"][0]
                async with s.post(proc.base_url + "/chat/completions", json={
                        **CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}) as resp:
                    refused = resp.status
            return card, refused

        card, refused = asyncio.run(check())
        assert (card["id"], card["max_model_len"], refused) == ("foo", 512, 400)
        pid = proc.pid
    assert proc.returncode is not None  # reaped
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_cli_prints_exactly_one_ready_line_and_stops_on_sigint():
    proc = subprocess.Popen([sys.executable, "-m", "gym_rollouts.embedded", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:") and line.endswith("/v1\n")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out == "" and "Traceback" not in err


def test_start_failure_reports_stderr():
    with pytest.raises(EmbeddedStartError, match="fault-rate|fault_rate"):
        with embedded_subprocess(["--fault-rate", "7"], startup_timeout=20):
            pass


def test_config_argv_round_trip():
    cfg = EmbeddedConfig(port=1234, model_name="x", max_model_len=100, latency_ms=2.5, reasoning=True,
                         reasoning_parser="qwen3", reasoning_field="reasoning_content", tool_parser=False,
                         return_token_ids_supported=False, fault_rate=0.25, fault_kinds=("503", "hang"),
                         seed=9, prefix_caching=False, fail_health=True, latency_per_token_ms=1.0)
    assert config_from_argv(config_to_argv(cfg)) == cfg
    assert config_to_argv(EmbeddedConfig()) == []
    assert config_from_argv(["--fault-kinds", "429, slow"]).fault_kinds == ("429", "slow")
    with pytest.raises(ValueError):
        EmbeddedConfig(fault_kinds=("boom",))


async def test_latency_option(make_wire):
    w = await make_wire(latency_ms=200)
    started = time.monotonic()
    await asyncio.gather(*(w.chat(**CHAT) for _ in range(5)))
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 0.9  # concurrent requests wait in parallel, not in series
    per_token = await make_wire(latency_per_token_ms=10)
    started = time.monotonic()
    reply = await per_token.chat(**CHAT)
    assert time.monotonic() - started >= 0.01 * reply["usage"]["completion_tokens"]


async def test_throughput_smoke(wire):
    started = time.monotonic()
    sem = asyncio.Semaphore(16)

    async def one(i):
        async with sem:
            return await wire.chat(messages=[{"role": "user", "content": f"What is {i}+1?"}], return_token_ids=True)

    replies = await asyncio.gather(*(one(i) for i in range(300)))
    elapsed = time.monotonic() - started
    assert [r["choices"][0]["message"]["content"] for r in replies[:3]] == [
        "The answer is 1.", "The answer is 2.", "The answer is 3."]
    assert wire.server.stats()["requests"]["chat"] == 300
    print(f"throughput smoke: {300 / elapsed:.0f} requests/s (client and server in one process)")
