"""vLLM ``/v1/chat/completions`` reply -> Responses output items (pure).

Order: one reasoning item (one summary entry per ``<think>`` block), one message item, one
function_call item per tool call. ``finish_reason: length`` marks the turn incomplete with reason
``max_output_tokens``. With ``uses_reasoning_parser`` the pipeline splits ``<think>`` blocks out of
the content itself, and also accepts reasoning a server split off (``reasoning`` or the older
``reasoning_content``); without it, text passes through untouched and server-split reasoning is
put back inline so nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from gym_rollouts.adapter.ids import new_id
from gym_rollouts.adapter.reasoning import join_reasoning, split_reasoning
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import ProtocolError


@dataclass
class ModelTurn:
    """What one model call produced, in Responses terms."""

    output: list[dict[str, Any]]
    usage: dict[str, int]
    finish_reason: str | None
    incomplete_reason: str | None = None
    prompt_token_ids: list[int] | None = None
    generation_token_ids: list[int] | None = None
    generation_log_probs: list[float] | None = None
    raw_generation_tokens: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def function_calls(self) -> list[dict[str, Any]]:
        return [item for item in self.output if item["type"] == "function_call"]


def message_item(text: str) -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def reasoning_item(blocks: list[str]) -> dict[str, Any]:
    return {
        "id": new_id("rs"),
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": b} for b in blocks],
        "status": "completed",
    }


def function_call_item(call: Mapping[str, Any], index: int) -> dict[str, Any]:
    fn = call.get("function") or {}
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"tool call #{index} has no function name: {call!r}")
    arguments = fn.get("arguments")
    if arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):
        raise ProtocolError(f"tool call #{index} arguments must be a string, got {type(arguments).__name__}")
    return {
        "id": new_id("fc"),
        "type": "function_call",
        "call_id": call.get("id") or new_id("call"),
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def map_usage(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = ((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0
    reasoning = ((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(cached)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(reasoning)},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def split_message_text(message: Mapping[str, Any], cfg: ModelConfig) -> tuple[list[str], str]:
    """(reasoning blocks, visible content) of an assistant chat message."""
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise ProtocolError(f"message.content must be a string or null, got {type(content).__name__}")
    server_reasoning = message.get("reasoning")
    if server_reasoning is None:
        server_reasoning = message.get("reasoning_content")
    if not cfg.uses_reasoning_parser:
        text = join_reasoning([server_reasoning], content) if server_reasoning else content
        return [], text
    blocks, rest = split_reasoning(content)
    if server_reasoning:
        blocks = [server_reasoning, *blocks]
    return blocks, rest


def chat_reply_to_turn(reply: Mapping[str, Any], cfg: ModelConfig) -> ModelTurn:
    """Map a chat completion reply onto Responses output items."""
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ProtocolError(f"chat completion has no choices: {str(reply)[:200]}")
    choice = choices[0]
    message = choice.get("message") or {}
    blocks, text = split_message_text(message, cfg)
    output: list[dict[str, Any]] = []
    if blocks:
        output.append(reasoning_item(blocks))
    tool_calls = message.get("tool_calls") or []
    if text or not tool_calls:
        output.append(message_item(text))
    for i, call in enumerate(tool_calls):
        output.append(function_call_item(call, i))
    finish = choice.get("finish_reason")
    return ModelTurn(
        output=output,
        usage=map_usage(reply.get("usage")),
        finish_reason=finish,
        incomplete_reason="max_output_tokens" if finish == "length" else None,
    )
