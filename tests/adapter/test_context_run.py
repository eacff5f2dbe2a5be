"""A whole ``collect`` run whose rollouts all run out of context: every one ends ``incomplete``
with stop reason ``context_length``, is counted in the summary, none fails, the run finishes."""

from __future__ import annotations

from pathlib import Path

import orjson
from openai.types.responses import Response

from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.session import run_collection


async def test_context_stops_are_counted_not_failed(tmp_path: Path):
    out = tmp_path / "rollouts.jsonl"
    cfg = build_collect_config({
        "output_jsonl_fpath": str(out), "limit": 6, "num_samples_in_parallel": 3,
        "resource": {"example_dataset": "arithmetic.jsonl"},
        "model": {"return_token_id_information": True},
        # the arithmetic prompts are ~720 tokens: room for the first call, not for its tool call
        "servers": {"max_model_len": 760},
    })
    result = await run_collection(cfg)
    summary = result.summary
    assert summary["failures"] == 0 and summary["rollouts"] == 6
    assert summary["context_length_stops"] == 6
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert row["_gr"]["stop_reason"] == "context_length"
        assert row["response"]["status"] == "incomplete"
        Response.model_validate(row["response"])
        (item,) = [i for i in row["response"]["output"] if "generation_token_ids" in i]
        assert len(item["prompt_token_ids"]) + len(item["generation_token_ids"]) == 760
        assert row["_gr"]["token_continuity"]["continuous"] is True
    assert not result.paths.failures.exists() or result.paths.failures.read_bytes().strip() == b""
