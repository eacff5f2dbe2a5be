"""Throughput of the embedded vLLM double on a simple chat request; prints one JSON object.

The server runs as a child process (one core: one asyncio loop); the load comes from this
process over keep-alive connections, with a minimal HTTP/1.1 client (`--client raw`, default,
cheap enough not to be the bottleneck) or aiohttp (`--client aiohttp`). Besides wall-clock
requests/s it reports requests per second of *server CPU time* (from /proc), which is the
one-core capacity even when client and server share cores.

    python scripts/bench_embedded.py --seconds 5 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gym_rollouts.embedded import EmbeddedConfig, launch_embedded  # noqa: E402

BODY = {
    "model": "gym-tiny",
    "messages": [{"role": "user", "content": "What is 17 * 23 + 4?"}],
    "max_tokens": 64,
    "logprobs": True,
    "top_logprobs": 0,
    "return_tokens_as_token_ids": True,
    "return_token_ids": True,
}


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _raw_worker(port: int, request: bytes, stop_at: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            counts[0 if status == 200 else 1] += 1
    finally:
        writer.close()


async def _aiohttp_worker(session, url: str, stop_at: float, counts: list[int]) -> None:
    while time.monotonic() < stop_at:
        async with session.post(url, data=orjson.dumps(BODY),
                                headers={"Content-Type": "application/json"}) as resp:
            await resp.read()
            counts[0 if resp.status == 200 else 1] += 1


async def run(args: argparse.Namespace) -> dict:
    payload = orjson.dumps(BODY)
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(payload)).encode()
        + b"\r\n\r\n" + payload
    )
    async with launch_embedded(EmbeddedConfig(keepalive_timeout=3600.0)) as proc:
        counts = [0, 0]
        warm_until = time.monotonic() + args.warmup
        if args.client == "raw":
            await asyncio.gather(*(_raw_worker(proc.port, request, warm_until, [0, 0])
                                   for _ in range(args.concurrency)))
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        stop_at = t0 + args.seconds
        if args.client == "raw":
            await asyncio.gather(*(_raw_worker(proc.port, request, stop_at, counts)
                                   for _ in range(args.concurrency)))
        else:
            import aiohttp

            conn = aiohttp.TCPConnector(limit=args.concurrency)
            async with aiohttp.ClientSession(connector=conn) as session:
                url = proc.base_url + "/chat/completions"
                await asyncio.gather(*(_aiohttp_worker(session, url, stop_at, counts)
                                       for _ in range(args.concurrency)))
        elapsed = time.monotonic() - t0
        cpu1 = _cpu_seconds(proc.pid)
    done = counts[0] + counts[1]
    server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return {
        "client": args.client,
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 3),
        "requests": done,
        "errors": counts[1],
        "requests_per_s": round(done / elapsed, 1),
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "requests_per_server_cpu_s": (round(done / server_cpu, 1) if server_cpu else None),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
