"""vLLM ``/v1/chat/completions`` reply -> Responses output items (pure).

Order: one reasoning item (one ``summary_text`` entry per ``<think>`` block), one message item,
one function_call item per tool call (``arguments`` string passed through untouched). The message
item is left out only when the turn made tool calls and has no other text. ``finish_reason:
length`` marks the turn incomplete (reason ``max_output_tokens``) and its reasoning/message items
``status: incomplete``. Whitespace is preserved exactly.

Reasoning (``uses_reasoning_parser``): true -> the pipeline splits ``<think>`` blocks out of the
content itself, and also accepts reasoning a server split off (``message.reasoning``, or the
older ``reasoning_content``), which comes first; false -> no extraction, the text passes through
untouched and server-split reasoning is put back inline as ``<think>…</think>`` so the text stays
complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping  # isinstance() on it is 2x cheaper than on typing.Mapping
from typing import Any

from gym_rollouts.adapter.ids import new_id
from gym_rollouts.adapter.reasoning import join_reasoning, split_reasoning
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import ProtocolError
from gym_rollouts.typecheck import MAPPING

REASONING_FIELDS = ("reasoning", "reasoning_content")


@dataclass
class ModelTurn:
    """What one model call produced, in Responses terms. Captured token ids live on the last
    output item (where the trainer reads them); the ``*_token_ids``/``*_log_probs`` properties
    read them from there."""

    output: list[dict[str, Any]]
    usage: dict[str, Any] | None  # None: the server sent no usage (the session fills it from the ids)
    finish_reason: str | None
    incomplete_reason: str | None = None  # "max_output_tokens" | "context_length" | None

    @property
    def function_calls(self) -> list[dict[str, Any]]:
        return [item for item in self.output if item["type"] == "function_call"]

    def _captured(self, key: str) -> Any:
        return self.output[-1].get(key) if self.output else None

    @property
    def prompt_token_ids(self) -> list[int] | None:
        return self._captured("prompt_token_ids")

    @property
    def generation_token_ids(self) -> list[int] | None:
        return self._captured("generation_token_ids")

    @property
    def generation_log_probs(self) -> list[float] | None:
        return self._captured("generation_log_probs")


def first_choice(reply: Any, what: str, *, exactly_one: bool = False) -> Mapping[str, Any]:
    """``reply["choices"][0]`` checked to be an object (and, with ``exactly_one``, the only
    choice: token capture needs that); ``what`` names the reply in the error."""
    choices = reply.get("choices") if isinstance(reply, MAPPING) else None
    count = len(choices) if isinstance(choices, list) else 0
    if count == 0 or (exactly_one and count != 1) or not isinstance(choices[0], Mapping):
        if exactly_one:
            raise ProtocolError(f"token capture needs exactly one choice in the {what} reply, got {count}")
        raise ProtocolError(f"{what} has no choices: {str(reply)[:200]}")
    return choices[0]


def generation_turn(output: list[dict[str, Any]], reply: Mapping[str, Any], finish: Any) -> ModelTurn:
    """The ``ModelTurn`` of one generation: usage from ``reply``, ``finish_reason: length`` as
    the ``max_output_tokens`` incomplete reason."""
    return ModelTurn(output=output, usage=map_usage(reply.get("usage")), finish_reason=finish,
                     incomplete_reason="max_output_tokens" if finish == "length" else None)


def _status(truncated: bool) -> str:
    return "incomplete" if truncated else "completed"


def message_item(text: str, *, truncated: bool = False) -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "status": _status(truncated),
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def reasoning_item(blocks: list[str], *, truncated: bool = False) -> dict[str, Any]:
    return {
        "id": new_id("rs"),
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": b} for b in blocks],
        "status": _status(truncated),
    }


def function_call_item(call: Any, index: int) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, Mapping) else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"tool call #{index} has no function name: {call!r}"[:300])
    arguments = fn.get("arguments")
    if arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):
        raise ProtocolError(f"tool call #{index} arguments must be a string, got {type(arguments).__name__}")
    call_id = call.get("id")
    return {
        "id": new_id("fc"),
        "type": "function_call",
        "call_id": call_id if isinstance(call_id, str) and call_id else new_id("call"),
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def counted_usage(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0,
                  total: int = 0) -> dict[str, Any]:
    """A Responses ``usage`` object from token counts (``total`` 0: prompt + completion)."""
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total or prompt + completion,
    }


def _token_count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"usage.{key} must be an integer >= 0, got {value!r}"[:200])
    return value


def map_usage(usage: Any) -> dict[str, Any] | None:
    """Chat/completions ``usage`` -> Responses ``usage`` (cached and reasoning token details when
    present, else 0). None when the server sent none (absent, null, or neither count in it): the
    counts are unknown, never 0. Counts that are not integers >= 0 raise ``ProtocolError``."""
    if usage is None:
        return None
    if not isinstance(usage, MAPPING):
        raise ProtocolError(f"usage must be an object or null, got {type(usage).__name__}")
    if "prompt_tokens" not in usage and "completion_tokens" not in usage:
        return None
    prompt_details, completion_details = usage.get("prompt_tokens_details"), usage.get("completion_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, MAPPING) else {}
    completion_details = completion_details if isinstance(completion_details, Mapping) else {}
    return counted_usage(_token_count(usage, "prompt_tokens"), _token_count(usage, "completion_tokens"),
                         cached=_count(prompt_details.get("cached_tokens")),
                         reasoning=_count(completion_details.get("reasoning_tokens")),
                         total=_count(usage.get("total_tokens")))


def server_reasoning(message: Mapping[str, Any]) -> str | None:
    """Reasoning a server split off (``reasoning``, vLLM >= 0.16, or ``reasoning_content``)."""
    for key in REASONING_FIELDS:
        value = message.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ProtocolError(f"message.{key} must be a string or null, got {type(value).__name__}")
            return value
    return None


def text_to_items(content: str, split_off: str | None, tool_calls: list[Any], cfg: ModelConfig,
                  *, truncated: bool) -> list[dict[str, Any]]:
    """Output items for one generation: reasoning, message, function calls (in that order)."""
    if cfg.uses_reasoning_parser:
        blocks, text = split_reasoning(content)
        if split_off is not None:
            blocks = [split_off, *blocks]
    else:
        blocks, text = [], join_reasoning([split_off], content) if split_off is not None else content
    output: list[dict[str, Any]] = []
    if blocks:
        output.append(reasoning_item(blocks, truncated=truncated))
    if text or not tool_calls:
        output.append(message_item(text, truncated=truncated))
    output += [function_call_item(call, i) for i, call in enumerate(tool_calls)]
    return output


def chat_reply_to_turn(reply: Any, cfg: ModelConfig) -> ModelTurn:
    """Map a chat completion reply onto Responses output items."""
    choice = first_choice(reply, "chat completion")
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise ProtocolError("choices[0].message is missing")
    content = message.get("content")
    if content is None:
        content = ""
    elif not isinstance(content, str):
        raise ProtocolError(f"message.content must be a string or null, got {type(content).__name__}")
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise ProtocolError("message.tool_calls must be a list")
    finish = choice.get("finish_reason")
    output = text_to_items(content, server_reasoning(message), tool_calls, cfg, truncated=finish == "length")
    return generation_turn(output, reply, finish)
