"""Responses-API request -> vLLM ``/v1/chat/completions`` body (pure).

Messages come from ``messages.py``. Field mapping: ``max_output_tokens`` -> ``max_tokens``;
``reasoning.effort`` -> ``reasoning_effort``; Responses tools -> chat tools (``strict`` dropped);
``tool_choice`` {"type":"function","name":N} -> {"type":"function","function":{"name":N}};
``text.format`` json_schema / json_object -> ``response_format``; sampling fields pass through;
``tool_choice`` and ``parallel_tool_calls`` are sent only with tools (``"required"`` or a named
function without tools is an error); a null ``top_logprobs`` is dropped. Every Responses field is
in exactly one of ``MAPPED``, ``PASSTHROUGH``, ``IGNORED`` (no meaning for a vLLM call) and
``NOOP_ONLY`` (accepted at its no-op value only, else refused with the reason); any other field is
refused by name. ``request_problems`` finds every problem of a row without building a body.

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

from gym_rollouts.adapter.messages import (
    MEDIA_PARTS,
    RequestConversionError,
    audio_urls,
    conversation_problems,
    input_items,
    raise_problems,
    responses_to_chat_messages,
)
from gym_rollouts.adapter.sampling import sampling_problems
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.typecheck import MAPPING, is_mapping

# Fields (and common vLLM sampling extras) copied to the body under the same name.
PASSTHROUGH = ("temperature", "top_p", "seed", "stop", "top_k", "min_p",
               "presence_penalty", "frequency_penalty", "repetition_penalty")
# Responses fields turned into body fields or messages (see the module doc).
MAPPED = frozenset({"input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
                    "reasoning", "metadata", "top_logprobs", "text"})
# Responses fields with no meaning for a vLLM call, ignored on purpose (why: docs/vllm_adapter.md).
IGNORED = frozenset({"model", "store", "user", "safety_identifier", "service_tier", "include", "max_tool_calls",
                     "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "stream_options"})
_DROP = "; drop it"
# Responses fields accepted only at their no-op values; any other value is refused with the reason.
NOOP_ONLY: dict[str, tuple[tuple[Any, ...], str]] = {
    "previous_response_id": ((None,), "the vLLM adapter is stateless, there is no stored response to continue: "
                                      "put the whole conversation in input and drop previous_response_id"),
    "conversation": ((None,), "the vLLM adapter keeps no server-side conversations: put the conversation's "
                              "items in input and drop conversation"),
    "prompt": ((None,), "stored prompt templates are an OpenAI platform feature: render the prompt into "
                        "instructions / input and drop prompt"),
    "stream": ((None, False), "collection is not streamed; drop stream or set it to false"),
    "background": ((None, False), "every request runs to completion, there are no background responses; "
                                  "drop background or set it to false"),
    "background_options": ((None,), "there are no background responses" + _DROP),
    "truncation": ((None, "disabled"), "the vLLM adapter never drops conversation items to fit the context (a "
                                       "rollout that outgrows it ends with stop reason context_length); set "
                                       "truncation to 'disabled' or drop it"),
    "context_management": ((None,), "vLLM has no server-side context compaction" + _DROP),
    "moderation": ((None,), "vLLM runs no moderation" + _DROP),
    "image": ((None,), "request-level image options have no vLLM equivalent (images go in input_image parts)"
                       + _DROP),
    "access_programs": ((None,), "an OpenAI platform option with no vLLM equivalent" + _DROP),
}
KNOWN_FIELDS = MAPPED | IGNORED | frozenset(PASSTHROUGH) | frozenset(NOOP_ONLY)
CAPTURE_FIELDS = {"logprobs": True, "top_logprobs": 0, "return_tokens_as_token_ids": True, "return_token_ids": True}
TEMPLATE_KWARGS = "chat_template_kwargs"
_NAMED_CHOICE = '{"type": "function", "name": <a tool\'s name>}'


def _tool_problem(i: int, tool: Any) -> str | None:
    if not isinstance(tool, MAPPING) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, Mapping) else type(tool).__name__
        return f"tools[{i}] has type {kind!r}; only function tools are supported"
    name = _tool_source(tool).get("name")
    return None if isinstance(name, str) and name else f"tools[{i}] has no name"


def _tool_source(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    return tool["function"] if isinstance(tool.get("function"), MAPPING) else tool


def responses_tools_to_chat(tools: Any) -> list[dict[str, Any]] | None:
    """Responses function tools (flat) -> chat tools (nested under ``function``), ``strict`` dropped."""
    if not tools:
        return None
    if not isinstance(tools, (list, tuple)):  # a tuple is sent as the same JSON array
        raise RequestConversionError("responses_create_params.tools must be a list")
    out = []
    for i, tool in enumerate(tools):
        problem = _tool_problem(i, tool)
        if problem:
            raise RequestConversionError(problem)
        source = _tool_source(tool)
        fn = {k: source[k] for k in ("name", "description", "parameters") if source.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _tools_problems(tools: Any) -> list[str]:
    if not tools:
        return []
    if not isinstance(tools, (list, tuple)):
        return ["responses_create_params.tools must be a list"]
    return [p for p in (_tool_problem(i, t) for i, t in enumerate(tools)) if p]


def _choice_name(choice: Mapping[str, Any]) -> Any:
    function = choice.get("function")
    return choice.get("name") or (function.get("name") if isinstance(function, Mapping) else None)


def tool_choice_problem(choice: Any, tools: Any) -> str | None:
    """Why ``tool_choice`` cannot be sent with these ``tools`` (None when it can, or is dropped)."""
    if choice is None or choice in ("none", "auto"):
        return None  # without tools: nothing to call either way, the field is not sent
    named = isinstance(choice, Mapping) and choice.get("type") == "function"
    if not named and choice != "required":
        shown = choice.get("type") if isinstance(choice, Mapping) else choice
        return (f"tool_choice {shown!r} is not supported; use \"none\", \"auto\", \"required\" or "
                f"{_NAMED_CHOICE}")
    what = f"tool_choice={choice!r}"[:160]
    if not tools or not isinstance(tools, (list, tuple)):
        return (f"{what} asks for a tool call, but the request has no tools: add tools (or drop "
                f"tool_choice)")
    if named:
        name = _choice_name(choice)
        names = [_tool_source(t).get("name") for t in tools if isinstance(t, Mapping)]
        if name not in names:
            return f"{what} names function {name!r}, which is not among the tools ({', '.join(map(str, names))})"
    return None


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping):
        return {"type": "function", "function": {"name": _choice_name(choice)}}
    return choice


def _noop_problems(params: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in [k for k in params if k in NOOP_ONLY]:  # in the row's order
        (allowed, why), value = NOOP_ONLY[key], params[key]
        if value is not None and not any(value is a or (value == a and type(value) is type(a)) for a in allowed):
            shown = orjson.dumps(value).decode()[:80]
            problems.append(f"responses_create_params.{key}={shown} is not supported: {why}")
    return problems


# field_problems' answers by the JSON of the fields (``field_problems``); cleared when full
_FIELDS_MEMO: dict[bytes, tuple[str, ...]] = {}
FIELDS_MEMO_ENTRIES = 256
# what orjson would turn into something else than the value's own JSON type: not memoized
_KEY_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def field_problems(params: Mapping[str, Any]) -> list[str]:
    """Every problem of the request's fields other than ``input`` (cheap: no body is built).

    Rows of a dataset mostly share these fields (tools, sampling values) and each model call
    checks them again, so the answer is memoized by the fields' JSON (orjson, the form the body is
    sent in): the fields are judged as that JSON decodes, so equal JSON means an equal answer.
    Judged as they are, without the memo: fields that are not JSON as they stand (a set, a
    subclass of str or int, a dataclass: orjson refuses them here) and any with a null value in
    their JSON (orjson writes NaN and infinities as null, and those must be refused as what they
    are; the string "null", as in a tool schema's ``"type": "null"``, is no such value)."""
    fields = {k: v for k, v in params.items() if k != "input"}
    try:
        key = orjson.dumps(fields, option=_KEY_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return _field_problems(fields)
    # in compact JSON a null value follows ":", "[" or ","; the string "null" follows a quote
    if b"null" in key and (b":null" in key or b"[null" in key or b",null" in key):
        return _field_problems(fields)
    known = _FIELDS_MEMO.get(key)
    if known is None:
        if len(_FIELDS_MEMO) >= FIELDS_MEMO_ENTRIES:
            _FIELDS_MEMO.clear()
        known = _FIELDS_MEMO[key] = tuple(_field_problems(orjson.loads(key)))
    return list(known)


def _field_problems(params: Mapping[str, Any]) -> list[str]:
    problems = []
    unknown = sorted(k for k in params if k not in KNOWN_FIELDS)
    if unknown:
        problems.append(
            f"responses_create_params field(s) not supported by the vLLM adapter: {', '.join(unknown)} "
            f"(vLLM-specific request fields go in model.extra_body or metadata.extra_body)")
    problems += _noop_problems(params)
    problems += sampling_problems(params)  # types and ranges vLLM accepts (adapter/sampling.py)
    problems += _tools_problems(params.get("tools"))
    choice = tool_choice_problem(params.get("tool_choice"), params.get("tools"))
    if choice:
        problems.append(choice)
    text = _text_problem(params.get("text"))
    if text:
        problems.append(text)
    metadata = params.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        problems.append(f"responses_create_params.metadata must be an object, got {type(metadata).__name__}")
    reasoning = params.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, Mapping):
        problems.append(f"responses_create_params.reasoning must be an object, got {type(reasoning).__name__}")
    for key in ("extra_body", TEMPLATE_KWARGS) if metadata else ():
        try:
            value = metadata_json(metadata, key)
            if key == "extra_body":
                _kwargs(value.get(TEMPLATE_KWARGS), "metadata.extra_body")
        except RequestConversionError as exc:
            problems.append(str(exc))
    return problems


COMPLETIONS_TOOLS = ("completions mode (use_completions_api=true) does not support tools; use the chat API "
                     "(use_completions_api=false) for tool use")


def completions_problems(params: Mapping[str, Any]) -> list[str]:
    """What completions mode refuses that a scan of the row can see: tools, images, audio."""
    problems = [COMPLETIONS_TOOLS] if params.get("tools") else []
    items = input_items(params.get("input"))
    media = sorted({p.get("type") for item in (items if isinstance(items, list) else ()) if isinstance(item, Mapping)
                    and isinstance(item.get("content"), list)
                    for p in item["content"] if isinstance(p, Mapping) and p.get("type") in MEDIA_PARTS})
    if audio_urls(params.get("metadata")):
        media.append("metadata audio")
    if media:
        problems.append(f"completions mode (use_completions_api=true) sends a text prompt and cannot carry "
                        f"images or audio ({', '.join(media)}); use the chat API (use_completions_api=false)")
    return problems


def request_problems(params: Any, cfg: ModelConfig | None = None) -> list[str]:
    """Every problem of one row's ``responses_create_params`` that would stop its requests,
    found without building a body (the input scan calls it once per row). With ``cfg`` and
    ``use_completions_api``, also what completions mode refuses. Empty: the row can be sent."""
    if not isinstance(params, Mapping):
        return [f"responses_create_params must be an object, got {type(params).__name__}"]
    problems = field_problems(params) + conversation_problems(params)
    if cfg is not None and cfg.use_completions_api:
        problems += completions_problems(params)
    return problems


def metadata_json(metadata: Any, key: str) -> dict[str, Any]:
    """``metadata[key]`` as an object: NeMo Gym rows carry it as a JSON string (Responses
    metadata values are strings); an object is accepted as is."""
    if not is_mapping(metadata):
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
    raise_problems(field_problems(params))
    body = {k: params[k] for k in PASSTHROUGH if params.get(k) is not None}
    if params.get("max_output_tokens") is not None:
        body["max_tokens"] = params["max_output_tokens"]
    reasoning = params.get("reasoning")
    if is_mapping(reasoning) and reasoning.get("effort"):
        body["reasoning_effort"] = reasoning["effort"]
    tools = responses_tools_to_chat(params.get("tools"))
    if tools:  # tool_choice / parallel_tool_calls mean nothing without tools (and vLLM refuses
        body["tools"] = tools  # tool_choice "auto" without tools)
        if params.get("tool_choice") is not None:
            body["tool_choice"] = _chat_tool_choice(params["tool_choice"])
        if params.get("parallel_tool_calls") is not None:
            body["parallel_tool_calls"] = params["parallel_tool_calls"]
    if params.get("top_logprobs") is not None:
        body.update(logprobs=True, top_logprobs=params["top_logprobs"])
    response_format = _response_format(params.get("text"))
    if response_format:
        body["response_format"] = response_format
    return body


_FORMATS = (None, "text", "json_object", "json_schema")


def _text_problem(text: Any) -> str | None:
    if text is None:
        return None
    if not isinstance(text, Mapping):
        return f"responses_create_params.text must be an object, got {type(text).__name__}"
    if text.get("verbosity") is not None:
        return (f"responses_create_params.text.verbosity={text['verbosity']!r} is not supported: vLLM has no "
                f"verbosity control; drop it")
    fmt = text.get("format")
    if fmt is not None and (not isinstance(fmt, Mapping) or fmt.get("type") not in _FORMATS):
        kind = fmt.get("type") if isinstance(fmt, Mapping) else type(fmt).__name__
        return f"text.format of type {kind!r} is not supported (supported: text, json_object, json_schema)"
    return None


def _response_format(text: Any) -> dict[str, Any] | None:
    """Responses ``text.format`` -> chat ``response_format`` (json_schema / json_object)."""
    fmt = text.get("format") if is_mapping(text) else None
    if not isinstance(fmt, Mapping) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
    return {"type": "json_schema", "json_schema": schema}


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
           "request_problems", "field_problems", "completions_problems", "tool_choice_problem", "responses_tools_to_chat",
           "PASSTHROUGH", "MAPPED", "IGNORED", "NOOP_ONLY", "KNOWN_FIELDS", "CAPTURE_FIELDS"]


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
