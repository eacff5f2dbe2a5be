"""``num_samples_in_parallel=auto`` over real sockets: a whole ``run_collection`` against two
embedded servers (child processes) with small simulated KV caches. The admission limits settle
near what fits, the fleet preempts less than under a fixed large concurrency, and every rollout is
written exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from gym_rollouts.config.schema import TransportConfig, build_collect_config
from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.engine.session import run_collection
from gym_rollouts.router.vllm_metrics import parse_metrics
from gym_rollouts.transport.client import HttpTransport

ROLLOUTS = 160
SEQ_TOKENS = 165  # a rollout of this workload holds about this many KV tokens (~100 prompt + ~65 output)
FITS = (6, 12)  # sequences that fit in each server's KV cache
MAX_MODEL_LEN = 1024  # the simulated KV cache must hold one whole context


def write_rows(path: Path, salt: str) -> Path:
    with path.open("wb") as fh:
        for i in range(ROLLOUTS):
            words = " ".join(f"w{(i * 13 + k) % 997}" for k in range(12))  # ~60 chars: ~60 tokens
            fh.write(orjson.dumps({"responses_create_params": {  # no arithmetic: the model echoes ~64 chars
                "input": f"[{salt} {i}] {words}", "max_output_tokens": 128},
                "expected_answer": str(i + 1), "task_id": f"{salt}{i}"}) + b"\n")
    return path


async def preemptions(urls: list[str]) -> float:
    total = 0.0
    async with HttpTransport(TransportConfig(), concurrency=4) as http:
        for url in urls:
            status, raw = await http.get(url.removesuffix("/v1") + "/metrics", timeout_s=5.0, control=True)
            assert status == 200
            total += parse_metrics(raw.decode()).preemptions or 0.0
    return total


def cfg(urls: list[str], src: Path, out: Path, setting: object):
    return build_collect_config({
        "policy_base_url": urls, "input_jsonl_fpath": str(src), "output_jsonl_fpath": str(out),
        "num_samples_in_parallel": setting, "progress": "off",
        "resource": {"name": "exact_match", "cls": "gym_rollouts.resource.exact_match:ExactMatchResource"},
        "router": {"metrics_interval_s": 0.1, "admission": {"initial": 2, "max": 32}},
    })


def keys_of(path: Path) -> list[tuple[int, int]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows]


async def test_auto_admission_follows_kv_room(start_fleet, tmp_path: Path) -> None:
    procs = start_fleet(*[EmbeddedConfig(latency_ms=10.0, latency_per_token_ms=2.0, prefill_ms_per_token=0.1,
                                         max_model_len=MAX_MODEL_LEN,
                                         kv_cache_tokens=max(MAX_MODEL_LEN, fit * SEQ_TOKENS)) for fit in FITS])
    urls = [p.base_url for p in procs]

    p0 = await preemptions(urls)
    auto = await run_collection(cfg(urls, write_rows(tmp_path / "a.jsonl", "a"), tmp_path / "auto.jsonl", "auto"))
    p1 = await preemptions(urls)
    fixed = await run_collection(cfg(urls, write_rows(tmp_path / "f.jsonl", "f"), tmp_path / "fixed.jsonl", 64))
    p2 = await preemptions(urls)

    for result, out in ((auto, tmp_path / "auto.jsonl"), (fixed, tmp_path / "fixed.jsonl")):
        keys = keys_of(out)
        assert len(keys) == len(set(keys)) == ROLLOUTS  # every rollout once, none twice
        assert result.failures == 0 and result.summary["context_length_stops"] == 0
    auto_preempted, fixed_preempted = p1 - p0, p2 - p1
    assert fixed_preempted > 0, "the fixed run should overflow the KV caches: make the workload heavier"
    assert auto_preempted < fixed_preempted
    limits = {s["server"]: s["admit_limit"] for s in auto.servers}
    for proc, fit in zip(procs, FITS):
        assert 1 <= limits[proc.base_url] <= 2 * fit + 2, limits  # near what fits, far below the ceiling (32)
    metrics = json.loads(auto.paths.aggregate_metrics.read_text())
    entry = metrics[0]["servers"][0]
    assert "admit_limit" in entry and "rollouts" in entry
    assert all(s["admit_limit"] is None for s in fixed.servers)  # a fixed number: no admission
