"""P1 (issue 14, item 4): the ``collect`` command's rollouts/s on the weather task, start-up included,
against the bare aiohttp loop on the same zero-latency embedded server; prints one JSON object.

- server: ``python -m gym_rollouts.embedded`` as a subprocess (zero latency, long keep-alive).
- loop (the ceiling): per rollout the weather task's pattern, two chat calls: the first body
  (as collect builds it), then that conversation + the model's reply + one tool message per tool
  call; post, read, decode; ``--concurrency`` workers over one aiohttp session.
- collect: the real command as a subprocess (``python -c`` of ``cli.entry.collect`` with the
  tree under test first on ``sys.path``: ``--tree`` measures another checkout, e.g. the
  unchanged one) with ``policy_base_url=<server> resource=weather``, ``--rows`` rollouts,
  ``num_samples_in_parallel=<concurrency>``; the whole process's wall clock.
- ``p1`` = collect's rows / wall clock divided by the loop's rate; ``steady_ratio`` uses the
  rollouts/s of collect's own summary line; ``startup_1row_s`` = wall clock of a 1-row run;
  ``cpu_ratio`` = the loop's CPU per rollout / the collect process's (start-up included): the
  steadier figure on a shared machine.
  Rounds interleave loop / collect / loop (and each tree given by ``--tree``, in alternating
  order) on the same server. With several trees, ``against_first`` is the median over rounds of
  a tree's wall clock (and CPU per rollout) divided by the first tree's in the same round: the
  steadier comparison on a machine whose speed drifts between rounds.
- Bytecode: each tree's package is compiled first (``compileall``), as it is for any run after
  the first (Python caches it) or after ``pip install``; ``--no-compile`` measures without (where
  ``PYTHONDONTWRITEBYTECODE`` is set, as on our CI machines, every run then compiles the package).

    .venv/bin/python scripts/bench_p1.py                       # this tree
    .venv/bin/python scripts/bench_p1.py --tree /tmp/p1base --tree .:asyncio --tree .:uvloop --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
WEATHER = ROOT / "gym_rollouts" / "data" / "weather.jsonl"
RATE = re.compile(rb"this run: \d+ rollouts, ([0-9.]+) rollouts/s")


def weather_rows(path: Path, n: int) -> Path:
    """``n`` distinct rows cycling over the bundled weather rows (a ``task_id`` each)."""
    src = [orjson.loads(line) for line in WEATHER.read_bytes().splitlines() if line.strip()]
    path.write_bytes(b"".join(orjson.dumps({**src[i % len(src)], "task_id": i}) + b"\n" for i in range(n)))
    return path


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-m", "gym_rollouts.embedded", "--port", "0",
                             "--keepalive-timeout", "3600", "--parent-pid", str(os.getpid())],
                            cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"embedded server did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


def first_bodies(src: Path, tree: Path) -> list[bytes]:
    """The first chat body of each row, as the tree's own adapter builds it (in a subprocess so
    this process imports no tree)."""
    code = ("import sys, orjson\n"
            "from gym_rollouts.adapter.request import build_chat_body\n"
            "from gym_rollouts.agent.loop import request_params\n"
            "from gym_rollouts.config.schema import build_collect_config\n"
            "from gym_rollouts.resource.base import load_resource\n"
            "cfg = build_collect_config({'policy_base_url': 'http://127.0.0.1:1/v1', 'input_jsonl_fpath': sys.argv[1],"
            " 'output_jsonl_fpath': sys.argv[1] + '.unused', 'resource': {'name': 'weather',"
            " 'cls': 'gym_rollouts.resource.weather:WeatherResource'}})\n"
            "res = load_resource(cfg.resource)\n"
            "out = sys.stdout.buffer\n"
            "for line in open(sys.argv[1], 'rb'):\n"
            "    out.write(orjson.dumps(build_chat_body(request_params(orjson.loads(line), res), cfg.model, 'gym-tiny')) + b'\\n')\n")
    res = subprocess.run([sys.executable, "-c", code, str(src)], cwd=tree, capture_output=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(tree)})
    return res.stdout.splitlines()


async def loop_rate(base_url: str, bodies: list[bytes], concurrency: int) -> dict[str, float]:
    """The bare aiohttp loop: two calls per rollout (first body; then + reply + tool outputs)."""
    import aiohttp

    url = base_url + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    next_index = iter(range(len(bodies)))
    calls = 0

    async def post(session: aiohttp.ClientSession, body: bytes) -> Any:
        async with session.post(url, data=body, headers=headers) as resp:
            return orjson.loads(await resp.read())

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal calls
        for i in next_index:
            first = orjson.loads(bodies[i])
            reply = await post(session, bodies[i])
            message = reply["choices"][0]["message"]
            tool_msgs = [{"role": "tool", "tool_call_id": c["id"], "content": '{"city": "x", "forecast": "rain"}'}
                         for c in message.get("tool_calls") or []]
            first["messages"] = [*first["messages"], message, *tool_msgs]
            await post(session, orjson.dumps(first))
            calls += 2

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        started, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return {"rollouts_per_s": round(len(bodies) / elapsed, 1), "calls_per_rollout": round(calls / len(bodies), 2),
            "cpu_ms_per_rollout": round(1000 * cpu / len(bodies), 3)}


def _children_cpu() -> float:
    """User + system CPU of the waited-for children (the collect run just ended: nothing else ends then)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def collect_run(tree: Path, base_url: str, src: Path, out: Path, concurrency: int,
                extra: list[str], loop: str | None = None) -> dict[str, Any]:
    """The ``collect`` command of ``tree`` as a subprocess; wall clock of the whole process."""
    code = ("import sys; sys.argv[0] = 'collect'\n"
            "import gym_rollouts, os\n"
            "assert os.path.realpath(gym_rollouts.__file__).startswith(os.path.realpath(sys.argv.pop(1))), gym_rollouts.__file__\n"
            "from gym_rollouts.cli.entry import collect\n"
            "sys.exit(collect())\n")
    argv = [sys.executable, "-c", code, str(tree), f"policy_base_url={base_url}", "resource=weather",
            f"input_jsonl_fpath={src}", f"output_jsonl_fpath={out}", f"num_samples_in_parallel={concurrency}",
            "progress=off", "overwrite=true", *extra]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if loop:
        env["GYM_ROLLOUTS_EVENT_LOOP"] = loop  # cli/event_loop.py (a tree without it ignores it)
    started, cpu0 = time.perf_counter(), _children_cpu()
    res = subprocess.run(argv, cwd=tree, capture_output=True, env=env)
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu0
    if res.returncode != 0:
        raise RuntimeError(f"collect ({tree}) exited {res.returncode}: {res.stderr.decode()[-2000:]}")
    m = RATE.search(res.stdout)
    rows = sum(1 for _ in out.open("rb"))
    return {"rows": rows, "wall_s": round(wall, 3), "cpu_ms_per_rollout": round(1000 * cpu / max(rows, 1), 3), "rollouts_per_s_wall": round(rows / wall, 1),
            "rollouts_per_s_summary": float(m.group(1)) if m else None}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    names = args.tree or [str(ROOT)]
    variants = [_variant(t) for t in names]
    trees = [tree for tree, _ in variants]
    report: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg(), "rows": args.rows,
                              "concurrency": args.concurrency, "trees": names, "extra": args.extra}
    if args.compile:
        for tree in dict.fromkeys(trees):
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "gym_rollouts")], check=True)
    report["bytecode_compiled"] = args.compile
    proc, base_url = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="bench_p1_") as d:
            tmp = Path(d)
            src, one = weather_rows(tmp / "weather.jsonl", args.rows), weather_rows(tmp / "one.jsonl", 1)
            bodies = first_bodies(src, trees[0])
            await loop_rate(base_url, bodies[:500], args.concurrency)  # warm the server up
            per_tree: dict[str, dict[str, list[Any]]] = {str(t): {"p1": [], "steady": [], "runs": [], "startup": [], "cpu": []}
                                                         for t in names}
            loops = []
            for r in range(args.rounds):
                order = list(zip(names, variants))
                for name, (tree, loop) in (order if r % 2 == 0 else order[::-1]):  # no tree always first
                    before = await loop_rate(base_url, bodies, args.concurrency)
                    run = await asyncio.to_thread(collect_run, tree, base_url, src, tmp / "out.jsonl",
                                                  args.concurrency, args.extra, loop)
                    after = await loop_rate(base_url, bodies, args.concurrency)
                    startup = await asyncio.to_thread(collect_run, tree, base_url, one, tmp / "one_out.jsonl",
                                                      args.concurrency, args.extra, loop)
                    ceiling = statistics.fmean([before["rollouts_per_s"], after["rollouts_per_s"]])
                    loops += [before, after]
                    t = per_tree[name]
                    t["runs"].append(run)
                    t["cpu"].append(statistics.fmean([before["cpu_ms_per_rollout"], after["cpu_ms_per_rollout"]])
                                    / run["cpu_ms_per_rollout"])
                    t["startup"].append(startup["wall_s"])
                    t["p1"].append(run["rollouts_per_s_wall"] / ceiling)
                    if run["rollouts_per_s_summary"]:
                        t["steady"].append(run["rollouts_per_s_summary"] / ceiling)
            report["loop"] = loops
            report["results"] = {
                name: {"p1": round(statistics.median(t["p1"]), 3), "p1_all": [round(x, 3) for x in t["p1"]],
                       "steady_ratio": round(statistics.median(t["steady"]), 3) if t["steady"] else None,
                       "startup_1row_s": round(statistics.median(t["startup"]), 3),
                       "cpu_ratio": round(statistics.median(t["cpu"]), 3), "collect": t["runs"]}
                for name, t in per_tree.items()}
            first = per_tree[names[0]]["runs"]
            for name in names[1:]:  # the same round's runs compared: the machine's drift cancels out
                runs = per_tree[name]["runs"]
                report["results"][name]["against_first"] = {
                    key: round(statistics.median(b[key] / a[key] for a, b in zip(first, runs)), 3)
                    for key in ("wall_s", "cpu_ms_per_rollout")}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    report["loadavg_after"] = os.getloadavg()
    return report


def _variant(spec: str) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:LOOP`` (LOOP: GYM_ROLLOUTS_EVENT_LOOP for that tree's runs)."""
    path, _, loop = spec.partition(":")
    return Path(path).resolve(), loop or None


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", help="checkout whose collect to measure, PATH or PATH:asyncio|uvloop|auto (repeatable; default: this one)")
    p.add_argument("--rows", type=int, default=8000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--extra", action="append", default=[], help="one more collect override (repeatable)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="do not compile the trees' bytecode first (a first run's start-up)")
    return p.parse_args()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args()))))
