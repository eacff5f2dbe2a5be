"""The README's first experience: ``collect`` with no arguments, in an empty directory.

It starts the embedded backend, runs the bundled example dataset, streams one row per task,
prints where it wrote and a summary (rollouts, failures, mean reward, rollouts/s, tokens/s),
prints no warnings, and stops the backend when it is done.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import orjson
from openai.types.responses import Response

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.session import bundled_dataset


def test_collect_with_no_arguments(run_cli, tmp_path: Path):
    result = run_cli("collect", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    wrote = re.search(r"Wrote (\d+) rollouts to (\S+\.jsonl)", out)
    assert wrote, out
    rows_path = Path(wrote.group(2))
    assert rows_path.is_file() and tmp_path in rows_path.parents
    for needle in (r"\b64 rollouts\b|rollouts:\s*64\b", r"failures:?\s*0\b|\b0 failures\b",
                   r"mean reward:?\s*1(\.0+)?\b", r"[\d.]+ rollouts/s", r"[\d.]+ (generated )?tokens/s"):
        assert re.search(needle, out), f"summary lacks {needle!r}:\n{out}"
    assert not re.search(r"warn", result.stderr, re.I), result.stderr
    assert "Traceback" not in result.stderr

    default = build_collect_config(compose_plain([]))
    tasks = [orjson.loads(line) for line in bundled_dataset(default.resource.example_dataset).read_bytes().splitlines()
             if line.strip()]
    rows = [orjson.loads(line) for line in rows_path.read_bytes().splitlines()]
    assert int(wrote.group(1)) == len(rows) == len(tasks) == 64
    assert sorted(r["_ng_task_index"] for r in rows) == list(range(len(tasks)))
    for row in rows:
        task = tasks[row["_ng_task_index"]]
        assert all(row[key] == value for key, value in task.items()), "the input row is carried over"
        assert row["_ng_rollout_index"] == 0
        assert row["reward"] == 1.0
        parsed = Response.model_validate(row["response"])
        assert parsed.status == "completed" and parsed.output[-1].type == "message"
        assert row["response"]["usage"]["output_tokens"] > 0

    # the embedded backend it started is gone
    base_url = rows[0]["_gr"]["servers"][0]
    url = urlparse(base_url)
    assert url.hostname == "127.0.0.1"
    with socket.socket() as sock:
        sock.settimeout(5)
        assert sock.connect_ex((url.hostname, url.port)) != 0, f"{base_url} still answers after collect exited"


def test_collect_against_a_given_server_with_repeats(run_cli, embedded_server, tmp_path: Path):
    """``policy_base_url`` given: that server is used; rows come out ``aabb`` with rollout indices."""
    out = tmp_path / "rows.jsonl"
    result = run_cli("collect", f"+policy_base_url={embedded_server.base_url}", "+limit=2", "num_repeats=2",
                     f"output_jsonl_fpath={out}", "resource=exact_match", "progress=off")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {s for r in rows for s in r["_gr"]["servers"]} == {embedded_server.base_url}
    assert not re.search(r"warn", result.stderr, re.I), result.stderr
