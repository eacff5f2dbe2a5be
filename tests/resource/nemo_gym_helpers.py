"""Helpers for the remote-environment tests: task rows in NeMo Gym's shape (written here, not
copied from NeMo Gym), an in-process ``collect`` run, and its output files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.session import RunResult, run_collection

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather of a city.", "strict": True,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": False}}
COUNTER_TOOLS = [
    {"type": "function", "name": "increment_counter", "description": "Add to the counter.", "strict": True,
     "parameters": {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"],
                    "additionalProperties": False}},
    {"type": "function", "name": "get_counter_value", "description": "Read the counter.", "strict": True,
     "parameters": {"type": "object", "properties": {}, "required": [], "additionalProperties": False}},
]


def weather_row(city: str = "Paris", agent: str | None = None, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"responses_create_params": {
        "input": [{"role": "developer", "content": "You help with the weather."},
                  {"role": "user", "content": f"What is the weather in {city}?"}],
        "tools": [WEATHER_TOOL]}, **extra}
    if agent:
        row["agent_ref"] = {"type": "responses_api_agents", "name": agent}
    return row


def counter_row(start: int, add: int, agent: str | None = None) -> dict[str, Any]:
    """The model adds ``add`` once (the scripted model's one tool call): reward 1 only when the
    environment saw the same session at seed, tool call and verify."""
    row: dict[str, Any] = {"responses_create_params": {
        "input": [{"role": "user", "content": f"increment the counter by {add}"}], "tools": COUNTER_TOOLS},
        "initial_count": start, "expected_count": start + add}
    if agent:
        row["agent_ref"] = {"name": agent}
    return row


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


async def collect(tmp_path: Path, policy_url: str, rows: list[dict[str, Any]], *overrides: str,
                  name: str = "out") -> tuple[RunResult, list[dict], list[dict]]:
    """``collect`` in process on ``rows``; returns (result, output rows, failure rows)."""
    src = write_rows(tmp_path / f"{name}_in.jsonl", rows)
    out = tmp_path / f"{name}.jsonl"
    cfg = build_collect_config(compose_plain(
        [f"policy_base_url={policy_url}", f"input_jsonl_fpath={src}", f"output_jsonl_fpath={out}",
         "progress=off", "router.health_interval_s=0.2", "transport.backoff_base_s=0.01",
         "transport.backoff_max_s=0.05", *overrides], cwd=tmp_path))
    result = await run_collection(cfg)
    return result, read_jsonl(out), read_jsonl(out.with_name(f"{name}_failures.jsonl"))


def metrics(tmp_path: Path, name: str = "out") -> list[dict[str, Any]]:
    return orjson.loads((tmp_path / f"{name}_aggregate_metrics.json").read_bytes())


def model_calls(server: Any) -> float:
    """Model calls the embedded vLLM-compatible server completed (its ``/metrics``)."""
    import urllib.request

    text = urllib.request.urlopen(server.root_url + "/metrics", timeout=10).read().decode()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("vllm:request_success_total"))
