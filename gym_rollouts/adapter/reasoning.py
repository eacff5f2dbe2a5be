"""Reasoning text: splitting ``<think>...</think>`` blocks out of generated text and back.

Whitespace is preserved exactly: ``join_reasoning(split_reasoning(t)) == t`` for any text whose
think blocks come first (the shape reasoning models generate), so history re-renders the tokens
the model produced.
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


def split_reasoning(text: str) -> tuple[list[str], str]:
    """Return (reasoning blocks, remaining content). An unclosed block counts as reasoning
    (a generation cut by max_tokens mid-thought); a stray ``</think>`` with no opener closes an
    implicit block that started at the beginning (templates that pre-fill ``<think>``)."""
    blocks: list[str] = []
    rest: list[str] = []
    pos = 0
    if CLOSE in text and (OPEN not in text or text.index(CLOSE) < text.index(OPEN)):
        end = text.index(CLOSE)
        blocks.append(text[:end])
        pos = end + len(CLOSE)
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            rest.append(text[pos:])
            break
        rest.append(text[pos:start])
        end = text.find(CLOSE, start + len(OPEN))
        if end < 0:
            blocks.append(text[start + len(OPEN):])
            break
        blocks.append(text[start + len(OPEN):end])
        pos = end + len(CLOSE)
    return blocks, "".join(rest)


def join_reasoning(blocks: list[str], content: str) -> str:
    """Inline reasoning blocks back in front of the content."""
    return "".join(f"{OPEN}{b}{CLOSE}" for b in blocks) + content
