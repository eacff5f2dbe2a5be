"""Context length: recognising vLLM's "does not fit" errors and clamping ``max_tokens``.

Running out of context is not an error for us: the rollout ends ``incomplete`` with reason
``context_length`` and is counted. Recognition is by vLLM's texts (both error body shapes).
"""

from __future__ import annotations

import re
from gym_rollouts.transport.client import error_message

_PATTERNS = (
    re.compile(r"maximum context length is \d+ tokens", re.I),
    re.compile(r"max_tokens must be at least 1, got (0|-\d+)", re.I),
    re.compile(r"cannot be greater than max_model_len", re.I),
    re.compile(r"(prompt|input) is too long", re.I),
    re.compile(r"context length", re.I),
)


def is_context_length_error(status: int, body: str) -> bool:
    if status != 400:
        return False
    message = error_message(body)
    return any(p.search(message) for p in _PATTERNS)


def clamp_max_tokens(requested: int | None, prompt_len: int | None, max_model_len: int | None) -> int | None:
    """The max_tokens to send so prompt + generation fits; 0 means "no room left".

    Unknown prompt length or context size: leave the request alone (vLLM clamps or refuses).
    """
    if max_model_len is None:
        return requested
    if prompt_len is None:
        return min(requested, max_model_len) if requested is not None else None
    room = max_model_len - prompt_len
    if room <= 0:
        return 0
    return room if requested is None else min(requested, room)
