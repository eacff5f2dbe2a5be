"""Token capture for training: generation ids, their logprobs, prompt ids, and continuity.

Generation ids come from ``choices[0].token_ids`` (``return_token_ids``) and must agree with the
``token_id:N`` logprob entries (``return_tokens_as_token_ids``); servers without
``return_token_ids`` give ids only through those entries. Partial or inconsistent data (and ids
that disagree with the reply's ``usage``) raises ``ProtocolError``, which the adapter turns into a
retryable error against the server (adapter/answer.py): never silently wrong ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from gym_rollouts.adapter.reply import first_choice
from gym_rollouts.errors import ProtocolError

_PREFIX = "token_id:"


@dataclass(frozen=True)
class CapturedTokens:
    prompt_token_ids: list[int] | None  # None: the server did not send them (use /tokenize)
    generation_token_ids: list[int]
    generation_log_probs: list[float]


def _parse_token_id(token: Any, position: int) -> int:
    if not isinstance(token, str) or not token.startswith(_PREFIX):
        raise ProtocolError(
            f"logprob entry {position} has token {token!r}, expected 'token_id:N' "
            f"(is return_tokens_as_token_ids supported by this server?)"
        )
    try:
        return int(token[len(_PREFIX):])
    except ValueError:
        raise ProtocolError(f"logprob entry {position} has a malformed token id {token!r}") from None


def _check_ids(ids: Any, what: str) -> list[int]:
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ProtocolError(f"{what} must be a list of non-negative integers")
    return ids


def _logprob(value: Any, position: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ProtocolError(f"logprob entry {position} has logprob {value!r}, expected a number")
    return float(value)


def _reconcile(ids: Any, prompt: Any, from_logprobs: list[int], logprobs: list[float],
               prompt_where: str) -> CapturedTokens:
    """Generation ids from ``token_ids`` checked against the logprob entries; prompt ids.

    Both ``token_ids`` and prompt ids absent: a server without ``return_token_ids`` (ids come from
    the logprob entries, prompt ids from /tokenize). Only one of them present: partial data."""
    if ids is None and prompt is None:
        return CapturedTokens(None, from_logprobs, logprobs)
    if ids is None or prompt is None:
        missing = "choices[0].token_ids" if ids is None else prompt_where
        raise ProtocolError(f"the server returned partial token data: {missing} is missing although "
                            f"return_token_ids was requested")
    ids = _check_ids(ids, "choices[0].token_ids")
    if len(ids) != len(from_logprobs):
        raise ProtocolError(f"choices[0].token_ids has {len(ids)} ids but logprobs has {len(from_logprobs)} entries")
    for pos, (a, b) in enumerate(zip(ids, from_logprobs)):
        if a != b:
            raise ProtocolError(f"choices[0].token_ids[{pos}]={a} disagrees with logprob entry token_id:{b}")
    return CapturedTokens(_check_ids(prompt, prompt_where), ids, logprobs)


def capture_chat_tokens(reply: Mapping[str, Any]) -> CapturedTokens:
    """Token ids and logprobs of a chat completion made with token capture on (prompt ids at
    the top level of the reply)."""
    choice = first_choice(reply, "chat", exactly_one=True)
    content = (choice.get("logprobs") or {}).get("content")
    if not isinstance(content, list):
        raise ProtocolError("the reply has no logprobs although token capture asked for them "
                            "(logprobs=true, top_logprobs=0)")
    entries = [e if isinstance(e, Mapping) else {} for e in content]
    from_lp = [_parse_token_id(e.get("token"), i) for i, e in enumerate(entries)]
    logprobs = [_logprob(e.get("logprob"), i) for i, e in enumerate(entries)]
    return _reconcile(choice.get("token_ids"), reply.get("prompt_token_ids"), from_lp, logprobs, "prompt_token_ids")


def capture_completion_tokens(reply: Mapping[str, Any]) -> CapturedTokens:
    """Token ids and logprobs of a ``/v1/completions`` reply (prompt ids are per choice there)."""
    choice = first_choice(reply, "completion", exactly_one=True)
    lp = choice.get("logprobs") or {}
    tokens, values = lp.get("tokens"), lp.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        raise ProtocolError("the completion has no logprobs although token capture asked for them (logprobs=0)")
    if len(tokens) != len(values):
        raise ProtocolError(f"logprobs.tokens has {len(tokens)} entries but token_logprobs {len(values)}")
    from_lp = [_parse_token_id(t, i) for i, t in enumerate(tokens)]
    logprobs = [_logprob(v, i) for i, v in enumerate(values)]
    return _reconcile(choice.get("token_ids"), choice.get("prompt_token_ids"), from_lp, logprobs,
                      "choices[0].prompt_token_ids")


def check_ids_against_usage(usage: Mapping[str, Any], prompt_ids: Sequence[int] | None,
                           generation_ids: Sequence[int]) -> None:
    """The server's own counts (Responses ``usage``) must match the ids it sent: a mismatch means
    the ids are not the ones it counted. ``prompt_ids`` None: not known yet (/tokenize fallback)."""
    if usage["output_tokens"] != len(generation_ids):
        raise ProtocolError(f"usage.completion_tokens is {usage['output_tokens']} but the reply has "
                            f"{len(generation_ids)} generation token ids")
    if prompt_ids is not None and usage["input_tokens"] != len(prompt_ids):
        raise ProtocolError(f"usage.prompt_tokens is {usage['input_tokens']} but the prompt has {len(prompt_ids)} ids")


@dataclass
class ContinuityTracker:
    """Checks that each call's prompt ids start with the previous call's prompt + generation ids.

    Never repairs anything: it records the first break (which call, which position, the id
    expected there and the id found) so users see when a chat template does not re-render history
    token for token (Qwen3-style templates that strip earlier ``<think>`` do).
    """

    previous: list[int] | None = None
    calls: int = 0
    checked: int = 0
    first_break: dict[str, Any] | None = None
    breaks: int = 0

    def observe(self, prompt_ids: Sequence[int], generation_ids: Sequence[int]) -> None:
        if self.previous is not None:
            self.checked += 1
            position = first_mismatch(self.previous, prompt_ids)
            if position is not None:
                self.breaks += 1
                if self.first_break is None:
                    self.first_break = {
                        "call": self.calls, "position": position,
                        "expected": self.previous[position],
                        "actual": prompt_ids[position] if position < len(prompt_ids) else None,
                    }
        self.previous = [*prompt_ids, *generation_ids]
        self.calls += 1

    @property
    def continuous(self) -> bool:
        return self.first_break is None

    def summary(self) -> dict[str, Any]:
        return {"continuous": self.continuous, "checked_calls": self.checked, "broken_calls": self.breaks,
                "first_mismatch": self.first_break}


def first_mismatch(expected_prefix: Sequence[int], actual: Sequence[int]) -> int | None:
    """The first position where ``actual`` does not continue ``expected_prefix`` (None: it does)."""
    head = actual[: len(expected_prefix)]
    if type(head) is not type(expected_prefix):
        head, expected_prefix = list(head), list(expected_prefix)
    if head == expected_prefix:
        return None  # the usual case: one C-level slice comparison, no Python loop
    for pos, want in enumerate(expected_prefix):
        if pos >= len(actual) or actual[pos] != want:
            return pos
    return None  # not reached: the slices differed
