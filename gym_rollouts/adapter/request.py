"""Responses-API request -> vLLM ``/v1/chat/completions`` body (pure).

Messages come from ``messages.py``. Field mapping: ``max_output_tokens`` -> ``max_tokens``;
``reasoning.effort`` -> ``reasoning_effort``; Responses tools -> chat tools (``strict`` dropped);
``tool_choice`` {"type":"function","name":N} -> {"type":"function","function":{"name":N}};
``text.format`` json_schema / json_object -> ``response_format``; sampling fields pass through;
a null ``top_logprobs`` is dropped; unknown fields and ``stream: true`` are refused by name.

Precedence, lowest first (see docs/vllm_adapter.md):
1. ``extra_body``: config ``extra_body``, then the row's ``metadata.extra_body`` (a JSON string)
   over it — extra_body sits UNDER the request: it fills in, it never replaces a request field;
2. the fields mapped from the request;
3. ``chat_template_kwargs``: config ``extra_body`` < config ``chat_template_kwargs`` < row
   ``metadata.extra_body`` < row ``metadata.chat_template_kwargs`` (merged key by key);
4. ``sampling_overrides`` (and the ``temperature`` / ``top_p`` shorthands) over all of that;
5. what correctness needs, always: ``model`` from config; with token capture ``logprobs: true,
   top_logprobs: 0, return_tokens_as_token_ids: true, return_token_ids: true`` and ``n == 1``.
Null values are dropped from the final body.
"""

from __future__ import annotations

from collections.abc import Mapping  # isinstance() on it is 2x cheaper than on typing.Mapping
from typing import Any

import orjson

from gym_rollouts.adapter.messages import RequestConversionError, responses_to_chat_messages
from gym_rollouts.config.schema import ModelConfig

# Responses fields (and common sampling extras) copied to the body under the same name.
PASSTHROUGH = ("temperature", "top_p", "parallel_tool_calls", "seed", "stop", "top_k", "min_p",
               "presence_penalty", "frequency_penalty", "repetition_penalty")
# Responses fields with no meaning for a vLLM call, ignored on purpose (``metadata`` is read for
# its extra_body / chat_template_kwargs, ``input`` etc. are mapped above).
_IGNORED = frozenset({"input", "instructions", "tools", "tool_choice", "max_output_tokens", "reasoning",
                      "metadata", "model", "store", "stream", "user", "background", "include",
                      "service_tier", "truncation", "text", "prompt", "top_logprobs", "max_tool_calls",
                      "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "stream_options"})
CAPTURE_FIELDS = {"logprobs": True, "top_logprobs": 0, "return_tokens_as_token_ids": True, "return_token_ids": True}
TEMPLATE_KWARGS = "chat_template_kwargs"


def responses_tools_to_chat(tools: Any) -> list[dict[str, Any]] | None:
    """Responses function tools (flat) -> chat tools (nested under ``function``), ``strict`` dropped."""
    if not tools:
        return None
    if not isinstance(tools, list):
        raise RequestConversionError("responses_create_params.tools must be a list")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
            kind = tool.get("type") if isinstance(tool, Mapping) else type(tool).__name__
            raise RequestConversionError(f"tools[{i}] has type {kind!r}; only function tools are supported")
        source = tool["function"] if isinstance(tool.get("function"), Mapping) else tool
        if not isinstance(source.get("name"), str) or not source["name"]:
            raise RequestConversionError(f"tools[{i}] has no name")
        fn = {k: source[k] for k in ("name", "description", "parameters") if source.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        return {"type": "function", "function": {"name": name}}
    return choice


def metadata_json(metadata: Any, key: str) -> dict[str, Any]:
    """``metadata[key]`` as an object: NeMo Gym rows carry it as a JSON string (Responses
    metadata values are strings); an object is accepted as is."""
    if not isinstance(metadata, Mapping):
        return {}
    raw = metadata.get(key)
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, (str, bytes)):
        raise RequestConversionError(f"metadata.{key} must be a JSON object string, got {type(raw).__name__}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestConversionError(f"metadata.{key} is not valid JSON ({exc}): {str(raw)[:120]}") from None
    if not isinstance(value, dict):
        raise RequestConversionError(f"metadata.{key} must hold a JSON object, got {type(value).__name__}")
    return value


def mapped_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """The body fields that come straight from the Responses request (no messages)."""
    unknown = sorted(k for k in params if k not in _IGNORED and k not in PASSTHROUGH)
    if unknown:
        raise RequestConversionError(
            f"responses_create_params field(s) not supported by the vLLM adapter: {', '.join(unknown)} "
            f"(vLLM-specific request fields go in model.extra_body or metadata.extra_body)")
    if params.get("stream"):
        raise RequestConversionError("responses_create_params.stream=true is not supported (collection is not streamed)")
    body = {k: params[k] for k in PASSTHROUGH if params.get(k) is not None}
    if params.get("max_output_tokens") is not None:
        body["max_tokens"] = params["max_output_tokens"]
    reasoning = params.get("reasoning")
    if isinstance(reasoning, Mapping) and reasoning.get("effort"):
        body["reasoning_effort"] = reasoning["effort"]
    tools = responses_tools_to_chat(params.get("tools"))
    if tools:
        body["tools"] = tools
        if params.get("tool_choice") is not None:
            body["tool_choice"] = _tool_choice(params["tool_choice"])
    if params.get("top_logprobs") is not None:
        body.update(logprobs=True, top_logprobs=params["top_logprobs"])
    response_format = _response_format(params.get("text"))
    if response_format:
        body["response_format"] = response_format
    return body


def _response_format(text: Any) -> dict[str, Any] | None:
    """Responses ``text.format`` -> chat ``response_format`` (json_schema / json_object)."""
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise RequestConversionError(f"text.format of type {fmt['type']!r} is not supported")


def _kwargs(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RequestConversionError(f"{where}.chat_template_kwargs must be an object")
    return dict(value)


def shape_body(mapped: Mapping[str, Any], params: Mapping[str, Any], cfg: ModelConfig, model: str,
               *, template_kwargs: bool = True) -> dict[str, Any]:
    """Apply the precedence rules above to ``mapped`` (request fields, incl. messages/prompt)."""
    metadata = params.get("metadata")
    row_extra = metadata_json(metadata, "extra_body")
    extra = {**cfg.extra_body, **row_extra}
    body = {**{k: v for k, v in extra.items() if k != TEMPLATE_KWARGS}, **mapped}
    kwargs = {**_kwargs(cfg.extra_body.get(TEMPLATE_KWARGS), "model.extra_body"), **cfg.chat_template_kwargs,
              **_kwargs(row_extra.get(TEMPLATE_KWARGS), "metadata.extra_body"),
              **metadata_json(metadata, TEMPLATE_KWARGS)}
    if kwargs and template_kwargs:
        body[TEMPLATE_KWARGS] = kwargs
    body.update(cfg.sampling_overrides)
    for key in ("temperature", "top_p"):
        if getattr(cfg, key) is not None:
            body[key] = getattr(cfg, key)
    body["model"] = model
    return {k: v for k, v in body.items() if v is not None}  # a null top_logprobs goes here too


def require_single_choice(body: Mapping[str, Any]) -> None:
    if body.get("n", 1) != 1:
        raise RequestConversionError(
            f"token capture (return_token_id_information) requires n == 1, got n={body.get('n')!r} "
            f"(from extra_body or sampling_overrides)")


def build_chat_body(params: Mapping[str, Any], cfg: ModelConfig, model: str) -> dict[str, Any]:
    """The whole ``/v1/chat/completions`` body for one model call."""
    mapped = mapped_fields(params)
    mapped["messages"] = responses_to_chat_messages(params, cfg)
    body = shape_body(mapped, params, cfg, model)
    if cfg.return_token_id_information:
        body.update(CAPTURE_FIELDS)
        require_single_choice(body)
    return body


__all__ = ["RequestConversionError", "build_chat_body", "shape_body", "mapped_fields", "metadata_json",
           "responses_tools_to_chat", "PASSTHROUGH", "CAPTURE_FIELDS"]


# Body fields that change how a prompt renders, so /tokenize must see them too.
_TOKENIZE_FIELDS = ("tools", "chat_template_kwargs", "add_special_tokens")


def tokenize_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/tokenize`` body rendering exactly the prompt of a chat or completions ``body``
    (used for servers without ``return_token_ids``, and by ``doctor``)."""
    req: dict[str, Any] = {"model": body["model"]}
    if "prompt" in body:
        req["prompt"] = body["prompt"]
    else:
        req.update(messages=body["messages"], add_generation_prompt=True)
        req.update({k: body[k] for k in _TOKENIZE_FIELDS if body.get(k) is not None})
    return req
