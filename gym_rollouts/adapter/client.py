"""``VLLMPolicy``: one model call of one rollout, end to end through the router.

Per rollout a ``PolicySession`` remembers the server affinity key, the prompt length known from
the previous call (to clamp ``max_tokens`` under ``max_model_len``) and the token continuity
tracker. Pure conversions live in messages/request/reply/completions/tokens/context; this module
only sequences them around the dispatcher:

build body -> clamp max_tokens -> POST -> (context-length 400 -> empty turn ``context_length``;
tool-parser refusal -> ``ToolSupportError`` naming the vLLM flags) -> reply -> items -> token
capture (prompt ids from ``/tokenize`` only for servers without ``return_token_ids``) -> continuity.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

from gym_rollouts.adapter.completions import build_completions_body, completion_reply_to_turn
from gym_rollouts.adapter.context import clamp_max_tokens, is_context_length_error, ran_out_of_context
from gym_rollouts.adapter.reply import ModelTurn, chat_reply_to_turn, map_usage
from gym_rollouts.adapter.request import build_chat_body, tokenize_request
from gym_rollouts.adapter.tokens import (CapturedTokens, ContinuityTracker, capture_chat_tokens,
                                         capture_completion_tokens)
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import ProtocolError, ServerStatusError, ToolSupportError
from gym_rollouts.router.dispatcher import Dispatcher

CONTEXT_LENGTH = "context_length"
TOOL_PARSER_HINT = ("the vLLM server refused a request with tools because it runs without a tool-call "
                    "parser: restart it with --enable-auto-tool-choice --tool-call-parser <name> "
                    "(e.g. hermes for Qwen/Hermes-style models)")


def is_tool_refusal(err: ServerStatusError) -> bool:
    message = err.server_message
    return err.status == 400 and ("enable-auto-tool-choice" in message or "tool-call-parser" in message)


class VLLMPolicy:
    """Shared by all workers: config + model name + context size + the dispatcher."""

    def __init__(self, cfg: ModelConfig, dispatcher: Dispatcher, *, model_name: str,
                 max_model_len: int | None) -> None:
        self.cfg = cfg
        self.dispatcher = dispatcher
        self.model_name = model_name
        self.max_model_len = max_model_len
        self._keys = itertools.count()
        self.context_length_stops = 0
        self.clamped_calls = 0
        self.tokenize_fallbacks = 0

    def session(self) -> "PolicySession":
        return PolicySession(self, f"r{next(self._keys)}")

    def stats(self) -> dict[str, int]:
        return {"context_length_stops": self.context_length_stops, "clamped_calls": self.clamped_calls,
                "tokenize_fallbacks": self.tokenize_fallbacks}


class PolicySession:
    """The model side of one rollout."""

    def __init__(self, policy: VLLMPolicy, key: str) -> None:
        self._p = policy
        self.key = key
        self.known_prompt_len: int | None = None
        self.continuity = ContinuityTracker()
        self.servers: list[str] = []
        self.sampling: dict[str, Any] = {}  # temperature / top_p actually sent (config overrides included)

    def close(self) -> None:
        self._p.dispatcher.forget(self.key)

    def _body(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        p, cfg = self._p, self._p.cfg
        if cfg.use_completions_api:
            return build_completions_body(params, cfg, p.model_name), "/completions"
        return build_chat_body(params, cfg, p.model_name), "/chat/completions"

    async def respond(self, params: Mapping[str, Any]) -> ModelTurn:
        """One model call; context exhaustion yields a turn marked ``context_length``."""
        p, cfg = self._p, self._p.cfg
        body, path = self._body(params)
        self.sampling = {k: body[k] for k in ("temperature", "top_p") if k in body}
        wanted = body.get("max_tokens")
        if cfg.clamp_max_tokens_to_context and p.max_model_len:
            clamped = clamp_max_tokens(wanted, self.known_prompt_len, p.max_model_len)
            if clamped == 0:
                return self._context_stop()
            if clamped is not None and clamped != wanted:
                body["max_tokens"] = clamped
                p.clamped_calls += 1
        try:
            server, reply = await p.dispatcher.post(path, body, self.key)
        except ServerStatusError as err:
            if is_context_length_error(err.status, err.server_message):
                return self._context_stop()
            if is_tool_refusal(err):
                raise ToolSupportError(err.status, err.body, server=err.server,
                                       message=f"{TOOL_PARSER_HINT} (server said: {err.server_message})") from None
            raise
        self.servers.append(server)
        turn = completion_reply_to_turn(reply, cfg) if cfg.use_completions_api else chat_reply_to_turn(reply, cfg)
        usage = turn.usage
        self.known_prompt_len = usage["input_tokens"] + usage["output_tokens"] or None
        if ran_out_of_context(turn.finish_reason, usage["input_tokens"], usage["output_tokens"], wanted,
                              p.max_model_len):
            turn.incomplete_reason = CONTEXT_LENGTH
            p.context_length_stops += 1
        if cfg.return_token_id_information:
            await self._attach_tokens(turn, reply, body)
        return turn

    def _context_stop(self) -> ModelTurn:
        self._p.context_length_stops += 1
        return ModelTurn(output=[], usage=map_usage(None), finish_reason=None, incomplete_reason=CONTEXT_LENGTH)

    async def _attach_tokens(self, turn: ModelTurn, reply: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        cfg = self._p.cfg
        captured = capture_completion_tokens(reply) if cfg.use_completions_api else capture_chat_tokens(reply)
        prompt_ids = captured.prompt_token_ids
        if prompt_ids is None:
            prompt_ids = await self._tokenize(body)
        _check_against_usage(captured, prompt_ids, turn.usage)
        if not turn.output:
            raise ProtocolError("a model call with token capture produced no output item to attach ids to")
        last = turn.output[-1]
        last["prompt_token_ids"] = prompt_ids
        last["generation_token_ids"] = captured.generation_token_ids
        last["generation_log_probs"] = captured.generation_log_probs
        if cfg.check_token_continuity:
            self.continuity.observe(prompt_ids, captured.generation_token_ids)

    async def _tokenize(self, body: Mapping[str, Any]) -> list[int]:
        """Prompt ids from ``/tokenize`` (same messages, tools and template kwargs as the call)
        for servers without ``return_token_ids``."""
        self._p.tokenize_fallbacks += 1
        _, answer = await self._p.dispatcher.post("/tokenize", tokenize_request(body), self.key, at_root=True)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise ProtocolError(f"/tokenize answered without a token list: {str(answer)[:200]}")
        return tokens


def _check_against_usage(captured: CapturedTokens, prompt_ids: list[int], usage: Mapping[str, Any]) -> None:
    """Ids and usage must agree: a mismatch means the ids are not the ones the server counted."""
    generated, prompt = usage.get("output_tokens"), usage.get("input_tokens")
    if generated and len(captured.generation_token_ids) != generated:
        raise ProtocolError(f"the server reported {generated} completion tokens but sent "
                            f"{len(captured.generation_token_ids)} generation token ids")
    if prompt and len(prompt_ids) != prompt:
        raise ProtocolError(f"the server reported {prompt} prompt tokens but the prompt has {len(prompt_ids)} ids")


__all__ = ["VLLMPolicy", "PolicySession", "CapturedTokens", "CONTEXT_LENGTH", "TOOL_PARSER_HINT"]
