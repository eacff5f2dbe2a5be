"""Context length: recognising vLLM's "does not fit" errors, clamping ``max_tokens``, and telling
a generation cut by the context apart from one cut by its own budget.

Running out of context is not an error for us: the rollout ends ``incomplete`` with the explicit
stop reason ``context_length`` and is counted. Recognition is by vLLM's texts, matched in the
message the transport already decoded from either error body shape
(``ServerStatusError.server_message``):
- prompt too long: "This model's maximum context length is N tokens. However, your prompt
  contains at least M input tokens, …" (older: "… However, you requested M tokens …");
- prompt exactly at the limit: "max_tokens must be at least 1, got 0.";
- max_tokens above the context: "max_tokens=K cannot be greater than max_model_len=N.";
- the engine's own check: "The decoder prompt (length M) is longer than the maximum model length".
"""

from __future__ import annotations

import re

_PATTERNS = (
    re.compile(r"maximum context length is \d+ tokens", re.I),
    re.compile(r"max_tokens must be at least 1, got (0|-\d+)", re.I),
    re.compile(r"max_tokens=\d+ cannot be greater than max_model_len", re.I),
    re.compile(r"is longer than the maximum model length", re.I),
    re.compile(r"(prompt|input) is too long", re.I),
)


def is_context_length_error(status: int, message: str) -> bool:
    """True for vLLM's HTTP 400 answers meaning "prompt + generation do not fit the context";
    ``message`` is the error's text (``ServerStatusError.server_message``)."""
    return status == 400 and any(p.search(message) for p in _PATTERNS)


def clamp_max_tokens(requested: int | None, prompt_len: int | None, max_model_len: int | None) -> int | None:
    """The max_tokens to send so prompt + generation fits; 0 means "no room left".

    Unknown context size: leave the request alone. Unknown prompt length: only cap at
    ``max_model_len`` (vLLM refuses a larger value outright).
    """
    if max_model_len is None:
        return requested
    if prompt_len is None:
        return min(requested, max_model_len) if requested is not None else None
    room = max_model_len - prompt_len
    if room <= 0:
        return 0
    return room if requested is None else min(requested, room)


def ran_out_of_context(finish_reason: str | None, prompt_tokens: int, completion_tokens: int,
                       wanted_max_tokens: int | None, max_model_len: int | None) -> bool:
    """A ``length`` finish caused by the context, not by the caller's own ``max_output_tokens``:
    prompt + generation filled ``max_model_len`` before the requested budget was used up."""
    if finish_reason != "length" or not max_model_len:
        return False
    if prompt_tokens + completion_tokens < max_model_len:
        return False
    return wanted_max_tokens is None or completion_tokens < wanted_max_tokens
