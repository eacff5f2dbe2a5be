"""Benchmarks of the collection engine; prints one JSON object (ratios measured in one run).

- overhead: rollouts/s of ``collect`` (in process, ``run_collection``) at concurrency 100 on
  single-turn rows against one zero-latency embedded server, divided by the rate of a minimal
  aiohttp loop sending the very same request bodies to the same server (the ceiling). Rounds of
  ceiling / collect / ceiling; ``ratio`` is the median of collect / mean(neighbouring ceilings).
  ``cpu_ratio`` (client CPU per request of the loop / client CPU per rollout of collect) says the
  same thing without the noise of a shared machine.
- latency: the same with 50 ms server latency and concurrency 200: achieved rollouts/s divided by
  the ideal, concurrency / latency capped by the ceiling.
- weather: rollouts/s of the single-tool (weather) task at concurrency 100, zero latency (two
  model calls and one tool call per rollout).
- memory: peak RSS (VmHWM) of a ``collect`` subprocess for each size in ``--memory-rows``
  single-turn rows (input files generated in a temp dir), against a shared zero-latency server.

    python scripts/bench_engine.py                      # everything, defaults below
    python scripts/bench_engine.py --only weather --profile /tmp/weather.prof
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gym_rollouts.adapter.request import build_chat_body  # noqa: E402
from gym_rollouts.agent.loop import request_params  # noqa: E402
from gym_rollouts.config.schema import build_collect_config  # noqa: E402
from gym_rollouts.embedded import EmbeddedConfig, launch_embedded  # noqa: E402
from gym_rollouts.engine.session import run_collection  # noqa: E402
from gym_rollouts.resource.base import load_resource  # noqa: E402

WEATHER = Path(__file__).resolve().parents[1] / "gym_rollouts" / "data" / "weather.jsonl"


def single_turn_rows(path: Path, n: int) -> Path:
    with path.open("wb") as fh:
        for i in range(n):
            fh.write(orjson.dumps({"responses_create_params": {"input": f"What is {i} + {i % 97}? Answer with the number.",
                                                               "max_output_tokens": 32},
                                   "expected_answer": str(i + i % 97), "task_id": f"t{i}"}) + b"\n")
    return path


def weather_rows(path: Path, n: int) -> Path:
    """``n`` rows cycling over the bundled weather rows, each its own task (a ``task_id`` makes
    every line distinct: identical lines would share one task, as NeMo Gym assigns them)."""
    src = [orjson.loads(line) for line in WEATHER.read_bytes().splitlines() if line.strip()]
    path.write_bytes(b"".join(orjson.dumps({**src[i % len(src)], "task_id": i}) + b"\n" for i in range(n)))
    return path


def collect_cfg(base_url: str, src: Path, out: Path, concurrency: int, resource: str) -> Any:
    cls = {"exact_match": "gym_rollouts.resource.exact_match:ExactMatchResource",
           "weather": "gym_rollouts.resource.weather:WeatherResource"}[resource]
    return build_collect_config({
        "policy_base_url": base_url, "input_jsonl_fpath": str(src), "output_jsonl_fpath": str(out),
        "num_samples_in_parallel": concurrency, "progress": "off", "overwrite": True,
        "resource": {"name": resource, "cls": cls},
    })


async def collect_rate(base_url: str, src: Path, tmp: Path, concurrency: int, resource: str = "exact_match",
                       profile: str | None = None) -> dict[str, Any]:
    cfg = collect_cfg(base_url, src, tmp / f"out_{resource}_{concurrency}.jsonl", concurrency, resource)
    prof = cProfile.Profile(time.thread_time) if profile else None  # CPU of the loop thread
    if prof:
        prof.enable()
    cpu0 = time.process_time()
    result = await run_collection(cfg)
    cpu = time.process_time() - cpu0
    if prof:
        prof.disable()
        prof.dump_stats(profile)
    s = result.summary
    return {"rollouts": s["rollouts"], "failures": s["failures"], "elapsed_s": s["elapsed_s"],
            "rollouts_per_s": round(s["rollouts"] / s["elapsed_s"], 1),
            "client_cpu_ms_per_rollout": round(1000 * cpu / max(s["rollouts"], 1), 3)}


async def ceiling_rate(base_url: str, src: Path, concurrency: int, model: str) -> dict[str, float]:
    """The minimal aiohttp loop: prebuilt bodies (the ones collect sends), post, read, decode."""
    import aiohttp

    cfg = collect_cfg(base_url, src, src.with_suffix(".unused"), concurrency, "exact_match")
    resource = load_resource(cfg.resource)
    bodies = [orjson.dumps(build_chat_body(request_params(orjson.loads(line), resource), cfg.model, model))
              for line in src.read_bytes().splitlines()]
    url = base_url + "/chat/completions"
    next_index = iter(range(len(bodies)))
    headers = {"Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in next_index:
            async with session.post(url, data=bodies[i], headers=headers) as resp:
                orjson.loads(await resp.read())

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        cpu0, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return {"rollouts_per_s": round(len(bodies) / elapsed, 1), "client_cpu_ms_per_request": round(1000 * cpu / len(bodies), 3)}


async def overhead_and_latency(tmp: Path, rows: int, latency_rows: int, rounds: int) -> dict[str, Any]:
    src = single_turn_rows(tmp / "single.jsonl", rows)
    out: dict[str, Any] = {}
    async with launch_embedded(EmbeddedConfig(keepalive_timeout=3600.0)) as fast:
        base = fast.base_url
        await ceiling_rate(base, single_turn_rows(tmp / "warm.jsonl", 500), 100, "gym-tiny")  # warm up
        ceilings, ours, ratios = [], [], []
        for _ in range(rounds):  # interleaved: the machine's load drifts; each ratio uses its neighbours
            before = await ceiling_rate(base, src, 100, "gym-tiny")
            run = await collect_rate(base, src, tmp, 100)
            after = await ceiling_rate(base, src, 100, "gym-tiny")
            ceilings += [before, after]
            ours.append(run)
            ratios.append(run["rollouts_per_s"] / statistics.fmean([before["rollouts_per_s"], after["rollouts_per_s"]]))
        ceiling = statistics.median(c["rollouts_per_s"] for c in ceilings)
        ceiling_cpu = statistics.median(c["client_cpu_ms_per_request"] for c in ceilings)
        our_cpu = statistics.median(r["client_cpu_ms_per_rollout"] for r in ours)
        out["overhead"] = {"rows": rows, "concurrency": 100, "ceiling": ceilings, "collect": ours,
                           "ratio": round(statistics.median(ratios), 3),
                           "cpu_ratio": round(ceiling_cpu / our_cpu, 3)}
    lat_src = single_turn_rows(tmp / "latency.jsonl", latency_rows)
    async with launch_embedded(EmbeddedConfig(latency_ms=50.0, keepalive_timeout=3600.0)) as slow:
        run = await collect_rate(slow.base_url, lat_src, tmp, 200)
    ideal = min(200 / 0.050, ceiling)
    out["latency_hiding"] = {"rows": latency_rows, "latency_ms": 50, "concurrency": 200,
                             "ideal_rollouts_per_s": round(ideal, 1), "collect": run,
                             "ratio": round(run["rollouts_per_s"] / ideal, 3)}
    return out


async def weather(tmp: Path, rows: int, profile: str | None) -> dict[str, Any]:
    src = weather_rows(tmp / "weather.jsonl", rows)
    async with launch_embedded(EmbeddedConfig(keepalive_timeout=3600.0)) as fast:
        await collect_rate(fast.base_url, weather_rows(tmp / "warm_weather.jsonl", 300), tmp, 100, "weather")
        ours = await collect_rate(fast.base_url, src, tmp, 100, "weather", profile)
    return {"rows": rows, "concurrency": 100, "model_calls_per_rollout": 2, **ours,
            "vs_nemo_gym_31_per_s": round(ours["rollouts_per_s"] / 31.0, 1)}


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def peak_rss_mb(base_url: str, src: Path, out: Path, cwd: Path) -> dict[str, Any]:
    """Peak RSS of a ``collect`` subprocess: its VmHWM, polled until it exits (the high-water mark
    of the exec'd image only; ``ru_maxrss`` would also count this parent's pages at fork time)."""
    argv = [sys.executable, "-m", "gym_rollouts.cli.collect", f"policy_base_url={base_url}",
            f"input_jsonl_fpath={src}", f"output_jsonl_fpath={out}", "resource=exact_match",
            "num_samples_in_parallel=100", "progress=off", "overwrite=true"]
    started = time.perf_counter()
    # stderr to a file: a pipe read only after exit would block the child once it fills (~64 KiB)
    with tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err_file)
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid) or 0)
            time.sleep(0.05)
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"collect exited {proc.returncode}: {err[-2000:]}")
    return {"peak_rss_mb": round(peak_kb / 1024, 1), "wall_s": round(time.perf_counter() - started, 1),
            "output_lines": _count_lines(out)}


async def memory(tmp: Path, sizes: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}}
    async with launch_embedded(EmbeddedConfig(keepalive_timeout=3600.0)) as fast:
        for n in sizes:
            src = single_turn_rows(tmp / f"mem_{n}.jsonl", n)
            res = await asyncio.to_thread(peak_rss_mb, fast.base_url, src, tmp / f"mem_out_{n}.jsonl", tmp)
            out["sizes"][str(n)] = {"input_mb": round(src.stat().st_size / 2**20, 1), **res}
            (tmp / f"mem_out_{n}.jsonl").unlink()
    first, last = out["sizes"][str(sizes[0])], out["sizes"][str(sizes[-1])]
    out["ratio_largest_to_smallest"] = round(last["peak_rss_mb"] / first["peak_rss_mb"], 3)
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as d:
        tmp = Path(d)
        if args.only in (None, "overhead"):
            report.update(await overhead_and_latency(tmp, args.rows, args.latency_rows, args.rounds))
        if args.only in (None, "weather"):
            report["weather"] = await weather(tmp, args.weather_rows, args.profile)
        if args.only in (None, "memory"):
            report["memory"] = await memory(tmp, args.memory_rows)
    report["loadavg_after"] = os.getloadavg()
    return report


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("overhead", "weather", "memory"))
    p.add_argument("--rows", type=int, default=20_000, help="single-turn rows for the overhead run")
    p.add_argument("--rounds", type=int, default=2, help="ceiling / collect / ceiling rounds (overhead)")
    p.add_argument("--latency-rows", type=int, default=12_000)
    p.add_argument("--weather-rows", type=int, default=10_000)
    p.add_argument("--memory-rows", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 200_000])
    p.add_argument("--profile", help="write a cProfile of the weather run here")
    return p.parse_args()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args()))))
