"""Helpers for the Python API tests: task rows and the embedded server's own counters."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from gym_rollouts.embedded import EmbeddedProcess


def task_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct single-turn arithmetic tasks, exact-match verifiable."""
    return [{"responses_create_params": {"input": f"What is {i} + {2 * i}? Answer with the number."},
             "expected_answer": str(3 * i), "task_id": f"t{i}"} for i in range(start, start + n)]


def server_stats(server: EmbeddedProcess) -> dict[str, Any]:
    """The server's ``/_admin/stats``: requests per endpoint (``models``, ``chat``, ...)."""
    with urllib.request.urlopen(server.root_url + "/_admin/stats", timeout=10) as resp:
        return json.loads(resp.read())


def model_calls(server: EmbeddedProcess) -> int:
    return int(server_stats(server)["requests"].get("chat", 0))
