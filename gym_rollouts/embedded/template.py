"""The embedded model's chat template (Hermes/Qwen style) and its inverse for raw prompts.

Rendering rules (the contract the prefix property rests on):
- each message: `<|im_start|>{role}\\n{content}<|im_end|>\\n`;
- a content list renders its parts in order joined by `\\n` (vLLM's join for text parts): text
  (and refusal) parts as their text, each image part (`image_url`, `input_image`) as ONE
  `<|image|>` token and each audio part (`audio_url`, `input_audio`) as ONE `<|audio|>` token,
  where a real multimodal model's processor would expand its placeholder into the media's
  embedding tokens; the media itself is not fetched or decoded;
- tools go into the system prompt (a default system message is created when there is none);
- an assistant message renders `<think>{reasoning}</think>\\n\\n{content without leading
  newlines}` when it carries `reasoning` / `reasoning_content`, else its content verbatim;
  then its tool calls, one `<tool_call>\\n{"name": N, "arguments": A}\\n</tool_call>` block each,
  joined by `\\n`, with A re-serialised by `json.dumps` (raw text when it is not JSON);
- a tool result renders as `<|im_start|>user\\n<tool_response>\\n{content}\\n</tool_response>
  <|im_end|>\\n`;
- `add_generation_prompt` appends `<|im_start|>assistant\\n`.
The scripted model (policy.py) generates text that this template reproduces byte for byte when
the parsed reply is fed back, so prompt(k+1) starts with prompt(k) + generation(k).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import orjson

from .tokenizer import AUDIO_TOKEN, IMAGE_TOKEN

DEFAULT_SYSTEM = "You are a helpful assistant."
GENERATION_PROMPT = "<|im_start|>assistant\n"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
THINK_SEPARATOR = "\n\n"  # between </think> and the answer / tool call

_TOOLS_HEADER = (
    "\n\n# Tools\n\n"
    "You may call the functions described below, one JSON object per line inside "
    "<tools></tools>:\n<tools>\n"
)
_TOOLS_FOOTER = (
    "\n</tools>\n\n"
    "To call a function, reply with its name and a JSON object of arguments inside "
    "<tool_call></tool_call> tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


class TemplateError(ValueError):
    """A message list the template cannot render (reported to the client as a 400)."""


def _media_token(part: dict) -> str | None:
    """The placeholder of an image / audio part (None: not a media part); a part without a
    usable URL / data is a TemplateError, as vLLM refuses media it cannot load."""
    ptype = part.get("type")
    if ptype in ("image_url", "audio_url"):
        ref = part.get(ptype)
        url = ref.get("url") if isinstance(ref, dict) else ref
        token = IMAGE_TOKEN if ptype == "image_url" else AUDIO_TOKEN
    elif ptype == "input_image":
        url, token = part.get("image_url"), IMAGE_TOKEN
    elif ptype == "input_audio":
        audio = part.get("input_audio")
        url, token = (audio.get("data") if isinstance(audio, dict) else None), AUDIO_TOKEN
    else:
        return None
    if not isinstance(url, str) or not url:
        raise TemplateError(f"the {ptype} part has no url / data to load: {part!r}"[:200])
    return token


def content_text(content: Any) -> str:
    """A message's `content` as text: strings as is, parts joined by newlines (media parts as
    their placeholder token)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and isinstance(part.get("refusal"), str):
                texts.append(part["refusal"])
            elif isinstance(part, dict) and (token := _media_token(part)) is not None:
                texts.append(token)
            else:
                raise TemplateError(f"unsupported content part: {part!r}"[:200])
        return "\n".join(texts)
    raise TemplateError(f"content must be a string or a list of parts, got {type(content).__name__}")


def render_tool_call(name: str, arguments: Any) -> str:
    """One hermes tool-call block. `arguments` is a JSON string (re-serialised) or an object."""
    if isinstance(arguments, str):
        try:
            args_text = json.dumps(json.loads(arguments))
        except ValueError:
            args_text = arguments
    else:
        args_text = json.dumps(arguments)
    return '<tool_call>\n{"name": ' + json.dumps(name) + ', "arguments": ' + args_text + "}\n</tool_call>"


def _call_parts(call: Any) -> tuple[str, Any]:
    if not isinstance(call, dict):
        raise TemplateError("each tool call must be an object")
    fn = call.get("function") if isinstance(call.get("function"), dict) else call
    name = fn.get("name")
    if not isinstance(name, str):
        raise TemplateError("a tool call needs function.name")
    return name, fn.get("arguments", "{}")


def render_assistant_body(message: dict) -> str:
    """What the model generated for this assistant message (without the eos)."""
    content = content_text(message.get("content"))
    reasoning = message.get("reasoning")
    if reasoning is None:
        reasoning = message.get("reasoning_content")
    if reasoning and not content.lstrip("\n").startswith(THINK_OPEN):
        body = THINK_OPEN + str(reasoning) + THINK_CLOSE + THINK_SEPARATOR + content.lstrip("\n")
    else:
        body = content
    calls = message.get("tool_calls") or ()
    if calls:
        body += "\n".join(render_tool_call(*_call_parts(c)) for c in calls)
    return body


class ChatTemplate:
    """Renders message lists; caches the tools block of recently seen tool lists."""

    def __init__(self, cache_size: int = 64) -> None:
        self._tools_cache: dict[bytes, str] = {}
        self._cache_size = cache_size

    def tools_block(self, tools: Sequence[Any]) -> str:
        key = orjson.dumps(tools)
        block = self._tools_cache.get(key)
        if block is None:
            lines = "\n".join(json.dumps(t) for t in tools)
            block = _TOOLS_HEADER + lines + _TOOLS_FOOTER
            if len(self._tools_cache) >= self._cache_size:
                self._tools_cache.clear()
            self._tools_cache[key] = block
        return block

    def render(
        self,
        messages: Sequence[Any],
        tools: Sequence[Any] | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        parts: list[str] = []
        start = 0
        if tools:
            first = messages[0] if messages else None
            if isinstance(first, dict) and first.get("role") in ("system", "developer"):
                system = content_text(first.get("content"))
                start = 1
            else:
                system = DEFAULT_SYSTEM
            parts.append("<|im_start|>system\n" + system + self.tools_block(tools) + "<|im_end|>\n")
        for i in range(start, len(messages)):
            parts.append(self.render_message(messages[i]))
        if add_generation_prompt:
            parts.append(GENERATION_PROMPT)
        return "".join(parts)

    @staticmethod
    def render_message(message: Any) -> str:
        if not isinstance(message, dict):
            raise TemplateError("each message must be an object")
        role = message.get("role")
        if not isinstance(role, str):
            raise TemplateError("each message needs a string 'role'")
        if role == "assistant":
            return "<|im_start|>assistant\n" + render_assistant_body(message) + "<|im_end|>\n"
        if role == "tool":
            return (
                "<|im_start|>user\n<tool_response>\n"
                + content_text(message.get("content"))
                + "\n</tool_response><|im_end|>\n"
            )
        return "<|im_start|>" + role + "\n" + content_text(message.get("content")) + "<|im_end|>\n"


def parse_chatml(prompt: str) -> tuple[list[dict], list[dict]]:
    """Best-effort inverse of `ChatTemplate.render` for raw completion prompts.

    Returns (messages, tools). Text that is not ChatML becomes one user message. Used so the
    completions endpoint answers a rendered conversation the way the chat endpoint would.
    """
    if "<|im_start|>" not in prompt:
        return [{"role": "user", "content": prompt}], []
    messages: list[dict] = []
    tools: list[dict] = []
    for chunk in prompt.split("<|im_start|>")[1:]:
        head, _, rest = chunk.partition("\n")
        body = rest.split("<|im_end|>", 1)[0]
        if head == "system" and "\n<tools>\n" in body:
            system, _, tail = body.partition(_TOOLS_HEADER)
            lines = tail.split("\n</tools>", 1)[0].split("\n")
            for line in lines:
                try:
                    tools.append(json.loads(line))
                except ValueError:
                    pass
            messages.append({"role": "system", "content": system})
        elif head == "user" and body.startswith("<tool_response>\n"):
            inner = body[len("<tool_response>\n"):]
            if inner.endswith("\n</tool_response>"):
                inner = inner[: -len("\n</tool_response>")]
            messages.append({"role": "tool", "content": inner})
        elif head:
            messages.append({"role": head, "content": body})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()  # the open generation prompt
    return messages, tools
