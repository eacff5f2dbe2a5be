"""Responses-API request -> vLLM ``/v1/chat/completions`` body (pure).

Rules (see docs/vllm_adapter.md): a string ``input`` is one user message; ``instructions`` and
leading system/developer messages become one system message; consecutive assistant-side items
(reasoning, assistant message, function_call) merge into one assistant message; function_call ->
``tool_calls``; function_call_output -> a ``tool`` message. Body precedence, lowest first:
mapped request fields, config ``extra_body``, per-row ``metadata.extra_body`` /
``metadata.chat_template_kwargs`` (JSON strings), ``sampling_overrides``; ``model`` always comes
from config; null values are dropped.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from gym_rollouts.adapter.reasoning import join_reasoning
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import GymRolloutsError


class RequestConversionError(GymRolloutsError):
    """The Responses request holds something we cannot turn into a vLLM request."""


# Responses fields copied to the chat body under the same name.
_PASSTHROUGH = ("temperature", "top_p", "parallel_tool_calls", "seed", "stop", "top_k", "min_p",
                "presence_penalty", "frequency_penalty", "repetition_penalty")
# Responses fields that have no meaning for a vLLM call and are dropped on purpose.
_IGNORED = frozenset({"input", "instructions", "tools", "tool_choice", "max_output_tokens", "reasoning",
                      "metadata", "model", "store", "stream", "user", "background", "include",
                      "previous_response_id", "service_tier", "truncation", "text", "prompt",
                      "top_logprobs", "max_tool_calls", "prompt_cache_key", "safety_identifier"})
_ASSISTANT_SIDE = frozenset({"reasoning", "function_call"})


def responses_to_chat_messages(params: Mapping[str, Any], cfg: ModelConfig) -> list[dict[str, Any]]:
    """The chat ``messages`` for a Responses request (its ``input`` and ``instructions``)."""
    items = params.get("input")
    if items is None:
        raise RequestConversionError("responses_create_params.input is missing")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise RequestConversionError(f"responses_create_params.input must be a string or a list, got {type(items).__name__}")
    messages: list[dict[str, Any]] = []
    system_parts: list[str] = [params["instructions"]] if params.get("instructions") else []
    leading = True
    assistant: dict[str, Any] | None = None
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RequestConversionError(f"input[{index}] must be an object, got {type(item).__name__}")
        kind = item.get("type", "message")
        role = item.get("role")
        if kind == "message" and role in ("system", "developer") and leading:
            system_parts.append(_text_of(item, index))
            continue
        leading = False
        if kind in _ASSISTANT_SIDE or (kind == "message" and role == "assistant"):
            if assistant is None:
                assistant = {"role": "assistant", "content": "", "_reasoning": [], "tool_calls": []}
                messages.append(assistant)
            _merge_assistant_item(assistant, item, kind, index, cfg)
            continue
        assistant = None
        if kind == "message":
            messages.append({"role": _map_role(role, index, cfg), "content": _text_of(item, index)})
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str):
                output = orjson.dumps(output).decode() if output is not None else ""
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": output})
        else:
            raise RequestConversionError(
                f"input[{index}] has type '{kind}', which the vLLM adapter does not support "
                f"(supported: message, reasoning, function_call, function_call_output)"
            )
    if system_parts:
        role = "system"
        messages.insert(0, {"role": role, "content": "\n\n".join(system_parts)})
    return [_finish_assistant(m, cfg) if m.get("role") == "assistant" else m for m in messages]


def _map_role(role: Any, index: int, cfg: ModelConfig) -> str:
    if role in ("user", "system"):
        return role
    if role == "developer":
        return "system" if cfg.replace_developer_role_with_system else "developer"
    raise RequestConversionError(f"input[{index}] has unsupported role {role!r}")


def _text_of(item: Mapping[str, Any], index: int) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            ptype = part.get("type") if isinstance(part, Mapping) else None
            if ptype in ("input_text", "output_text", "text"):
                parts.append(part.get("text", ""))
            elif ptype == "refusal":
                parts.append(part.get("refusal", ""))
            else:
                raise RequestConversionError(f"input[{index}] has a content part of type {ptype!r}; only text is supported")
        return "".join(parts)
    if content is None:
        return ""
    raise RequestConversionError(f"input[{index}].content must be a string or a list of parts")


def _merge_assistant_item(msg: dict[str, Any], item: Mapping[str, Any], kind: str, index: int, cfg: ModelConfig) -> None:
    if kind == "reasoning":
        if cfg.uses_interleaved_reasoning:
            texts = [s.get("text", "") for s in item.get("summary") or [] if isinstance(s, Mapping)]
            if not texts and item.get("content"):
                texts = [c.get("text", "") for c in item["content"] if isinstance(c, Mapping)]
            msg["_reasoning"].extend(texts)
    elif kind == "function_call":
        msg["tool_calls"].append({
            "id": item.get("call_id") or item.get("id"),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
        })
    else:
        msg["content"] += _text_of(item, index)


def _finish_assistant(msg: dict[str, Any], cfg: ModelConfig) -> dict[str, Any]:
    reasoning = msg.pop("_reasoning")
    out: dict[str, Any] = {"role": "assistant", "content": join_reasoning(reasoning, msg["content"])}
    if msg["tool_calls"]:
        out["tool_calls"] = msg["tool_calls"]
        if not out["content"]:
            out["content"] = None
    return out


def responses_tools_to_chat(tools: Any) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            raise RequestConversionError(f"tools[{i}] has type {tool.get('type')!r}; only function tools are supported")
        fn = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _json_metadata(metadata: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    raw = (metadata or {}).get(key)
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestConversionError(f"metadata.{key} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RequestConversionError(f"metadata.{key} must be a JSON object")
    return value


def build_chat_body(params: Mapping[str, Any], cfg: ModelConfig, model: str,
                    messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole ``/v1/chat/completions`` body for one model call."""
    body: dict[str, Any] = {"model": model, "messages": messages if messages is not None
                            else responses_to_chat_messages(params, cfg)}
    for key in _PASSTHROUGH:
        if params.get(key) is not None:
            body[key] = params[key]
    unknown = [k for k in params if k not in _IGNORED and k not in _PASSTHROUGH]
    if unknown:
        raise RequestConversionError(f"responses_create_params field(s) not supported: {', '.join(sorted(unknown))}")
    if params.get("max_output_tokens") is not None:
        body["max_tokens"] = params["max_output_tokens"]
    effort = (params.get("reasoning") or {}).get("effort")
    if effort:
        body["reasoning_effort"] = effort
    tools = responses_tools_to_chat(params.get("tools"))
    if tools:
        body["tools"] = tools
        if params.get("tool_choice") is not None:
            body["tool_choice"] = _tool_choice(params["tool_choice"])
    if cfg.return_token_id_information:
        body.update(logprobs=True, top_logprobs=0, return_tokens_as_token_ids=True, return_token_ids=True)
    elif params.get("top_logprobs") is not None:
        body.update(logprobs=True, top_logprobs=params["top_logprobs"])
    template_kwargs = dict(cfg.chat_template_kwargs)
    body.update(cfg.extra_body)
    metadata = params.get("metadata")
    body.update(_json_metadata(metadata, "extra_body"))
    template_kwargs.update(body.pop("chat_template_kwargs", None) or {})
    template_kwargs.update(_json_metadata(metadata, "chat_template_kwargs"))
    if template_kwargs:
        body["chat_template_kwargs"] = template_kwargs
    body.update(cfg.sampling_overrides)
    for key in ("temperature", "top_p"):
        if getattr(cfg, key) is not None:
            body[key] = getattr(cfg, key)
    body["model"] = model
    if cfg.return_token_id_information and body.get("n", 1) != 1:
        raise RequestConversionError("token capture (return_token_id_information) requires n == 1")
    return {k: v for k, v in body.items() if v is not None}
