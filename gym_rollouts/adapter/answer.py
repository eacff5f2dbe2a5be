"""One vLLM answer read inside the router's attempt: which 200s are usable.

``PolicySession`` sends each call through the dispatcher with a ``send=`` hook that posts on the
run's transport and hands the raw answer to ``read_generation`` / ``read_tokenize`` here, so the
verdict "this server answered something we cannot use" is part of the attempt:

- non-2xx -> ``ServerStatusError`` as the transport maps it (``status_error``, Retry-After kept):
  429/5xx retryable; other 4xx not (our own request was bad and the server is alive; the
  context-length and tool-parser 400s are recognised by the session afterwards);
- 2xx -> the body is decoded once. Not JSON, the wrong shape (no choices, no message / text,
  malformed tool calls or usage), token data that does not hold together (ids vs logprobs,
  partial ids, more than one choice) or ``usage`` contradicting the ids -> ``MalformedReplyError``
  (retryable, retry kind ``malformed``) naming the server, with the reason and an excerpt of the
  body (at most ``EXCERPT_CHARS``). The dispatcher then takes the server out like one answering
  5xx and retries the call elsewhere within the ``malformed`` budget.

A reply without ``usage`` is usable: its turn has ``usage`` None (the session fills it from the
token ids when it has them, else counts it as unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gym_rollouts.adapter.completions import completion_reply_to_turn
from gym_rollouts.adapter.reply import ModelTurn, chat_reply_to_turn
from gym_rollouts.adapter.tokens import (CapturedTokens, capture_chat_tokens, capture_completion_tokens,
                                         check_ids_against_usage)
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import MalformedReplyError, ProtocolError
from gym_rollouts.transport.client import Answer, status_error

EXCERPT_CHARS = 300
_ELLIPSIS = " … "


@dataclass(frozen=True, slots=True)
class GenerationReply:
    """A usable generation answer: the turn, and with token capture the ids it carried."""

    turn: ModelTurn
    captured: CapturedTokens | None


def body_excerpt(raw: bytes, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of ``raw``: all of it when it is short, else its head and its
    tail (a chat completion has its choices at the front and its usage at the end)."""
    if len(raw) <= limit:
        return raw.decode("utf-8", "replace")
    room = limit - len(_ELLIPSIS)
    head, tail = room * 2 // 3, room - room * 2 // 3
    return raw[:head].decode("utf-8", "replace") + _ELLIPSIS + raw[-tail:].decode("utf-8", "replace")


def unusable(url: str, server: str, answer: Answer, reason: str) -> MalformedReplyError:
    return MalformedReplyError(f"{url} answered HTTP {answer.status} with a body we cannot use: {reason}; "
                               f"body ({len(answer.body)} bytes): {body_excerpt(answer.body)}", server=server)


def decode_answer(answer: Answer, url: str, server: str) -> Any:
    """The decoded JSON of a 2xx answer; a non-2xx one raises ``ServerStatusError``."""
    if answer.status >= 300:
        raise status_error(answer.status, answer.body, server, answer.retry_after)
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError as exc:
        raise unusable(url, server, answer, f"not JSON ({exc})") from None


def parse_generation(reply: Any, cfg: ModelConfig) -> GenerationReply:
    """A decoded chat / completions reply -> turn (+ captured ids); ``ProtocolError`` when unusable."""
    completions = cfg.use_completions_api
    turn = completion_reply_to_turn(reply, cfg) if completions else chat_reply_to_turn(reply, cfg)
    if not cfg.return_token_id_information:
        return GenerationReply(turn, None)
    captured = capture_completion_tokens(reply) if completions else capture_chat_tokens(reply)
    if turn.usage is not None:
        check_ids_against_usage(turn.usage, captured.prompt_token_ids, captured.generation_token_ids)
    return GenerationReply(turn, captured)


def read_generation(answer: Answer, url: str, server: str, cfg: ModelConfig) -> GenerationReply:
    reply = decode_answer(answer, url, server)
    try:
        return parse_generation(reply, cfg)
    except ProtocolError as err:
        raise unusable(url, server, answer, str(err)) from None


def read_tokenize(answer: Answer, url: str, server: str) -> list[int]:
    """The prompt ids of a ``/tokenize`` answer (``{"tokens": [...], ...}``)."""
    reply = decode_answer(answer, url, server)
    tokens = reply.get("tokens") if isinstance(reply, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise unusable(url, server, answer, "no token list (tokens)")
    return tokens
