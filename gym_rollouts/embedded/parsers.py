"""Output parsers: what vLLM's `--reasoning-parser` and hermes `--tool-call-parser` do.

`split_reasoning` takes `<think>R</think>` off the front of the generated text and drops the
newlines that separate it from the answer (the chat template puts them back). `parse_tool_calls`
extracts hermes `<tool_call>` blocks; when any block is not valid JSON it fails silently, like
vLLM, leaving the whole text as content.
"""

from __future__ import annotations

import json
import re
from typing import Callable

from .template import THINK_CLOSE, THINK_OPEN

_TOOL_BLOCK = re.compile(r"<tool_call>\n?(.*?)\n?</tool_call>|<tool_call>\n?(.*)$", re.DOTALL)
TOOL_CALL_START = "<tool_call>"


def split_reasoning(text: str) -> tuple[str | None, str | None]:
    """(reasoning, content). Without `</think>`: all reasoning when the text opened a think
    block (the generation was cut short), else all content."""
    end = text.find(THINK_CLOSE)
    if end < 0:
        if text.startswith(THINK_OPEN):
            return text[len(THINK_OPEN):], None
        return None, text or None
    start = len(THINK_OPEN) if text.startswith(THINK_OPEN) else 0
    reasoning = text[start:end]
    content = text[end + len(THINK_CLOSE):].lstrip("\n")
    return reasoning, content or None


def parse_tool_calls(
    text: str, make_id: Callable[[], str]
) -> tuple[str | None, list[dict]]:
    """(content before the first call or None, tool_calls in vLLM's response shape)."""
    start = text.find(TOOL_CALL_START)
    if start < 0:
        return text or None, []
    calls: list[dict] = []
    try:
        for m in _TOOL_BLOCK.finditer(text, start):
            raw = m.group(1) if m.group(1) is not None else m.group(2)
            obj = json.loads(raw)
            name = obj["name"]
            if not isinstance(name, str):
                raise ValueError("name")
            args = obj.get("arguments", {})
            calls.append(
                {
                    "id": make_id(),
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
                }
            )
    except (ValueError, KeyError, TypeError):
        return text or None, []
    content = text[:start]
    return content or None, calls
