"""Responses-API ``input`` (+ ``instructions``) -> chat ``messages`` (pure).

Rules:
- a string ``input`` is one user message;
- ``instructions`` and the leading run of system/developer messages become ONE system message
  (parts joined by a blank line): chat templates commonly accept a single system message first;
- later system messages stay ``system``; later developer messages stay ``developer`` unless
  ``replace_developer_role_with_system``;
- a list of text parts becomes one string, the parts joined by ``"\\n"`` (what vLLM does with a
  list of text parts for string-content chat templates); the same for a function_call_output
  ``output`` given as parts;
- a user message with an ``input_image`` / ``input_audio`` part goes to vLLM as a list of chat
  parts in order (``text``, ``image_url`` ``{"url", "detail"?}``, ``input_audio``); images and
  audio are accepted in user messages only;
- ``metadata.audio_data`` / ``metadata.audio_url`` (NeMo Gym's audio side channel: a data: URI or
  URL) become ``audio_url`` parts in front of the last user message's content;
- consecutive assistant-side items (reasoning, assistant message, function_call) merge into one
  assistant message; function_call -> ``tool_calls`` (arguments string passed through);
- function_call_output -> a ``tool`` message;
- reasoning in history (reasoning items, and ``<think>`` blocks inside assistant text when
  ``uses_reasoning_parser``) goes back inline as ``<think>…</think>`` in front of the content when
  ``uses_interleaved_reasoning``, every block of it; otherwise it is left out;
- anything else (files, other item or part types, unknown roles, an empty conversation) fails with
  an error naming it. ``conversation_problems`` finds those problems without converting (the input
  scan calls it once per row); the converter raises the same texts.
"""

from __future__ import annotations

from collections.abc import Mapping  # isinstance() on it is 2x cheaper than on typing.Mapping
from typing import Any

import orjson

from gym_rollouts.adapter.reasoning import join_reasoning, split_reasoning
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import GymRolloutsError
from gym_rollouts.typecheck import MAPPING, is_mapping

SUPPORTED_ITEMS = ("message", "reasoning", "function_call", "function_call_output")
ROLES = ("user", "system", "developer", "assistant")
TEXT_PARTS = ("input_text", "output_text", "text")
MEDIA_PARTS = ("input_image", "input_audio")
IMAGE_DETAILS = ("auto", "low", "high", "original")  # vLLM validates image_url.detail, then ignores it
_SUPPORTED_PARTS = "input_text, output_text, text, refusal; input_image, input_audio in user messages"
# NeMo Gym's audio side channel (responses_create_params.metadata): the keys we send as audio
# parts, and those that name files we would have to read.
AUDIO_KEYS = ("audio_data", "audio_url")
AUDIO_FILE_KEYS = ("audio_path", "audio_paths")


class RequestConversionError(GymRolloutsError):
    """The Responses request holds something we cannot turn into a vLLM request."""


def input_items(value: Any) -> Any:
    """A string ``input`` as the one user message it stands for; anything else as given (the
    single place both the adapter and the agent loop normalise ``input``)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return value


# -- checks (shared by the input scan and the converter) ---------------------------------------

def _media_problem(part: Mapping[str, Any], ptype: str, where: str) -> str | None:
    if ptype == "input_image":
        url, detail = part.get("image_url"), part.get("detail")
        if detail is not None and detail not in IMAGE_DETAILS:
            return f"{where} (input_image) has detail {detail!r}; vLLM accepts {', '.join(IMAGE_DETAILS)}"
        if isinstance(url, str) and url:
            return None
        if part.get("file_id"):
            return (f"{where} is an input_image with a file_id only; vLLM has no files API: give "
                    f"image_url as an http(s) URL or a data: URI")
        return f"{where} (input_image) needs image_url: an http(s) URL or a data: URI"
    audio = part.get("input_audio")
    if isinstance(audio, Mapping) and isinstance(audio.get("data"), str) and isinstance(audio.get("format"), str):
        return None
    return f"{where} (input_audio) needs input_audio: {{\"data\": <base64>, \"format\": \"wav\" | \"mp3\"}}"


def part_problem(part: Any, where: str, media_refused: str | None) -> str | None:
    """Why one content part cannot be converted (None when it can). ``media_refused`` says
    where the part sits when images/audio are not allowed there (None: they are)."""
    if not isinstance(part, Mapping):
        return f"{where} must be an object, got {type(part).__name__}"
    ptype = part.get("type")
    if ptype in TEXT_PARTS or ptype == "refusal":
        key = "refusal" if ptype == "refusal" else "text"
        return None if isinstance(part.get(key), str) else f"{where} ({ptype}) needs a string '{key}'"
    if ptype in MEDIA_PARTS:
        if media_refused is not None:
            return (f"{where} is an {ptype} part in {media_refused}; images and audio are supported "
                    f"in user messages only: move it into a user message")
        return _media_problem(part, ptype, where)
    if ptype == "input_file":
        return (f"{where} is an input_file part; vLLM's chat API has no file parts: put the file's "
                f"text in an input_text part (or an image of it in an input_image part)")
    return f"{where} has a content part of type {ptype!r}; the vLLM adapter supports {_SUPPORTED_PARTS}"


def _parts_problem(content: Any, where: str, media_refused: str | None) -> str | None:
    if content is None or isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f"{where} must be a string or a list of parts"
    for j, part in enumerate(content):
        problem = part_problem(part, f"{where}[{j}]", media_refused)
        if problem:
            return problem
    return None


def item_problem(item: Any, index: int) -> str | None:
    """Why ``input[index]`` cannot be converted (None when it can)."""
    if not isinstance(item, MAPPING):
        return f"input[{index}] must be an object, got {type(item).__name__}"
    kind = item.get("type") or "message"
    if kind == "message":
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            return f"input[{index}] has role {role!r}; supported roles: {', '.join(ROLES)}"
        if content is None or isinstance(content, str):
            return None
        where = None if role == "user" else ("an " if role == "assistant" else "a ") + f"{role} message"
        return _parts_problem(content, f"input[{index}].content", where)
    if kind == "function_call":
        name, call_id = item.get("name"), item.get("call_id") or item.get("id")
        if not isinstance(name, str) or not name or not isinstance(call_id, str):
            return f"input[{index}] (function_call) needs a name and a call_id"
        return None
    if kind == "function_call_output":
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            return f"input[{index}] (function_call_output) has no call_id"
        output = item.get("output")
        return _parts_problem(output, f"input[{index}].output", "a function_call_output") \
            if isinstance(output, list) else None
    if kind == "reasoning":
        return None
    return (f"input[{index}] has type {kind!r}, which the vLLM adapter does not support "
            f"(supported: {', '.join(SUPPORTED_ITEMS)})")


def audio_urls(metadata: Any) -> list[str]:
    """The audio side channel's URLs (``metadata.audio_data`` or ``metadata.audio_url``)."""
    if not is_mapping(metadata):
        return []
    return [metadata[k] for k in AUDIO_KEYS if metadata.get(k)]


def audio_problem(metadata: Any) -> str | None:
    """Why the row's audio side channel cannot be sent (None when it can, or there is none)."""
    if not isinstance(metadata, Mapping):
        return None
    files = [k for k in AUDIO_FILE_KEYS if metadata.get(k)]
    if files:
        return (f"metadata.{files[0]} names an audio file, which the vLLM adapter does not read: "
                f"inline it as metadata.audio_data = \"data:audio/<format>;base64,<data>\"")
    present = [k for k in AUDIO_KEYS if metadata.get(k)]
    if len(present) > 1:
        return f"metadata.{' and metadata.'.join(present)} are both set; give the audio once (metadata.audio_data)"
    if present and not isinstance(metadata[present[0]], str):
        return f"metadata.{present[0]} must be a string (a data:audio/...;base64 URI or a URL)"
    return None


def conversation_problems(params: Mapping[str, Any]) -> list[str]:
    """Every problem of ``input`` / ``instructions`` / the audio side channel, without converting."""
    items = params.get("input")
    if items is None:
        return ["responses_create_params.input is missing"]
    items = input_items(items)
    if not isinstance(items, list):
        return [f"responses_create_params.input must be a string or a list, got {type(items).__name__}"]
    instructions = params.get("instructions")
    problems = []
    if instructions is not None and not isinstance(instructions, str):
        problems.append("responses_create_params.instructions must be a string")
    if not items and not instructions:
        problems.append(_EMPTY)
    problems.extend(p for p in (item_problem(item, i) for i, item in enumerate(items)) if p)
    audio = audio_problem(params.get("metadata"))
    if audio:
        problems.append(audio)
    return problems


_EMPTY = ("responses_create_params.input is empty and there are no instructions: there is nothing to "
          "send to the model (rows whose agent builds the conversation need that agent)")


def raise_problems(problems: list[str]) -> None:
    """Raise the problems a check found, all of them in one error (nothing when there are none)."""
    if problems:
        raise RequestConversionError("; ".join(problems))


# -- conversion --------------------------------------------------------------------------------

def responses_to_chat_messages(params: Mapping[str, Any], cfg: ModelConfig) -> list[dict[str, Any]]:
    """The chat ``messages`` for a Responses request (its ``input`` and ``instructions``)."""
    raise_problems(conversation_problems(params))
    items = input_items(params["input"])
    instructions = params.get("instructions")
    system_parts: list[str] = [instructions] if instructions else []
    messages: list[dict[str, Any]] = []
    assistant: dict[str, Any] | None = None
    leading = True
    for item in items:
        kind = item.get("type") or "message"
        role = item.get("role")
        if leading and kind == "message" and role in ("system", "developer"):
            system_parts.append(_content(item.get("content")))
            continue
        leading = False
        if kind in ("reasoning", "function_call") or (kind == "message" and role == "assistant"):
            if assistant is None:
                assistant = {"role": "assistant", "content": "", "_reasoning": [], "tool_calls": []}
                messages.append(assistant)
            _merge_assistant_item(assistant, item, kind, cfg)
            continue
        assistant = None
        messages.append(_other_item(item, kind, role, cfg))
    if system_parts:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system_parts)})
    _add_audio(messages, audio_urls(params.get("metadata")))
    return [_finish_assistant(m, cfg) if m["role"] == "assistant" else m for m in messages]


def _other_item(item: Mapping[str, Any], kind: str, role: Any, cfg: ModelConfig) -> dict[str, Any]:
    if kind == "message":
        return {"role": _map_role(role, cfg), "content": _content(item.get("content"))}
    return {"role": "tool", "tool_call_id": item["call_id"], "content": _tool_output_text(item.get("output"))}


def _map_role(role: str, cfg: ModelConfig) -> str:
    if role == "developer" and cfg.replace_developer_role_with_system:
        return "system"
    return role


def _chat_part(part: Mapping[str, Any]) -> dict[str, Any]:
    """One checked Responses content part as a chat content part."""
    ptype = part["type"]
    if ptype == "input_image":
        image = {"url": part["image_url"]}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if ptype == "input_audio":
        return {"type": "input_audio", "input_audio": dict(part["input_audio"])}
    return {"type": "text", "text": part["refusal"] if ptype == "refusal" else part["text"]}


def _content(content: Any) -> str | list[dict[str, Any]]:
    """Checked content as chat content: a string, or a list of parts when any part is media."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [_chat_part(p) for p in content]
    if any(p["type"] != "text" for p in parts):
        return parts
    return "\n".join(p["text"] for p in parts)


def _tool_output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if output is None:
        return ""
    if isinstance(output, list):
        return _content(output)  # type: ignore[return-value]  # media refused by item_problem
    return orjson.dumps(output).decode()


def _add_audio(messages: list[dict[str, Any]], urls: list[str]) -> None:
    """The audio side channel: audio parts in front of the last user message's content."""
    if not urls:
        return
    audio = [{"type": "audio_url", "audio_url": {"url": url}} for url in urls]
    for msg in reversed(messages):
        if msg["role"] == "user":
            content = msg["content"]
            if isinstance(content, list):
                msg["content"] = audio + content
            else:
                msg["content"] = audio + ([{"type": "text", "text": content}] if content else [])
            return
    messages.append({"role": "user", "content": audio})


def _reasoning_texts(item: Mapping[str, Any]) -> list[str]:
    """A reasoning item's texts: its summary entries, else its ``reasoning_text`` content parts."""
    texts = [s["text"] for s in item.get("summary") or [] if isinstance(s, Mapping) and isinstance(s.get("text"), str)]
    if not texts:
        texts = [c["text"] for c in item.get("content") or [] if isinstance(c, Mapping) and isinstance(c.get("text"), str)]
    return texts


def _merge_assistant_item(msg: dict[str, Any], item: Mapping[str, Any], kind: str, cfg: ModelConfig) -> None:
    if kind == "reasoning":
        msg["_reasoning"].extend(_reasoning_texts(item))
    elif kind == "function_call":
        arguments = item.get("arguments")
        msg["tool_calls"].append({
            "id": item.get("call_id") or item.get("id"),
            "type": "function",
            "function": {"name": item["name"], "arguments": arguments if isinstance(arguments, str) else
                         orjson.dumps(arguments if arguments is not None else {}).decode()},
        })
    else:
        text = _content(item.get("content"))  # a string: media is refused outside user messages
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
