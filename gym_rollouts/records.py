"""Row schemas (NeMo Gym-compatible keys) and the Responses ``response`` object we emit.

Output row = the input row + ``response`` + ``reward`` + ``_ng_task_index`` +
``_ng_rollout_index`` (+ verifier extras). Our own extras live under ``_gr`` so they never collide
with NeMo Gym keys or task fields.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from gym_rollouts.adapter.ids import new_id

TASK_INDEX = "_ng_task_index"
ROLLOUT_INDEX = "_ng_rollout_index"
EXTRAS = "_gr"


def empty_usage() -> dict[str, Any]:
    return {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}


def add_usage(total: dict[str, Any], usage: Mapping[str, Any]) -> None:
    total["input_tokens"] += usage.get("input_tokens", 0)
    total["output_tokens"] += usage.get("output_tokens", 0)
    total["total_tokens"] += usage.get("total_tokens", 0)
    in_details = usage.get("input_tokens_details") or {}
    total["input_tokens_details"]["cached_tokens"] += in_details.get("cached_tokens", 0)
    total["input_tokens_details"]["cache_write_tokens"] += in_details.get("cache_write_tokens", 0)
    total["output_tokens_details"]["reasoning_tokens"] += (usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def build_response(*, params: Mapping[str, Any], model: str, output: list[dict[str, Any]],
                   usage: dict[str, Any] | None, incomplete: bool) -> dict[str, Any]:
    """A Responses API ``response`` object (validates against the OpenAI SDK's ``Response``);
    ``usage`` None (null): a model call's token counts are unknown (a server sent no usage)."""
    return {
        "id": new_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None,
        "instructions": params.get("instructions"),
        "metadata": params.get("metadata") or {},
        "output": output,
        "parallel_tool_calls": _or(params.get("parallel_tool_calls"), True),  # a null (NeMo Gym dumps) = the default
        "temperature": params.get("temperature"),
        "top_p": params.get("top_p"),
        "max_output_tokens": params.get("max_output_tokens"),
        "tool_choice": _or(params.get("tool_choice"), "auto"),
        "tools": list(params.get("tools") or []),
        "usage": usage,
    }
