"""Token capture for training: generation ids, their logprobs, prompt ids, and continuity.

Generation ids come from ``choices[0].token_ids`` (``return_token_ids``) and must agree with the
``token_id:N`` logprob entries (``return_tokens_as_token_ids``); servers without
``return_token_ids`` give ids only through those entries. Partial or inconsistent data raises
``ProtocolError``: a rollout fails rather than carry silently wrong ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

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
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ProtocolError(f"{what} must be a list of integers")
    return ids


def _reconcile(ids: list[int] | None, from_logprobs: list[int], logprobs: list[float]) -> CapturedTokens:
    if ids is None:
        return CapturedTokens(None, from_logprobs, logprobs)
    if len(ids) != len(from_logprobs):
        raise ProtocolError(
            f"token_ids has {len(ids)} ids but logprobs has {len(from_logprobs)} entries"
        )
    for pos, (a, b) in enumerate(zip(ids, from_logprobs)):
        if a != b:
            raise ProtocolError(f"token_ids[{pos}]={a} disagrees with logprobs entry token_id:{b}")
    return CapturedTokens(None, ids, logprobs)


def capture_chat_tokens(reply: Mapping[str, Any]) -> CapturedTokens:
    """Token ids and logprobs of a chat completion made with token capture on."""
    choice = (reply.get("choices") or [{}])[0]
    content = (choice.get("logprobs") or {}).get("content")
    if content is None:
        raise ProtocolError("the reply has no logprobs although token capture asked for them")
    from_lp = [_parse_token_id(e.get("token"), i) for i, e in enumerate(content)]
    logprobs = [float(e.get("logprob")) for e in content]
    ids = choice.get("token_ids")
    captured = _reconcile(_check_ids(ids, "choices[0].token_ids") if ids is not None else None, from_lp, logprobs)
    prompt = reply.get("prompt_token_ids")
    prompt_ids = _check_ids(prompt, "prompt_token_ids") if prompt is not None else None
    return CapturedTokens(prompt_ids, captured.generation_token_ids, captured.generation_log_probs)


def capture_completion_tokens(reply: Mapping[str, Any]) -> CapturedTokens:
    """Token ids and logprobs of a ``/v1/completions`` reply (prompt ids are per choice there)."""
    choice = (reply.get("choices") or [{}])[0]
    lp = choice.get("logprobs") or {}
    tokens, values = lp.get("tokens"), lp.get("token_logprobs")
    if tokens is None or values is None:
        raise ProtocolError("the completion has no logprobs although token capture asked for them")
    if len(tokens) != len(values):
        raise ProtocolError(f"logprobs.tokens has {len(tokens)} entries but token_logprobs {len(values)}")
    from_lp = [_parse_token_id(t, i) for i, t in enumerate(tokens)]
    ids = choice.get("token_ids")
    captured = _reconcile(_check_ids(ids, "choices[0].token_ids") if ids is not None else None, from_lp,
                          [float(v) for v in values])
    prompt = choice.get("prompt_token_ids")
    prompt_ids = _check_ids(prompt, "choices[0].prompt_token_ids") if prompt is not None else None
    return CapturedTokens(prompt_ids, captured.generation_token_ids, captured.generation_log_probs)


@dataclass
class ContinuityTracker:
    """Checks that each call's prompt ids start with the previous call's prompt + generation ids.

    Never repairs anything: it records the first break so users see when a chat template does
    not re-render history token for token (Qwen3-style templates that strip earlier <think> do).
    """

    previous: list[int] | None = None
    calls: int = 0
    first_break: dict[str, int] | None = None
    checked: int = 0

    def observe(self, prompt_ids: Sequence[int], generation_ids: Sequence[int]) -> None:
        if self.previous is not None:
            self.checked += 1
            if self.first_break is None:
                position = _first_mismatch(self.previous, prompt_ids)
                if position is not None:
                    self.first_break = {"call": self.calls, "position": position}
        self.previous = [*prompt_ids, *generation_ids]
        self.calls += 1

    def summary(self) -> dict[str, Any]:
        return {"continuous": self.first_break is None, "checked_calls": self.checked,
                "first_mismatch": self.first_break}


def _first_mismatch(expected_prefix: Sequence[int], actual: Sequence[int]) -> int | None:
    for pos, want in enumerate(expected_prefix):
        if pos >= len(actual) or actual[pos] != want:
            return pos
    return None
