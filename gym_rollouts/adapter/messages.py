"""Responses-API ``input`` (+ ``instructions``) -> chat ``messages`` (pure).

Rules:
- a string ``input`` is one user message;
- ``instructions`` and the leading run of system/developer messages become ONE system message
  (parts joined by a blank line): chat templates commonly accept a single system message first;
- later system messages stay ``system``; later developer messages stay ``developer`` unless
  ``replace_developer_role_with_system``;
- consecutive assistant-side items (reasoning, assistant message, function_call) merge into one
  assistant message; function_call -> ``tool_calls`` (arguments string passed through);
- function_call_output -> a ``tool`` message;
- reasoning in history (reasoning items, and ``<think>`` blocks inside assistant text when
  ``uses_reasoning_parser``) goes back inline as ``<think>…</think>`` in front of the content when
  ``uses_interleaved_reasoning``, every block of it; otherwise it is left out;
- anything else (images, files, other item types, unknown roles) fails with an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping  # isinstance() on it is 2x cheaper than on typing.Mapping
from typing import Any

import orjson

from gym_rollouts.adapter.reasoning import join_reasoning, split_reasoning
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import GymRolloutsError

SUPPORTED_ITEMS = ("message", "reasoning", "function_call", "function_call_output")
_TEXT_PARTS = ("input_text", "output_text", "text")


class RequestConversionError(GymRolloutsError):
    """The Responses request holds something we cannot turn into a vLLM request."""


def input_items(value: Any) -> Any:
    """A string ``input`` as the one user message it stands for; anything else as given (the
    single place both the adapter and the agent loop normalise ``input``)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return value


def responses_to_chat_messages(params: Mapping[str, Any], cfg: ModelConfig) -> list[dict[str, Any]]:
    """The chat ``messages`` for a Responses request (its ``input`` and ``instructions``)."""
    items = params.get("input")
    if items is None:
        raise RequestConversionError("responses_create_params.input is missing")
    items = input_items(items)
    if not isinstance(items, list):
        raise RequestConversionError(
            f"responses_create_params.input must be a string or a list, got {type(items).__name__}")
    instructions = params.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise RequestConversionError("responses_create_params.instructions must be a string")
    system_parts: list[str] = [instructions] if instructions else []
    messages: list[dict[str, Any]] = []
    assistant: dict[str, Any] | None = None
    leading = True
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RequestConversionError(f"input[{index}] must be an object, got {type(item).__name__}")
        kind = item.get("type", "message")
        role = item.get("role")
        if leading and kind == "message" and role in ("system", "developer"):
            system_parts.append(_text_of(item, index))
            continue
        leading = False
        if kind in ("reasoning", "function_call") or (kind == "message" and role == "assistant"):
            if assistant is None:
                assistant = {"role": "assistant", "content": "", "_reasoning": [], "tool_calls": []}
                messages.append(assistant)
            _merge_assistant_item(assistant, item, kind, index, cfg)
            continue
        assistant = None
        messages.append(_other_item(item, kind, role, index, cfg))
    if system_parts:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system_parts)})
    return [_finish_assistant(m, cfg) if m["role"] == "assistant" else m for m in messages]


def _other_item(item: Mapping[str, Any], kind: Any, role: Any, index: int, cfg: ModelConfig) -> dict[str, Any]:
    if kind == "message":
        return {"role": _map_role(role, index, cfg), "content": _text_of(item, index)}
    if kind == "function_call_output":
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise RequestConversionError(f"input[{index}] (function_call_output) has no call_id")
        return {"role": "tool", "tool_call_id": call_id, "content": _tool_output_text(item.get("output"), index)}
    raise RequestConversionError(
        f"input[{index}] has type {kind!r}, which the vLLM adapter does not support "
        f"(supported: {', '.join(SUPPORTED_ITEMS)})"
    )


def _map_role(role: Any, index: int, cfg: ModelConfig) -> str:
    if role in ("user", "system"):
        return role
    if role == "developer":
        return "system" if cfg.replace_developer_role_with_system else "developer"
    raise RequestConversionError(
        f"input[{index}] has role {role!r}; supported roles: user, system, developer, assistant")


def _parts_text(content: list[Any], where: str) -> str:
    texts = []
    for part in content:
        ptype = part.get("type") if isinstance(part, Mapping) else None
        if ptype in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif ptype == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise RequestConversionError(
                f"{where} has a content part of type {ptype!r}; the vLLM adapter supports text parts only "
                f"({', '.join(_TEXT_PARTS)}, refusal)")
    return "".join(texts)


def _text_of(item: Mapping[str, Any], index: int) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _parts_text(content, f"input[{index}]")
    if content is None:
        return ""
    raise RequestConversionError(f"input[{index}].content must be a string or a list of parts")


def _tool_output_text(output: Any, index: int) -> str:
    if isinstance(output, str):
        return output
    if output is None:
        return ""
    if isinstance(output, list):
        return _parts_text(output, f"input[{index}].output")
    return orjson.dumps(output).decode()


def _reasoning_texts(item: Mapping[str, Any]) -> list[str]:
    """A reasoning item's texts: its summary entries, else its ``reasoning_text`` content parts."""
    texts = [s["text"] for s in item.get("summary") or [] if isinstance(s, Mapping) and isinstance(s.get("text"), str)]
    if not texts:
        texts = [c["text"] for c in item.get("content") or [] if isinstance(c, Mapping) and isinstance(c.get("text"), str)]
    return texts


def _merge_assistant_item(msg: dict[str, Any], item: Mapping[str, Any], kind: str, index: int,
                          cfg: ModelConfig) -> None:
    if kind == "reasoning":
        msg["_reasoning"].extend(_reasoning_texts(item))
    elif kind == "function_call":
        name, call_id = item.get("name"), item.get("call_id") or item.get("id")
        if not isinstance(name, str) or not name or not isinstance(call_id, str):
            raise RequestConversionError(f"input[{index}] (function_call) needs a name and a call_id")
        arguments = item.get("arguments")
        msg["tool_calls"].append({
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else
                         orjson.dumps(arguments if arguments is not None else {}).decode()},
        })
    else:
        text = _text_of(item, index)
        if cfg.uses_reasoning_parser:
            blocks, text = split_reasoning(text)
            msg["_reasoning"].extend(blocks)
        msg["content"] += text


def _finish_assistant(msg: dict[str, Any], cfg: ModelConfig) -> dict[str, Any]:
    blocks = msg["_reasoning"] if cfg.uses_interleaved_reasoning else []
    out: dict[str, Any] = {"role": "assistant", "content": join_reasoning(blocks, msg["content"])}
    if msg["tool_calls"]:
        out["tool_calls"] = msg["tool_calls"]
        if not out["content"]:
            out["content"] = None
    return out
