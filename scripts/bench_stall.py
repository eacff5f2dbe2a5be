"""Stall benchmark: why collection stays non-streamed, and what a stalled server costs; prints JSON.

(a) Client CPU per call, streamed (``stream: true``, one SSE chunk per token, as vLLM sends them) vs
    non-streamed (one JSON body once the generation is over) answers of the same N tokens, with and
    without per-token logprobs + ids (token capture for training). A tiny aiohttp SSE server runs
    in a child process (this script with ``--serve``; the embedded server has no streaming), pacing
    tokens ``--token-interval-ms`` apart so chunks arrive one by one as from a real generation; the
    client is a minimal aiohttp loop (read + ``orjson.loads``; streamed: per line, accumulating the
    text and the logprobs). CPU is this process's, so the server's is not counted.
(b) Time for one model call to get past a stalled server with the chosen design: the real
    ``Dispatcher`` over two embedded servers, the first of them faulty and the call routed to it
    first; router defaults unless the scenario says otherwise: a hung server that answers
    ``/health`` (the stall detector at several ``stall_timeout_s``; and without it, bounded by
    ``read_timeout_s``), a frozen process (SIGSTOP: probes and ``/metrics`` time out), a dripping
    server (``body_timeout_s``), a killed one (refused).

    python scripts/bench_stall.py                       # ~1.5 minutes on 2 cores
    python scripts/bench_stall.py --only cpu --tokens 64,512,2048
    python scripts/bench_stall.py --only stalls --stall-timeouts 2,5,30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gym_rollouts.config.schema import RouterConfig, TransportConfig  # noqa: E402
from gym_rollouts.embedded import EmbeddedConfig, embedded_subprocess  # noqa: E402
from gym_rollouts.router.dispatcher import Dispatcher  # noqa: E402
from gym_rollouts.transport.client import HttpTransport  # noqa: E402

CHAT = {"model": "gym-tiny", "max_tokens": 8, "messages": [{"role": "user", "content": "What is 2 + 3?"}]}


# -- (a) the SSE server (child process) -------------------------------------------------------------
def _token(i: int, logprobs: bool) -> tuple[str, dict[str, Any] | None]:
    text = f" tok{i % 1000}"
    entry = {"token": f"token_id:{1000 + i % 3000}", "logprob": -0.25 - (i % 7) / 10, "bytes": list(text.encode()),
             "top_logprobs": []} if logprobs else None
    return text, entry


def _bodies(n: int, logprobs: bool) -> tuple[bytes, list[bytes]]:
    """(the non-streamed body, the SSE chunks) of one n-token answer, shaped like vLLM's."""
    tokens = [_token(i, logprobs) for i in range(n)]
    usage = {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": "".join(t for t, _ in tokens)},
                              "finish_reason": "length"}
    if logprobs:
        choice["logprobs"] = {"content": [e for _, e in tokens]}
        choice["token_ids"] = [1000 + i % 3000 for i in range(n)]
    whole = orjson.dumps({"id": "chatcmpl-b", "object": "chat.completion", "created": 0, "model": "m",
                          "choices": [choice], "usage": usage})
    chunks = []
    for i, (text, entry) in enumerate(tokens):
        delta: dict[str, Any] = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        if logprobs:
            delta["logprobs"] = {"content": [entry]}
            delta["token_ids"] = [1000 + i % 3000]
        chunks.append(b"data: " + orjson.dumps({"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 0,
                                                "model": "m", "choices": [delta]}) + b"\n\n")
    chunks.append(b"data: " + orjson.dumps({"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 0,
                                            "model": "m", "choices": [{"index": 0, "delta": {},
                                                                       "finish_reason": "length"}],
                                            "usage": usage}) + b"\n\n")
    chunks.append(b"data: [DONE]\n\n")
    return whole, chunks


async def _serve(interval_s: float) -> None:
    from aiohttp import web

    cache: dict[tuple[int, bool], tuple[bytes, list[bytes]]] = {}

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        key = (int(body["max_tokens"]), bool(body.get("logprobs")))
        if key not in cache:
            cache[key] = _bodies(*key)
        whole, chunks = cache[key]
        if not body.get("stream"):
            await asyncio.sleep(interval_s * key[0])  # the generation, then the answer in one piece
            return web.Response(body=whole, content_type="application/json")
        reply = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await reply.prepare(request)
        for chunk in chunks:
            await reply.write(chunk)
            await asyncio.sleep(interval_s)
        await reply.write_eof()
        return reply

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY http://127.0.0.1:{port}/v1", flush=True)
    await asyncio.Event().wait()


@contextlib.contextmanager
def sse_server(interval_s: float) -> Any:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--token-interval-ms", str(interval_s * 1000)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"the SSE server did not start: {line!r}")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- (a) the client ---------------------------------------------------------------------------------
async def _one(session: Any, url: str, n: int, logprobs: bool, stream: bool) -> int:
    body = {**CHAT, "max_tokens": n, "stream": stream, "logprobs": logprobs}
    async with session.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as resp:
        if not stream:
            reply = orjson.loads(await resp.read())
            return len(reply["choices"][0]["message"]["content"])
        parts: list[str] = []
        entries: list[Any] = []
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            choice = orjson.loads(line[6:])["choices"][0]
            parts.append(choice["delta"].get("content") or "")
            if choice.get("logprobs"):
                entries.extend(choice["logprobs"]["content"])
        return len("".join(parts))


async def client_cpu(url: str, n: int, logprobs: bool, stream: bool, calls: int, concurrency: int) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(_one(session, url, n, logprobs, stream) for _ in range(concurrency)))  # warm up
        todo = iter(range(calls))

        async def worker() -> None:
            for _ in todo:
                await _one(session, url, n, logprobs, stream)

        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"client_cpu_us_per_call": round(1e6 * cpu / calls, 1),
            "client_cpu_us_per_token": round(1e6 * cpu / calls / n, 2), "wall_s": round(wall, 2)}


async def cpu_part(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"token_interval_ms": args.token_interval_ms, "calls": args.calls,
                           "concurrency": args.concurrency, "runs": []}
    with sse_server(args.token_interval_ms / 1000.0) as base:
        url = base + "/chat/completions"
        for n in args.tokens:
            for logprobs in (False, True):
                plain = await client_cpu(url, n, logprobs, False, args.calls, args.concurrency)
                streamed = await client_cpu(url, n, logprobs, True, args.calls, args.concurrency)
                out["runs"].append({"tokens": n, "logprobs": logprobs, "non_streamed": plain, "streamed": streamed,
                                    "streamed_over_non_streamed": round(streamed["client_cpu_us_per_call"]
                                                                        / plain["client_cpu_us_per_call"], 1)})
    return out


# -- (b) stalls -------------------------------------------------------------------------------------
async def one_call_past(faulty: Any, well: Any, rcfg: RouterConfig, tcfg: TransportConfig) -> dict[str, Any]:
    """One call routed first to ``faulty``: its wall time and the server that answered it."""
    async with HttpTransport(tcfg, concurrency=8) as http, \
            Dispatcher((faulty.base_url, well.base_url), http, rcfg, tcfg, vllm_servers=True) as dispatcher:
        started = time.monotonic()
        server, _ = await dispatcher.post("/chat/completions", CHAT, "r0")
        seconds = time.monotonic() - started
        row = dispatcher.stats()[0]
    return {"seconds": round(seconds, 2), "answered_by_the_healthy_server": server == well.base_url,
            "faulty_server": {k: row[k] for k in ("state", "failed", "abandoned")}}


@contextlib.contextmanager
def frozen(proc: Any) -> Any:
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


async def stalls_part(args: argparse.Namespace) -> dict[str, Any]:
    r, t = RouterConfig(), TransportConfig()
    out: dict[str, Any] = {"defaults": {"health_interval_s": r.health_interval_s,
                                        "health_timeout_s": r.health_timeout_s,
                                        "probe_failures_to_down": r.probe_failures_to_down,
                                        "stall_timeout_s": r.stall_timeout_s, "read_timeout_s": t.read_timeout_s,
                                        "body_timeout_s": t.body_timeout_s}}
    with embedded_subprocess(EmbeddedConfig(latency_ms=20.0)) as well, \
            embedded_subprocess(EmbeddedConfig(fault_rate=1.0, fault_kinds=("hang",))) as hung, \
            embedded_subprocess(EmbeddedConfig(fault_rate=1.0, fault_kinds=("drip",))) as drip, \
            embedded_subprocess(EmbeddedConfig(latency_ms=20.0)) as stopped, \
            embedded_subprocess(EmbeddedConfig()) as killed:
        for stall in args.stall_timeouts:
            out[f"hung_stall_timeout_{stall:g}s"] = await one_call_past(
                hung, well, dataclasses.replace(r, stall_timeout_s=stall), t)
        out[f"hung_no_stall_detector_read_timeout_{args.read_timeout:g}s"] = await one_call_past(
            hung, well, dataclasses.replace(r, stall_timeout_s=0.0),
            dataclasses.replace(t, read_timeout_s=args.read_timeout))
        with frozen(stopped):
            out["frozen_process_defaults"] = await one_call_past(stopped, well, r, t)
        out["dripping_defaults"] = await one_call_past(drip, well, r, t)
        out["dripping_body_timeout_2s"] = await one_call_past(drip, well, r, dataclasses.replace(t, body_timeout_s=2.0))
        killed.kill()
        out["killed_defaults"] = await one_call_past(killed, well, r, t)
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    if args.only in (None, "cpu"):
        report["cpu_per_call"] = await cpu_part(args)
    if args.only in (None, "stalls"):
        report["time_past_a_stalled_server"] = await stalls_part(args)
    report["loadavg_after"] = os.getloadavg()
    return report


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("cpu", "stalls"))
    p.add_argument("--tokens", type=lambda s: [int(x) for x in s.split(",")], default=[64, 512, 2048])
    p.add_argument("--calls", type=int, default=200, help="measured calls per figure")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--token-interval-ms", type=float, default=0.5, help="pacing of the SSE server's tokens")
    p.add_argument("--stall-timeouts", type=_floats, default=[2.0, 5.0])
    p.add_argument("--read-timeout", type=float, default=10.0, help="read_timeout_s of the no-detector run")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    cli = parse_args()
    if cli.serve:
        asyncio.run(_serve(cli.token_interval_ms / 1000.0))
    else:
        print(json.dumps(asyncio.run(main(cli))))
